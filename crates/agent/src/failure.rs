//! Turning OS errors and bad arguments into typed [`Failure`]s the host can act on.

use std::io;
use std::path::Path;

use firepit_agent::{Failure, FailureKind, MAX_NAME_BYTES, MAX_PATH_BYTES};

/// The kind of failure an OS error is. By [`io::ErrorKind`], so that errors that lost their OS
/// code on the way (the tar unpacker wraps its own) still map.
pub fn kind_of(error: &io::Error) -> FailureKind {
    if error.raw_os_error() == Some(libc::ESRCH) {
        return FailureKind::NoSuchProcess;
    }
    match error.kind() {
        io::ErrorKind::NotFound => FailureKind::NotFound,
        io::ErrorKind::AlreadyExists => FailureKind::AlreadyExists,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => FailureKind::PermissionDenied,
        io::ErrorKind::IsADirectory => FailureKind::IsADirectory,
        io::ErrorKind::NotADirectory => FailureKind::NotADirectory,
        io::ErrorKind::DirectoryNotEmpty => FailureKind::DirectoryNotEmpty,
        io::ErrorKind::InvalidFilename => FailureKind::NameTooLong,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FailureKind::NoSpace,
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

/// `path` as an absolute path; relative paths are refused (requests have no working directory),
/// and so are names and paths longer than Linux takes ([`MAX_NAME_BYTES`], [`MAX_PATH_BYTES`]).
pub fn absolute(path: &str) -> Result<&Path, Failure> {
    if !path.starts_with('/') {
        return Err(invalid(format!("path {:?} is not absolute (paths must start with /)", short(path))));
    }
    if path.contains('\0') {
        return Err(invalid(format!("path {:?} contains a NUL byte", short(path))));
    }
    check_length(path)?;
    Ok(Path::new(path))
}

/// [`FailureKind::NameTooLong`] if `path` or one of its names is longer than Linux takes.
pub fn check_length(path: &str) -> Result<(), Failure> {
    if path.len() > MAX_PATH_BYTES {
        let message = format!(
            "path {:?} is {} bytes long: paths may have at most {MAX_PATH_BYTES}",
            short(path),
            path.len()
        );
        return Err(Failure::new(FailureKind::NameTooLong, message));
    }
    if let Some(name) = path.split('/').find(|name| name.len() > MAX_NAME_BYTES) {
        let message = format!(
            "name {:?} in path {:?} is {} bytes long: a name may have at most {MAX_NAME_BYTES}",
            short(name),
            short(path),
            name.len()
        );
        return Err(Failure::new(FailureKind::NameTooLong, message));
    }
    Ok(())
}

/// At most the first 100 characters of `text`, for messages about very long input.
pub fn short(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(100) {
        None => text.into(),
        Some((end, _)) => format!("{}...", &text[..end]).into(),
    }
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
    fn names_and_paths_longer_than_linux_takes_are_name_too_long() {
        let long_name = format!("/tmp/{}", "n".repeat(300));
        assert_eq!(absolute(&long_name).unwrap_err().kind, FailureKind::NameTooLong);
        let long_path = "/d".repeat(2500);
        let failure = absolute(&long_path).unwrap_err();
        assert_eq!(failure.kind, FailureKind::NameTooLong);
        assert!(failure.message.len() < 300, "{}", failure.message);
        assert!(absolute(&format!("/tmp/{}", "n".repeat(255))).is_ok());
    }

    #[test]
    fn os_errors_map_to_kinds() {
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::ENAMETOOLONG)), FailureKind::NameTooLong);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::ENOSPC)), FailureKind::NoSpace);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::EDQUOT)), FailureKind::NoSpace);
        // An error that lost its OS code keeps its kind.
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, "failed to unpack `a`");
        assert_eq!(kind_of(&wrapped), FailureKind::NoSpace);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::ENOENT)), FailureKind::NotFound);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::EISDIR)), FailureKind::IsADirectory);
        assert_eq!(kind_of(&io::Error::from_raw_os_error(libc::EACCES)), FailureKind::PermissionDenied);
    }
}
