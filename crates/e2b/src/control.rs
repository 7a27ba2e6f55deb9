//! E2B's REST API (the control plane): sandboxes created, described, listed, timed and killed as
//! firepit leases; templates are firepit shapes.
//!
//! Fields firepit cannot honour are refused with E2B's error shape unless E2B documents them as
//! optional hints (`secure`: every sandbox's envd is secured anyway). The lifecycle verbs
//! (pause, resume, snapshots, fork) wait for firepit's own API to have them and answer `501`
//! meanwhile, never a pretended success. Metrics are [`crate::metrics`].

use firepit_api::ErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_api::{AcquireBody, EgressPolicy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ENVD_VERSION;
use crate::error::ApiError;
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::time::{parse_rfc3339, rfc3339};

/// How long a create waits for a warm VM.
const CREATE_WAIT_MS: u64 = 30_000;

/// E2B's default sandbox timeout when the request names none, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 15;

/// `POST /sandboxes` and `POST /v2/sandboxes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    timeout: Option<i64>,
    #[serde(default)]
    auto_pause: bool,
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

fn sandbox_json(state: &AppState, sandbox: &Sandbox) -> Value {
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

async fn listed_json(state: &AppState, sandbox: &Sandbox) -> Value {
    let (cpus, memory_mb) = state.resources(sandbox).await;
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
        "state": "running",
        "envdVersion": ENVD_VERSION,
    })
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
    if request.auto_pause || request.auto_resume.as_ref().is_some_and(|v| v["enabled"] == json!(true)) {
        return Err(ApiError::not_implemented("auto-pause and auto-resume (lifecycle)"));
    }
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
    let mut acquire = AcquireBody {
        shape: request.template_id.clone(),
        wait_ms: CREATE_WAIT_MS,
        ttl_ms: Some(timeout * 1000),
        egress: egress.clone(),
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
        Some(ErrorCode::UnknownShape) => {
            ApiError::new(StatusCode::NOT_FOUND, format!("template '{}' not found", request.template_id))
        }
        _ => ApiError::from_client(&error),
    })?;
    let mut sandbox = Sandbox::new(lease.lease_id, request.template_id, Duration::from_secs(timeout));
    sandbox.set_end_at(SystemTime::UNIX_EPOCH + Duration::from_millis(lease.expires_at_unix_ms));
    sandbox.metadata = request.metadata;
    sandbox.env_vars = request.env_vars;
    sandbox.allow_internet_access = request.allow_internet_access;
    let sandbox = Arc::new(sandbox);
    state.registry.insert(sandbox.clone());
    Ok((StatusCode::CREATED, axum::Json(sandbox_json(&state, &sandbox))).into_response())
}

pub(crate) fn find(state: &AppState, id: &str) -> Result<Arc<Sandbox>, ApiError> {
    state.registry.get(id).ok_or_else(|| ApiError::sandbox_not_found(id))
}

/// `GET /sandboxes/{id}`.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    let mut detail = listed_json(&state, &sandbox).await;
    detail["envdAccessToken"] = json!(sandbox.access_token);
    detail["domain"] = json!(state.config.domain);
    detail["allowInternetAccess"] = json!(sandbox.allow_internet_access);
    detail["lifecycle"] = json!({ "autoResume": false, "onTimeout": "kill" });
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

/// A body with a timeout in seconds.
#[derive(Debug, Default, Deserialize)]
pub struct TimeoutBody {
    timeout: Option<i64>,
    duration: Option<i64>,
}

async fn extend(state: &AppState, sandbox: &Sandbox, secs: i64, only_longer: bool) -> Result<(), ApiError> {
    let secs = u64::try_from(secs).map_err(|_| ApiError::bad_request("timeout must be at least 0"))?.max(1);
    if secs > state.config.max_timeout_secs {
        return Err(ApiError::bad_request(format!(
            "timeout {secs} s exceeds the maximum of {} s",
            state.config.max_timeout_secs
        )));
    }
    let wanted = SystemTime::now() + Duration::from_secs(secs);
    if only_longer && wanted <= sandbox.end_at() {
        return Ok(());
    }
    let lease = state.client.renew(&sandbox.id, Some(secs * 1000)).await.map_err(|error| {
        if error.code() == Some(ErrorCode::LeaseNotFound) {
            state.registry.remove(&sandbox.id);
            ApiError::sandbox_not_found(&sandbox.id)
        } else {
            ApiError::from_client(&error)
        }
    })?;
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

/// `POST /sandboxes/{id}/connect`, `POST /v2/sandboxes/{id}/connect`: the sandbox, its timeout
/// extended (never shortened). A running sandbox only: resuming a paused one waits for lifecycle.
pub async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let sandbox = find(&state, &id)?;
    if let Some(secs) = timeout_body(&body)?.timeout {
        extend(&state, &sandbox, secs, true).await?;
    }
    Ok(axum::Json(sandbox_json(&state, &sandbox)).into_response())
}

/// The query of the sandbox lists.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    metadata: Option<String>,
    state: Option<String>,
    order: Option<String>,
    started_after: Option<String>,
    template: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

/// `key=value&...` of the `metadata` filter (keys and values URL-encoded).
fn metadata_filter(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(text)
        .map_err(|e| ApiError::bad_request(format!("metadata filter {text:?}: {e}")))
}

async fn listed(state: &AppState, query: &ListQuery, v2: bool) -> Result<Response, ApiError> {
    let filter = query.metadata.as_deref().map(metadata_filter).transpose()?.unwrap_or_default();
    let states: Vec<&str> = query.state.as_deref().map(|s| s.split(',').collect()).unwrap_or_default();
    if let Some(bad) = states.iter().find(|s| !matches!(**s, "running" | "paused")) {
        return Err(ApiError::bad_request(format!("state {bad:?}: expected running or paused")));
    }
    let after = match query.started_after.as_deref() {
        Some(text) => Some(
            parse_rfc3339(text)
                .ok_or_else(|| ApiError::bad_request(format!("startedAfter {text:?} is not RFC 3339")))?,
        ),
        None => None,
    };
    let mut sandboxes: Vec<_> = state
        .registry
        .list()
        .into_iter()
        .filter(|s| filter.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
        .filter(|_| states.is_empty() || states.contains(&"running"))
        .filter(|s| after.is_none_or(|after| s.started_at >= after))
        .filter(|s| query.template.as_ref().is_none_or(|t| &s.template_id == t))
        .collect();
    if v2 && query.order.as_deref() != Some("asc") {
        sandboxes.reverse();
    }
    let total = sandboxes.len();
    let mut next = None;
    if v2 {
        let start = match query.next_token.as_deref() {
            Some(token) => {
                let position = sandboxes.iter().position(|s| s.id == token);
                position.ok_or_else(|| ApiError::bad_request(format!("nextToken {token:?} is not valid")))?
            }
            None => 0,
        };
        let limit = query.limit.unwrap_or(100).clamp(1, 100);
        sandboxes = sandboxes.split_off(start);
        if sandboxes.len() > limit {
            next = sandboxes.get(limit).map(|s| s.id.clone());
            sandboxes.truncate(limit);
        }
    }
    let mut items = Vec::with_capacity(sandboxes.len());
    for sandbox in &sandboxes {
        items.push(listed_json(state, sandbox).await);
    }
    let mut response = axum::Json(items).into_response();
    if let Some(token) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert("x-next-token", token);
    }
    if let Ok(value) = HeaderValue::from_str(&total.to_string()) {
        response.headers_mut().insert("x-total-running", value);
    }
    Ok(response)
}

/// `GET /sandboxes` (running sandboxes, metadata filter).
pub async fn list_v1(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    listed(&state, &query, false).await
}

/// `GET /v2/sandboxes` (states, metadata, template, start time, order, pages).
pub async fn list_v2(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    listed(&state, &query, true).await
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
    let what = if path.ends_with("/pause") || path.ends_with("/resume") {
        "pausing and resuming sandboxes"
    } else if path.contains("snapshots") || path.starts_with("/templates/") {
        "snapshots"
    } else if path.ends_with("/fork") {
        "forking sandboxes"
    } else if path.ends_with("/network") {
        "changing a sandbox's network"
    } else {
        "sandbox logs"
    };
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

    #[test]
    fn metadata_filters_are_url_encoded_pairs() {
        assert_eq!(
            metadata_filter("user=abc&app=prod%20x").unwrap(),
            [("user".to_owned(), "abc".to_owned()), ("app".to_owned(), "prod x".to_owned())]
        );
    }
}
