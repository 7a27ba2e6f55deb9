//! Snapshots and forks: `POST /v1/leases/{id}/snapshots`, `GET /v1/snapshots`,
//! `GET`/`DELETE /v1/snapshots/{id}`, `POST /v1/leases/{id}/fork`. A lease starts from a snapshot
//! at acquire (`POST /v1/leases {"snapshot": ID}`, in [`super::leases`]). See
//! [`crate::leases::snapshots`] for what they do to the lease.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::leases::{ForkParams, lease_response};
use firepit_api::{FORK_MAX, ForkOutcome, ForkRequest, ForkResponse, SnapshotInfo, SnapshotList};

/// Snapshot a running lease: its VM's memory, devices and disk are saved under the daemon's state
/// directory (the VM stopped only while they are written); the lease runs on. Start leases from
/// it with `POST /v1/leases {"snapshot": ID}`.
#[utoipa::path(
    post, path = "/v1/leases/{id}/snapshots", tag = "snapshots",
    params(("id" = String, Path, description = "Lease id")),
    responses(
        (status = 201, description = "The snapshot", body = SnapshotInfo),
        (status = 404, description = "No such lease", body = ErrorBody),
        (status = 409, description = "`lease_paused`: the lease is paused (resume it, or acquire with `auto_resume`)", body = ErrorBody),
        (status = 501, description = "`unsupported`: this daemon cannot snapshot VMs", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: too little room for it on the host; the lease runs on", body = ErrorBody),
    )
)]
pub async fn snapshot_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<SnapshotInfo>), ApiError> {
    Ok((StatusCode::CREATED, axum::Json(state.leases().snapshot(&id).await?)))
}

/// Every snapshot, oldest first.
#[utoipa::path(
    get, path = "/v1/snapshots", tag = "snapshots",
    responses(
        (status = 200, description = "The snapshots", body = SnapshotList),
        (status = 501, description = "`unsupported`: this daemon keeps no snapshots", body = ErrorBody),
    )
)]
pub async fn list_snapshots(State(state): State<AppState>) -> Result<axum::Json<SnapshotList>, ApiError> {
    Ok(axum::Json(SnapshotList { snapshots: state.leases().snapshots()? }))
}

/// One snapshot.
#[utoipa::path(
    get, path = "/v1/snapshots/{id}", tag = "snapshots",
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 200, description = "The snapshot", body = SnapshotInfo),
        (status = 404, description = "`snapshot_not_found`", body = ErrorBody),
    )
)]
pub async fn get_snapshot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<SnapshotInfo>, ApiError> {
    Ok(axum::Json(state.leases().snapshot_info(&id)?))
}

/// Delete a snapshot and its files (leases started from it run on).
#[utoipa::path(
    delete, path = "/v1/snapshots/{id}", tag = "snapshots",
    params(("id" = String, Path, description = "Snapshot id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`snapshot_not_found`", body = ErrorBody),
    )
)]
pub async fn delete_snapshot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.leases().delete_snapshot(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fork a running lease into `count` (1 to 16) new leases: each a copy-on-write copy of its memory
/// and disk at this moment with an identity of its own (hostname, machine id, MAC, address,
/// entropy), of the lease's shape and options, with its own TTL. Each fork succeeds or fails on
/// its own; an error status means none was made. The lease runs on either way.
#[utoipa::path(
    post, path = "/v1/leases/{id}/fork", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    request_body = ForkRequest,
    responses(
        (status = 200, description = "One outcome per fork, in order", body = ForkResponse),
        (status = 400, description = "`count` not within 1..=16, or a bad `ttl_ms`", body = ErrorBody),
        (status = 404, description = "No such lease", body = ErrorBody),
        (status = 409, description = "`lease_paused`: the lease is paused", body = ErrorBody),
        (status = 501, description = "`unsupported`: this daemon cannot fork VMs", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: too little room for the forks' template", body = ErrorBody),
    )
)]
pub async fn fork_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ForkRequest>,
) -> Result<axum::Json<ForkResponse>, ApiError> {
    if !(1..=FORK_MAX).contains(&body.count) {
        return Err(ApiError::bad_request(format!("count = {}: must be 1 to {FORK_MAX}", body.count)));
    }
    if state.is_shutting_down() {
        return Err(ApiError::new(super::ErrorCode::ShuttingDown, "the daemon is shutting down"));
    }
    let params = ForkParams { count: body.count as usize, ttl: body.ttl_ms.map(Duration::from_millis) };
    let forks = state.leases().fork(&id, params).await?;
    let forks = forks
        .into_iter()
        .map(|fork| match fork {
            Ok(lease) => ForkOutcome { lease: Some(lease_response(&lease)), error: None },
            Err(error) => {
                let error = ApiError::from(error);
                ForkOutcome {
                    lease: None,
                    error: Some(ErrorBody { error: error.code, message: error.message }),
                }
            }
        })
        .collect();
    Ok(axum::Json(ForkResponse { forks }))
}
