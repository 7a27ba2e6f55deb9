//! [`E2bConfig`]: where the endpoint listens and what it tells E2B's SDKs.

use std::net::SocketAddr;

/// The envd version the endpoint reports. The SDKs switch features on it (`e2b/envd/versions.py`):
/// 0.5.7 turns on what firepit implements — the default user (0.4.0), stdin for commands
/// (0.3.0), closing stdin (0.5.2), octet-stream uploads (0.5.7) — and keeps off what it does not:
/// file metadata in extended attributes (0.6.2) and watch events with entry info (0.6.3).
pub const ENVD_VERSION: &str = "0.5.7";

/// The port envd listens on in an E2B sandbox; requests for it are served by the endpoint itself,
/// requests for any other port are proxied to that port of the guest.
pub const ENVD_PORT: u16 = 49983;

/// Largest request head (request line and headers) a client may send; more is `431`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the endpoint is set up.
///
/// ```
/// let config = firepit_e2b::E2bConfig::new("127.0.0.1:3000".parse().unwrap(), "secret".into());
/// assert_eq!(config.domain, "e2b.local");
/// assert_eq!(config.default_user, "user");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2bConfig {
    /// The TCP address of the one listener (REST API and every sandbox's envd).
    pub listen: SocketAddr,
    /// The API key clients send as `X-API-Key` (the daemon's bearer token).
    pub api_key: String,
    /// The domain of `Host: {port}-{sandboxID}.{domain}` names (and of `domain` in answers).
    pub domain: String,
    /// Who commands and file operations run as when the client names no user (E2B's base
    /// template: `user`).
    pub default_user: String,
    /// The longest sandbox timeout a client may ask for, in seconds.
    pub max_timeout_secs: u64,
    /// What the listener allows a client (the daemon's `[http]`; heads at most [`MAX_HEAD_BYTES`]).
    pub http: firepit_http::HttpLimits,
}

impl E2bConfig {
    /// A config with E2B's defaults: domain `e2b.local`, user `user`, timeouts up to 24 h.
    pub fn new(listen: SocketAddr, api_key: String) -> Self {
        Self {
            listen,
            api_key,
            domain: "e2b.local".into(),
            default_user: "user".into(),
            max_timeout_secs: 86_400,
            http: firepit_http::HttpLimits {
                max_head_bytes: Some(MAX_HEAD_BYTES),
                ..firepit_http::HttpLimits::default()
            },
        }
    }
}
