//! Every request on a lease (`/v1/leases/{id}` and below) through a gateway: look its host up in
//! the lease → host map and forward the request there as it is (streams and the PTY WebSocket
//! included).
//!
//! The gateway's own answers: `410 host_lost` when the host's registration expired or the host
//! restarted, `404 lease_not_found` for a lease no gateway placed (or one released),
//! `502 host_unreachable` when the host is registered but does not answer, `503
//! cluster_unavailable` when etcd is down and this gateway never routed the lease. A release
//! through the gateway also removes the route (in the background, after the answer); a renewal
//! records the new expiry (the same way); a fork's new leases are routed before the answer
//! ([`crate::snapshots::route_forks`]); `GET
//! /v1/leases/{id}` gains the lease's `host`.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_api::ErrorCode;
use firepit_cluster::{HostRecord, LeaseRoute, Lookup};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::acquire::unavailable;
use crate::error::GatewayError;
use crate::state::GatewayState;

/// Largest daemon answer the gateway reads whole to amend it (lease views, renewals, errors).
const MAX_AMENDED_BODY: usize = 1024 * 1024;

/// `/v1/leases/{id}`: the lease view (`GET`) and release (`DELETE`).
pub async fn lease(State(gw): State<GatewayState>, Path(id): Path<String>, request: Request) -> Response {
    forward(&gw, &id, request).await.unwrap_or_else(IntoResponse::into_response)
}

/// `/v1/leases/{id}/...`: everything else on a lease.
pub async fn lease_path(
    State(gw): State<GatewayState>,
    Path((id, _rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    forward(&gw, &id, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn forward(gw: &GatewayState, id: &str, request: Request) -> Result<Response, GatewayError> {
    let metrics = gw.metrics();
    let lookup = gw.routes().lookup(id).await.map_err(|e| {
        metrics.lease_request("cluster_unavailable");
        unavailable(&format!("cannot find lease {id}'s host"), &e)
    })?;
    let (route, host) = match lookup {
        Lookup::Live { route, host } => (route, host),
        Lookup::HostLost { route, restarted } => {
            metrics.lease_request("host_lost");
            return Err(GatewayError::host_lost(id, &route.host, restarted));
        }
        Lookup::Unknown => {
            metrics.lease_request("not_found");
            return Err(GatewayError::new(
                ErrorCode::LeaseNotFound,
                format!(
                    "no lease `{id}` in the cluster (released, expired, or not acquired through a gateway)"
                ),
            ));
        }
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let is_view = method == Method::GET && path == format!("/v1/leases/{id}");
    let is_release = method == Method::DELETE && path == format!("/v1/leases/{id}");
    let is_renew = method == Method::POST && path == format!("/v1/leases/{id}/renew");
    let is_fork = method == Method::POST && path == format!("/v1/leases/{id}/fork");
    let response = gw.upstream().forward(&host.url, request).await.map_err(|error| {
        if error.is_connect() {
            gw.directory().note_unreachable(&host.host);
        }
        metrics.lease_request("host_unreachable");
        GatewayError::host_unreachable(&host.host, &error.to_string())
    })?;
    metrics.lease_request("forwarded");
    let status = response.status();
    if is_release && status.is_success() {
        forget_later(gw, route);
        return Ok(response);
    }
    if !(is_view || is_renew || is_fork || status == StatusCode::NOT_FOUND) {
        return Ok(response);
    }
    // Small answers the gateway reads to amend or to learn from.
    let (mut parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_AMENDED_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return Err(GatewayError::host_unreachable(&host.host, &error.to_string())),
    };
    let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = value.get("error").and_then(Value::as_str).map(str::to_owned);
    if status == StatusCode::NOT_FOUND && code.as_deref() == Some("lease_not_found") {
        // The lease ended on its host (released there, or expired): the route goes too.
        forget_later(gw, route.clone());
    } else if is_fork && status.is_success() {
        // The new leases are routed before the client learns of them.
        let answer = crate::snapshots::route_forks(gw, &route, &host, value).await;
        return Ok(json_response(status, &answer));
    } else if is_view && status.is_success() && value.is_object() {
        value["host"] = host.host.clone().into();
        return Ok(json_response(status, &value));
    } else if is_view && matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) {
        // A daemon without `GET /v1/leases/{id}`: what the cluster knows.
        return Ok(json_response(StatusCode::OK, &route_view(&route, &host)));
    } else if is_renew
        && status.is_success()
        && let Some(expires) = value.get("expires_at_unix_ms").and_then(Value::as_u64)
    {
        let (gw, id) = (gw.clone(), id.to_owned());
        tokio::spawn(async move { gw.routes().renewed(&id, expires).await });
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Forgets a route of a lease that ended, after the client has its answer: the etcd write is
/// off the request's path (if the gateway dies first, the host's sweep removes the route).
fn forget_later(gw: &GatewayState, route: LeaseRoute) {
    gw.routes().forget_cached(&route.lease_id);
    let gw = gw.clone();
    tokio::spawn(async move { gw.routes().forget(&route).await });
}

/// The gateway's view of a lease when its daemon has no lease view of its own.
fn route_view(route: &LeaseRoute, host: &HostRecord) -> Value {
    json!({
        "id": route.lease_id,
        "shape": route.shape,
        "state": "running",
        "expires_at_unix_ms": route.expires_at_unix_ms,
        "host": host.host,
    })
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (status, axum::Json(value.clone())).into_response()
}
