//! [`GuestError`]: why a request to the guest failed.

use std::time::Duration;

use firepit_agent::Response;

/// A boxed error of the layer that owns the channel (a VM that could not be woken, say).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request to the guest failed.
///
/// [`Remote`](GuestError::Remote) and [`Failed`](GuestError::Failed) are the agent's own answers
/// (the request reached the guest and failed there, e.g. a program or a file that does not
/// exist); [`HostIo`](GuestError::HostIo) is the host's side of a transfer; the other variants
/// are the channel's.
///
/// ```no_run
/// # async fn demo(guest: &firepit_guest::Guest) {
/// use firepit_guest::GuestError;
/// match guest.exec(["no-such-program"]).await {
///     Ok(out) => println!("exit code {:?}", out.exit_code),
///     Err(GuestError::Remote { message, .. }) => println!("the guest said: {message}"),
///     Err(e) => println!("no answer from the guest: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// Reading or writing the channel failed.
    #[error("agent channel I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be encoded or decoded.
    #[error("agent frame error: {0}")]
    Frame(#[from] firepit_agent::FrameError),
    /// No answer in time.
    #[error("agent did not answer {request} within {after:?}")]
    Timeout {
        /// The request kind.
        request: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The agent answered with an error.
    #[error("agent failed {request}: {message}")]
    Remote {
        /// The request kind.
        request: &'static str,
        /// The agent's message.
        message: String,
    },
    /// The agent answered with the wrong kind of response.
    #[error("agent answered {request} with an unexpected response: {response}")]
    UnexpectedResponse {
        /// The request kind.
        request: &'static str,
        /// The response, debug-printed.
        response: String,
    },
    /// The guest could not do what was asked; `kind` says why (see
    /// [`failure_kind`](Self::failure_kind)). The guest is fine and the channel stays usable.
    #[error("guest failed {request}: {message}")]
    Failed {
        /// The request kind.
        request: &'static str,
        /// What kind of failure.
        kind: firepit_agent::FailureKind,
        /// The guest's message (names the path or process).
        message: String,
    },
    /// The channel is gone: the VM exited, or the guest side hung up or broke the protocol (a frame
    /// over the size limit); the next request reconnects.
    #[error("agent channel closed (the VM exited, or the guest hung up or sent a malformed stream)")]
    Closed,
    /// The guest could not be made ready to answer (waking a VM that rested in its pool failed);
    /// the cause says why.
    #[error("the guest could not be woken")]
    Wake(#[source] BoxError),
    /// Reading or writing a file on the host failed (the source of an upload, the target of a
    /// download).
    #[error("{what}: {source}")]
    HostIo {
        /// What was being done, naming the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl GuestError {
    /// What kind of failure the guest reported, if this is one (a missing file, a bad path, no
    /// such process...): for callers that map errors to statuses or exceptions.
    ///
    /// ```
    /// use firepit_agent::FailureKind;
    /// use firepit_guest::GuestError;
    /// let error = GuestError::Failed { request: "stat", kind: FailureKind::NotFound, message: "/x".into() };
    /// assert_eq!(error.failure_kind(), Some(FailureKind::NotFound));
    /// ```
    pub fn failure_kind(&self) -> Option<firepit_agent::FailureKind> {
        match self {
            GuestError::Failed { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// An answer of the wrong kind to `request`.
    pub(crate) fn unexpected(request: &'static str, response: Response) -> Self {
        GuestError::UnexpectedResponse { request, response: format!("{response:?}") }
    }
}

/// Maps a stream's or request's terminal failure to the error the caller sees.
pub(crate) fn failure_error(kind: &'static str, response: Response) -> Result<Response, GuestError> {
    match response {
        Response::Failed(failure) => {
            Err(GuestError::Failed { request: kind, kind: failure.kind, message: failure.message })
        }
        Response::Error { message } => Err(GuestError::Remote { request: kind, message }),
        response => Ok(response),
    }
}
