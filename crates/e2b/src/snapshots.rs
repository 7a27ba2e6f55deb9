//! E2B's snapshot templates and forks on firepit's snapshots:
//! - `POST /sandboxes/{id}/snapshots` takes a firepit snapshot of the sandbox's lease (memory,
//!   devices, disk; the sandbox runs on) and answers it as a template (`snapshotID`, `names`);
//!   `POST /sandboxes` with that id, or the name given, as `templateID` starts a sandbox from it.
//! - `GET /snapshots` lists them (filters `sandboxID`, `name`; pages of `limit` with
//!   `nextToken`), `DELETE /templates/{id}` deletes one (a template that is a firepit shape is
//!   configuration, not deleted through the API).
//! - `POST /sandboxes/{id}/fork` is firepit's fork: `count` copies of the running sandbox, each a
//!   sandbox of its own that succeeded or failed on its own.
//!
//! firepit's snapshots always hold memory: `memory: false` (E2B's filesystem-only snapshot, from
//! which sandboxes cold-boot) is refused rather than served as something else. A fork or a
//! sandbox from a snapshot has its guest's processes as they were, but envd's table of them
//! starts empty: `commands.list()` there shows what it starts itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use firepit_api::{ErrorCode, FORK_MAX, ForkRequest, LeaseResponse, SnapshotInfo};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::pages::{page, set_next_token};
use crate::sandbox_views::{find, lease_error, sandbox_json};
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::timeouts::checked_timeout;

/// The fork timeout when the request names none (E2B's default), seconds.
const DEFAULT_FORK_TIMEOUT_SECS: i64 = 15;

/// Longest snapshot name.
const MAX_NAME: usize = 128;

/// The body of `POST /sandboxes/{id}/snapshots` (`SandboxSnapshotRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// A name to create sandboxes from instead of the id.
    name: Option<String>,
    /// `false`: a filesystem-only snapshot (not served by firepit).
    memory: Option<bool>,
}

fn body<T: Default + for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// E2B's `SnapshotInfo`.
fn snapshot_json(state: &AppState, info: &SnapshotInfo) -> Value {
    let mut names = state.snapshot_names.names_of(&info.snapshot_id);
    if names.is_empty() {
        names.push(info.snapshot_id.clone());
    }
    json!({ "snapshotID": info.snapshot_id, "names": names })
}

/// `POST /sandboxes/{id}/snapshots`: `201` and the new snapshot template.
pub async fn create_snapshot(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let request: SnapshotRequest = body(&bytes)?;
    if request.memory == Some(false) {
        return Err(ApiError::bad_request(
            "memory: false (a filesystem-only snapshot) is not supported by firepit: a snapshot holds the sandbox's memory",
        ));
    }
    if let Some(name) = &request.name {
        check_name(&state, name).await?;
    }
    let info =
        state.client.snapshot_lease(&sandbox.id).await.map_err(|e| lease_error(&state, &sandbox, &e))?;
    if let Some(name) = &request.name {
        state.snapshot_names.name(name, &info.snapshot_id);
    }
    Ok((StatusCode::CREATED, axum::Json(snapshot_json(&state, &info))).into_response())
}

/// A snapshot name must not hide a shape (a template already) or look like a snapshot id.
async fn check_name(state: &AppState, name: &str) -> Result<(), ApiError> {
    let fitting = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b));
    if !fitting || crate::snapshot_names::is_snapshot_id(name) {
        return Err(ApiError::bad_request(format!(
            "snapshot name {name:?}: use 1 to {MAX_NAME} of A-Z a-z 0-9 - _ . / :, not the form of a snapshot id"
        )));
    }
    let pools = state.client.pools().await.map_err(|e| ApiError::from_client(&e))?;
    if pools.shapes.iter().any(|shape| shape.name == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("snapshot name {name:?} is a template (a firepit shape) already: choose another"),
        ));
    }
    Ok(())
}

/// Query of `GET /snapshots`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotQuery {
    /// Only snapshots of this sandbox.
    #[serde(rename = "sandboxID")]
    sandbox_id: Option<String>,
    /// Only the snapshot this name points at.
    name: Option<String>,
    /// Page size (default and most 100).
    limit: Option<usize>,
    /// The first snapshot of the page (the previous page's `x-next-token`).
    next_token: Option<String>,
}

/// `GET /snapshots`: the snapshot templates, oldest first, in pages.
pub async fn list_snapshots(
    State(state): State<AppState>,
    Query(query): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let named = query.name.as_deref().map(|name| state.snapshot_names.resolve(name));
    let snapshots: Vec<SnapshotInfo> = state
        .client
        .list_snapshots()
        .await
        .map_err(|e| ApiError::from_client(&e))?
        .into_iter()
        .filter(|info| query.sandbox_id.as_ref().is_none_or(|id| &info.source_lease_id == id))
        .filter(|info| named.as_ref().is_none_or(|id| id.as_deref() == Some(info.snapshot_id.as_str())))
        .collect();
    let (snapshots, next) =
        page(snapshots, |info| info.snapshot_id.as_str(), query.next_token.as_deref(), query.limit)?;
    let items: Vec<Value> = snapshots.iter().map(|info| snapshot_json(&state, info)).collect();
    let mut response = axum::Json(items).into_response();
    set_next_token(&mut response, next);
    Ok(response)
}

/// `DELETE /templates/{id}`: `204` once a snapshot template is deleted; `404` for none.
pub async fn delete_template(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("template '{id}' not found"));
    let Some(snapshot_id) = state.snapshot_names.resolve(&id) else {
        let pools = state.client.pools().await.map_err(|e| ApiError::from_client(&e))?;
        if pools.shapes.iter().any(|shape| shape.name == id) {
            return Err(ApiError::bad_request(format!(
                "template '{id}' is a firepit shape: remove it from the daemon's config instead"
            )));
        }
        return Err(not_found());
    };
    match state.client.delete_snapshot(&snapshot_id).await {
        Ok(()) => {
            state.snapshot_names.forget(&snapshot_id);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(error) if error.code() == Some(ErrorCode::SnapshotNotFound) => {
            state.snapshot_names.forget(&snapshot_id);
            Err(not_found())
        }
        Err(error) => Err(ApiError::from_client(&error)),
    }
}

/// The body of `POST /sandboxes/{id}/fork` (`SandboxForkRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkBody {
    /// Seconds each fork may run (default 15).
    timeout: Option<i64>,
    /// How many forks (default 1).
    count: Option<i64>,
}

/// `POST /sandboxes/{id}/fork`: `201` and one entry per fork, `{"sandbox": …}` or `{"error": …}`.
pub async fn fork(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let source = find(&state, &id)?;
    let request: ForkBody = body(&bytes)?;
    let count = request.count.unwrap_or(1);
    let count = u32::try_from(count).ok().filter(|n| (1..=FORK_MAX).contains(n)).ok_or_else(|| {
        ApiError::bad_request(format!("count {count}: firepit forks 1 to {FORK_MAX} sandboxes at once"))
    })?;
    let timeout = checked_timeout(&state, request.timeout.unwrap_or(DEFAULT_FORK_TIMEOUT_SECS))?;
    let forks = state
        .client
        .fork_lease(&source.id, &ForkRequest { count, ttl_ms: Some(timeout * 1000) })
        .await
        .map_err(|e| lease_error(&state, &source, &e))?;
    let results: Vec<Value> = forks
        .forks
        .iter()
        .map(|outcome| match outcome.result() {
            Ok(lease) => json!({ "sandbox": sandbox_json(&state, &adopt_fork(&state, &source, lease, timeout)) }),
            Err(error) => {
                let status = error.error.status();
                json!({ "error": { "code": status, "message": format!("{} ({})", error.message, error.error.as_str()) } })
            }
        })
        .collect();
    Ok((StatusCode::CREATED, axum::Json(results)).into_response())
}

/// The record of a fork of `source`: its template and environment, a timeout of its own.
fn adopt_fork(state: &AppState, source: &Sandbox, lease: &LeaseResponse, timeout: u64) -> Arc<Sandbox> {
    let mut sandbox =
        Sandbox::new(lease.lease_id.clone(), source.template_id.clone(), Duration::from_secs(timeout));
    sandbox.set_end_at(SystemTime::UNIX_EPOCH + Duration::from_millis(lease.expires_at_unix_ms));
    sandbox.env_vars = source.env_vars.clone();
    sandbox.allow_internet_access = source.allow_internet_access;
    let sandbox = Arc::new(sandbox);
    state.registry.insert(sandbox.clone());
    sandbox
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_e2b_sends_them_and_refuse_unknown_fields() {
        let empty: ForkBody = body(b"").unwrap();
        assert_eq!((empty.count, empty.timeout), (None, None));
        let fork: ForkBody = body(br#"{"timeout":60,"count":2}"#).unwrap();
        assert_eq!((fork.count, fork.timeout), (Some(2), Some(60)));
        let snapshot: SnapshotRequest = body(br#"{"name":"trained","memory":true}"#).unwrap();
        assert_eq!(snapshot.name.as_deref(), Some("trained"));
        assert_eq!(body::<SnapshotRequest>(br#"{"nam":"x"}"#).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
