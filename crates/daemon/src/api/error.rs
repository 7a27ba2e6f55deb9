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

pub use firepit_api::ErrorBody;

use crate::backend::{AcquireError, ExecError, ShapeError};
use crate::leases::LeaseError;
use crate::narrowing::NarrowingError;

/// An error response: status, code, message and an optional `Retry-After` (seconds).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error without `Retry-After`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None }
    }

    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code.to_owned(), message: self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
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
            AcquireError::UnknownShape(_) => Self::new(StatusCode::NOT_FOUND, "unknown_shape", message),
            AcquireError::Exhausted { .. } => Self {
                retry_after_secs: Some(1),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "exhausted", message)
            },
            AcquireError::ShuttingDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            AcquireError::Backend(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "backend_error", message)
            }
        }
    }
}

impl From<LeaseError> for ApiError {
    fn from(error: LeaseError) -> Self {
        let message = error.to_string();
        match error {
            LeaseError::Acquire(inner) => inner.into(),
            LeaseError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "lease_not_found", message),
            LeaseError::BadTtl { .. } => Self::new(StatusCode::BAD_REQUEST, "bad_ttl", message),
            LeaseError::IdempotencyConflict { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict", message)
            }
            LeaseError::ShuttingDown => Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
            LeaseError::Draining => Self::new(StatusCode::SERVICE_UNAVAILABLE, "draining", message),
            LeaseError::Egress(NarrowingError::NetworkDisabled { .. }) => {
                Self::new(StatusCode::CONFLICT, "network_disabled", message)
            }
            LeaseError::Egress(NarrowingError::Widens { .. }) => {
                Self::new(StatusCode::BAD_REQUEST, "egress_widens", message)
            }
            LeaseError::NarrowFailed(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "backend_error", message)
            }
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(error: ExecError) -> Self {
        let message = with_causes(&error);
        match error {
            ExecError::Refused(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "exec_refused", message),
            ExecError::Unreachable(_) => Self::new(StatusCode::BAD_GATEWAY, "vm_unreachable", message),
        }
    }
}

impl From<ShapeError> for ApiError {
    fn from(error: ShapeError) -> Self {
        let message = with_causes(&error);
        match error {
            ShapeError::AlreadyExists(_) => Self::new(StatusCode::CONFLICT, "shape_exists", message),
            ShapeError::Unknown(_) => Self::new(StatusCode::NOT_FOUND, "unknown_shape", message),
            ShapeError::Invalid { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_shape", message)
            }
            ShapeError::ShuttingDown => Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
        }
    }
}

impl EmptyBody for firepit_api::AcquireBody {
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
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the request body must be JSON (Content-Type: application/json)",
                ));
            }
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_body" };
            ApiError::new(status, code, rejection.body_text())
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return T::empty().map(ApiJson).ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_json", "the request needs a JSON body")
            });
        }
        // Every body of this API is an object; serde would also accept a struct as an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                "the request body must be a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("invalid JSON body: {e}"))
        })
    }
}

/// Middleware: turns any error response that is not JSON yet (axum's own rejections, e.g. a path
/// that is not valid UTF-8) into the [`ErrorBody`] shape, so clients only ever parse one format.
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
    let code = if status.is_client_error() { "bad_request" } else { "internal_error" };
    let mut converted = ApiError::new(status, code, message).into_response();
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
        if let Some(value) = parts.headers.get(&name) {
            converted.headers_mut().insert(name, value.clone());
        }
    }
    converted
}
