//! Shapes coming and going at run time: `register_shape`, `unregister_shape`, and what the pool
//! keeps of each (its spec, handed to the provider's `create`).
//!
//! A registration is validated here, at the edge, exactly as `build()` validates its shapes: the
//! settings ([`ShapeConfig::validate`]), the shape's memory ([`MemoryAccounting::full_mb`] > 0) and
//! that every low water still fits the memory budget. The bucket then owns the spec: the provider
//! keeps no table of shapes.
//!
//! [`MemoryAccounting::full_mb`]: crate::MemoryAccounting::full_mb

use std::sync::Arc;

use crate::bucket::{Bucket, NewShape};
use crate::config::{ShapeConfig, check_budget, check_memory};
use crate::error::PoolError;
use crate::metrics::EvictReason;
use crate::pool::Pool;
use crate::provider::Provider;
use crate::shape::ShapeKey;

impl<P: Provider> Pool<P> {
    /// Adds a shape at run time: `key` names it, `spec` tells the provider what its VMs are, and
    /// `config` how its bucket is kept warm. Its bucket starts filling at once. The first shape
    /// registered becomes the default shape if there is none. Everything is validated here, as
    /// `build()` does: [`PoolError::InvalidConfig`] says what to change,
    /// [`PoolError::DuplicateShape`] when the name is taken.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, PoolError, ShapeConfig, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let small = ShapeKey::new("small");
    /// let pool = Pool::builder(MemoryProvider::new()).shape(small, MemorySpec::new(128)).build().await?;
    /// let big = ShapeKey::new("big");
    /// pool.register_shape(big.clone(), MemorySpec::new(2048), ShapeConfig { depth: 1..=2, ..ShapeConfig::default() })?;
    /// let vm = pool.reserve_shape(&big).await?;       // waits for the new bucket's first VM
    /// assert_eq!(vm.spec().memory_mb, 2048);
    /// drop(vm);
    /// pool.unregister_shape(&big).await?;             // its ready VMs are destroyed
    /// assert!(matches!(pool.try_reserve_shape(&big), Err(PoolError::UnknownShape(_))));
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub fn register_shape(&self, key: ShapeKey, spec: P::Spec, config: ShapeConfig) -> Result<(), PoolError> {
        config.validate(&key)?;
        let shared = self.shared();
        let full_mb = shared.provider.memory().full_mb(&spec);
        check_memory(&key, full_mb)?;
        let mut st = shared.lock();
        if st.closing {
            return Err(PoolError::ShuttingDown);
        }
        if st.buckets.contains_key(&key) {
            return Err(PoolError::DuplicateShape(key));
        }
        let budget = shared.settings.memory_budget_mb;
        let registered = st.buckets.values().map(|b| (b.low_water(), b.full_mb));
        check_budget(budget, registered.chain([(*config.depth.start(), full_mb)]))?;
        let metrics = shared.metrics.handles(&key);
        let bucket =
            Bucket::new(NewShape { key: key.clone(), spec, config, full_mb }, shared.next_id(), metrics);
        bucket.sync_gauges();
        st.buckets.insert(key.clone(), bucket);
        if st.default_shape.is_none() {
            st.default_shape = Some(key);
        }
        drop(st);
        shared.refill_wake.notify_one();
        shared.maint_wake.notify_one();
        Ok(())
    }

    /// Removes a shape: queued reserves fail with `UnknownShape`, ready VMs are destroyed (this
    /// waits for that), fills in flight are destroyed when they finish, leases out are destroyed
    /// when dropped. Then the provider hears of it ([`Provider::shape_unregistered`]).
    pub async fn unregister_shape(&self, key: &ShapeKey) -> Result<(), PoolError> {
        let shared = self.shared();
        let drained = {
            let mut st = shared.lock();
            let Some(mut b) = st.buckets.remove(key) else {
                return Err(PoolError::UnknownShape(key.clone()));
            };
            if st.default_shape.as_ref() == Some(key) {
                st.default_shape = None;
            }
            st.orphan_leased += b.leased;
            b.clear_waiters();
            let drained = b.drain_ready();
            for _ in &drained {
                b.metrics.evicted(EvictReason::Unregistered).inc();
            }
            b.metrics.ready.set(0);
            b.metrics.filling.set(0);
            b.metrics.leased.set(0);
            drained
        };
        let mut destroys = tokio::task::JoinSet::new();
        for entry in drained {
            let shared = Arc::clone(shared);
            destroys.spawn(async move {
                shared.provider.destroy(entry.vm).await;
                let mut st = shared.lock();
                shared.forget(&mut st, entry.charge_mb);
                drop(st);
                shared.refill_wake.notify_one();
            });
        }
        while destroys.join_next().await.is_some() {}
        shared.provider.shape_unregistered(key);
        Ok(())
    }

    /// The spec `shape` was registered with (what its VMs are made from), if it is registered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let shape = ShapeKey::new("small");
    /// let pool = Pool::builder(MemoryProvider::new()).shape(shape.clone(), MemorySpec::new(128)).build().await?;
    /// assert_eq!(pool.spec(&shape).map(|spec| spec.memory_mb), Some(128));
    /// assert!(pool.spec(&ShapeKey::new("other")).is_none());
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub fn spec(&self, shape: &ShapeKey) -> Option<Arc<P::Spec>> {
        self.shared().lock().buckets.get(shape).map(|b| Arc::clone(&b.spec))
    }

    /// The provider the pool makes its VMs with (for what only it knows, e.g. the QEMU provider's
    /// snapshot template state of a shape).
    pub fn provider(&self) -> &P {
        &self.shared().provider
    }
}
