//! Why a pause, a resume, a snapshot or a fork failed (see `lifecycle`); here, beside `error`,
//! which wraps it, so that the crate's error does not depend on the lifecycle module.

use std::path::PathBuf;

/// Why saving a running VM (pause, snapshot, fork) or starting one from a saved state failed.
/// Whatever failed before a pause was complete, the VM still runs; a saved state that fails its
/// checks is never loaded (QEMU 7.2 hangs on a damaged state instead of failing).
///
/// ```
/// use firepit_qemu::LifecycleError;
/// let err = LifecycleError::InsufficientStorage {
///     dir: "/var/lib/firepit/state/paused".into(),
///     needed_bytes: 300 << 20,
///     available_bytes: 100 << 20,
/// };
/// assert!(err.to_string().contains("needs 300 MiB"));
/// assert!(err.is_insufficient_storage());
/// ```
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// Too little room where the state goes; nothing was written and the VM keeps running.
    #[error(
        "{dir} has {} MiB free, saving this VM needs {} MiB: free some space (or remove snapshots) and try again",
        available_bytes >> 20,
        needed_bytes.div_ceil(1 << 20)
    )]
    InsufficientStorage {
        /// Where the state was to be written.
        dir: PathBuf,
        /// What the VM's state may take (an upper bound: its touched memory, its disk layers).
        needed_bytes: u64,
        /// What the file system has free for us.
        available_bytes: u64,
    },
    /// The VM's QEMU has exited: there is nothing to save.
    #[error("VM {vm} is not running (its QEMU exited): nothing to save")]
    NotRunning {
        /// The VM's id.
        vm: String,
    },
    /// The directory holds no saved VM (or one whose writing never finished: no manifest).
    #[error("{dir} holds no saved VM (no manifest: not a saved VM's directory, or its save never finished)")]
    NotSaved {
        /// The directory.
        dir: PathBuf,
    },
    /// A saved VM's files are not what its manifest says (truncated, changed, missing): it is never
    /// loaded.
    #[error("the saved VM in {dir} is damaged: {why}")]
    Damaged {
        /// The saved VM's directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The saved VM was made by another QEMU or another firepit (a device or command line that
    /// differs): QEMU could not load it.
    #[error(
        "the saved VM in {dir} was made with {what} {found:?}, this host has {wanted:?}: start it on a host with the same QEMU and firepit"
    )]
    Incompatible {
        /// The saved VM's directory.
        dir: PathBuf,
        /// What differs (`QEMU version`, `command line`, `manifest format`).
        what: &'static str,
        /// What the saved VM was made with.
        found: String,
        /// What this host has.
        wanted: String,
    },
    /// The root disk the saved VM's disk layers lie on has changed or is gone.
    #[error("the saved VM in {dir} lies on root disk {base}, which {why}: restore that image")]
    BaseChanged {
        /// The saved VM's directory.
        dir: PathBuf,
        /// The base image.
        base: PathBuf,
        /// What happened to it.
        why: String,
    },
    /// A file-system or `qemu-img` step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be read or written as JSON.
    #[error("{what}: {source}")]
    Manifest {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A blocking step (hashing, copying) did not finish: its task panicked or was cancelled.
    #[error("{what} did not finish: {source}")]
    Task {
        /// The step.
        what: &'static str,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Asked for no forks.
    #[error("a fork needs a count of 1 or more")]
    NoForks,
}

impl LifecycleError {
    /// Whether the state did not fit where it was to be written (the HTTP API's
    /// `507 insufficient_storage`).
    pub fn is_insufficient_storage(&self) -> bool {
        matches!(self, LifecycleError::InsufficientStorage { .. })
    }

    /// An I/O failure of `what`; "no space left" becomes [`InsufficientStorage`](Self::InsufficientStorage)
    /// of `dir` (space ran out while writing, after the check passed).
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LifecycleError::Io { what: what.into(), source }
    }
}
