//! Errors, one enum per operation area, gathered in [`QemuError`].
//!
//! Every variant names what failed and, where a user can act, what to do about it; where a lower
//! error caused it, that error is kept as its `source`.
//!
//! ```
//! use firepit_qemu::{ConfigError, QemuError};
//! let err = QemuError::from(ConfigError::ZeroTimeout { field: "boot_timeout" });
//! assert!(matches!(err, QemuError::Config(ConfigError::ZeroTimeout { .. })));
//! assert!(err.to_string().contains("boot_timeout"));
//! ```

use std::path::PathBuf;
use std::time::Duration;

use crate::config_error::ConfigError;
use crate::exit::ExitInfo;

/// Any error of this crate.
///
/// ```
/// use firepit_qemu::{QemuError, SpawnError};
/// let err = QemuError::from(SpawnError::ImageFileMissing { path: "/images/vmlinuz".into() });
/// assert!(err.to_string().contains("firepit image build"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The configuration or a shape's spec cannot be used; says what to change.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Starting the QEMU process failed.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The guest did not become ready.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A QMP exchange failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// A request to the guest agent failed (during boot, restore or a wake-up, or through the
    /// VM's [`Guest`](firepit_guest::Guest)).
    #[error(transparent)]
    Guest(#[from] firepit_guest::GuestError),
    /// A console operation failed.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// Taking or restoring a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A network operation failed.
    #[error(transparent)]
    Network(#[from] firepit_net::NetError),
    /// A VM's root disk (its copy-on-write overlay) could not be prepared.
    #[error(transparent)]
    Disk(#[from] crate::root_disk::DiskError),
    /// Pausing, resuming, snapshotting or forking a VM failed (see
    /// [`LifecycleError`](crate::LifecycleError)).
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle_error::LifecycleError),
}

/// Why a QEMU process could not be started.
///
/// ```
/// use firepit_qemu::SpawnError;
/// let err = SpawnError::BinaryNotFound { binary: "qemu-system-x86_64".into() };
/// assert!(err.to_string().contains("apt-get install qemu-system-x86"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The binary is not there.
    #[error("{binary} not found: run `apt-get install qemu-system-x86` or set ProviderConfig::qemu_binary")]
    BinaryNotFound {
        /// The binary asked for.
        binary: PathBuf,
    },
    /// A kernel or initramfs file is missing.
    #[error("image file {path} is missing: rebuild the image (`firepit image build`)")]
    ImageFileMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a file of ours stands where a snapshot template's guest memory file
    /// goes; it is never mapped.
    #[error(
        "guest memory file {path} exists and is not a file of ours: refusing to map it as guest \
         memory; remove it or set another template_dir"
    )]
    MemoryFileTaken {
        /// The memory file's path.
        path: PathBuf,
    },
    /// QEMU exited before it connected its sockets (bad command line, missing accelerator, ...).
    #[error("qemu exited during start-up ({status}); its stderr: {stderr}")]
    EarlyExit {
        /// How it exited (both fields `None` when its status could not be read).
        status: ExitInfo,
        /// The end of its standard error.
        stderr: String,
    },
    /// QEMU did not connect to a socket in time.
    #[error("qemu did not connect its {socket} socket within {after:?}; its stderr: {stderr}")]
    SocketTimeout {
        /// Which socket (console, qmp, agent).
        socket: &'static str,
        /// The deadline.
        after: Duration,
        /// The end of its standard error.
        stderr: String,
    },
}

impl SpawnError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SpawnError::Io { what: what.into(), source }
    }
}

/// Why a started guest did not become ready. Both variants quote the guest's last console lines,
/// which usually say why (a kernel panic, a missing module, a hung init).
///
/// ```
/// use std::time::Duration;
/// use firepit_qemu::BootError;
/// let err = BootError::Timeout {
///     after: Duration::from_secs(60),
///     waiting_for: "an agent ping",
///     console_tail: "Kernel panic - not syncing".into(),
/// };
/// assert!(err.to_string().contains("Kernel panic"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The deadline passed; the VM was killed.
    #[error(
        "guest not ready within {after:?} (waiting for {waiting_for}); VM killed. Last console lines:\n{console_tail}"
    )]
    Timeout {
        /// The boot deadline.
        after: Duration,
        /// What was still missing (readiness line, agent ping).
        waiting_for: &'static str,
        /// The last console lines.
        console_tail: String,
    },
    /// QEMU exited during boot.
    #[error("qemu exited during boot ({status}); stderr: {stderr}. Last console lines:\n{console_tail}")]
    Exited {
        /// How it exited (both fields `None` when its status could not be read).
        status: ExitInfo,
        /// The end of QEMU's standard error.
        stderr: String,
        /// The last console lines.
        console_tail: String,
    },
}

/// A QMP failure.
///
/// ```
/// # async fn demo(vm: &firepit_qemu::QemuVm) {
/// use firepit_qemu::QmpError;
/// match vm.qmp().stop().await {
///     Ok(()) => {}
///     Err(QmpError::Command { class, desc, .. }) => eprintln!("QEMU refused: {class}: {desc}"),
///     Err(QmpError::Closed) => eprintln!("QEMU has exited"),
///     Err(other) => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Reading or writing the QMP socket failed.
    #[error("QMP socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// What QEMU sent first is not a QMP greeting (is the socket QEMU's monitor?).
    #[error("expected a QMP greeting, got {line:?}")]
    BadGreeting {
        /// The line received.
        line: String,
        /// Why it is not JSON, when it is not.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A reply's `return` value does not have the shape the command's answer has.
    #[error("QMP answer to {command} is not what this QEMU version should send: {source}")]
    BadReply {
        /// The command.
        command: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A reply with our id but neither `return` nor `error`.
    #[error("QMP reply has neither return nor error: {line}")]
    NoOutcome {
        /// The reply line.
        line: String,
    },
    /// QEMU refused a command.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The connection is closed (QEMU exited).
    #[error("QMP connection closed (qemu exited?)")]
    Closed,
    /// No answer in time.
    #[error("QMP command {command} got no answer within {after:?}")]
    Timeout {
        /// The command.
        command: String,
        /// The deadline.
        after: Duration,
    },
}

/// A console failure.
///
/// ```
/// # async fn demo(console: &firepit_qemu::Console) {
/// use firepit_qemu::ConsoleError;
/// match console.read_until("login:").await {
///     Ok(text) => println!("{text}"),
///     Err(ConsoleError::Timeout { tail, .. }) => println!("not yet; the guest printed:\n{tail}"),
///     Err(e) => println!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The pattern did not appear in time.
    #[error("{pattern:?} did not appear on the console within {after:?}; last output:\n{tail}")]
    Timeout {
        /// The pattern waited for.
        pattern: String,
        /// The deadline.
        after: Duration,
        /// The end of what was read.
        tail: String,
    },
    /// The console closed (the VM exited) before the pattern appeared.
    #[error("console closed before {pattern:?} appeared (VM exited); last output:\n{tail}")]
    Closed {
        /// The pattern waited for.
        pattern: String,
        /// The end of what was read.
        tail: String,
    },
    /// Writing to the console failed.
    #[error("console write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A snapshot failure. A `Snapshot` shape does not fail its fills with these: it falls back to
/// cold boot, and [`QemuProvider::template_state`](crate::QemuProvider::template_state) shows the
/// error.
///
/// ```
/// use firepit_qemu::SnapshotError;
/// let err = SnapshotError::Migration { direction: "in", message: "still \"setup\" at the deadline".into() };
/// assert_eq!(err.to_string(), "migration in failed: still \"setup\" at the deadline");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file-system operation on the template failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Migration did not complete.
    #[error("migration {direction} failed: {message}")]
    Migration {
        /// `out` (saving) or `in` (restoring).
        direction: &'static str,
        /// QEMU's status or error description.
        message: String,
    },
    /// A template path that the `exec:` migration URI (a shell command) cannot carry.
    #[error(
        "template path {path} contains a single quote, which an exec: migration cannot carry; choose another template_dir"
    )]
    UnquotablePath {
        /// The path.
        path: PathBuf,
    },
    /// Checking a template's files on disk did not finish (its blocking task panicked or was cancelled).
    #[error("checking the snapshot template's files failed: {0}")]
    Check(#[source] tokio::task::JoinError),
    /// A template's manifest could not be encoded.
    #[error("encoding the snapshot template manifest: {0}")]
    Manifest(#[source] serde_json::Error),
}
