//! Looking leases up: `GET /v1/leases` (running and recently ended ones, filtered) and
//! `GET /v1/leases/{id}` (one, with its end reason once it ended). See
//! [`crate::lease_views`] for what is kept.

use axum::extract::{Path, Query, State};

use super::AppState;
use super::error::ApiError;
use firepit_api::{LeaseList, LeaseListQuery, LeaseView};

/// List leases: running ones (oldest first), then recently ended ones (newest first).
#[utoipa::path(
    get, path = "/v1/leases", tag = "leases",
    params(LeaseListQuery),
    responses(
        (status = 200, description = "The leases that match every filter", body = LeaseList),
        (status = 400, description = "Unknown filter or state", body = super::ErrorBody),
    )
)]
pub async fn list_leases(
    State(state): State<AppState>,
    Query(query): Query<LeaseListQuery>,
) -> axum::Json<LeaseList> {
    axum::Json(LeaseList { leases: state.leases().views(&query) })
}

/// One lease: running, or ended (with why) while the daemon still remembers it.
#[utoipa::path(
    get, path = "/v1/leases/{id}", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    responses(
        (status = 200, description = "The lease", body = LeaseView),
        (status = 404, description = "No such lease (never acquired, or ended too long ago)", body = super::ErrorBody),
    )
)]
pub async fn get_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<LeaseView>, ApiError> {
    state.leases().view(&id).map(axum::Json).ok_or_else(|| crate::leases::LeaseError::NotFound(id).into())
}
