//! Turning OS errors and bad arguments into typed [`Failure`]s the host can act on.

use std::io;
use std::path::Path;

use firepit_agent::{Failure, FailureKind};

/// The kind of failure an OS error is.
pub fn kind_of(error: &io::Error) -> FailureKind {
    match error.raw_os_error() {
        Some(libc::EISDIR) => return FailureKind::IsADirectory,
        Some(libc::ENOTDIR) => return FailureKind::NotADirectory,
        Some(libc::ENOTEMPTY) => return FailureKind::DirectoryNotEmpty,
        Some(libc::ESRCH) => return FailureKind::NoSuchProcess,
        _ => {}
    }
    match error.kind() {
        io::ErrorKind::NotFound => FailureKind::NotFound,
        io::ErrorKind::AlreadyExists => FailureKind::AlreadyExists,
        io::ErrorKind::PermissionDenied => FailureKind::PermissionDenied,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => FailureKind::InvalidInput,
        _ => FailureKind::Io,
    }
}

/// A failure for `error` while doing `what` (the message names both).
pub fn io(what: impl std::fmt::Display, error: &io::Error) -> Failure {
    Failure::new(kind_of(error), format!("{what}: {error}"))
}

/// An invalid-input failure.
pub fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::InvalidInput, message)
}

/// `path` as an absolute path; relative paths are refused (requests have no working directory).
pub fn absolute(path: &str) -> Result<&Path, Failure> {
    if !path.starts_with('/') {
        return Err(invalid(format!("path {path:?} is not absolute (paths must start with /)")));
    }
    if path.contains('\0') {
        return Err(invalid(format!("path {path:?} contains a NUL byte")));
    }
    Ok(Path::new(path))
}

/// Checks a working directory (absolute, if given).
pub fn cwd(cwd: Option<&str>) -> Result<&Path, Failure> {
    match cwd {
        Some(dir) => absolute(dir),
        None => Ok(Path::new("/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_refused() {
        assert_eq!(absolute("tmp/x").unwrap_err().kind, FailureKind::InvalidInput);
        assert!(absolute("/tmp/x").is_ok());
    }

    #[test]
    fn os_errors_map_to_kinds() {
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::ENOENT)), FailureKind::NotFound);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::EISDIR)), FailureKind::IsADirectory);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::EACCES)), FailureKind::PermissionDenied);
    }
}
