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

use firepit_pool::ShapeKey;

use crate::config::ParseAccelError;

/// Any error of this crate.
///
/// ```
/// use firepit_qemu::{QemuError, SpawnError};
/// let err = QemuError::from(SpawnError::UnknownImage("debian".into()));
/// assert!(err.to_string().contains("register_image"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The configuration, a shape or an image registration cannot be used; says what to change.
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
    /// A request to the guest agent failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A console operation failed.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// Taking or restoring a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Why the provider's configuration, a shape or an image registration cannot be used. Each
/// variant names the setting and says what to change.
///
/// ```
/// use firepit_qemu::{ConfigError, ProviderConfig, QemuProvider, QemuError};
/// let config = ProviderConfig { runtime_dir: "/tmp/".repeat(20).into(), ..Default::default() };
/// let err = QemuProvider::new(config).unwrap_err();
/// assert!(matches!(err, QemuError::Config(ConfigError::RuntimeDirTooLong { .. })), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `FIREPIT_ACCEL` names no accelerator.
    #[error("{env}: {0}", env = crate::config::ACCEL_ENV)]
    Accel(#[source] ParseAccelError),
    /// A deadline that must be positive is zero.
    #[error("{field} is zero: give it a positive duration")]
    ZeroTimeout {
        /// The `ProviderConfig` field.
        field: &'static str,
    },
    /// The runtime directory's path leaves no room for the VMs' socket paths (108 bytes at most).
    #[error("runtime_dir {dir} is too long for Unix socket paths: keep it under {max} bytes")]
    RuntimeDirTooLong {
        /// The configured directory.
        dir: PathBuf,
        /// The longest usable path, in bytes.
        max: usize,
    },
    /// The runtime directory exists but is not a directory (a symlink, say).
    #[error(
        "runtime directory {dir} is not a directory (a symlink?): remove it or set runtime_dir elsewhere"
    )]
    RuntimeDirNotADirectory {
        /// The configured directory.
        dir: PathBuf,
    },
    /// The runtime directory belongs to another user, who could read or plant sockets in it.
    #[error(
        "runtime directory {dir} is owned by uid {owner}, not by this user (uid {me}): another user \
         created it; remove it or set runtime_dir elsewhere"
    )]
    RuntimeDirForeign {
        /// The configured directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The snapshot template directory is not a private directory of this user.
    #[error(
        "template directory {dir} is not private (a directory owned by uid {me} with mode 0700; \
         found uid {owner}, mode {mode:o}): remove it or set another template_dir"
    )]
    TemplateDirNotPrivate {
        /// The configured directory.
        dir: PathBuf,
        /// This process's uid.
        me: u32,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// A shape too small to boot.
    #[error("shape {shape}: a VM needs at least 1 vCPU and 32 MiB; change the shape")]
    ShapeTooSmall {
        /// The shape asked for.
        shape: ShapeKey,
    },
    /// Snapshot fill and `run_as` together (not supported yet).
    #[error(
        "image {image}: snapshot fill does not support run_as yet (the template's state directory is \
         not given to QEMU's user); use cold boot or drop run_as"
    )]
    SnapshotWithRunAs {
        /// The image registered with the snapshot strategy.
        image: String,
    },
    /// `run_as` is not a user name or `uid[:gid]`.
    #[error("run_as = {spec:?} {problem}")]
    RunAsInvalid {
        /// The configured value.
        spec: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `run_as` names no user of the password database.
    #[error("run_as = {spec:?} is not a known user (see /etc/passwd)")]
    RunAsUnknownUser {
        /// The configured value.
        spec: String,
    },
    /// `run_as` needs the provider to run as root, to switch QEMU to that user.
    #[error("run_as = {spec:?} needs the provider to run as root (to switch QEMU to that user)")]
    RunAsNeedsRoot {
        /// The configured value.
        spec: String,
    },
    /// `run_as` names root, which would drop no rights.
    #[error("run_as = {spec:?} is root: name an unprivileged user such as `nobody`")]
    RunAsRoot {
        /// The configured value.
        spec: String,
    },
    /// A directory above the runtime directory could not be opened to `run_as`'s user.
    #[error("run_as: cannot chmod o+x {dir}: {source}")]
    RunAsChmod {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory above the runtime directory, owned by someone else, is closed to `run_as`'s user.
    #[error(
        "run_as: uid {uid} cannot reach runtime_dir {runtime_dir}: {blocking} (mode {mode:o}, owned by \
         uid {owner}) is not searchable by it; use a runtime_dir whose parents are o+x (e.g. /run/firepit-vms)"
    )]
    RunAsUnreachable {
        /// QEMU's user.
        uid: u32,
        /// The configured runtime directory.
        runtime_dir: PathBuf,
        /// The directory in the way.
        blocking: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
    },
}

/// Why a QEMU process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The binary is not there.
    #[error("{binary} not found: run `apt-get install qemu-system-x86` or set ProviderConfig::qemu_binary")]
    BinaryNotFound {
        /// The binary asked for.
        binary: PathBuf,
    },
    /// No image was registered under this id.
    #[error("image {0:?} is not registered: call QemuProvider::register_image first")]
    UnknownImage(String),
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
        /// How it exited.
        status: String,
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

/// Why a started guest did not become ready.
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
        /// How it exited.
        status: String,
        /// The end of QEMU's standard error.
        stderr: String,
        /// The last console lines.
        console_tail: String,
    },
}

/// A QMP failure.
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

/// A guest agent failure.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading or writing the agent socket failed.
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
    /// The channel is gone: the VM exited, or the guest side hung up or broke the protocol (a frame
    /// over the size limit); the next request reconnects.
    #[error("agent channel closed (the VM exited, or the guest hung up or sent a malformed stream)")]
    Closed,
}

/// A console failure.
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

/// A snapshot failure.
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
