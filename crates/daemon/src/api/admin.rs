//! Pool and daemon endpoints: status, shapes at run time, metrics, health, OpenAPI.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::AppState;
use super::error::{ApiError, ApiJson, ErrorCode};
use crate::exposition;
use firepit_api::{HealthResponse, HostView, PoolsResponse, ShapeSpec};

/// Status of every shape's pool.
#[utoipa::path(
    get, path = "/v1/pools", tag = "pools",
    responses((status = 200, description = "Per-shape status", body = PoolsResponse))
)]
pub async fn list_pools(State(state): State<AppState>) -> axum::Json<PoolsResponse> {
    axum::Json(PoolsResponse {
        shapes: state.backend().status(),
        leases: state.leases().len(),
        uptime_secs: state.inner.started.elapsed().as_secs(),
        host: Some(host(state.backend().memory_mb())),
    })
}

/// The host's CPUs (those this process may use) and memory (`/proc/meminfo`), with the VMs' use.
fn host(memory: crate::backend::MemoryUse) -> HostView {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let memory_total_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024);
    HostView { cpus, memory_total_mb, memory_used_mb: memory.used_mb, memory_budget_mb: memory.budget_mb }
}

/// Register a shape at run time; its pool starts filling. An `image` of `snapshot:ID` names a
/// snapshot (`GET /v1/snapshots`): the shape's VMs start from it, each with its own identity; its
/// `cpus`, `memory_mb` and `network` must be the snapshot's.
#[utoipa::path(
    put, path = "/v1/shapes/{name}", tag = "pools",
    params(("name" = String, Path, description = "Shape name ([a-z0-9][a-z0-9_-]*)")),
    request_body = ShapeSpec,
    responses(
        (status = 201, description = "Registered"),
        (status = 400, description = "Malformed body", body = super::ErrorBody),
        (status = 404, description = "`snapshot_not_found`: `image` names a snapshot (`snapshot:ID`) that does not exist", body = super::ErrorBody),
        (status = 409, description = "A shape of that name exists (delete it first)", body = super::ErrorBody),
        (status = 422, description = "Invalid shape (the message names the field)", body = super::ErrorBody),
    )
)]
pub async fn register_shape(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(mut spec): ApiJson<ShapeSpec>,
) -> Result<StatusCode, ApiError> {
    if !spec.name.is_empty() && spec.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names shape `{}` but the path `{name}`: leave `name` out of the body or make them equal",
            spec.name
        )));
    }
    spec.name = name;
    spec.validate().map_err(|e| ApiError::new(ErrorCode::InvalidShape, e.to_string()))?;
    let name = spec.name.clone();
    match spec.snapshot_image() {
        Some(id) => {
            let dir = state.leases().snapshot_dir(id)?;
            state.backend().register_snapshot_shape(spec, dir).await?;
        }
        None => state.backend().register_shape(spec).await?,
    }
    info!(shape = %name, "shape registered");
    Ok(StatusCode::CREATED)
}

/// Unregister a shape: its ready VMs are destroyed; leased VMs stay valid until released.
#[utoipa::path(
    delete, path = "/v1/shapes/{name}", tag = "pools",
    params(("name" = String, Path, description = "Shape name")),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 404, description = "Unknown shape", body = super::ErrorBody),
    )
)]
pub async fn unregister_shape(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.backend().unregister_shape(&name).await?;
    info!(shape = %name, "shape unregistered");
    Ok(StatusCode::NO_CONTENT)
}

/// Prometheus metrics: OpenMetrics text, or the classic text format when `Accept` prefers
/// `text/plain` (see [`crate::exposition`]).
#[utoipa::path(
    get, path = "/metrics", tag = "daemon",
    responses((status = 200, description = "Metrics with a `shape` label: OpenMetrics text, or the classic text format for an `Accept` that prefers `text/plain`",
        content(
            (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
            (String = "text/plain; version=0.0.4; charset=utf-8"),
        )))
)]
pub async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = exposition::Format::negotiate(accept);
    let text = exposition::encode(&state.inner.registry, format)
        .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("cannot encode metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}

/// Liveness: 200 while serving, 503 once shutdown has begun.
#[utoipa::path(
    get, path = "/healthz", tag = "daemon",
    responses(
        (status = 200, description = "Serving", body = HealthResponse),
        (status = 503, description = "Shutting down", body = HealthResponse),
    )
)]
pub async fn get_health(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        let body = HealthResponse { status: "shutting_down".into() };
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(HealthResponse { status: "ok".into() }).into_response()
}

/// This API's OpenAPI 3 document, generated from the handlers.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "daemon",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json"))
)]
pub async fn get_openapi(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.inner.openapi_json.clone()).into_response()
}
