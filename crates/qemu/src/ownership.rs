//! Who owns which QEMU process: the hook the provider calls when a VM reaches the pool and when it
//! is gone, so an owner (the daemon's ownership records) can reap what a crash left behind.
//!
//! A hook instead of a wrapper around the provider: a wrapper must forward every provider method
//! and once silently dropped the memory accounting; a hook is two calls the provider makes itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::vm::QemuVm;

/// A QEMU process and its runtime directory, as the provider reports them to its
/// [`OwnershipHook`].
///
/// ```
/// use firepit_qemu::OwnedProcess;
/// let process = OwnedProcess { vm_id: "fp-1-1".into(), pid: 4242, runtime_dir: "/run/firepit/fp-1-1".into() };
/// assert_eq!(serde_json::to_value(&process).unwrap()["pid"], 4242);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedProcess {
    /// The VM's id (a record's key).
    pub vm_id: String,
    /// The QEMU process's pid.
    pub pid: u32,
    /// The VM's runtime directory (sockets).
    pub runtime_dir: PathBuf,
}

impl OwnedProcess {
    /// The process of `vm`.
    pub fn of(vm: &QemuVm) -> Self {
        Self { vm_id: vm.id().to_owned(), pid: vm.pid(), runtime_dir: vm.runtime_dir().to_path_buf() }
    }
}

/// Told by the provider about the QEMU processes it hands to the pool
/// ([`QemuProvider::with_ownership_hook`](crate::QemuProvider::with_ownership_hook)).
///
/// - [`spawned`](Self::spawned): from `create`, once the VM is ready and before the pool sees it;
/// - [`destroyed`](Self::destroyed): from `destroy`, after the process was reaped and its runtime
///   directory removed.
///
/// Not reported: VMs still booting (their QEMU dies with the provider's process through
/// `PR_SET_PDEATHSIG`; their runtime directories are what a restart sweeps), snapshot template
/// builds (short-lived, same), and [`QemuProvider::cold_boot`](crate::QemuProvider::cold_boot)
/// VMs (their caller owns them).
///
/// ```
/// use std::sync::Mutex;
/// use firepit_qemu::{OwnedProcess, OwnershipHook};
/// /// Keeps the ids of the VMs alive (a durable hook writes them to disk).
/// #[derive(Default)]
/// struct Alive(Mutex<Vec<String>>);
/// impl OwnershipHook for Alive {
///     fn spawned(&self, process: &OwnedProcess) {
///         self.0.lock().unwrap().push(process.vm_id.clone());
///     }
///     fn destroyed(&self, vm_id: &str) {
///         self.0.lock().unwrap().retain(|id| id != vm_id);
///     }
/// }
/// let alive = Alive::default();
/// alive.spawned(&OwnedProcess { vm_id: "fp-1-1".into(), pid: 1, runtime_dir: "/tmp/x/fp-1-1".into() });
/// alive.destroyed("fp-1-1");
/// assert!(alive.0.lock().unwrap().is_empty());
/// ```
pub trait OwnershipHook: Send + Sync + 'static {
    /// A VM's process now belongs to the pool. Must not block long (it runs inside `create`);
    /// errors are the hook's to log, never the fill's.
    fn spawned(&self, process: &OwnedProcess);
    /// The process of VM `vm_id` is gone and its runtime directory removed.
    fn destroyed(&self, vm_id: &str);
}
