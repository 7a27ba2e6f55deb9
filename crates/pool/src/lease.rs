//! A lease: a VM handed out by the pool, destroyed when the lease is dropped.
//!
//! VMs are single-use (a tenant may have changed anything inside), so a lease never returns its VM
//! to the ready set: dropping it sends the VM to the pool's reaper (an unbounded channel: no
//! runtime needed, never blocks, never panics) and the refiller, already woken when the VM was
//! handed out, keeps the bucket at depth. If the pool is gone, the VM value is dropped in place and
//! cleans up after itself (see [`PoolVm`]).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::{PoolVm, Provider};
use crate::shape::ShapeKey;
use crate::shared::Shared;

/// A VM reserved from the pool. Derefs to the provider's VM type.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), firepit_pool::PoolError> {
/// use firepit_pool::{Pool, PoolVm, ShapeKey, testing::{MemoryProvider, MemorySpec}};
/// let pool = Pool::builder(MemoryProvider::new()).shape(ShapeKey::new("small"), MemorySpec::new(128)).build().await?;
/// let vm = pool.reserve().await?;
/// assert_eq!(vm.id(), PoolVm::id(&*vm));
/// assert_eq!(vm.shape().as_str(), "small");
/// drop(vm); // destroyed in the background; a replacement is already being created
/// # Ok(()) }
/// ```
pub struct PooledVm<P: Provider> {
    vm: Option<P::Vm>,
    /// What the VM is charged against the memory budget, MiB (freed when it is destroyed).
    charge_mb: u64,
    shape: Arc<ShapeKey>,
    generation: u64,
    ready_at: Instant,
    shared: Arc<Shared<P>>,
}

impl<P: Provider> PooledVm<P> {
    pub(crate) fn new(
        (vm, charge_mb): (P::Vm, u64),
        shape: Arc<ShapeKey>,
        generation: u64,
        ready_at: Instant,
        shared: Arc<Shared<P>>,
    ) -> Self {
        Self { vm: Some(vm), charge_mb, shape, generation, ready_at, shared }
    }

    /// The VM's id (as given by the provider).
    pub fn id(&self) -> &str {
        self.deref().id()
    }

    /// The shape this VM was reserved from.
    pub fn shape(&self) -> &ShapeKey {
        &self.shape
    }

    /// Time since the VM became ready (boot end), not since it was handed out.
    pub fn age(&self) -> Duration {
        self.ready_at.elapsed()
    }
}

impl<P: Provider> Deref for PooledVm<P> {
    type Target = P::Vm;

    fn deref(&self) -> &P::Vm {
        match &self.vm {
            Some(vm) => vm,
            // `vm` is `Some` from construction until `drop` takes it; nothing else touches it.
            None => unreachable!("PooledVm used after drop"),
        }
    }
}

impl<P: Provider> fmt::Debug for PooledVm<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledVm").field("id", &self.id()).field("shape", &self.shape.to_string()).finish()
    }
}

impl<P: Provider> Drop for PooledVm<P> {
    fn drop(&mut self) {
        let Some(vm) = self.vm.take() else { return };
        let mut st = self.shared.lock();
        if let Some(b) = st.unlease(&self.shape, self.generation) {
            b.metrics.released.inc();
        }
        self.shared.retire(&mut st, vm, self.charge_mb);
    }
}
