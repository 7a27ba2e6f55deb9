//! [`Call`]: what an envd handler works with — the shared state, the sandbox, the user the
//! request names — and the checks of envd's credentials.

use std::sync::Arc;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::connect::{Code, ConnectError};
use crate::sandboxes::Sandbox;
use crate::state::AppState;
use crate::users::User;

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
/// assert_eq!(firepit_e2b::call::basic_user(&headers).as_deref(), Some("root"));
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
