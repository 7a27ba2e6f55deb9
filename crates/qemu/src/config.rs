//! Provider configuration: which QEMU, which accelerator, where runtime files go, how long to wait.
//!
//! Everything is validated once, in [`QemuProvider::new`](crate::QemuProvider::new); the rest of the
//! crate trusts these values.

use std::path::PathBuf;
use std::time::Duration;

use crate::root_disk::RootDisk;
use firepit_guest::ExecDefaults;

/// Default of [`ProviderConfig::snapshot_retry_after`]: how long a shape cold-boots after its
/// template failed before the template is built again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Environment variable that overrides [`ProviderConfig::accel`]: `auto`, `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "FIREPIT_ACCEL";

/// Which accelerator QEMU runs guests with.
///
/// ```
/// use firepit_qemu::Accel;
/// assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
/// assert_eq!(Accel::Kvm.to_string(), "kvm");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Use KVM when a probe shows it really runs our guests, else TCG (decided once per process).
    #[default]
    Auto,
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's binary translator: slow but runs everywhere.
    Tcg,
}

impl Accel {
    /// The value of QEMU's `accel=` option (`Auto` has none: resolve it first).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `auto`, `kvm` or `tcg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accelerator {0:?}: use `auto`, `kvm` or `tcg`")]
pub struct ParseAccelError(pub String);

impl std::str::FromStr for Accel {
    type Err = ParseAccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(ParseAccelError(s.to_string())),
        }
    }
}

/// How one VM was actually made: its shape's [`FillStrategy`](firepit_shape::FillStrategy), or the
/// fallback a `Snapshot` shape took.
/// The pool engine counts it as the `fill_strategy` label of `firepit_pool_vms_filled_total` and
/// shows the last one in its status (see [`firepit_pool::PoolVm::fill_kind`]).
///
/// ```
/// use firepit_qemu::FillKind;
/// assert_eq!(FillKind::ColdBootFallback.as_str(), "cold_boot_fallback");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FillKind {
    /// Booted from the kernel: the shape's strategy is `ColdBoot`.
    ColdBoot,
    /// Restored from the shape's snapshot template.
    Snapshot,
    /// Booted from the kernel although the shape's strategy is `Snapshot`: its template could not
    /// be built or restores failed (see `QemuProvider::template_state` for why).
    ColdBootFallback,
    /// Started from a saved VM: resumed after a pause, or started from a snapshot on its own
    /// (see [`SavedVm`](crate::SavedVm)).
    Saved,
}

impl FillKind {
    /// The metrics label value: `cold_boot`, `snapshot`, `cold_boot_fallback` or `saved_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            FillKind::ColdBoot => "cold_boot",
            FillKind::Snapshot => "snapshot",
            FillKind::ColdBootFallback => "cold_boot_fallback",
            FillKind::Saved => "saved_state",
        }
    }
}

/// What a guest image is made of, the files a [`VmSpec`](crate::VmSpec) boots: kernel and
/// initramfs, optionally a root disk and the defaults its commands run with.
///
/// ```
/// use firepit_qemu::{DiskFormat, ImagePaths, RootDisk};
/// let paths = ImagePaths::new("/images/vmlinuz", "/images/initramfs.cpio.gz");
/// assert!(paths.kernel.ends_with("vmlinuz") && paths.disk.is_none());
/// // firepit's kernel and initramfs booting a user's disk (each VM writes to its own overlay):
/// let paths = paths.with_disk(RootDisk::new("/images/app.qcow2", DiskFormat::Qcow2));
/// assert_eq!(paths.disk.unwrap().format, DiskFormat::Qcow2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePaths {
    /// The guest kernel (`bzImage`, e.g. `vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio, optionally compressed). With a [`disk`](Self::disk) it must be
    /// firepit's (it mounts the disk and starts the agent inside it).
    pub initramfs: PathBuf,
    /// The root disk, if the guest boots from one: every VM gets a private qcow2 overlay over it
    /// (see [`RootDisk`]). Default: none (the initramfs is the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<RootDisk>,
    /// Environment, working directory and user that `exec` uses unless a request says otherwise
    /// (an imported OCI image's `Env`, `WorkingDir` and `User`). Default: none.
    #[serde(default, skip_serializing_if = "ExecDefaults::is_empty")]
    pub exec_defaults: ExecDefaults,
}

impl ImagePaths {
    /// Creates image paths (no root disk, no exec defaults).
    pub fn new(kernel: impl Into<PathBuf>, initramfs: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initramfs: initramfs.into(),
            disk: None,
            exec_defaults: ExecDefaults::default(),
        }
    }

    /// Boots with `disk` as the root file system.
    pub fn with_disk(mut self, disk: RootDisk) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Runs commands with `defaults` unless a request says otherwise.
    pub fn with_exec_defaults(mut self, defaults: ExecDefaults) -> Self {
        self.exec_defaults = defaults;
        self
    }
}

/// Configuration of a [`QemuProvider`](crate::QemuProvider).
///
/// ```
/// use std::time::Duration;
/// use firepit_qemu::{Accel, ProviderConfig};
/// let config = ProviderConfig { accel: Accel::Tcg, boot_timeout: Duration::from_secs(30), ..Default::default() };
/// assert_eq!(config.console_read_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// QEMU binary: a path, or a name looked up in `PATH`. Default: `qemu-system-x86_64`.
    pub qemu_binary: PathBuf,
    /// `qemu-img` (Debian package `qemu-utils`), which makes each VM's root-disk overlay: a path,
    /// or a name looked up in `PATH`. Only used for images with a root disk. Default: `qemu-img`.
    pub qemu_img_binary: PathBuf,
    /// Accelerator; the environment variable [`ACCEL_ENV`] overrides it. Default: [`Accel::Auto`].
    pub accel: Accel,
    /// Directory for per-VM runtime directories (sockets, snapshot state). Created 0700.
    /// Default: `$XDG_RUNTIME_DIR/firepit`, else `<temp dir>/firepit-<uid>`.
    pub runtime_dir: PathBuf,
    /// Deadline from process start to "ready" (readiness line and agent ping); a snapshot restore
    /// gets the smaller of this and [`RESTORE_TIMEOUT`](crate::RESTORE_TIMEOUT). Default: 60 s.
    pub boot_timeout: Duration,
    /// Default deadline of [`Console::read_until`](crate::Console::read_until). Default: 10 s.
    pub console_read_timeout: Duration,
    /// Deadline of the agent ping used by `probe` and the health check. Default: 2 s.
    pub probe_timeout: Duration,
    /// Default deadline of an agent request (exec adds its own timeout to it). Default: 10 s.
    pub agent_timeout: Duration,
    /// How long `destroy` waits after QMP `quit` before it sends SIGKILL. Default: 2 s.
    pub quit_grace: Duration,
    /// Appended to the kernel command line after firepit's own arguments. Default: none.
    pub extra_kernel_args: Vec<String>,
    /// Console output kept in memory per VM (older bytes are dropped). Default: 1 MiB.
    pub console_buffer_bytes: usize,
    /// Where snapshot templates live: one directory per shape (guest RAM file, device state,
    /// `manifest.json`). Clones map the RAM file, so keep this on tmpfs. Default:
    /// `/dev/shm/firepit-<uid>-templates`.
    pub template_dir: PathBuf,
    /// Keep templates when the provider goes away, so the next provider with the same image, QEMU
    /// version and command line reuses them instead of booting a new one (default `true`). Either
    /// way a template is removed when its shape is unregistered (after its last clone is gone), when
    /// it turns out stale or corrupt, and by [`QemuProvider::remove_templates`](crate::QemuProvider::remove_templates).
    pub keep_templates: bool,
    /// TCG translation-cache size (MiB, QEMU `-accel tcg,tb-size=`) of snapshot templates and
    /// clones; `None` (the default) keeps QEMU's. Ignored under KVM.
    pub snapshot_tb_size_mb: Option<u32>,
    /// How long a `Snapshot` shape cold-boots after its template failed before the template is
    /// built again (default [`RETRY_AFTER`], 60 s).
    pub snapshot_retry_after: Duration,
    /// Run QEMU as this unprivileged user: a user name (its primary group is used) or `uid[:gid]`.
    /// Needs root. VM directories and the sockets QEMU connects to are given to that user; the
    /// runtime directory becomes 0711 and directories above it that we own get `o+x` (pass through,
    /// no listing); one we do not own must already be searchable by that user. A
    /// QEMU escape then holds that user's rights, not ours (all VMs share the user, though).
    /// Not supported with snapshot fill yet. Default: `None` (QEMU runs as we do).
    pub run_as: Option<String>,
    /// Each VM's QEMU in a cgroup of its own, with limits (see [`CgroupConfig`]). Default: on,
    /// under `firepit` below this process's own cgroup.
    pub cgroups: CgroupConfig,
    /// Where root disks resized for a shape's `disk_mb` are kept: one raw copy per image and size,
    /// made on first use and reused (by later providers too). A cache: safe to empty while no VM
    /// runs. On disk, not tmpfs: a copy is as large as the image's content plus `disk_mb` (sparse
    /// where unwritten). Default: `/var/tmp/firepit-<uid>-disks`.
    pub disk_dir: PathBuf,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            qemu_img_binary: PathBuf::from("qemu-img"),
            accel: Accel::Auto,
            runtime_dir: default_runtime_dir(),
            boot_timeout: Duration::from_secs(60),
            console_read_timeout: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(2),
            agent_timeout: Duration::from_secs(10),
            quit_grace: Duration::from_secs(2),
            extra_kernel_args: Vec::new(),
            console_buffer_bytes: 1024 * 1024,
            template_dir: default_template_dir(),
            keep_templates: true,
            snapshot_tb_size_mb: None,
            snapshot_retry_after: RETRY_AFTER,
            run_as: None,
            cgroups: CgroupConfig::default(),
            // SAFETY: getuid has no preconditions and cannot fail.
            disk_dir: PathBuf::from(format!("/var/tmp/firepit-{}-disks", unsafe { libc::getuid() })),
        }
    }
}

impl ProviderConfig {
    /// The accelerator asked for, after the [`ACCEL_ENV`] override (`Auto` is resolved later, by
    /// [`QemuProvider::accel`](crate::QemuProvider::accel)).
    ///
    /// ```
    /// use firepit_qemu::{Accel, ProviderConfig};
    /// let config = ProviderConfig { accel: Accel::Tcg, ..Default::default() };
    /// if std::env::var_os(firepit_qemu::ACCEL_ENV).is_none() {
    ///     assert_eq!(config.requested_accel(), Ok(Accel::Tcg));
    /// }
    /// ```
    pub fn requested_accel(&self) -> Result<Accel, ParseAccelError> {
        match std::env::var(ACCEL_ENV) {
            Ok(value) => value.parse(),
            Err(_) => Ok(self.accel),
        }
    }
}

/// What host memory QEMU itself may use beyond its guest's RAM, MiB: the default of
/// [`CgroupConfig::memory_overhead_mb`]. Measured under TCG (notes/qemu.md): a cold-booted
/// 256 MiB VM whose guest filled its memory peaked at ≈35 MiB above guest RAM and TCG's
/// translation cache (QEMU's binary, heap, its copy of the kernel and initramfs, page cache of
/// what it read); this leaves room for twice that.
pub const QEMU_MEMORY_OVERHEAD_MB: u64 = 96;

/// QEMU's own TCG translation cache size on 64-bit hosts (its `tb-size` default), MiB: what a
/// TCG VM's cache may grow to unless `tb-size` is set.
pub const QEMU_TCG_CACHE_MB: u64 = 1024;

/// Default of [`CgroupConfig::pids_max`].
pub const VM_PIDS_MAX: u64 = 256;

/// Each VM's QEMU process in its own cgroup (`ProviderConfig::cgroups`): cgroup v2 where the
/// unified hierarchy has the cpu, memory and pids controllers, else v1 (see `firepit_cgroup`).
///
/// A VM's cgroup is named after the VM's id, under [`parent`](Self::parent), and gets
/// - a CPU quota of its vCPUs (a busy VM uses at most that many cores) and a CPU weight of its
///   vCPUs (busy VMs share a contended host by their sizes);
/// - a memory limit of its guest RAM + [`memory_overhead_mb`](Self::memory_overhead_mb), plus,
///   under TCG, the translation cache (`snapshot_tb_size_mb` for snapshot VMs when set, else
///   QEMU's [`QEMU_TCG_CACHE_MB`]): the most QEMU can legitimately use, so the host never gives
///   one VM more;
/// - a process limit of [`pids_max`](Self::pids_max).
///
/// QEMU joins it between fork and exec, so all it allocates is charged there and no guest code
/// runs outside it. The cgroup is removed once QEMU has been reaped; what a crash leaves is
/// removed by the next provider (or daemon) that starts. A host where cgroups cannot be written
/// (not root, a container) runs VMs without them: one log line says why, and
/// [`QemuProvider::cgroups`](crate::QemuProvider::cgroups) counts the VMs started without.
///
/// ```
/// let config = firepit_qemu::CgroupConfig::default();
/// assert!(config.enabled);
/// assert_eq!(config.parent, std::path::Path::new("firepit"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Put VMs in cgroups. Default `true`.
    pub enabled: bool,
    /// The parent cgroup: a relative path is below this process's own cgroup (so VMs stay within
    /// the limits the process itself was given), an absolute one below the hierarchy's root
    /// (under v2 it must hold no processes: a delegated slice such as `/firepit.slice`). The
    /// parent is created when missing (its CPU weight then set to the host's CPU count, see
    /// `firepit_cgroup::Parent`) and removed when the provider goes away and it is empty.
    /// Default `firepit`.
    pub parent: PathBuf,
    /// Host memory QEMU may use beyond guest RAM (and TCG's cache), MiB. Default
    /// [`QEMU_MEMORY_OVERHEAD_MB`].
    pub memory_overhead_mb: u64,
    /// Most processes and threads of one VM's QEMU. Default [`VM_PIDS_MAX`].
    pub pids_max: u64,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            parent: PathBuf::from("firepit"),
            memory_overhead_mb: QEMU_MEMORY_OVERHEAD_MB,
            pids_max: VM_PIDS_MAX,
        }
    }
}

/// `$XDG_RUNTIME_DIR/firepit` when set, else `<temp dir>/firepit-<uid>`: the default of
/// [`ProviderConfig::runtime_dir`].
///
/// ```
/// assert!(firepit_qemu::default_runtime_dir().to_string_lossy().contains("firepit"));
/// ```
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("firepit"),
        // SAFETY: getuid has no preconditions and cannot fail.
        _ => std::env::temp_dir().join(format!("firepit-{}", unsafe { libc::getuid() })),
    }
}

/// `/dev/shm/firepit-<uid>-templates`: tmpfs, so clones map template RAM at memory speed. The
/// default of [`ProviderConfig::template_dir`].
///
/// ```
/// assert!(firepit_qemu::default_template_dir().starts_with("/dev/shm"));
/// ```
pub fn default_template_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    PathBuf::from(format!("/dev/shm/firepit-{}-templates", unsafe { libc::getuid() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_parses_case_insensitively_and_rejects_garbage() {
        assert_eq!("KVM".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!(" auto ".parse::<Accel>(), Ok(Accel::Auto));
        let err = "hvf".parse::<Accel>().unwrap_err();
        assert!(err.to_string().contains("use `auto`, `kvm` or `tcg`"));
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
        let config: ProviderConfig = serde_json::from_str(r#"{"accel":"tcg"}"#).unwrap();
        assert_eq!(config.accel, Accel::Tcg);
        assert_eq!(config.qemu_binary, PathBuf::from("qemu-system-x86_64"));
        assert!(serde_json::from_str::<ProviderConfig>(r#"{"nope":1}"#).is_err());
    }
}
