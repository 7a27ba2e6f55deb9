//! Every failure the API reports, as one JSON shape: `{"error": "<code>", "message": "<text>"}`.
//!
//! Handlers return `Result<_, ApiError>`; [`ApiJson`] replaces axum's `Json` extractor so that a
//! malformed, mistyped or oversized body is a 4xx with this shape too, never axum's plain-text
//! rejection (and never a panic).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub use firepit_api::{ErrorBody, ErrorCode};

use crate::backend::{AcquireError, ExecError, ShapeError};
use crate::leases::{Interrupted, LeaseError};
use firepit_shape::NarrowingError;

/// An error response: a code (which sets the HTTP status), a message and an optional
/// `Retry-After` (seconds).
///
/// ```
/// use firepit_daemon::api::{ApiError, ErrorCode};
/// let error = ApiError::new(ErrorCode::LeaseNotFound, "no lease `l-1`");
/// assert_eq!(error.status().as_u16(), 404);
/// ```
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Machine-readable code; the status comes from it.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error without `Retry-After`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None }
    }

    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// The HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody { error: self.code, message: self.message };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An error and its causes in one line (`outer: cause: root cause`), for the message clients see.
pub use firepit_pool::error_chain as with_causes;

impl From<AcquireError> for ApiError {
    fn from(error: AcquireError) -> Self {
        let message = with_causes(&error);
        match error {
            AcquireError::UnknownShape(_) => Self::new(ErrorCode::UnknownShape, message),
            AcquireError::Exhausted { .. } => {
                Self { retry_after_secs: Some(1), ..Self::new(ErrorCode::Exhausted, message) }
            }
            AcquireError::ShuttingDown => Self::new(ErrorCode::ShuttingDown, message),
            AcquireError::Backend(_) => Self::new(ErrorCode::BackendError, message),
        }
    }
}

impl From<LeaseError> for ApiError {
    fn from(error: LeaseError) -> Self {
        let message = error.to_string();
        match error {
            LeaseError::Acquire(inner) => inner.into(),
            LeaseError::NotFound(_) => Self::new(ErrorCode::LeaseNotFound, message),
            // Kept as `lease_not_found` (what clients know a gone lease by), with why it ended.
            LeaseError::Ended(_) => Self::new(ErrorCode::LeaseNotFound, message),
            LeaseError::BadMetadata(_) => Self::new(ErrorCode::BadMetadata, message),
            LeaseError::Unsupported(_) => Self::new(ErrorCode::Unsupported, message),
            LeaseError::Interrupted(interrupted) => interrupted.into(),
            LeaseError::SnapshotNotFound(_) => Self::new(ErrorCode::SnapshotNotFound, message),
            LeaseError::SnapshotInUse { .. } => Self::new(ErrorCode::SnapshotInUse, message),
            LeaseError::InsufficientStorage(_) => Self::new(ErrorCode::InsufficientStorage, message),
            LeaseError::SaveFailed(_) => Self::new(ErrorCode::BackendError, message),
            LeaseError::BadRequest(_) => Self::new(ErrorCode::BadRequest, message),
            LeaseError::TransitionFailed(_) => Self::new(ErrorCode::BackendError, message),
            LeaseError::BadTtl { .. } => Self::new(ErrorCode::BadTtl, message),
            LeaseError::IdempotencyConflict { .. } => Self::new(ErrorCode::IdempotencyConflict, message),
            LeaseError::ShuttingDown => Self::new(ErrorCode::ShuttingDown, message),
            LeaseError::Draining => Self::new(ErrorCode::Draining, message),
            LeaseError::Egress(NarrowingError::NetworkDisabled { .. }) => {
                Self::new(ErrorCode::NetworkDisabled, message)
            }
            LeaseError::Egress(NarrowingError::Widens { .. }) => Self::new(ErrorCode::EgressWidens, message),
            LeaseError::NarrowFailed(_) => Self::new(ErrorCode::BackendError, message),
        }
    }
}

impl From<Interrupted> for ApiError {
    fn from(interrupted: Interrupted) -> Self {
        let message = interrupted.to_string();
        match interrupted {
            Interrupted::Ended { .. } => Self::new(ErrorCode::LeaseEnded, message),
            Interrupted::Paused { .. } => Self::new(ErrorCode::LeasePaused, message),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(error: ExecError) -> Self {
        let message = with_causes(&error);
        match error {
            ExecError::Refused(_) => Self::new(ErrorCode::ExecRefused, message),
            ExecError::Unreachable(_) => Self::new(ErrorCode::VmUnreachable, message),
        }
    }
}

impl From<ShapeError> for ApiError {
    fn from(error: ShapeError) -> Self {
        let message = with_causes(&error);
        match error {
            ShapeError::AlreadyExists(_) => Self::new(ErrorCode::ShapeExists, message),
            ShapeError::Unknown(_) => Self::new(ErrorCode::UnknownShape, message),
            ShapeError::Invalid { .. } => Self::new(ErrorCode::InvalidShape, message),
            ShapeError::ShuttingDown => Self::new(ErrorCode::ShuttingDown, message),
        }
    }
}

impl EmptyBody for firepit_api::AcquireBody {
    fn empty() -> Option<Self> {
        None
    }
}

impl EmptyBody for firepit_api::ForkRequest {
    fn empty() -> Option<Self> {
        None
    }
}

impl EmptyBody for firepit_api::ForwardPortBody {
    fn empty() -> Option<Self> {
        None
    }
}

impl EmptyBody for firepit_api::AcquireRequest {
    fn empty() -> Option<Self> {
        None
    }
}

impl EmptyBody for firepit_api::RenewRequest {
    fn empty() -> Option<Self> {
        Some(Self::default())
    }
}

impl EmptyBody for firepit_api::ExecBody {
    fn empty() -> Option<Self> {
        None
    }
}

impl EmptyBody for firepit_api::ShapeSpec {
    fn empty() -> Option<Self> {
        None
    }
}

/// A JSON request body whose every failure is an [`ApiError`]: wrong content type (415), body over
/// the size limit (413), not JSON or wrong fields (400, the message names the field and position).
/// An empty body decodes as `T::default()` when `T` allows it through [`EmptyBody`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Implemented by bodies that may be omitted (e.g. renew's optional `ttl_ms`).
pub trait EmptyBody: Sized {
    /// The value of an empty body, or `None` if a body is required.
    fn empty() -> Option<Self>;
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + EmptyBody,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(kind) = request.headers().get(header::CONTENT_TYPE) {
            let is_json = kind.to_str().is_ok_and(|k| {
                let essence = k.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            });
            if !is_json {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "the request body must be JSON (Content-Type: application/json)",
                ));
            }
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::BodyTooLarge
            } else if firepit_http::is_body_timeout(&rejection) {
                ErrorCode::BodyTimeout
            } else {
                ErrorCode::BadBody
            };
            ApiError::new(code, rejection.body_text())
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return T::empty()
                .map(ApiJson)
                .ok_or_else(|| ApiError::new(ErrorCode::BadJson, "the request needs a JSON body"));
        }
        // Every body of this API is an object; serde would also accept a struct as an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::new(ErrorCode::BadJson, "the request body must be a JSON object"));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::new(ErrorCode::BadJson, format!("invalid JSON body: {e}")))
    }
}

/// Middleware: turns any error response that is not JSON yet (axum's own rejections, e.g. a path
/// that is not valid UTF-8) into the [`ErrorBody`] shape, so clients only ever parse one format.
/// The code follows the status ([`plain_error_code`]); the answer's status is the code's.
pub async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let message =
        if message.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { message };
    let mut converted = ApiError::new(plain_error_code(status), message).into_response();
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
        if let Some(value) = parts.headers.get(&name) {
            converted.headers_mut().insert(name, value.clone());
        }
    }
    converted
}

/// The code of a plain-text error response of axum's (a rejected path, query or WebSocket
/// upgrade): the code of that status, else `bad_request` for a client error and `internal_error`
/// for a server error (which then answer 400 and 500).
pub fn plain_error_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::UnknownEndpoint,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UPGRADE_REQUIRED => ErrorCode::UpgradeRequired,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::BodyTimeout,
        status if status.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::InternalError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_error_keeps_its_status_when_a_code_has_it() {
        for status in [404, 405, 408, 413, 415, 426, 401, 400, 500] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(ApiError::new(plain_error_code(status), "x").status(), status);
        }
        assert_eq!(plain_error_code(StatusCode::IM_A_TEAPOT), ErrorCode::BadRequest);
        assert_eq!(plain_error_code(StatusCode::GATEWAY_TIMEOUT), ErrorCode::InternalError);
    }
}
