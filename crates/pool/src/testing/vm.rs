//! [`MemoryVm`]: a VM of the in-memory provider — an id, a "died" token and the counts it
//! updates when it goes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use super::{Inner, MemorySpec};
use crate::provider::{PoolVm, Unhealthy};
use crate::shape::ShapeKey;

/// A VM of the [`MemoryProvider`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), firepit_pool::PoolError> {
/// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
/// let provider = MemoryProvider::new();
/// let pool = Pool::builder(provider.clone()).shape(ShapeKey::new("small"), MemorySpec::new(64)).build().await?;
/// let vm = pool.reserve().await?;
/// assert!(vm.health().await.is_ok());
/// vm.kill();                                 // "the VM dies" while leased
/// drop(vm);
/// # pool.shutdown().await;
/// assert_eq!(provider.alive(), 0);
/// # Ok(()) }
/// ```
pub struct MemoryVm {
    pub(super) id: String,
    pub(super) shape: ShapeKey,
    pub(super) spec: MemorySpec,
    pub(super) died: CancellationToken,
    /// Paused by `Provider::pause`, until `Provider::resume`.
    pub(super) paused: Arc<AtomicBool>,
    pub(super) destroyed: bool,
    pub(super) fill_kind: Option<&'static str>,
    pub(super) memory_charge_mb: Option<u64>,
    pub(super) inner: Arc<Inner>,
}

impl MemoryVm {
    /// The shape it was created for.
    pub fn shape(&self) -> &ShapeKey {
        &self.shape
    }

    /// The spec it was created from.
    pub fn spec(&self) -> &MemorySpec {
        &self.spec
    }

    /// Whether the VM rests ([`Provider::pause`](crate::Provider::pause)) and was not woken since.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// "The VM dies": resolves `exited()`.
    pub fn kill(&self) {
        self.died.cancel();
    }

    /// A health check, following the provider's [`FaultPlan`]; the future is `'static`, so it can
    /// be used as `.health_check(|vm: &MemoryVm| vm.health())`.
    pub fn health(&self) -> impl Future<Output = Result<(), Unhealthy>> + Send + use<> {
        let inner = Arc::clone(&self.inner);
        let dead = self.died.is_cancelled();
        let paused = self.is_paused();
        let id = self.id.clone();
        async move {
            inner.health_checks.fetch_add(1, Ordering::SeqCst);
            let mut plan = inner.plan();
            if dead {
                return Err(Unhealthy::new(format!("{id} is dead")));
            }
            if paused {
                return Err(Unhealthy::new(format!("{id} is paused: checked without a wake-up")));
            }
            if plan.always_unhealthy {
                return Err(Unhealthy::new(format!("{id}: injected: always unhealthy")));
            }
            if plan.fail_health_next > 0 {
                plan.fail_health_next -= 1;
                return Err(Unhealthy::new(format!("{id}: injected health-check failure")));
            }
            Ok(())
        }
    }
}

impl PoolVm for MemoryVm {
    fn id(&self) -> &str {
        &self.id
    }

    fn exited(&self) -> impl Future<Output = ()> + Send + 'static {
        self.died.clone().cancelled_owned()
    }

    fn fill_kind(&self) -> Option<&'static str> {
        self.fill_kind
    }
}

impl Drop for MemoryVm {
    fn drop(&mut self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            self.inner.resting.fetch_sub(1, Ordering::SeqCst);
        }
        if !self.destroyed {
            self.inner.dropped_undestroyed.fetch_add(1, Ordering::SeqCst);
            self.inner.alive().remove(&self.id);
        }
    }
}
