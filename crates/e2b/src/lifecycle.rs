//! E2B's lifecycle verbs on firepit's: `POST /sandboxes/{id}/pause` is a lease pause (the VM's
//! state saved, its QEMU gone, its timeout stopped), `POST /sandboxes/{id}/resume` (deprecated in
//! E2B, still sent by older SDKs) and `POST /sandboxes/{id}/connect` resume it. envd's requests
//! for a paused sandbox go through [`wake`].
//!
//! Two E2B bugs shape the answers:
//! - pausing a paused sandbox answers `204`, as firepit's pause is idempotent, not E2B's `409`:
//!   E2B's SDKs turn the `409` into `pause() == False`, which callers read as a failed pause and
//!   then kill the sandbox they meant to keep (openai-agents-js#1202). Resuming a running sandbox
//!   likewise answers it (`201`) instead of `409`.
//! - a resume or connect never changes the sandbox's lifecycle chosen at create (`autoPause`,
//!   `autoResume`): E2B's SDKs once sent `autoPause: false` with a resume, and the sandbox was
//!   killed at its next timeout instead of paused (E2B#875). The deprecated `autoPause` of a
//!   resume body is ignored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use firepit_api::{ErrorCode, LeaseState};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::sandbox_views::{find, lease_error, lease_view, note_view, sandbox_json};
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::timeouts::{checked_timeout, extend};

/// The body of a resume (`ResumedSandbox`) or a connect (`ConnectSandbox`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeBody {
    /// Seconds from now the sandbox may run.
    timeout: Option<i64>,
    /// `false`: cold-boot from the disk instead of restoring memory (not served by firepit).
    memory: Option<bool>,
    /// Deprecated in E2B; ignored (the lifecycle is the create's: see the module doc).
    #[serde(rename = "autoPause")]
    _auto_pause: Option<Value>,
}

fn resume_body(body: &[u8]) -> Result<ResumeBody, ApiError> {
    if body.is_empty() {
        return Ok(ResumeBody::default());
    }
    let request: ResumeBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    if request.memory == Some(false) {
        return Err(ApiError::bad_request(
            "memory: false (resume by cold-booting from the disk) is not supported by firepit: a paused sandbox resumes with its memory",
        ));
    }
    Ok(request)
}

/// A firepit error of a pause or resume, as E2B says it.
fn transition_error(state: &AppState, sandbox: &Sandbox, error: &firepit_client::ClientError) -> ApiError {
    match error.code() {
        Some(ErrorCode::Unsupported) => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("pausing needs a firepit backend that can pause (QEMU): {error}"),
        ),
        _ => lease_error(state, sandbox, error),
    }
}

/// `POST /sandboxes/{id}/pause`: `204` once paused, also when it already was (see the module doc).
pub async fn pause(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    // Its background processes' readers wait from now on, so that none resumes it (one created
    // with autoResume) by reading on while it pauses.
    sandbox.processes.pause_gate.hold(true);
    let paused = state.client.pause_lease(&sandbox.id).await;
    let view = paused.map_err(|e| {
        sandbox.processes.pause_gate.hold(false);
        transition_error(&state, &sandbox, &e)
    })?;
    note_view(&sandbox, &view);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Resumes `sandbox` if it is paused, with `timeout` seconds from now (none: the timeout it was
/// created with); a running one only gets a longer timeout. Whether it was paused.
async fn resume(state: &AppState, sandbox: &Sandbox, timeout: Option<i64>) -> Result<bool, ApiError> {
    let view = lease_view(state, sandbox).await?;
    if view.state != LeaseState::Paused {
        sandbox.processes.pause_gate.hold(false);
        if let Some(secs) = timeout {
            extend(state, sandbox, secs, true).await?;
        }
        return Ok(false);
    }
    let secs = match timeout {
        Some(secs) => checked_timeout(state, secs)?,
        None => sandbox.timeout.as_secs().max(1),
    };
    // Renewed first (while paused it sets the TTL the resume starts with), so that a sandbox that
    // paused at its timeout does not pause again the moment it resumes.
    state
        .client
        .renew(&sandbox.id, Some(secs.saturating_mul(1000)))
        .await
        .map_err(|e| lease_error(state, sandbox, &e))?;
    let view =
        state.client.resume_lease(&sandbox.id).await.map_err(|e| transition_error(state, sandbox, &e))?;
    note_view(sandbox, &view);
    sandbox.processes.pause_gate.hold(false);
    Ok(true)
}

/// `POST /sandboxes/{id}/resume` (deprecated in E2B): `201` and the sandbox, running.
pub async fn resume_sandbox(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let request = resume_body(&body)?;
    resume(&state, &sandbox, request.timeout).await?;
    Ok((StatusCode::CREATED, axum::Json(sandbox_json(&state, &sandbox))).into_response())
}

/// `POST /sandboxes/{id}/connect`, `POST /v2/sandboxes/{id}/connect`: the sandbox, resumed if it
/// was paused (`201`, its timeout `timeout` from now) or as it runs (`200`, its timeout extended,
/// never shortened).
pub async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let request = resume_body(&body)?;
    let status = match resume(&state, &sandbox, request.timeout).await? {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, axum::Json(sandbox_json(&state, &sandbox))).into_response())
}

/// Before an envd request: whether `sandbox` runs (resumed first if it is paused and was created
/// with `autoResume`). A paused one gets what E2B's proxy answers for it (a `502` that says it is
/// not found; the SDK's `is_running()` reads it as not running).
pub async fn wake(state: &AppState, sandbox: &Sandbox) -> bool {
    if !sandbox.may_be_paused() {
        return true;
    }
    let Ok(view) = lease_view(state, sandbox).await else { return false };
    if view.state != LeaseState::Paused {
        return true;
    }
    if !sandbox.auto_resume {
        return false;
    }
    match resume(state, sandbox, None).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(sandbox = %sandbox.id, %error, "auto-resume failed");
            false
        }
    }
}
