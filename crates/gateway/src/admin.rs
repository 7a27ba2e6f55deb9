//! The gateway's own endpoints: `/healthz` (no token: load balancers probe it), `/metrics`, the
//! token check every other route goes through, and the fallback.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use firepit_api::ErrorCode;
use firepit_token::BearerToken;
use serde_json::json;

use crate::error::GatewayError;
use crate::state::GatewayState;

/// `GET /healthz`: always `200` while the gateway serves (it routes existing leases even when
/// etcd is down); `status` is `ok`, or `degraded` with `etcd` saying why when etcd does not
/// answer (then new acquires are refused).
pub async fn healthz(State(gw): State<GatewayState>) -> Response {
    let health = gw.directory().health();
    let etcd = match (&health.error, health.reachable) {
        (_, true) => "ok".to_owned(),
        (Some(error), false) => format!("unreachable: {error}"),
        (None, false) => "not reached yet".to_owned(),
    };
    let status = if health.reachable { "ok" } else { "degraded" };
    let body = json!({
        "status": status,
        "etcd": etcd,
        "hosts": gw.directory().hosts().len(),
        "routes_cached": gw.routes().cached(),
    });
    axum::Json(body).into_response()
}

/// `GET /metrics`: the gateway's Prometheus metrics.
pub async fn metrics(State(gw): State<GatewayState>) -> Response {
    let metrics = gw.metrics();
    metrics.hosts.set(gw.directory().hosts().len() as i64);
    metrics.etcd_up.set(i64::from(gw.directory().health().reachable));
    metrics.routes_cached.set(gw.routes().cached() as i64);
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, gw.registry()) {
        return GatewayError::new(ErrorCode::InternalError, format!("cannot encode metrics: {error}"))
            .into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Middleware: `401` unless `Authorization: Bearer <token>` matches the gateway's token.
pub async fn require_bearer(State(token): State<BearerToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(BearerToken::presented);
    let message = match presented {
        Some(presented) if token.matches(presented) => return next.run(request).await,
        Some(_) => "the bearer token is wrong",
        None => "the gateway requires `Authorization: Bearer <token>`",
    };
    GatewayError::new(ErrorCode::Unauthorized, message).into_response()
}

/// Anything else.
pub async fn not_found() -> GatewayError {
    GatewayError::new(ErrorCode::UnknownEndpoint, "no such endpoint on the gateway; see GET /v1/openapi.json")
}
