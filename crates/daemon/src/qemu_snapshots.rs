//! Snapshots and forks of a leased QEMU VM, for [`QemuBackend`](crate::qemu_backend::QemuBackend):
//! the QEMU provider's lifecycle ([`QemuProvider::snapshot`], [`QemuProvider::start_from_snapshot`],
//! [`QemuProvider::fork`]) behind the backend's [`SaveError`] and [`LeasedVm`]. A VM started
//! from a snapshot or forked is not the pool's: its lease holds it and destroys it when released
//! (as a resumed one, see [`crate::qemu_lease`]).

use std::path::Path;

use firepit_qemu::{QemuProvider, QemuVm};

use crate::backend::{Forks, LeasedVm, SaveError, SavedSnapshot};
use crate::boxed::BoxError;
use crate::qemu_lease::{QemuLease, save_error};

/// The QEMU VM behind a leased VM of this backend.
pub(crate) fn qemu_of(vm: &dyn LeasedVm) -> Result<&QemuVm, SaveError> {
    match vm.as_any().and_then(|any| any.downcast_ref::<QemuLease>()) {
        Some(lease) => Ok(lease.qemu()),
        None => Err(SaveError::Failed("not a VM of this backend".into())),
    }
}

/// Snapshots `vm` into `dir`; it runs on.
pub(crate) async fn snapshot(
    provider: &QemuProvider,
    vm: &dyn LeasedVm,
    dir: &Path,
) -> Result<SavedSnapshot, SaveError> {
    let saved = provider.snapshot(qemu_of(vm)?, dir).await.map_err(save_error)?;
    Ok(SavedSnapshot { shape: saved.shape().to_owned(), size_bytes: saved.total_bytes() })
}

/// A new VM started from the snapshot in `dir`, held by its lease.
pub(crate) async fn start(provider: &QemuProvider, dir: &Path) -> Result<Box<dyn LeasedVm>, BoxError> {
    let dir = dir.to_path_buf();
    let saved = tokio::task::spawn_blocking(move || firepit_qemu::SavedVm::open(&dir)).await??;
    let vm = provider.start_from_snapshot(&saved).await?;
    Ok(Box::new(QemuLease::own(vm, provider.clone())))
}

/// `count` forks of `vm`, each held by its lease.
pub(crate) async fn fork(
    provider: &QemuProvider,
    vm: &dyn LeasedVm,
    count: usize,
) -> Result<Forks, SaveError> {
    let forks = provider.fork(qemu_of(vm)?, count).await.map_err(save_error)?;
    Ok(forks
        .into_iter()
        .map(|fork| match fork {
            Ok(vm) => Ok(Box::new(QemuLease::own(vm, provider.clone())) as Box<dyn LeasedVm>),
            Err(error) => Err(error.into()),
        })
        .collect())
}
