//! Each VM's QEMU in a cgroup of its own ([`CgroupConfig`]): the provider's side of
//! `firepit_cgroup` — opening the parent once, sizing each VM's limits from its command line,
//! degrading to "no cgroups" with one log line, and sweeping what crashed processes left.
//!
//! The cgroup is made just before QEMU is spawned and handed to the process, which joins it
//! between fork and exec (`process.rs`) and drops it once reaped (the cgroup is then removed).
//! Names are the VM ids, `fp-<pid>-<n>`, so a cgroup whose `<pid>` no longer runs is stale.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use firepit_cgroup::{Cgroup, CgroupError, Hierarchy, Limits, Parent, Sweep, Version};

use crate::argv::LaunchSpec;
use crate::config::{Accel, CgroupConfig, QEMU_TCG_CACHE_MB};

/// Whether VMs get cgroups here, and why not.
///
/// ```
/// use firepit_qemu::CgroupSupport;
/// let off = CgroupSupport::Unavailable { reason: "cgroups are mounted read-only".into() };
/// assert!(!off.is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSupport {
    /// Every VM gets a cgroup under these parent directories.
    Enabled {
        /// v1 or v2.
        version: Version,
        /// The parent's directories (one per v1 hierarchy).
        parent: Vec<PathBuf>,
    },
    /// Turned off by [`CgroupConfig::enabled`].
    Disabled,
    /// Not possible on this host: the reason (also logged once).
    Unavailable {
        /// Why, and what to do.
        reason: String,
    },
}

impl CgroupSupport {
    /// Whether VMs get cgroups.
    pub fn is_enabled(&self) -> bool {
        matches!(self, CgroupSupport::Enabled { .. })
    }
}

/// [`CgroupSupport`] and how many VMs were started without a cgroup although the configuration
/// asked for them (the host has none, or making one failed): what the daemon exports as metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupStatus {
    /// Whether VMs get cgroups.
    pub support: CgroupSupport,
    /// VMs started without one since the provider started.
    pub vms_without_cgroup: u64,
}

/// The provider's cgroup parent, or why it has none.
#[derive(Debug)]
pub(crate) struct VmCgroups {
    parent: Option<Parent>,
    support: CgroupSupport,
    config: CgroupConfig,
    without: AtomicU64,
    warned: AtomicBool,
}

impl VmCgroups {
    /// Opens the parent of `config` and sweeps stale VM cgroups from it. Never fails: a host
    /// without writable cgroups gets one warning and VMs without cgroups.
    pub(crate) fn open(config: &CgroupConfig) -> Self {
        let (parent, support) = if !config.enabled {
            (None, CgroupSupport::Disabled)
        } else {
            match open_parent(config) {
                Ok(parent) => {
                    let support = CgroupSupport::Enabled {
                        version: parent.version(),
                        parent: parent.paths().map(PathBuf::from).collect(),
                    };
                    (Some(parent), support)
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(reason = %reason, "VMs run without cgroups (no CPU, memory or process limits on the host side)");
                    (None, CgroupSupport::Unavailable { reason })
                }
            }
        };
        if let Some(parent) = &parent {
            report_sweep(&parent.remove_stale(is_stale));
        }
        Self {
            parent,
            support,
            config: config.clone(),
            without: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// The cgroup for the QEMU of `spec` (named after the VM), or `None` (counted) when there are
    /// no cgroups or making this one failed (logged once at warn, then at debug).
    pub(crate) fn create(&self, spec: &LaunchSpec) -> Option<Arc<Cgroup>> {
        if !self.config.enabled {
            return None;
        }
        let Some(parent) = &self.parent else {
            self.without.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match parent.create(&spec.name, &limits(&self.config, spec)) {
            Ok(cgroup) => Some(Arc::new(cgroup)),
            Err(e) => {
                self.without.fetch_add(1, Ordering::Relaxed);
                if self.warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(vm = %spec.name, error = %e, "VM started without a cgroup");
                } else {
                    tracing::warn!(vm = %spec.name, error = %e, "VM started without a cgroup (later ones are logged at debug)");
                }
                None
            }
        }
    }

    pub(crate) fn status(&self) -> CgroupStatus {
        CgroupStatus {
            support: self.support.clone(),
            vms_without_cgroup: self.without.load(Ordering::Relaxed),
        }
    }
}

impl Drop for VmCgroups {
    fn drop(&mut self) {
        if let Some(parent) = &self.parent {
            parent.remove_if_empty();
        }
    }
}

fn open_parent(config: &CgroupConfig) -> Result<Parent, CgroupError> {
    Parent::open(&Hierarchy::detect()?, &config.parent)
}

/// The limits of the VM `spec` launches: its vCPUs; its RAM, QEMU's overhead and, under TCG, the
/// translation cache; the configured process limit.
pub(crate) fn limits(config: &CgroupConfig, spec: &LaunchSpec) -> Limits {
    let tcg_cache_mb = match spec.accel {
        Accel::Kvm => 0,
        Accel::Tcg | Accel::Auto => spec.tb_size_mb.map_or(QEMU_TCG_CACHE_MB, u64::from),
    };
    let memory_mb = spec.memory_mb + config.memory_overhead_mb + tcg_cache_mb;
    Limits { cpus: spec.vcpus, memory_bytes: memory_mb.saturating_mul(1 << 20), pids: config.pids_max }
}

/// A VM cgroup of a firepit process that no longer runs (`fp-<pid>-<n>`).
fn is_stale(name: &str) -> bool {
    match crate::rundir::owner_pid(name) {
        Some(pid) => pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

fn report_sweep(sweep: &Sweep) {
    if sweep.removed > 0 {
        tracing::info!(removed = sweep.removed, "removed cgroups of VMs of dead firepit processes");
    }
    for busy in &sweep.busy {
        tracing::warn!(cgroup = %busy.display(), "a dead firepit process's VM cgroup still holds a process; left alone");
    }
}

/// Removes the cgroups that firepit processes which no longer run left under `config`'s parent
/// (a crash or `kill -9` gives no chance to remove them; their QEMU died with them). Cgroups that
/// still hold a process are left alone. What the daemon's crash recovery runs before its pools
/// start; a provider does the same when it starts.
///
/// ```no_run
/// let sweep = firepit_qemu::remove_stale_cgroups(&firepit_qemu::CgroupConfig::default())?;
/// println!("{} stale cgroup directories removed", sweep.removed);
/// # Ok::<(), firepit_qemu::CgroupError>(())
/// ```
pub fn remove_stale_cgroups(config: &CgroupConfig) -> Result<Sweep, CgroupError> {
    if !config.enabled {
        return Ok(Sweep::default());
    }
    let hierarchy = Hierarchy::detect()?;
    // Only look: a parent that does not exist has nothing stale in it.
    let dirs = hierarchy.resolve(&config.parent)?;
    if !dirs.iter().any(|d| d.is_dir()) {
        return Ok(Sweep::default());
    }
    let sweep = Parent::open(&hierarchy, &config.parent)?.remove_stale(is_stale);
    report_sweep(&sweep);
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(accel: Accel, tb_size_mb: Option<u32>) -> LaunchSpec {
        LaunchSpec {
            name: "fp-1-1".into(),
            accel,
            vcpus: 2,
            memory_mb: 256,
            kernel: "/k".into(),
            initramfs: "/i".into(),
            kernel_args: String::new(),
            console: false,
            sandbox: true,
            runtime_dir: "/run/fp-1-1".into(),
            memory: crate::argv::GuestMemory::Anonymous,
            incoming: None,
            tb_size_mb,
            without_kernel: false,
            run_as: None,
            disk: None,
            network: None,
        }
    }

    #[test]
    fn limits_are_the_vcpus_and_ram_plus_overhead_plus_the_tcg_cache() {
        let config = CgroupConfig { memory_overhead_mb: 100, pids_max: 50, ..CgroupConfig::default() };
        let tcg = limits(&config, &spec(Accel::Tcg, None));
        assert_eq!(tcg, Limits { cpus: 2, memory_bytes: (256 + 100 + 1024) << 20, pids: 50 });
        assert_eq!(limits(&config, &spec(Accel::Tcg, Some(64))).memory_bytes, (256 + 100 + 64) << 20);
        assert_eq!(limits(&config, &spec(Accel::Kvm, Some(64))).memory_bytes, (256 + 100) << 20);
    }

    #[test]
    fn only_vm_cgroups_of_dead_processes_are_stale() {
        assert!(is_stale("fp-1073741823-4"), "a pid above pid_max never runs");
        assert!(!is_stale(&format!("fp-{}-1", std::process::id())));
        assert!(!is_stale("fp-1-1"), "init runs");
        assert!(!is_stale("something-else"));
    }

    #[test]
    fn disabled_means_no_cgroup_and_nothing_counted() {
        let cgroups = VmCgroups::open(&CgroupConfig { enabled: false, ..CgroupConfig::default() });
        assert!(cgroups.create(&spec(Accel::Tcg, None)).is_none());
        assert_eq!(
            cgroups.status(),
            CgroupStatus { support: CgroupSupport::Disabled, vms_without_cgroup: 0 }
        );
    }
}
