//! `POST /v1/drain`, `DELETE /v1/drain`: stop taking new leases (existing ones run to their end)
//! and take them again. In a cluster the host's record says `draining`, so gateways place
//! elsewhere; `firepit drain` calls these.

use axum::extract::State;

use super::AppState;
use firepit_api::DrainResponse;

/// Drain: new acquires answer `503 draining`; existing leases are untouched.
#[utoipa::path(
    post, path = "/v1/drain", tag = "daemon",
    responses((status = 200, description = "Draining; `leases` are still held", body = DrainResponse))
)]
pub async fn drain(State(state): State<AppState>) -> axum::Json<DrainResponse> {
    state.leases().set_draining(true);
    axum::Json(DrainResponse { draining: true, leases: state.leases().len() })
}

/// Undo a drain: acquires are served again.
#[utoipa::path(
    delete, path = "/v1/drain", tag = "daemon",
    responses((status = 200, description = "Not draining", body = DrainResponse))
)]
pub async fn undrain(State(state): State<AppState>) -> axum::Json<DrainResponse> {
    state.leases().set_draining(false);
    axum::Json(DrainResponse { draining: false, leases: state.leases().len() })
}
