//! Bearer-token authentication for the TCP listener.
//!
//! The Unix socket is protected by file permissions (0600 in a 0700 directory); TCP has no such
//! protection, so the daemon refuses to listen on TCP without a token. The token itself
//! ([`BearerToken`]: constant-time comparison, never printed) is `firepit-token`'s, shared with the
//! gateway.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use firepit_token::{BearerToken, MIN_TOKEN_LEN, TokenError};

use crate::api::{ApiError, ErrorCode};

/// Middleware: 401 unless `Authorization: Bearer <token>` matches.
pub async fn require_bearer(State(token): State<BearerToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(BearerToken::presented);
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is wrong"),
        None => unauthorized("this listener requires `Authorization: Bearer <token>`"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthorized, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
