//! Snapshots and forks of a running lease, on the lease table.
//!
//! Both run on the lease's VM like any other call ([`Lease::on_vm`]): a paused lease answers
//! `lease_paused` unless it was acquired with `auto_resume`, and a lease that ends or is paused
//! meanwhile stops the call. The backend saves ([`LeaseBackend::save_snapshot`]) or forks
//! ([`LeaseBackend::fork`]); the snapshots' ids, files and listing are the
//! [`SnapshotStore`]'s. A lease started from a snapshot or
//! forked is a lease like any other (`LeaseTable::start_lease`): its own TTL, released,
//! listed, announced (`lease.created`; a fork also `lease.forked` on the source lease, naming
//! the new leases).
//!
//! [`LeaseBackend::save_snapshot`]: crate::backend::LeaseBackend::save_snapshot
//! [`LeaseBackend::fork`]: crate::backend::LeaseBackend::fork

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use firepit_api::{EventKind, SnapshotInfo};
use tracing::{info, warn};

use crate::backend::SaveError;
use crate::leases::error::LeaseError;
use crate::leases::lease::Lease;
use crate::leases::table::LeaseTable;
use crate::leases::views::unix_ms;
use crate::snapshot_store::SnapshotStore;

/// What a fork's new lease gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForkParams {
    /// How many forks (the API checks 1 to 16).
    pub count: usize,
    /// Each fork's TTL (`None`: the default TTL).
    pub ttl: Option<Duration>,
}

impl LeaseTable {
    /// The snapshot store, or why there is none.
    pub(crate) fn snapshot_store(&self) -> Result<&SnapshotStore, LeaseError> {
        match &self.shared.snapshots {
            Some(store) if self.shared.backend.can_snapshot() => Ok(store),
            Some(_) => Err(LeaseError::Unsupported("this daemon's backend cannot snapshot VMs".into())),
            None => {
                Err(LeaseError::Unsupported("this daemon keeps no snapshots (no snapshots directory)".into()))
            }
        }
    }

    /// Snapshots the running lease `id`'s VM; the lease runs on.
    pub async fn snapshot(&self, id: &str) -> Result<SnapshotInfo, LeaseError> {
        let lease = self.lease(id)?;
        let store = self.snapshot_store()?;
        let snapshot_id = SnapshotStore::new_id();
        let dir = store.scratch_vm_dir(&snapshot_id).map_err(|e| LeaseError::SaveFailed(e.to_string()))?;
        let backend = self.shared.backend.clone();
        let saving = dir.clone();
        let started = tokio::time::Instant::now();
        let saved = lease
            .on_vm(move |vm| Box::pin(async move { backend.save_snapshot(vm, &saving).await }))
            .await
            .map_err(LeaseError::Interrupted)
            .and_then(|saved| saved.map_err(save_error("snapshot")));
        let saved = match saved {
            Ok(saved) => saved,
            Err(error) => {
                store.discard_scratch(&snapshot_id);
                lease.span.in_scope(|| warn!(%error, "snapshot failed; the lease runs on"));
                return Err(error);
            }
        };
        let now = unix_ms(SystemTime::now());
        let info = SnapshotInfo {
            snapshot_id: snapshot_id.clone(),
            source_lease_id: lease.id.clone(),
            shape: saved.shape,
            created_at: firepit_api::rfc3339_ms(now),
            created_at_unix_ms: now,
            size_bytes: saved.size_bytes,
        };
        let info = store.publish(info).map_err(|e| {
            store.discard_scratch(&snapshot_id);
            LeaseError::SaveFailed(e.to_string())
        })?;
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        lease
            .span
            .in_scope(|| info!(%snapshot_id, size_bytes = info.size_bytes, took_ms, "lease snapshotted"));
        Ok(info)
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, LeaseError> {
        Ok(self.snapshot_store()?.list())
    }

    /// The snapshot `id`.
    pub fn snapshot_info(&self, id: &str) -> Result<SnapshotInfo, LeaseError> {
        self.snapshot_store()?.get(id).ok_or_else(|| LeaseError::SnapshotNotFound(id.to_owned()))
    }

    /// Where the saved VM of snapshot `id` is, or `SnapshotNotFound`.
    pub fn snapshot_dir(&self, id: &str) -> Result<std::path::PathBuf, LeaseError> {
        let store = self.snapshot_store()?;
        store.get(id).ok_or_else(|| LeaseError::SnapshotNotFound(id.to_owned()))?;
        Ok(store.vm_dir(id))
    }

    /// Deletes the snapshot `id` and its files. Leases started from it are not touched; a
    /// registered shape whose `image` is the snapshot (`snapshot:ID`) refuses it
    /// ([`LeaseError::SnapshotInUse`]).
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), LeaseError> {
        let image = format!("{}{id}", firepit_shape::SNAPSHOT_IMAGE_PREFIX);
        if let Some(shape) = self.shared.backend.status().into_iter().find(|s| s.image_id == image) {
            return Err(LeaseError::SnapshotInUse { id: id.to_owned(), shape: shape.name });
        }
        match self.snapshot_store()?.remove(id).await {
            None => Err(LeaseError::SnapshotNotFound(id.to_owned())),
            Some(Ok(_)) => {
                info!(snapshot_id = %id, "snapshot deleted");
                Ok(())
            }
            Some(Err(error)) => Err(LeaseError::SaveFailed(error.to_string())),
        }
    }

    /// Forks the running lease `id` into `params.count` new leases, each of the lease's shape
    /// and options (metadata, `auto_resume`, `on_expiry`) with a TTL of its own. Each fork
    /// succeeds or fails on its own; `Err`: none was made (the lease runs on either way).
    pub async fn fork(
        self: &Arc<Self>,
        id: &str,
        params: ForkParams,
    ) -> Result<Vec<Result<Arc<Lease>, LeaseError>>, LeaseError> {
        let ttl = self.check_ttl(params.ttl)?;
        let lease = self.lease(id)?;
        if !self.shared.backend.can_snapshot() {
            return Err(LeaseError::Unsupported("this daemon's backend cannot fork VMs".into()));
        }
        let backend = self.shared.backend.clone();
        let count = params.count;
        let started = tokio::time::Instant::now();
        let forks = lease
            .on_vm(move |vm| Box::pin(async move { backend.fork(vm, count).await }))
            .await
            .map_err(LeaseError::Interrupted)
            .and_then(|forks| forks.map_err(save_error("fork")))?;
        let leases: Vec<Result<Arc<Lease>, LeaseError>> = forks
            .into_iter()
            .map(|fork| match fork {
                Ok(vm) => Ok(self.start_lease(lease.shape.clone(), vm, ttl, lease.options.clone(), None)),
                Err(error) => Err(LeaseError::SaveFailed(format!(
                    "fork failed: {}",
                    firepit_pool::error_chain(error.as_ref())
                ))),
            })
            .collect();
        let made: Vec<String> = leases.iter().flatten().map(|fork| fork.id.clone()).collect();
        self.shared.announce(EventKind::LeaseForked, &lease, |event| event.leases = made.clone());
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        lease.span.in_scope(|| info!(asked = count, made = made.len(), took_ms, "lease forked"));
        Ok(leases)
    }
}

/// A backend's save error as the lease table reports it.
fn save_error(what: &'static str) -> impl Fn(SaveError) -> LeaseError {
    move |error| match error {
        SaveError::NoRoom(message) => LeaseError::InsufficientStorage(format!("{what} failed: {message}")),
        SaveError::Unsupported(message) => LeaseError::Unsupported(message),
        SaveError::Failed(cause) => {
            LeaseError::SaveFailed(format!("{what} failed: {}", firepit_pool::error_chain(cause.as_ref())))
        }
    }
}
