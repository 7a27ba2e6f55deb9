//! [`ClientError`]: why a request to the daemon failed, with the daemon's error code when it
//! answered one.

use firepit_api::ErrorCode;
use hyper::StatusCode;

use crate::endpoint::{BadUrl, Endpoint};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port`.
    #[error(transparent)]
    BadUrl(#[from] BadUrl),
    /// The daemon could not be reached.
    #[error("cannot connect to the daemon at {endpoint:?}: {source} (is `firepit serve` running?)")]
    Connect {
        /// Where we tried.
        endpoint: Endpoint,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error talking to the daemon: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The daemon answered with an error.
    #[error("the daemon answered {status}: {message} ({error})")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// Machine-readable code (the status is the code's, unless the code is
        /// [`ErrorCode::Unknown`]).
        error: ErrorCode,
        /// Human-readable message.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer from the daemon ({status}): {message}")]
    Decode {
        /// HTTP status.
        status: StatusCode,
        /// What could not be decoded.
        message: String,
    },
    /// Reading or writing local data (an upload's source, a download's destination) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A stream (NDJSON events, a download, a terminal) broke or ended before its last message.
    #[error("the stream from the daemon broke: {0}")]
    Stream(String),
    /// A stream ended with an `error` event (the lease ended, the VM went away).
    #[error("the stream ended with an error: {message} ({error})")]
    StreamError {
        /// Machine-readable code (`lease_ended`, `vm_unreachable`, ...).
        error: ErrorCode,
        /// Human-readable message.
        message: String,
    },
}

impl ClientError {
    /// The daemon's error code, when the daemon answered one (an API error or a stream's `error`
    /// event).
    ///
    /// A code this client does not know (a newer daemon's) is [`ErrorCode::Unknown`].
    ///
    /// ```
    /// use firepit_api::ErrorCode;
    /// let error = firepit_client::ClientError::StreamError { error: ErrorCode::LeaseEnded, message: "gone".into() };
    /// assert_eq!(error.code(), Some(ErrorCode::LeaseEnded));
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } | ClientError::StreamError { error, .. } => Some(error.clone()),
            _ => None,
        }
    }
}
