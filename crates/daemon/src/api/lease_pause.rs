//! Pausing and resuming a lease: `POST /v1/leases/{id}/pause` and `/resume`. Both are
//! idempotent and answer the lease's view; see [`crate::leases`] for what a pause keeps and what
//! calls on a paused lease answer (`409 lease_paused`, unless it was acquired with `auto_resume`).

use axum::extract::{Path, State};

use super::AppState;
use super::error::ApiError;
use firepit_api::LeaseView;

/// Pause a lease: its VM's memory, devices and disk are saved under the daemon's state directory
/// and its QEMU exits (no CPU, no RAM); its TTL stops. Pausing a paused lease answers its view.
#[utoipa::path(
    post, path = "/v1/leases/{id}/pause", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    responses(
        (status = 200, description = "The lease, paused", body = LeaseView),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 409, description = "`lease_ended`: the lease ended", body = super::ErrorBody),
        (status = 501, description = "`unsupported`: this daemon's backend cannot pause VMs", body = super::ErrorBody),
    )
)]
pub async fn pause_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<LeaseView>, ApiError> {
    Ok(axum::Json(state.leases().pause(&id).await?))
}

/// Resume a paused lease: the same lease runs again with its files, processes (their output read
/// on from the same offsets), address and port forwards. Resuming a running lease answers its view.
#[utoipa::path(
    post, path = "/v1/leases/{id}/resume", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    responses(
        (status = 200, description = "The lease, running", body = LeaseView),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 409, description = "`lease_ended`: the lease ended", body = super::ErrorBody),
    )
)]
pub async fn resume_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<LeaseView>, ApiError> {
    Ok(axum::Json(state.leases().resume(&id).await?))
}
