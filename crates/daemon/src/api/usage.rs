//! What leases use: `GET /v1/leases/{id}/metrics` (one lease's samples, every few seconds of its
//! life) and `GET /v1/usage` (every running lease's latest sample, for `firepit top`). The
//! samples are taken by [`crate::usage`]; these handlers only read them.

use axum::extract::{Path, Query, State};

use super::AppState;
use super::error::ApiError;
use firepit_api::{LeaseMetrics, LeaseState, MetricsQuery, UsageList};

/// A lease's usage samples, oldest first: CPU, guest memory, host RSS/PSS, disk, network, OOM kills.
#[utoipa::path(
    get, path = "/v1/leases/{id}/metrics", tag = "leases",
    params(("id" = String, Path, description = "Lease id"), MetricsQuery),
    responses(
        (status = 200, description = "The samples kept (the newest last); a lease that ended keeps them a while", body = LeaseMetrics),
        (status = 404, description = "No such lease (never acquired, or ended too long ago)", body = super::ErrorBody),
    )
)]
pub async fn lease_metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> Result<axum::Json<LeaseMetrics>, ApiError> {
    let sampler = state.usage();
    if let Some(metrics) = sampler.lease_metrics(&id, query.since_unix_ms) {
        return Ok(axum::Json(metrics));
    }
    // A lease the sampler has not seen yet (it looks every second) has no samples yet.
    match state.leases().view(&id) {
        Some(view) => Ok(axum::Json(LeaseMetrics {
            lease_id: view.id,
            shape: view.shape,
            interval_ms: sampler.config().interval_ms,
            capacity: sampler.config().samples_kept,
            ended: view.state == LeaseState::Ended,
            samples: Vec::new(),
        })),
        None => Err(crate::leases::LeaseError::NotFound(id).into()),
    }
}

/// Every running lease with its latest usage sample (`firepit top`).
#[utoipa::path(
    get, path = "/v1/usage", tag = "leases",
    responses((status = 200, description = "Running leases, oldest first, each with its latest sample", body = UsageList))
)]
pub async fn list_usage(State(state): State<AppState>) -> axum::Json<UsageList> {
    axum::Json(state.usage().latest())
}
