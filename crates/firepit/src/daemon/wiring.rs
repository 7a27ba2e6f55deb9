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
//!
//! A sketch of the adapter, written against the interfaces in the plan (not compiled here: the
//! engine and the provider are not in this branch; names may need adjusting):
//!
//! ```ignore
//! struct PoolBackend {
//!     pool: Pool<QemuProvider>,
//!     shapes: std::sync::RwLock<HashMap<String, (ShapeKey, ShapeSpec)>>,
//!     accelerator: String, // firepit_qemu::detect_accel(..) resolved once
//! }
//!
//! struct PoolLease(PooledVm<QemuProvider>);
//!
//! impl LeasedVm for PoolLease {
//!     fn vm_id(&self) -> &str { self.0.id() }
//!     fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, ExecError>> {
//!         Box::pin(async move {
//!             self.0.exec_request(request).await.map_err(|e| ExecError::Unreachable(e.to_string()))
//!         })
//!     }
//! } // Drop of PooledVm = release (destroy + refill): nothing else to do.
//!
//! impl LeaseBackend for PoolBackend {
//!     fn acquire<'a>(&'a self, shape: &'a str, wait: Duration)
//!         -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
//!         Box::pin(async move {
//!             let key = self.key(shape).ok_or_else(|| AcquireError::UnknownShape(shape.into()))?;
//!             let vm = if wait.is_zero() {
//!                 self.pool.try_reserve_shape(&key)
//!             } else {
//!                 self.pool.reserve_shape_timeout(&key, wait).await
//!             };
//!             match vm {
//!                 Ok(vm) => Ok(Box::new(PoolLease(vm)) as Box<dyn LeasedVm>),
//!                 Err(PoolError::Exhausted | PoolError::Timeout) => Err(AcquireError::Exhausted {
//!                     shape: shape.into(), waited_ms: wait.as_millis() as u64 }),
//!                 Err(PoolError::UnknownShape(_)) => Err(AcquireError::UnknownShape(shape.into())),
//!                 Err(PoolError::ShuttingDown) => Err(AcquireError::ShuttingDown),
//!                 Err(e) => Err(AcquireError::Other(e.to_string())),
//!             }
//!         })
//!     }
//!     fn status(&self) -> Vec<ShapeStatusView> { /* pool.status().shapes, matched to names */ }
//!     fn register_metrics(&self, registry: &mut Registry) { self.pool.register_metrics(registry) }
//!     fn register_shape<'a>(&'a self, spec: ShapeSpec) -> BoxFuture<'a, Result<(), ShapeError>> {
//!         /* open image, provider.register_image, pool.register_shape(key, ShapeConfig{..}) */
//!     }
//!     fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
//!         /* pool.unregister_shape(&key).await */
//!     }
//!     fn shutdown(&self) -> BoxFuture<'_, ()> { Box::pin(self.pool.shutdown()) }
//! }
//! ```

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
        return Err(BuildBackendError::Pool(format!(
            "cannot clear stale VM directory {}: {e}",
            vms_dir.display()
        )));
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
