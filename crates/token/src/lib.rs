//! The bearer token of firepit's TCP listeners: the daemon's (`firepit serve`) and the gateway's
//! (`firepit gateway`), which must treat tokens the same way, so the one type lives here.
//!
//! Tokens are compared in constant time (SHA-256 of both sides, then `subtle`), so neither the
//! content nor the length of the token leaks through timing. The token is never logged:
//! [`BearerToken`]'s `Debug` redacts it; [`BearerToken::secret`] is there for a process that
//! must present it to another (the gateway to the daemons).

#![warn(missing_docs)]

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A secret bearer token.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
    secret: String,
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
    /// let token = firepit_token::BearerToken::new("0123456789abcdef0123", "inline")?;
    /// assert!(token.matches("0123456789abcdef0123"));
    /// assert!(!token.matches("wrong"));
    /// assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
    /// # Ok::<(), firepit_token::TokenError>(())
    /// ```
    pub fn new(text: &str, origin: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { origin: origin.to_owned() });
        }
        Ok(Self { digest: Sha256::digest(text.as_bytes()).into(), secret: text.to_owned() })
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

    /// The token itself, to present it to another listener (`Authorization: Bearer ...`).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The token presented in an `Authorization` header value (`Bearer <token>`), if any.
    ///
    /// ```
    /// assert_eq!(firepit_token::BearerToken::presented("Bearer abc "), Some("abc"));
    /// assert_eq!(firepit_token::BearerToken::presented("Basic abc"), None);
    /// ```
    pub fn presented(header: &str) -> Option<&str> {
        header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim)
    }
}
