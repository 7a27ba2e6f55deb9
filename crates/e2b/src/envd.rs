//! envd, the daemon E2B runs in every sandbox, served by this endpoint for every sandbox on its
//! one listener: requests are routed to a sandbox by the `E2b-Sandbox-Id` / `E2b-Sandbox-Port`
//! headers (what the SDKs send with `E2B_SANDBOX_URL`) or by a `Host: {port}-{id}.{domain}` name.
//! Port 49983 is envd itself (Connect services, `/files`, `/health`); any other port is the
//! guest's own, reached through a firepit port forward ([`crate::proxy`]).
//!
//! Every envd request but `/health` carries the sandbox's access token (`X-Access-Token`), or, for
//! `/files`, a signature made with it. The user a request acts as is the `Authorization: Basic`
//! user (what the SDKs send when a call names one), else the endpoint's default user.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::ENVD_PORT;
use crate::connect::{Code, ConnectError};
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::users::User;

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

/// What an envd handler works with.
pub struct Call {
    /// The shared state.
    pub state: AppState,
    /// The sandbox.
    pub sandbox: Arc<Sandbox>,
    /// The user named by `Authorization: Basic`, if any.
    pub auth_user: Option<String>,
}

impl Call {
    /// The name of the user the call acts as: `name`, else the `Authorization` user, else the
    /// default.
    pub fn user_name(&self, name: Option<&str>) -> String {
        name.filter(|n| !n.is_empty())
            .or(self.auth_user.as_deref())
            .unwrap_or(&self.state.config.default_user)
            .to_owned()
    }

    /// The user the call acts as (see [`Call::user_name`]), from the guest's user table.
    pub async fn user(&self, name: Option<&str>) -> Result<User, ConnectError> {
        let name = self.user_name(name);
        let users =
            self.state.users(&self.sandbox).await.map_err(|e| {
                ConnectError::new(Code::Unavailable, format!("reading the guest's users: {e}"))
            })?;
        users.by_name(&name).cloned().ok_or_else(|| {
            ConnectError::new(Code::Unauthenticated, format!("user '{name}' does not exist in the sandbox"))
        })
    }
}

/// The user of `Authorization: Basic base64("name:")`, if the header is there and well formed.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue};
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", HeaderValue::from_static("Basic cm9vdDo=")); // "root:"
/// assert_eq!(firepit_e2b::envd::basic_user(&headers).as_deref(), Some("root"));
/// ```
pub fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
    (!user.is_empty()).then(|| user.to_owned())
}

/// Whether `headers` carry the sandbox's access token.
pub fn has_token(headers: &HeaderMap, sandbox: &Sandbox) -> bool {
    headers
        .get("x-access-token")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|token| constant_time_eq(token.as_bytes(), sandbox.access_token.as_bytes()))
}

/// Compares without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Serves one envd request for `target`.
pub async fn serve(state: AppState, target: Target, request: Request) -> Response {
    let Some(sandbox) = state.registry.get(&target.sandbox) else {
        return sandbox_not_found(&target.sandbox);
    };
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
