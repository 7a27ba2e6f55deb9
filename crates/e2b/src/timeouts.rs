//! A sandbox's timeout: `POST /sandboxes/{id}/timeout` (expire `timeout` seconds from now) and
//! `POST /sandboxes/{id}/refreshes` (keep alive `duration` seconds from now), both a renew of its
//! firepit lease; [`extend`] is shared with connect.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::sandbox_views::{find, lease_error};
use crate::sandboxes::Sandbox;
use crate::state::AppState;

/// E2B's default sandbox timeout when the request names none, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// A body with a timeout in seconds.
#[derive(Debug, Default, Deserialize)]
pub struct TimeoutBody {
    timeout: Option<i64>,
    duration: Option<i64>,
}

/// `secs` as a timeout this endpoint grants (at least 1 s, at most the configured maximum).
pub fn checked_timeout(state: &AppState, secs: i64) -> Result<u64, ApiError> {
    let secs = u64::try_from(secs).map_err(|_| ApiError::bad_request("timeout must be at least 0"))?.max(1);
    if secs > state.config.max_timeout_secs {
        return Err(ApiError::bad_request(format!(
            "timeout {secs} s exceeds the maximum of {} s",
            state.config.max_timeout_secs
        )));
    }
    Ok(secs)
}

/// Sets the sandbox to expire `secs` from now (`only_longer`: unless it already runs longer).
pub async fn extend(
    state: &AppState,
    sandbox: &Sandbox,
    secs: i64,
    only_longer: bool,
) -> Result<(), ApiError> {
    let secs = checked_timeout(state, secs)?;
    let wanted = SystemTime::now() + Duration::from_secs(secs);
    if only_longer && wanted <= sandbox.end_at() {
        return Ok(());
    }
    let lease = state
        .client
        .renew(&sandbox.id, Some(secs * 1000))
        .await
        .map_err(|e| lease_error(state, sandbox, &e))?;
    sandbox.set_end_at(SystemTime::UNIX_EPOCH + Duration::from_millis(lease.expires_at_unix_ms));
    Ok(())
}

fn timeout_body(body: &[u8]) -> Result<TimeoutBody, ApiError> {
    if body.is_empty() {
        return Ok(TimeoutBody::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// `POST /sandboxes/{id}/timeout`: expire `timeout` seconds from now.
pub async fn set_timeout(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let secs = timeout_body(&body)?.timeout.ok_or_else(|| ApiError::bad_request("timeout is required"))?;
    extend(&state, &sandbox, secs, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /sandboxes/{id}/refreshes`: keep alive `duration` seconds (default E2B's 15) from now.
pub async fn refresh(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let secs = timeout_body(&body)?.duration.unwrap_or(DEFAULT_TIMEOUT_SECS as i64);
    if !(0..=3600).contains(&secs) {
        return Err(ApiError::bad_request("duration must be between 0 and 3600 seconds"));
    }
    extend(&state, &sandbox, secs, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
