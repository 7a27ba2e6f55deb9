//! Requests about the whole cluster, answered by asking every host: `GET /v1/pools` (per shape,
//! summed, and per host under `hosts`), `PUT`/`DELETE /v1/shapes/{name}` (on every host),
//! `GET /v1/leases` and `GET /v1/usage` (every host's list, each lease with its `host`),
//! `GET /v1/openapi.json` (any host's: they serve the same API). The merged event stream is
//! [`crate::events`]'s.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_api::{ErrorCode, HostStatusView, PoolsResponse, ShapeStatusView};
use firepit_cluster::HostRecord;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::error::GatewayError;
use crate::state::GatewayState;
use crate::upstream::{Answer, UpstreamError};

/// How long a host may take to answer a fan-out.
pub const FANOUT_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks every registered host the same thing, concurrently.
pub(crate) async fn ask_all(
    gw: &GatewayState,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Vec<(HostRecord, Result<Answer, UpstreamError>)> {
    let hosts = gw.directory().hosts();
    let calls = hosts.iter().map(|host| {
        gw.upstream().call(&host.url, method.clone(), path, body.clone(), &[], Some(FANOUT_TIMEOUT))
    });
    hosts.clone().into_iter().zip(join_all(calls).await).collect()
}

/// `GET /v1/pools`: shapes summed over the hosts, and every host on its own.
pub async fn pools(State(gw): State<GatewayState>) -> Response {
    let mut by_shape: BTreeMap<String, ShapeStatusView> = BTreeMap::new();
    let mut hosts = Vec::new();
    let mut leases = 0;
    for (record, answer) in ask_all(&gw, Method::GET, "/v1/pools", None).await {
        let pools = answer.map_err(|e| e.to_string()).and_then(|a| match a.status.is_success() {
            true => serde_json::from_slice::<PoolsResponse>(&a.body).map_err(|e| e.to_string()),
            false => Err(format!("answered {}", a.status)),
        });
        let (reachable, error, shapes, host_leases) = match pools {
            Ok(pools) => (true, None, pools.shapes, pools.leases),
            Err(error) => (false, Some(error), Vec::new(), record.leases),
        };
        leases += host_leases;
        for shape in &shapes {
            add_shape(&mut by_shape, shape, &record.host);
        }
        hosts.push(HostStatusView {
            host: record.host,
            url: record.url,
            draining: record.draining,
            reachable,
            error,
            leases: host_leases,
            load1: record.load1,
            cpus: record.cpus,
            shapes,
        });
    }
    let pools = PoolsResponse {
        shapes: by_shape.into_values().collect(),
        leases,
        uptime_secs: gw.uptime_secs(),
        host: None,
    };
    let mut body = serde_json::to_value(pools).unwrap_or(Value::Null);
    body["hosts"] = serde_json::to_value(hosts).unwrap_or(Value::Null);
    axum::Json(body).into_response()
}

/// Adds one host's shape to the cluster-wide sum.
fn add_shape(sum: &mut BTreeMap<String, ShapeStatusView>, shape: &ShapeStatusView, host: &str) {
    let Some(total) = sum.get_mut(&shape.name) else {
        let mut first = shape.clone();
        first.last_error = shape.last_error.as_ref().map(|e| format!("{host}: {e}"));
        sum.insert(shape.name.clone(), first);
        return;
    };
    total.ready += shape.ready;
    total.filling += shape.filling;
    total.leased += shape.leased;
    total.depth_low += shape.depth_low;
    total.depth_high += shape.depth_high;
    total.fill_failures += shape.fill_failures;
    total.consecutive_failures = total.consecutive_failures.max(shape.consecutive_failures);
    if total.last_error.is_none() {
        total.last_error = shape.last_error.as_ref().map(|e| format!("{host}: {e}"));
    }
}

/// `PUT /v1/shapes/{name}`: registers the shape on every host.
pub async fn put_shape(State(gw): State<GatewayState>, Path(name): Path<String>, body: Bytes) -> Response {
    on_every_host(&gw, Method::PUT, &format!("/v1/shapes/{name}"), Some(body.to_vec())).await
}

/// `DELETE /v1/shapes/{name}`: unregisters the shape on every host.
pub async fn delete_shape(State(gw): State<GatewayState>, Path(name): Path<String>) -> Response {
    on_every_host(&gw, Method::DELETE, &format!("/v1/shapes/{name}"), None).await
}

/// The same change on every host: the hosts' common answer, or the first failure naming every
/// host that failed.
async fn on_every_host(gw: &GatewayState, method: Method, path: &str, body: Option<Vec<u8>>) -> Response {
    let answers = ask_all(gw, method, path, body).await;
    if answers.is_empty() {
        return GatewayError::new(ErrorCode::NoHost, "no daemon is registered in etcd").into_response();
    }
    let mut failures = Vec::new();
    let mut first_failure: Option<(StatusCode, ErrorCode)> = None;
    let mut success = None;
    for (host, answer) in answers {
        match answer {
            Ok(answer) if answer.status.is_success() => success = Some(answer.status),
            Ok(answer) => {
                let code = answer.error_code().unwrap_or_default();
                let message = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                failures.push(format!("{}: {code}: {message}", host.host));
                first_failure.get_or_insert((answer.status, ErrorCode::from_code(&code)));
            }
            Err(error) => {
                failures.push(format!("{}: {error}", host.host));
                first_failure.get_or_insert((StatusCode::BAD_GATEWAY, ErrorCode::HostUnreachable));
            }
        }
    }
    match (first_failure, success) {
        (None, Some(status)) => status.into_response(),
        (Some((status, code)), _) => {
            GatewayError::new(code, failures.join("; ")).with_status(status).into_response()
        }
        (None, None) => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `GET /v1/leases?…`: every host's leases, each with its `host`.
pub async fn list_leases(State(gw): State<GatewayState>, RawQuery(query): RawQuery) -> Response {
    let path = match query {
        Some(query) => format!("/v1/leases?{query}"),
        None => "/v1/leases".to_owned(),
    };
    merged_lists(&gw, &path, "leases").await
}

/// `GET /v1/usage`: every host's running leases with their latest usage sample, each with its
/// `host` (`interval_ms` is the first host's: the daemons sample alike unless configured apart).
pub async fn usage(State(gw): State<GatewayState>) -> Response {
    merged_lists(&gw, "/v1/usage", "leases").await
}

/// Asks every host `path`, whose answer is an object with a list under `key`: one such object
/// with every host's items (each given its `host`, hosts in id order), the other fields of the
/// first host's answer, and `unreachable_hosts` naming the hosts that did not answer.
pub(crate) async fn merged_lists(gw: &GatewayState, path: &str, key: &str) -> Response {
    let mut leases = Vec::new();
    let mut unreachable = Vec::new();
    let mut without_list = None;
    let mut merged = None;
    let answers = ask_all(gw, Method::GET, path, None).await;
    let hosts = answers.len();
    for (host, answer) in answers {
        match answer {
            Ok(answer) if answer.status.is_success() => {
                let mut value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
                let list = value.get_mut(key).map(Value::take);
                for mut lease in list.and_then(|l| l.as_array().cloned()).unwrap_or_default() {
                    lease["host"] = host.host.clone().into();
                    leases.push(lease);
                }
                merged.get_or_insert(value);
            }
            // A daemon without the endpoint (an older version): its answer, if none has one.
            Ok(answer) if matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) => {
                without_list.get_or_insert((answer, 0)).1 += 1;
            }
            Ok(answer) => return answer.into_response(),
            Err(error) => unreachable.push(format!("{}: {error}", host.host)),
        }
    }
    if let Some((answer, count)) = without_list
        && count == hosts
    {
        return answer.into_response();
    }
    let mut merged = match merged {
        Some(Value::Object(fields)) => Value::Object(fields),
        _ => json!({}),
    };
    merged[key] = leases.into();
    merged["unreachable_hosts"] = unreachable.into();
    axum::Json(merged).into_response()
}

/// `GET /v1/openapi.json`: the daemons' document (they all serve the same API).
pub async fn openapi(State(gw): State<GatewayState>, _headers: HeaderMap) -> Response {
    for host in gw.directory().hosts() {
        let answer = gw
            .upstream()
            .call(&host.url, Method::GET, "/v1/openapi.json", None, &[], Some(FANOUT_TIMEOUT))
            .await;
        if let Ok(answer) = answer
            && answer.status.is_success()
        {
            return answer.into_response();
        }
    }
    GatewayError::new(ErrorCode::NoHost, "no registered daemon answered").into_response()
}
