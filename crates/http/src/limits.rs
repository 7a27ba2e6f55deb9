//! [`HttpLimits`]: the timeouts and the connection bound of a listener.

use std::time::Duration;

/// What a listener allows a client (see the crate docs for what each bounds).
///
/// ```
/// let limits = firepit_http::HttpLimits::default();
/// assert_eq!(limits.header_read_timeout.as_secs(), 30);
/// assert_eq!(limits.max_connections_per_client, 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a request's head may take to arrive, from the connection's start or the previous
    /// response; also how long an idle kept-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Time a request body may send nothing while its handler waits for it.
    pub body_idle_timeout: Duration,
    /// Connections one client may have open at once (per peer address on TCP, per listener on a
    /// Unix socket).
    pub max_connections_per_client: usize,
    /// Largest request head in bytes (`None`: hyper's default, about 400 KiB); more is `431`.
    pub max_head_bytes: Option<usize>,
}

impl HttpLimits {
    /// Default head timeout and idle keep-alive.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default body idle timeout.
    pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default connections per client.
    pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_idle_timeout: Self::DEFAULT_BODY_IDLE_TIMEOUT,
            max_connections_per_client: Self::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_head_bytes: None,
        }
    }
}
