//! How the sandbox endpoints report failures: a guest failure's kind becomes its own error code
//! and status (`not_found` 404, `is_a_directory` 409, `permission_denied` 403, ...), so clients
//! act on the code, never on the message.

use firepit_agent::FailureKind;

use super::error::{ApiError, ErrorCode};
use crate::sandbox::SandboxError;

/// The code of a guest failure.
pub fn guest_code(kind: FailureKind) -> ErrorCode {
    match kind {
        FailureKind::NotFound => ErrorCode::NotFound,
        FailureKind::AlreadyExists => ErrorCode::AlreadyExists,
        FailureKind::PermissionDenied => ErrorCode::PermissionDenied,
        FailureKind::IsADirectory => ErrorCode::IsADirectory,
        FailureKind::NotADirectory => ErrorCode::NotADirectory,
        FailureKind::DirectoryNotEmpty => ErrorCode::DirectoryNotEmpty,
        FailureKind::InvalidInput => ErrorCode::InvalidInput,
        FailureKind::NoSuchProcess => ErrorCode::ProcessNotFound,
        FailureKind::LimitReached => ErrorCode::LimitReached,
        FailureKind::Io => ErrorCode::IoError,
        FailureKind::NameTooLong => ErrorCode::NameTooLong,
        FailureKind::NoSpace => ErrorCode::InsufficientStorage,
        FailureKind::BadArchive => ErrorCode::BadArchive,
        FailureKind::ArchiveLimit => ErrorCode::ArchiveLimit,
        FailureKind::ArchiveEntryRefused => ErrorCode::ArchiveEntryRefused,
        FailureKind::Protocol | FailureKind::Cancelled => ErrorCode::VmUnreachable,
    }
}

impl From<SandboxError> for ApiError {
    fn from(error: SandboxError) -> Self {
        let message = super::error::with_causes(&error);
        match error {
            SandboxError::Guest { kind, .. } => Self::new(guest_code(kind), message),
            SandboxError::Refused(_) => Self::new(ErrorCode::ExecRefused, message),
            SandboxError::Unreachable(_) => Self::new(ErrorCode::VmUnreachable, message),
            SandboxError::Body(cause) if firepit_http::is_body_timeout(cause.as_ref()) => {
                Self::new(ErrorCode::BodyTimeout, message)
            }
            SandboxError::Body(_) => Self::new(ErrorCode::BadBody, message),
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
        SandboxError::Guest { message, .. } => ApiError::new(ErrorCode::ExecRefused, message),
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

/// The daemon began to stop while an endless stream (a terminal, followed output) was running.
pub fn shutting_down() -> ApiError {
    ApiError::new(ErrorCode::ShuttingDown, "the daemon is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_kinds_keep_their_meaning_and_start_failures_are_exec_refused() {
        let not_found = || SandboxError::Guest { kind: FailureKind::NotFound, message: "/x: missing".into() };
        let error = ApiError::from(not_found());
        assert_eq!((error.status().as_u16(), &error.code), (404, &ErrorCode::NotFound));
        assert_eq!(error.message, "/x: missing");
        assert_eq!(start_error(not_found()).code, ErrorCode::ExecRefused);
        let taken = SandboxError::Guest { kind: FailureKind::AlreadyExists, message: "tag".into() };
        assert_eq!(start_error(taken).code, ErrorCode::AlreadyExists);
        assert_eq!(guest_code(FailureKind::IsADirectory), ErrorCode::IsADirectory);
    }

    #[test]
    fn a_vm_that_does_not_answer_says_why_in_the_message() {
        let cause = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "agent port closed");
        let error = ApiError::from(SandboxError::Unreachable(cause.into()));
        assert_eq!((error.status().as_u16(), &error.code), (502, &ErrorCode::VmUnreachable));
        assert_eq!(error.message, "the VM did not answer: agent port closed");
    }
}
