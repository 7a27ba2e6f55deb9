//! How the sandbox endpoints report failures: a guest failure's kind becomes its own error code
//! and status (`not_found` 404, `is_a_directory` 409, `permission_denied` 403, ...), so clients
//! act on the code, never on the message.

use axum::http::StatusCode;
use firepit_agent::FailureKind;

use super::error::ApiError;
use crate::sandbox::SandboxError;

/// The code and status of a guest failure.
pub fn guest_code(kind: FailureKind) -> (StatusCode, &'static str) {
    match kind {
        FailureKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        FailureKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        FailureKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        FailureKind::IsADirectory => (StatusCode::CONFLICT, "is_a_directory"),
        FailureKind::NotADirectory => (StatusCode::CONFLICT, "not_a_directory"),
        FailureKind::DirectoryNotEmpty => (StatusCode::CONFLICT, "directory_not_empty"),
        FailureKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
        FailureKind::NoSuchProcess => (StatusCode::NOT_FOUND, "process_not_found"),
        FailureKind::LimitReached => (StatusCode::TOO_MANY_REQUESTS, "limit_reached"),
        FailureKind::Io => (StatusCode::INTERNAL_SERVER_ERROR, "io_error"),
        FailureKind::Protocol | FailureKind::Cancelled => (StatusCode::BAD_GATEWAY, "vm_unreachable"),
    }
}

impl From<SandboxError> for ApiError {
    fn from(error: SandboxError) -> Self {
        let message = super::error::with_causes(&error);
        match error {
            SandboxError::Guest { kind, .. } => {
                let (status, code) = guest_code(kind);
                Self::new(status, code, message)
            }
            SandboxError::Refused(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "exec_refused", message),
            SandboxError::Unreachable(_) => Self::new(StatusCode::BAD_GATEWAY, "vm_unreachable", message),
            SandboxError::Body(_) => Self::new(StatusCode::BAD_REQUEST, "bad_body", message),
        }
    }
}

/// A failure to *start* a program (streamed exec, background process, PTY): a program that
/// cannot be run is `exec_refused` (422) as for `POST /exec`; a limit or a taken tag keep their
/// own codes.
pub fn start_error(error: SandboxError) -> ApiError {
    match error {
        SandboxError::Guest {
            kind:
                kind @ (FailureKind::LimitReached
                | FailureKind::AlreadyExists
                | FailureKind::Io
                | FailureKind::Protocol
                | FailureKind::Cancelled),
            message,
        } => SandboxError::Guest { kind, message }.into(),
        SandboxError::Guest { message, .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "exec_refused", message)
        }
        other => other.into(),
    }
}

macro_rules! required_bodies {
    ($($body:ty),*) => {$(
        impl super::error::EmptyBody for $body {
            fn empty() -> Option<Self> {
                None
            }
        }
    )*};
}

required_bodies!(
    firepit_api::SpawnBody,
    firepit_api::StartProcessBody,
    firepit_api::SignalBody,
    firepit_api::MkdirBody,
    firepit_api::ChmodBody,
    firepit_api::ChownBody,
    firepit_api::RenameBody
);

/// The lease ended (released, expired, daemon stopping) while a stream on it was running.
pub fn lease_ended(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "lease_ended",
        format!("lease `{id}` ended while this stream was running"),
    )
}

/// The daemon began to stop while an endless stream (a terminal, followed output) was running.
pub fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the daemon is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_kinds_keep_their_meaning_and_start_failures_are_exec_refused() {
        let not_found = || SandboxError::Guest { kind: FailureKind::NotFound, message: "/x: missing".into() };
        let error = ApiError::from(not_found());
        assert_eq!((error.status, error.code), (StatusCode::NOT_FOUND, "not_found"));
        assert_eq!(error.message, "/x: missing");
        assert_eq!(start_error(not_found()).code, "exec_refused");
        let taken = SandboxError::Guest { kind: FailureKind::AlreadyExists, message: "tag".into() };
        assert_eq!(start_error(taken).code, "already_exists");
        assert_eq!(guest_code(FailureKind::IsADirectory).1, "is_a_directory");
    }

    #[test]
    fn a_vm_that_does_not_answer_says_why_in_the_message() {
        let cause = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "agent port closed");
        let error = ApiError::from(SandboxError::Unreachable(cause.into()));
        assert_eq!((error.status, error.code), (StatusCode::BAD_GATEWAY, "vm_unreachable"));
        assert_eq!(error.message, "the VM did not answer: agent port closed");
    }
}
