//! [`Endpoint`]: where the daemon listens (a Unix socket, or TCP with a bearer token).

use std::path::PathBuf;

/// The URL given is not `http://host:port`.
#[derive(Debug, thiserror::Error)]
#[error("bad daemon URL `{0}`: use http://host:port")]
pub struct BadUrl(pub String);

/// Where the daemon listens.
#[derive(Clone)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `host:port` over TCP, with the bearer token.
    Tcp {
        /// `host:port`.
        authority: String,
        /// Bearer token (never printed: `Debug` redacts it).
        token: Option<String>,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp { authority, .. } => write!(f, "http://{authority}"),
        }
    }
}

impl Endpoint {
    /// An endpoint from an `http://host:port` URL (https is not supported).
    ///
    /// ```
    /// use firepit_client::Endpoint;
    /// let endpoint = Endpoint::from_url("http://127.0.0.1:7070/", Some("token".into())).unwrap();
    /// assert_eq!(format!("{endpoint:?}"), "http://127.0.0.1:7070");
    /// assert!(Endpoint::from_url("https://example.org", None).is_err());
    /// ```
    pub fn from_url(url: &str, token: Option<String>) -> Result<Self, BadUrl> {
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| BadUrl(url.to_owned()))?;
        Ok(Self::Tcp { authority: authority.to_owned(), token })
    }
}
