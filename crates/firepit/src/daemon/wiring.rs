//! The integration point between the daemon and the real pool.
//!
//! **Coordinator: fill in [`build_backend`]** with an adapter from
//! `firepit_pool::Pool<firepit_qemu::QemuProvider>` to [`LeaseBackend`]:
//! - one `ShapeKey` per `config.shapes` entry (image opened from `spec.image`, registered with the
//!   provider), `depth_low..=depth_high`, `max_age`, health check on/off, fill strategy;
//!   `config.limits.parallel_fills` → `max_parallel_fills`, `memory_budget_mb` → `memory_budget_mb`;
//! - `acquire(name, wait)` → `reserve_shape_timeout(&key, wait)` (or `try_reserve_shape` when `wait`
//!   is zero), mapping `PoolError::{UnknownShape, Timeout|Exhausted, ShuttingDown}` to
//!   [`AcquireError`](super::backend::AcquireError);
//! - `LeasedVm` wraps the `PooledVm` (drop = release), `exec` → `vm.exec_request(req)`;
//! - `register_metrics` → `pool.register_metrics(registry)`; `shutdown` → `pool.shutdown()`;
//! - pass `records` (an [`OwnershipHook`](super::backend::OwnershipHook)) to the provider so each
//!   QEMU process is recorded when spawned and forgotten when destroyed.

use std::sync::Arc;

use super::backend::LeaseBackend;
use super::config::Config;
use super::qemu_backend::QemuBackend;
use super::records::RecordStore;

/// Why the backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildBackendError {
    /// The pool could not be built (warm-up failed, bad image, ...).
    #[error("cannot start the pools: {0}")]
    Pool(String),
}

/// Builds the real backend for `config` (returns once every shape reached its low water mark).
///
/// The QEMU provider keeps its per-VM runtime directories under `<state dir>/vms`, so everything a
/// run of this daemon starts lives below its own state dir.
pub async fn build_backend(
    config: &Config,
    records: Arc<RecordStore>,
) -> Result<Arc<dyn LeaseBackend>, BuildBackendError> {
    let vms_dir = config.state_dir().join("vms");
    // The state dir is locked by this daemon (see `RecordStore::open`) and the previous run's
    // processes are reaped by now: whatever is left under its VM directory is stale.
    if vms_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&vms_dir)
    {
        return Err(BuildBackendError::Pool(format!("cannot clear stale VM directory {}: {e}", vms_dir.display())));
    }
    let provider_config =
        firepit_qemu::ProviderConfig { runtime_dir: vms_dir, ..firepit_qemu::ProviderConfig::default() };
    let backend = QemuBackend::start(
        provider_config,
        config.shape_specs(),
        config.limits.parallel_fills,
        config.limits.memory_budget_mb,
        config.shutdown_budget(),
        records,
    )
    .await
    .map_err(BuildBackendError::Pool)?;
    Ok(Arc::new(backend))
}
