//! E2B's REST API (the control plane): sandboxes created, described, timed out and killed as
//! firepit leases; templates are firepit shapes, or snapshots ([`crate::snapshots`], which also
//! forks). Lists are [`crate::listing`], timeouts [`crate::timeouts`], pause/resume/connect
//! [`crate::lifecycle`], metrics [`crate::metrics`].
//!
//! Fields firepit cannot honour are refused with E2B's error shape unless E2B documents them as
//! optional hints (`secure`: every sandbox's envd is secured anyway). `autoPause` and
//! `autoResume` are firepit's `on_expiry = pause` and `auto_resume`. Sandbox logs and network
//! changes answer `501`, never a pretended success.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_api::{AcquireBody, EgressPolicy, ErrorCode, LeaseState, OnExpiry};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ENVD_VERSION;
use crate::error::ApiError;
use crate::sandbox_views::{find, lease_view, lifecycle_json, listed_json, sandbox_json};
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::timeouts::DEFAULT_TIMEOUT_SECS;

/// How long a create waits for a warm VM.
const CREATE_WAIT_MS: u64 = 30_000;

/// `POST /sandboxes` and `POST /v2/sandboxes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    timeout: Option<i64>,
    #[serde(default)]
    auto_pause: bool,
    /// `false`: an auto-pause keeps only the disk (not served by firepit).
    auto_pause_memory: Option<bool>,
    auto_resume: Option<Value>,
    #[serde(rename = "allow_internet_access")]
    allow_internet_access: Option<bool>,
    network: Option<NetworkConfig>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
    /// The SDK starts the MCP gateway itself (a command in the new sandbox); nothing to do here.
    #[serde(rename = "mcp")]
    _mcp: Option<Value>,
    iam: Option<Value>,
    volume_mounts: Option<Vec<Value>>,
}

/// The network part of a create.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkConfig {
    allow_public_traffic: Option<bool>,
    #[serde(default)]
    allow_out: Vec<String>,
    #[serde(default)]
    deny_out: Vec<String>,
    egress_proxy: Option<Value>,
    mask_request_host: Option<String>,
    rules: Option<Value>,
}

/// The egress policy a create asks for (`None`: the shape's own).
fn egress(request: &NewSandbox) -> Result<Option<EgressPolicy>, ApiError> {
    let network = request.network.as_ref();
    if let Some(network) = network {
        if network.egress_proxy.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request("network.egressProxy is not supported by firepit"));
        }
        if network.rules.as_ref().is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
        {
            return Err(ApiError::bad_request(
                "network.rules (request transforms) are not supported by firepit",
            ));
        }
        if network.mask_request_host.is_some() || network.allow_public_traffic == Some(false) {
            return Err(ApiError::bad_request(
                "network.maskRequestHost and allowPublicTraffic=false are not supported by firepit",
            ));
        }
    }
    let deny = network.map(|n| n.deny_out.as_slice()).unwrap_or_default();
    let allow = network.map(|n| n.allow_out.as_slice()).unwrap_or_default();
    let deny_all = deny.iter().any(|d| d == "0.0.0.0/0") || request.allow_internet_access == Some(false);
    if !deny.is_empty() && !deny.iter().all(|d| d == "0.0.0.0/0") {
        return Err(ApiError::bad_request(
            "firepit's egress policy is an allow list: denyOut may only be 0.0.0.0/0 (deny all, then allowOut)",
        ));
    }
    if !deny_all {
        return Ok(None);
    }
    if allow.is_empty() {
        return Ok(Some(EgressPolicy::Deny));
    }
    serde_json::from_value::<EgressPolicy>(json!(allow))
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("network.allowOut: {e}")))
}

/// `POST /sandboxes`, `POST /v2/sandboxes`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: NewSandbox = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    if request.template_id.is_empty() {
        return Err(ApiError::bad_request("templateID is required"));
    }
    if request.auto_pause_memory == Some(false) {
        return Err(ApiError::bad_request(
            "autoPauseMemory: false (a disk-only pause) is not supported by firepit: a sandbox pauses with its memory",
        ));
    }
    let auto_resume = request.auto_resume.as_ref().is_some_and(|v| v["enabled"] == json!(true));
    if request.iam.as_ref().is_some_and(|v| v["tokens"].as_object().is_some_and(|t| !t.is_empty())) {
        return Err(ApiError::bad_request("workload identity (iam) is not supported by firepit"));
    }
    if request.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request("volume mounts are not supported by firepit"));
    }
    let timeout = match request.timeout {
        None => DEFAULT_TIMEOUT_SECS,
        Some(secs) if secs < 0 => return Err(ApiError::bad_request("timeout must be at least 0")),
        Some(secs) => u64::try_from(secs).unwrap_or(0).max(1),
    };
    if timeout > state.config.max_timeout_secs {
        return Err(ApiError::bad_request(format!(
            "timeout {timeout} s exceeds the maximum of {} s",
            state.config.max_timeout_secs
        )));
    }
    let egress = egress(&request)?;
    let idempotency = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    // A snapshot template (its id, or the name it was taken under) starts from the snapshot.
    let snapshot = state.snapshot_names.resolve(&request.template_id);
    let mut acquire = AcquireBody {
        shape: if snapshot.is_some() { String::new() } else { request.template_id.clone() },
        snapshot,
        wait_ms: CREATE_WAIT_MS,
        ttl_ms: Some(timeout * 1000),
        egress: egress.clone(),
        auto_resume,
        on_expiry: if request.auto_pause { OnExpiry::Pause } else { OnExpiry::Destroy },
        ..Default::default()
    };
    let lease = match state.client.acquire_with(&acquire, idempotency).await {
        // A template without a network already has no internet access.
        Err(error)
            if error.code() == Some(ErrorCode::NetworkDisabled) && egress == Some(EgressPolicy::Deny) =>
        {
            acquire.egress = None;
            state.client.acquire_with(&acquire, idempotency).await
        }
        other => other,
    }
    .map_err(|error| match error.code() {
        Some(ErrorCode::UnknownShape | ErrorCode::SnapshotNotFound) => {
            ApiError::new(StatusCode::NOT_FOUND, format!("template '{}' not found", request.template_id))
        }
        Some(ErrorCode::Unsupported) if request.auto_pause => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("autoPause needs a firepit backend that can pause (QEMU): {error}"),
        ),
        _ => ApiError::from_client(&error),
    })?;
    let mut sandbox = Sandbox::new(lease.lease_id, request.template_id, Duration::from_secs(timeout));
    sandbox.set_end_at(SystemTime::UNIX_EPOCH + Duration::from_millis(lease.expires_at_unix_ms));
    sandbox.metadata = request.metadata;
    sandbox.env_vars = request.env_vars;
    sandbox.allow_internet_access = request.allow_internet_access;
    sandbox.auto_pause = request.auto_pause;
    sandbox.auto_resume = auto_resume;
    let sandbox = Arc::new(sandbox);
    state.registry.insert(sandbox.clone());
    Ok((StatusCode::CREATED, axum::Json(sandbox_json(&state, &sandbox))).into_response())
}

/// `GET /sandboxes/{id}`: the sandbox, `running` or `paused` as its lease is.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let view = lease_view(&state, &sandbox).await?;
    let mut detail = listed_json(&state, &sandbox, view.state == LeaseState::Paused).await;
    detail["envdAccessToken"] = json!(sandbox.access_token);
    detail["domain"] = json!(state.config.domain);
    detail["allowInternetAccess"] = json!(sandbox.allow_internet_access);
    detail["lifecycle"] = lifecycle_json(&sandbox);
    Ok(axum::Json(detail).into_response())
}

/// `DELETE /sandboxes/{id}`.
pub async fn kill(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    state.registry.remove(&sandbox.id);
    match state.client.release(&sandbox.id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(error) if error.code() == Some(ErrorCode::LeaseNotFound) => Err(ApiError::sandbox_not_found(&id)),
        Err(error) => Err(ApiError::from_client(&error)),
    }
}

/// `GET /templates`: firepit's shapes, each a template whose id and alias is its name.
pub async fn templates(State(state): State<AppState>) -> Result<Response, ApiError> {
    let pools = state.client.pools().await.map_err(|e| ApiError::from_client(&e))?;
    let items: Vec<Value> = pools
        .shapes
        .iter()
        .map(|shape| {
            json!({
                "templateID": shape.name,
                "buildID": shape.image_id,
                "aliases": [shape.name],
                "names": [shape.name],
                "public": false,
                "envdVersion": ENVD_VERSION,
                "buildStatus": "ready",
            })
        })
        .collect();
    Ok(axum::Json(items).into_response())
}

/// `GET /health`.
pub async fn health() -> StatusCode {
    StatusCode::OK
}

/// Every E2B verb firepit does not serve yet, in E2B's error shape (after a `404` for a sandbox
/// that does not exist, as E2B checks that first).
pub async fn not_implemented(State(state): State<AppState>, uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    let sandbox = path.strip_prefix("/sandboxes/").or_else(|| path.strip_prefix("/v2/sandboxes/"));
    if let Some(id) = sandbox.and_then(|rest| rest.split('/').next()).filter(|id| *id != "metrics")
        && state.registry.get(id).is_none()
    {
        return ApiError::sandbox_not_found(id);
    }
    let what = if path.ends_with("/network") { "changing a sandbox's network" } else { "sandbox logs" };
    ApiError::not_implemented(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: Value) -> NewSandbox {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn internet_access_maps_onto_an_allow_list() {
        assert_eq!(egress(&request(json!({"templateID": "base"}))).unwrap(), None);
        let denied = request(json!({"templateID": "base", "allow_internet_access": false}));
        assert_eq!(egress(&denied).unwrap(), Some(EgressPolicy::Deny));
        let listed = request(
            json!({"templateID": "base", "network": {"denyOut": ["0.0.0.0/0"], "allowOut": ["10.1.0.0/16"]}}),
        );
        assert!(matches!(egress(&listed).unwrap(), Some(EgressPolicy::List(rules)) if rules.len() == 1));
        let partial = request(json!({"templateID": "base", "network": {"denyOut": ["8.8.8.8/32"]}}));
        assert_eq!(egress(&partial).unwrap_err().status, StatusCode::BAD_REQUEST);
        let proxy = request(json!({"templateID": "base", "network": {"egressProxy": {"address": "p:1080"}}}));
        assert!(egress(&proxy).is_err());
    }
}
