//! [`ConfigError`]: why a configuration or a shape's spec cannot be used.
//!
//! Configuration is checked once, at the edge ([`QemuProvider::new`](crate::QemuProvider::new),
//! [`QemuProvider::check`](crate::QemuProvider::check) when a shape is added, and each launch), so
//! these are the errors a user fixes by changing a setting; each names the setting and says what
//! to change.

use std::path::PathBuf;

use crate::config::ParseAccelError;

/// Why the provider's configuration or a shape's spec cannot be used. Each
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
    /// A shape out of the bounds every shape is held to
    /// ([`ShapeSpec::validate_vm`](firepit_shape::ShapeSpec::validate_vm)): the same error, and
    /// message, the facade and the daemon give for it.
    #[error(transparent)]
    InvalidShape(#[from] firepit_shape::InvalidShape),
    /// [`QemuVm::console`](crate::QemuVm::console) on a VM whose shape did not enable the console.
    #[error(
        "VM {vm}: its console is not enabled: build the pool with `.console_enabled()` \
         (`VmConfig::console_enabled`), or set `VmSpec::console`"
    )]
    ConsoleDisabled {
        /// The VM asked.
        vm: String,
    },
    /// Snapshot fill and `run_as` together (not supported yet).
    #[error(
        "image {image}: snapshot fill does not support run_as yet (the template's state directory is \
         not given to QEMU's user); use cold boot or drop run_as"
    )]
    SnapshotWithRunAs {
        /// The image of the snapshot shape.
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
