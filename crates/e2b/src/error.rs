//! [`ApiError`]: the control plane's error shape, `{"code": <HTTP status>, "message": "..."}`,
//! and how firepit's answers map onto it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use firepit_client::ClientError;

/// An error of E2B's REST API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status (also the body's `code`).
    pub status: StatusCode,
    /// What happened, for people.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a sandbox.
    pub fn sandbox_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("sandbox \"{id}\" doesn't exist or you don't have access to it"),
        )
    }

    /// 501: a verb firepit does not serve yet (said in E2B's error shape, never faked).
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not implemented by firepit's E2B endpoint yet"),
        )
    }

    /// A failed call to firepit, as E2B would say it.
    pub fn from_client(error: &ClientError) -> Self {
        match error {
            ClientError::Api { status, error: code, message } => {
                let status = match code.as_str() {
                    "lease_not_found" => StatusCode::NOT_FOUND,
                    "unknown_shape" => StatusCode::BAD_REQUEST,
                    "exhausted" | "shutting_down" => StatusCode::SERVICE_UNAVAILABLE,
                    _ if status.is_client_error() || *status == StatusCode::INSUFFICIENT_STORAGE => *status,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                Self::new(status, format!("{message} ({code})"))
            }
            other => Self::new(StatusCode::BAD_GATEWAY, format!("firepit did not answer: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.status.as_u16(), "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}
