//! envd, the daemon E2B runs in every sandbox, served by this endpoint for every sandbox on its
//! one listener: requests are routed to a sandbox by the `E2b-Sandbox-Id` / `E2b-Sandbox-Port`
//! headers (what the SDKs send with `E2B_SANDBOX_URL`) or by a `Host: {port}-{id}.{domain}` name.
//! Port 49983 is envd itself (Connect services, `/files`, `/health`); any other port is the
//! guest's own, reached through a firepit port forward ([`crate::proxy`]).
//!
//! Every envd request but `/health` carries the sandbox's access token (`X-Access-Token`), or, for
//! `/files`, a signature made with it. The user a request acts as is the `Authorization: Basic`
//! user (what the SDKs send when a call names one), else the endpoint's default user.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub use crate::call::{Call, basic_user, constant_time_eq, has_token};
use crate::config::ENVD_PORT;
use crate::connect::{Code, ConnectError};
use crate::state::AppState;

/// Which sandbox and port a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The sandbox id.
    pub sandbox: String,
    /// The guest port (49983: envd).
    pub port: u16,
}

/// The sandbox and port a request is for, if it is not for the REST API.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue};
/// use firepit_e2b::envd::target;
/// let mut headers = HeaderMap::new();
/// headers.insert("host", HeaderValue::from_static("8080-l-00ff.e2b.local:3000"));
/// let t = target(&headers, "e2b.local").unwrap().unwrap();
/// assert_eq!((t.sandbox.as_str(), t.port), ("l-00ff", 8080));
/// headers.insert("e2b-sandbox-id", HeaderValue::from_static("l-0a"));
/// assert_eq!(target(&headers, "e2b.local").unwrap().unwrap().port, 49983);
/// ```
pub fn target(headers: &HeaderMap, domain: &str) -> Result<Option<Target>, String> {
    if let Some(id) = headers.get("e2b-sandbox-id") {
        let sandbox = id.to_str().map_err(|_| "E2b-Sandbox-Id is not text".to_owned())?.to_owned();
        let port = match headers.get("e2b-sandbox-port") {
            None => ENVD_PORT,
            Some(port) => port
                .to_str()
                .ok()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| "E2b-Sandbox-Port is not a port number".to_owned())?,
        };
        return Ok(Some(Target { sandbox, port }));
    }
    let Some(host) = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()) else {
        return Ok(None);
    };
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(n, _)| n);
    let Some(label) = name.strip_suffix(domain).and_then(|rest| rest.strip_suffix('.')) else {
        return Ok(None);
    };
    let Some((port, sandbox)) = label.split_once('-') else { return Ok(None) };
    let Ok(port) = port.parse::<u16>() else { return Ok(None) };
    if sandbox.is_empty() || sandbox.contains('.') {
        return Ok(None);
    }
    Ok(Some(Target { sandbox: sandbox.to_owned(), port }))
}

/// The envd answer for a sandbox this endpoint does not know (what E2B's proxy answers).
pub fn sandbox_not_found(id: &str) -> Response {
    let body = serde_json::json!({
        "code": 502,
        "message": format!("The sandbox {id} was not found"),
        "sandboxId": id,
    });
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// Serves one envd request for `target`.
pub async fn serve(state: AppState, target: Target, request: Request) -> Response {
    let Some(sandbox) = state.registry.get(&target.sandbox) else {
        return sandbox_not_found(&target.sandbox);
    };
    if !crate::lifecycle::wake(&state, &sandbox).await {
        return sandbox_not_found(&target.sandbox);
    }
    if target.port != ENVD_PORT {
        return crate::proxy::forward(&state, &sandbox, target.port, request).await;
    }
    let path = request.uri().path().to_owned();
    if path == "/health" {
        return StatusCode::NO_CONTENT.into_response();
    }
    let headers = request.headers().clone();
    let call = Call { auth_user: basic_user(&headers), state, sandbox };
    if path == "/files" {
        return crate::envd_files::serve(call, request).await;
    }
    if !has_token(&headers, &call.sandbox) {
        return ConnectError::new(Code::Unauthenticated, "missing or wrong X-Access-Token for this sandbox")
            .into_unary_response();
    }
    match path.as_str() {
        "/envs" => axum::Json(&call.sandbox.env_vars).into_response(),
        path if path.starts_with("/process.Process/") => crate::envd_process::serve(call, request).await,
        path if path.starts_with("/filesystem.Filesystem/") => crate::envd_fs::serve(call, request).await,
        _ => (StatusCode::NOT_FOUND, Body::from("404 page not found")).into_response(),
    }
}
