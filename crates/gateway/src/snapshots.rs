//! Snapshots and forks through a gateway. A snapshot lives on the host of the lease it was taken
//! of, and a fork runs on its parent's host, so:
//! - `GET /v1/snapshots` is every host's list (each snapshot with its `host`);
//!   `GET`/`DELETE /v1/snapshots/{id}` go to the host that has it;
//! - an acquire with `snapshot` is placed on that snapshot's host ([`snapshot_host`]);
//! - the leases a `POST /v1/leases/{id}/fork` made get their routes written to etcd before the
//!   client sees them ([`route_forks`]), as an acquire's do: a fork whose route cannot be written
//!   is released again and answered as failed (`cluster_unavailable`), so that no client holds a
//!   lease no gateway can route.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_api::ErrorCode;
use firepit_cluster::{HostRecord, LeaseRoute};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tracing::warn;

use crate::error::GatewayError;
use crate::fanout::{ask_all, merged_lists};
use crate::state::GatewayState;

/// `GET /v1/snapshots`: every host's snapshots.
pub async fn list(State(gw): State<GatewayState>) -> Response {
    merged_lists(&gw, "/v1/snapshots", "snapshots").await
}

/// `GET /v1/snapshots/{id}` (with the snapshot's `host`) and `DELETE /v1/snapshots/{id}`: on the
/// host that has it.
pub async fn one(State(gw): State<GatewayState>, method: Method, Path(id): Path<String>) -> Response {
    let path = format!("/v1/snapshots/{id}");
    let mut not_found = None;
    for (host, answer) in ask_all(&gw, method.clone(), &path, None).await {
        match answer {
            Ok(answer) if answer.status.is_success() && method == Method::GET => {
                let mut view: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
                if view.is_object() {
                    view["host"] = host.host.into();
                }
                return (answer.status, axum::Json(view)).into_response();
            }
            Ok(answer) if answer.status == StatusCode::NOT_FOUND => not_found = Some(answer),
            Ok(answer) => return answer.into_response(),
            Err(error) => warn!(host = %host.host, %error, "a host did not answer about a snapshot"),
        }
    }
    match not_found {
        Some(answer) => answer.into_response(),
        None => GatewayError::new(ErrorCode::NoHost, "no registered daemon answered").into_response(),
    }
}

/// The host that holds snapshot `id` (asked of every host).
pub async fn snapshot_host(gw: &GatewayState, id: &str) -> Result<HostRecord, GatewayError> {
    let path = format!("/v1/snapshots/{id}");
    for (host, answer) in ask_all(gw, Method::GET, &path, None).await {
        if answer.is_ok_and(|a| a.status.is_success()) {
            return Ok(host);
        }
    }
    Err(GatewayError::new(
        ErrorCode::from_code("snapshot_not_found"),
        format!("no host has snapshot `{id}` (see GET /v1/snapshots)"),
    )
    .with_status(StatusCode::NOT_FOUND))
}

/// The routes of the leases a fork answer names: (index of the outcome, route on the parent's
/// host).
///
/// ```
/// use firepit_cluster::{HostRecord, LeaseRoute};
/// let parent = LeaseRoute { lease_id: "l-1".into(), host: "a".into(), run_id: "r".into(),
///     shape: "small".into(), expires_at_unix_ms: 0, idempotency_key: None };
/// let answer = serde_json::json!({"forks": [
///     {"lease": {"lease_id": "l-2", "shape": "small", "expires_at_unix_ms": 9}},
///     {"error": {"error": "backend_error", "message": "no"}},
/// ]});
/// let host = HostRecord::new("a", "http://127.0.0.1:1", "r");
/// let routes = firepit_gateway::snapshots::fork_routes(&answer, &parent, &host);
/// assert_eq!(routes.len(), 1);
/// assert_eq!((routes[0].0, routes[0].1.lease_id.as_str(), routes[0].1.expires_at_unix_ms), (0, "l-2", 9));
/// ```
pub fn fork_routes(answer: &Value, parent: &LeaseRoute, host: &HostRecord) -> Vec<(usize, LeaseRoute)> {
    let outcomes = answer.get("forks").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, outcome)| {
            let lease = outcome.get("lease")?;
            let route = LeaseRoute {
                lease_id: lease.get("lease_id")?.as_str()?.to_owned(),
                host: host.host.clone(),
                run_id: host.run_id.clone(),
                shape: lease.get("shape").and_then(Value::as_str).unwrap_or(&parent.shape).to_owned(),
                expires_at_unix_ms: lease.get("expires_at_unix_ms").and_then(Value::as_u64).unwrap_or(0),
                idempotency_key: None,
            };
            Some((i, route))
        })
        .collect()
}

/// Writes the routes of a fork answer's new leases; a fork whose route cannot be written is
/// released on its host and its outcome becomes a `cluster_unavailable` error. Returns the
/// answer to give the client.
pub async fn route_forks(
    gw: &GatewayState,
    parent: &LeaseRoute,
    host: &HostRecord,
    mut answer: Value,
) -> Value {
    let routes = fork_routes(&answer, parent, host);
    let written = join_all(routes.iter().map(|(_, route)| gw.routes().remember(route.clone()))).await;
    for ((i, route), result) in routes.into_iter().zip(written) {
        let Err(error) = result else {
            gw.directory().note_placed(&host.host, &route.shape);
            continue;
        };
        warn!(lease_id = %route.lease_id, %error, "cannot store a fork's route; releasing it");
        let release = format!("/v1/leases/{}", route.lease_id);
        let timeout = Some(std::time::Duration::from_secs(5));
        if let Err(error) = gw.upstream().call(&host.url, Method::DELETE, &release, None, &[], timeout).await
        {
            warn!(lease_id = %route.lease_id, %error, "cannot release the unroutable fork; it ends at its TTL");
        }
        let message = GatewayError::cluster_unavailable(
            "cannot record the fork's host",
            &firepit_pool::error_chain(&error),
        )
        .message;
        answer["forks"][i] =
            json!({"error": {"error": ErrorCode::ClusterUnavailable.as_str(), "message": message}});
    }
    answer
}
