//! A leased QEMU VM ([`QemuLease`]: one of the pool's, or one resumed from a pause) and a paused
//! lease's QEMU VM: saved on disk by the QEMU provider's lifecycle
//! ([`QemuProvider::pause_to_disk`]), its QEMU exited, and started again as itself
//! ([`QemuProvider::resume_saved`]: files, processes and their output, address, port forwards).
//!
//! Paused VMs live in `<paused dir>/<vm id>` (`[leases] paused_dir`, on a disk: see
//! [`Config::paused_dir`](crate::config::Config::paused_dir)); what the lease's record
//! keeps is that directory, so a daemon that restarts adopts them again ([`adopt`]). A resumed VM
//! is not the pool's: the lease holds it ([`ResumedVm`]) and destroys it when released.

use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::path::Path;

use firepit_net::NetError;
use firepit_pool::{PooledVm, Provider};
use firepit_qemu::{QemuError, QemuProvider, QemuVm, SavedVm};

use crate::backend::{
    EgressPolicy, LeasedVm, NetworkError, PausedVm, ResumeFailed, SaveError, UsageDepth, VmExit, VmUsage,
};
use crate::boxed::{BoxError, BoxFuture};

/// Pauses `vm` into `dir/<vm id>`; on error the VM runs on.
pub(crate) async fn pause(provider: &QemuProvider, vm: &QemuVm, dir: &Path) -> Result<QemuPaused, BoxError> {
    let target = dir.join(vm.id());
    // A leftover of a pause whose daemon died before its record was written.
    if target.exists() && SavedVm::open(&target).is_err() {
        tokio::fs::remove_dir_all(&target).await?;
    }
    let saved = provider.pause_to_disk(vm, &target).await.map_err(pause_error)?;
    Ok(QemuPaused { saved, provider: provider.clone() })
}

/// The paused VM a lease's record names (`{"dir": …}`), checked (manifest, file sizes).
pub(crate) fn adopt(provider: &QemuProvider, saved: &serde_json::Value) -> Result<QemuPaused, BoxError> {
    let dir = saved["dir"].as_str().ok_or("a paused QEMU VM's record names its directory (`dir`)")?;
    let saved = SavedVm::open(Path::new(dir))?;
    Ok(QemuPaused { saved, provider: provider.clone() })
}

/// Removes every half-written paused VM in `dir` (one [`SavedVm::open`] refuses) that no `kept`
/// record (`{"dir": …}`) names; returns how many. Whole saved VMs are left alone, even unkept
/// ones: they may be another daemon's, when daemons share the directory.
/// Each removal, and each that fails, is logged.
pub(crate) fn remove_unkept(dir: &Path, kept: &[serde_json::Value]) -> usize {
    let kept: Vec<&Path> = kept.iter().filter_map(|saved| saved["dir"].as_str()).map(Path::new).collect();
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if kept.contains(&path.as_path()) || SavedVm::open(&path).is_ok() {
            continue;
        }
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a half-written paused VM (a pause cut short by the end of a previous run)");
                removed += 1;
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot remove a half-written paused VM")
            }
        }
    }
    removed
}

/// A paused lease's VM (see the module docs).
pub(crate) struct QemuPaused {
    saved: SavedVm,
    provider: QemuProvider,
}

impl PausedVm for QemuPaused {
    fn vm_id(&self) -> &str {
        self.saved.vm_id()
    }

    fn saved(&self) -> serde_json::Value {
        serde_json::json!({ "dir": self.saved.dir() })
    }

    fn resume(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn LeasedVm>, ResumeFailed>> {
        Box::pin(async move {
            match self.provider.resume_saved(&self.saved).await {
                Ok(vm) => {
                    let resumed = ResumedVm { vm: ManuallyDrop::new(vm), provider: self.provider.clone() };
                    Ok(Box::new(QemuLease::resumed(resumed)) as Box<dyn LeasedVm>)
                }
                Err(error) => Err(ResumeFailed { paused: self, error: error.into() }),
            }
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let dir = self.saved.dir().to_path_buf();
            match tokio::task::spawn_blocking(move || self.saved.remove()).await {
                Ok(Ok(())) => tracing::debug!(dir = %dir.display(), "paused VM removed"),
                Ok(Err(e)) => tracing::warn!(dir = %dir.display(), error = %e, "removing a paused VM failed"),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a paused VM did not finish")
                }
            }
        })
    }
}

/// A VM resumed from a pause (or started from a snapshot, or forked), held by its lease: destroyed (QEMU quit, files removed, the
/// ownership hook told) when dropped.
pub(crate) struct ResumedVm {
    /// Taken out once, by `drop`, to be destroyed.
    vm: ManuallyDrop<QemuVm>,
    provider: QemuProvider,
}

impl ResumedVm {
    pub(crate) fn qemu(&self) -> &QemuVm {
        &self.vm
    }
}

impl Drop for ResumedVm {
    fn drop(&mut self) {
        // SAFETY: `vm` is taken exactly once, here, and the struct is not used after `drop`.
        let vm = unsafe { ManuallyDrop::take(&mut self.vm) };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let provider = self.provider.clone();
                runtime.spawn(async move { provider.destroy(vm).await });
            }
            // No runtime left: the handle kills QEMU as it drops.
            Err(_) => drop(vm),
        }
    }
}

/// A leased QEMU VM: one of the pool's (dropping it releases it: destroyed, the pool refills) or,
/// once resumed from a pause, one of its own (destroyed when dropped).
pub(crate) struct QemuLease {
    vm: HeldVm,
}

enum HeldVm {
    Pooled(PooledVm<QemuProvider>),
    Resumed(ResumedVm),
}

impl QemuLease {
    /// One of the pool's VMs.
    pub(crate) fn pooled(vm: PooledVm<QemuProvider>) -> Self {
        Self { vm: HeldVm::Pooled(vm) }
    }

    /// A VM resumed from a pause: not the pool's.
    pub(crate) fn resumed(vm: ResumedVm) -> Self {
        Self { vm: HeldVm::Resumed(vm) }
    }

    /// A VM of its own (started from a snapshot, forked): not the pool's, destroyed when dropped.
    pub(crate) fn own(vm: QemuVm, provider: QemuProvider) -> Self {
        Self::resumed(ResumedVm { vm: ManuallyDrop::new(vm), provider })
    }

    pub(crate) fn qemu(&self) -> &QemuVm {
        match &self.vm {
            HeldVm::Pooled(vm) => vm,
            HeldVm::Resumed(vm) => vm.qemu(),
        }
    }
}

impl LeasedVm for QemuLease {
    fn vm_id(&self) -> &str {
        self.qemu().id()
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn guest(&self) -> &firepit_guest::Guest {
        self.qemu().guest()
    }

    fn forward_port(&self, guest_port: u16) -> BoxFuture<'_, Result<SocketAddr, NetworkError>> {
        Box::pin(async move { self.qemu().forward_port(guest_port).await.map_err(network_error) })
    }

    fn remove_forward(&self, guest_port: u16) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async move { self.qemu().remove_forward(guest_port).await.map_err(network_error) })
    }

    fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        self.qemu().forwards()
    }

    fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), NetworkError> {
        self.qemu().narrow_egress(policy).map_err(network_error)
    }

    fn exited(&self) -> BoxFuture<'static, VmExit> {
        let report = self.qemu().exit_report();
        Box::pin(async move {
            let (info, panic) = report.await;
            let status = info.map_or_else(|| "exit status unknown".to_owned(), |info| info.to_string());
            let detail = match panic {
                Some(line) => format!("QEMU {status}; the guest's console: {line}"),
                None => format!("QEMU {status}"),
            };
            VmExit { detail }
        })
    }

    fn pid(&self) -> Option<u32> {
        Some(self.qemu().pid())
    }

    fn cgroup(&self) -> Option<String> {
        self.qemu().cgroup().map(ToString::to_string)
    }

    fn host_usage(&self, depth: UsageDepth) -> Option<VmUsage> {
        Some(self.qemu().host_usage(depth))
    }
}

fn network_error(error: QemuError) -> NetworkError {
    match error {
        QemuError::Network(NetError::NoNetwork { .. }) => NetworkError::Disabled,
        QemuError::Network(NetError::NoSuchForward { guest_port }) => NetworkError::NoSuchForward(guest_port),
        other => NetworkError::Failed(other.into()),
    }
}

/// A lifecycle error as the backend reports it: too little room is [`SaveError::NoRoom`].
pub(crate) fn save_error(error: QemuError) -> SaveError {
    match &error {
        QemuError::Lifecycle(lifecycle) if lifecycle.is_insufficient_storage() => {
            SaveError::NoRoom(error.to_string())
        }
        _ => SaveError::Failed(error.into()),
    }
}

/// A pause's error: too little room stays recognisable ([`SaveError::no_room`]), anything else
/// keeps its own message and causes.
fn pause_error(error: QemuError) -> BoxError {
    match save_error(error) {
        SaveError::Failed(cause) => cause,
        other => Box::new(other),
    }
}
