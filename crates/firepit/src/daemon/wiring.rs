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
use super::records::RecordStore;

/// Why the backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildBackendError {
    /// The QEMU backend is not wired into the daemon yet.
    #[error("QEMU backend not wired: `firepit serve` cannot start real VMs in this build")]
    NotWired,
    /// The pool could not be built (warm-up failed, bad image, ...).
    #[error("cannot start the pools: {0}")]
    Pool(String),
}

/// Builds the real backend for `config` (returns once every shape reached its low water mark).
///
/// INTEGRATION POINT: returns [`BuildBackendError::NotWired`] until the coordinator wires the
/// QEMU pool in (see the module docs).
pub async fn build_backend(
    config: &Config,
    records: Arc<RecordStore>,
) -> Result<Arc<dyn LeaseBackend>, BuildBackendError> {
    let _unused = (config, records);
    Err(BuildBackendError::NotWired)
}
