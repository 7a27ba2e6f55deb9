//! How the control plane finds a sandbox and describes it in E2B's shapes (`Sandbox`,
//! `ListedSandbox`), and how it learns a sandbox's state from firepit's lease view.
//!
//! Below the handlers ([`crate::control`], [`crate::listing`], [`crate::lifecycle`],
//! [`crate::metrics`]) and envd's pause check, so that none of them needs another.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use firepit_api::{ErrorCode, LeaseState, LeaseView};
use firepit_client::ClientError;
use serde_json::{Value, json};

use crate::config::ENVD_VERSION;
use crate::error::ApiError;
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::time::rfc3339;

/// The live sandbox `id`, or E2B's `404`.
pub fn find(state: &AppState, id: &str) -> Result<Arc<Sandbox>, ApiError> {
    state.registry.get(id).ok_or_else(|| ApiError::sandbox_not_found(id))
}

/// E2B's `Sandbox`: what a create, a resume and a connect answer.
pub fn sandbox_json(state: &AppState, sandbox: &Sandbox) -> Value {
    json!({
        "templateID": sandbox.template_id,
        "sandboxID": sandbox.id,
        "alias": sandbox.template_id,
        "clientID": "firepit",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": sandbox.access_token,
        "trafficAccessToken": null,
        "domain": state.config.domain,
    })
}

/// E2B's name of a lease state (`running`, `paused`).
pub fn state_name(paused: bool) -> &'static str {
    if paused { "paused" } else { "running" }
}

/// E2B's `ListedSandbox`. A paused sandbox's guest is not asked for its CPUs and memory (that
/// would resume an `autoResume` one): what was read while it ran, else zero.
pub async fn listed_json(state: &AppState, sandbox: &Sandbox, paused: bool) -> Value {
    let (cpus, memory_mb) = if paused {
        sandbox.resources.get().copied().unwrap_or_default()
    } else {
        state.resources(sandbox).await
    };
    json!({
        "templateID": sandbox.template_id,
        "alias": sandbox.template_id,
        "sandboxID": sandbox.id,
        "clientID": "firepit",
        "startedAt": rfc3339(sandbox.started_at),
        "endAt": rfc3339(sandbox.end_at()),
        "cpuCount": cpus,
        "memoryMB": memory_mb,
        "diskSizeMB": 0,
        "metadata": sandbox.metadata,
        "state": state_name(paused),
        "envdVersion": ENVD_VERSION,
    })
}

/// E2B's `lifecycle` of a sandbox (`onTimeout`, `autoResume`).
pub fn lifecycle_json(sandbox: &Sandbox) -> Value {
    json!({
        "autoResume": sandbox.auto_resume,
        "onTimeout": if sandbox.auto_pause { "pause" } else { "kill" },
    })
}

/// Takes what firepit's lease `view` says into the record: paused or running, and the end time.
pub fn note_view(sandbox: &Sandbox, view: &LeaseView) {
    sandbox.set_paused(view.state == LeaseState::Paused);
    let end_at = match view.ttl_remaining_ms {
        // Paused: E2B shows when it would end were it resumed now.
        Some(remaining) if view.state == LeaseState::Paused => {
            SystemTime::now() + Duration::from_millis(remaining)
        }
        _ => SystemTime::UNIX_EPOCH + Duration::from_millis(view.expires_at_unix_ms),
    };
    sandbox.set_end_at(end_at);
}

/// A failed call on the sandbox's lease as E2B says it: a lease that is gone is a sandbox that is
/// gone (forgotten, `404`).
pub fn lease_error(state: &AppState, sandbox: &Sandbox, error: &ClientError) -> ApiError {
    match error.code() {
        Some(ErrorCode::LeaseNotFound | ErrorCode::LeaseEnded) => {
            state.registry.remove(&sandbox.id);
            ApiError::sandbox_not_found(&sandbox.id)
        }
        _ => ApiError::from_client(error),
    }
}

/// firepit's view of the sandbox's lease, taken into the record; an ended lease forgets the
/// sandbox and is E2B's `404`.
pub async fn lease_view(state: &AppState, sandbox: &Sandbox) -> Result<LeaseView, ApiError> {
    let view = state.client.lease(&sandbox.id).await.map_err(|error| lease_error(state, sandbox, &error))?;
    if view.state == LeaseState::Ended {
        state.registry.remove(&sandbox.id);
        return Err(ApiError::sandbox_not_found(&sandbox.id));
    }
    note_view(sandbox, &view);
    Ok(view)
}
