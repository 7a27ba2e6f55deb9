//! Looking leases up: `GET /v1/leases` (live and recently ended ones, filtered by state, shape and
//! metadata) and `GET /v1/leases/{id}` (one, with its end reason once it ended). See
//! [`crate::leases::views`] for what is kept.

use axum::extract::{Path, Query, State};

use super::AppState;
use super::error::ApiError;
use firepit_api::{LeaseList, LeaseListQuery, LeaseView};

/// List leases: running and paused ones (oldest first), then recently ended ones (newest first).
#[utoipa::path(
    get, path = "/v1/leases", tag = "leases",
    params(
        LeaseListQuery,
        ("metadata.{name}" = Option<String>, Query, description = "Only leases whose label `name` has this value (repeat for more labels: all must match)"),
    ),
    responses(
        (status = 200, description = "The leases that match every filter", body = LeaseList),
        (status = 400, description = "Unknown filter, state or limit", body = super::ErrorBody),
    )
)]
pub async fn list_leases(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<axum::Json<LeaseList>, ApiError> {
    let query = LeaseListQuery::from_pairs(pairs).map_err(ApiError::bad_request)?;
    Ok(axum::Json(LeaseList { leases: state.leases().views(&query) }))
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
