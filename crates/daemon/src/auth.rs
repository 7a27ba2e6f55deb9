//! Bearer-token authentication for the TCP listener.
//!
//! The Unix socket is protected by file permissions (0600 in a 0700 directory); TCP has no such
//! protection, so the daemon refuses to listen on TCP without a token. Tokens are compared in
//! constant time (SHA-256 of both sides, then `subtle`), so neither the content nor the length of
//! the token leaks through timing. The token is never logged: [`BearerToken`]'s `Debug` redacts it.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{ApiError, ErrorCode};

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A secret bearer token (stored as its SHA-256 digest).
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why the token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The environment variable is unset or not UTF-8.
    #[error("environment variable {0} is not set (it should hold the bearer token)")]
    MissingEnv(String),
    /// The token is too short.
    #[error(
        "the bearer token from {origin} is shorter than {MIN_TOKEN_LEN} characters; use a longer random token"
    )]
    TooShort {
        /// Where it came from (file path or variable name), never the token.
        origin: String,
    },
}

impl BearerToken {
    /// A token from its text (surrounding whitespace removed).
    ///
    /// # Example
    /// ```
    /// let token = firepit_daemon::auth::BearerToken::new("0123456789abcdef0123", "inline")?;
    /// assert!(token.matches("0123456789abcdef0123"));
    /// assert!(!token.matches("wrong"));
    /// # Ok::<(), firepit_daemon::auth::TokenError>(())
    /// ```
    pub fn new(text: &str, origin: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { origin: origin.to_owned() });
        }
        Ok(Self { digest: Sha256::digest(text.as_bytes()).into() })
    }

    /// Reads the token from a file.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenError::Read { path: path.to_owned(), source })?;
        Self::new(&text, &path.display().to_string())
    }

    /// Reads the token from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, TokenError> {
        let text = std::env::var(var).map_err(|_| TokenError::MissingEnv(var.to_owned()))?;
        Self::new(&text, var)
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&presented).into()
    }
}

/// Middleware: 401 unless `Authorization: Bearer <token>` matches.
pub async fn require_bearer(State(token): State<BearerToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(presented) if token.matches(presented.trim()) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is wrong"),
        None => unauthorized("this listener requires `Authorization: Bearer <token>`"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthorized, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
