//! `Pool<P>`: the handle users hold. Cheap to clone; the last clone dropped closes the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::PoolError;
use crate::health::DynHealthCheck;
use crate::lease::PooledVm;
use crate::metrics::{EvictReason, Metrics, MetricsSnapshot, ShapeMetrics};
use crate::provider::Provider;
use crate::reserve::Which;
use crate::shape::ShapeKey;
use crate::shared::{PoolSettings, Shared, State};
use crate::status::{ShapeStatus, Status};

/// A warm pool of VMs from provider `P`. `Clone + Send + Sync`; all clones share one pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), firepit_pool::PoolError> {
/// use std::time::Duration;
/// use firepit_pool::{Pool, PoolError, ShapeKey, testing::{MemoryProvider, MemorySpec}};
/// let pool = Pool::builder(MemoryProvider::new())
///     .shape(ShapeKey::new("small"), MemorySpec::new(256))
///     .depth(1..=1)
///     .build()
///     .await?;
/// let vm = pool.reserve().await?;                       // waits, FIFO-fair
/// assert!(matches!(pool.try_reserve(), Err(PoolError::Exhausted)) || pool.available_now() > 0);
/// drop(vm);                                             // destroyed; a replacement is on its way
/// let again = pool.reserve_timeout(Duration::from_secs(1)).await?;
/// # drop(again);
/// pool.shutdown().await;
/// assert!(matches!(pool.try_reserve(), Err(PoolError::ShuttingDown)));
/// # Ok(()) }
/// ```
pub struct Pool<P: Provider> {
    handle: Arc<PoolHandle<P>>,
}

/// Closes the pool when the last `Pool` clone is dropped (background tasks hold `Shared`, not this).
struct PoolHandle<P: Provider> {
    shared: Arc<Shared<P>>,
}

impl<P: Provider> Drop for PoolHandle<P> {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

impl<P: Provider> Clone for Pool<P> {
    fn clone(&self) -> Self {
        Self { handle: Arc::clone(&self.handle) }
    }
}

impl<P: Provider> std::fmt::Debug for Pool<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("status", &self.status()).finish()
    }
}

impl<P: Provider> Pool<P> {
    pub(crate) fn shared(&self) -> &Arc<Shared<P>> {
        &self.handle.shared
    }

    pub(crate) fn start(
        provider: P,
        settings: PoolSettings,
        health: Option<Box<dyn DynHealthCheck<P::Vm>>>,
    ) -> Self {
        let (retire_tx, retire_rx) = mpsc::unbounded_channel();
        let (watch_tx, watch_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            provider,
            state: std::sync::Mutex::new(State {
                buckets: Default::default(),
                default_shape: None,
                mem_used_mb: 0,
                alive: 0,
                orphan_leased: 0,
                closing: false,
            }),
            health,
            metrics: Metrics::new(),
            fill_permits: Arc::new(Semaphore::new(settings.max_parallel_fills)),
            settings,
            refill_wake: Notify::new(),
            maint_wake: Notify::new(),
            progress: Notify::new(),
            cancel: CancellationToken::new(),
            reaper_stop: CancellationToken::new(),
            retire_tx,
            watch_tx,
            closing: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(crate::reaper::run(Arc::clone(&shared), retire_rx));
        tokio::spawn(crate::refill::run(Arc::clone(&shared)));
        tokio::spawn(crate::maintenance::run(Arc::clone(&shared)));
        let weak = Arc::downgrade(&shared);
        let evict_dead = move |shape: &ShapeKey, id: &str| {
            if let Some(shared) = weak.upgrade() {
                crate::maintenance::evict_by_id(&shared, shape, id, EvictReason::Exited);
            }
        };
        tokio::spawn(crate::watch::run(watch_rx, shared.cancel.clone(), evict_dead));
        Self { handle: Arc::new(PoolHandle { shared }) }
    }

    /// Waits for a VM of the default shape: FIFO-fair, cancellation-safe (dropping the future never
    /// loses a VM), woken if it rested in the pool and health-checked right before hand-out. With a
    /// ready VM, nobody queued and nothing to wake or check, it completes without yielding.
    pub async fn reserve(&self) -> Result<PooledVm<P>, PoolError> {
        crate::reserve::reserve(self.shared(), Which::Default, true).await
    }

    /// A ready VM of the default shape now, or `Err(Exhausted)`. Cannot await, so it relies on the
    /// health check every VM passed when it became ready (plus the background probes); a VM that
    /// rested in the pool is handed out at once and wakes in the background (its first use waits
    /// for that). [`reserve_now`](Self::reserve_now) is the same with the hand-out check.
    pub fn try_reserve(&self) -> Result<PooledVm<P>, PoolError> {
        crate::reserve::try_reserve(self.shared(), Which::Default)
    }

    /// A ready VM of the default shape, readied like [`reserve`](Self::reserve) readies it (woken,
    /// health-checked), but never waiting for a fill: `Err(Exhausted)` when no VM is ready or
    /// callers are queued for one. For servers that answer "none ready" at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, PoolError, ShapeKey, testing::{MemoryProvider, MemorySpec, MemoryVm}};
    /// let provider = MemoryProvider::new();
    /// let pool = Pool::builder(provider.clone())
    ///     .shape(ShapeKey::new("small"), MemorySpec::new(64))
    ///     .health_check(|vm: &MemoryVm| vm.health())
    ///     .build()
    ///     .await?;
    /// let checks = provider.health_checks();
    /// let vm = pool.reserve_now().await?;          // checked right before hand-out
    /// assert_eq!(provider.health_checks(), checks + 1);
    /// assert!(matches!(pool.reserve_now().await, Err(PoolError::Exhausted))); // none ready: no wait
    /// # drop(vm); pool.shutdown().await; Ok(()) }
    /// ```
    pub async fn reserve_now(&self) -> Result<PooledVm<P>, PoolError> {
        crate::reserve::reserve(self.shared(), Which::Default, false).await
    }

    /// [`reserve`](Self::reserve) with a deadline: `Err(Timeout)` when it elapses.
    pub async fn reserve_timeout(&self, timeout: Duration) -> Result<PooledVm<P>, PoolError> {
        Self::with_timeout(timeout, crate::reserve::reserve(self.shared(), Which::Default, true)).await
    }

    /// [`reserve`](Self::reserve) for `shape`; `Err(UnknownShape)` if it is not registered.
    pub async fn reserve_shape(&self, shape: &ShapeKey) -> Result<PooledVm<P>, PoolError> {
        crate::reserve::reserve(self.shared(), Which::Shape(shape), true).await
    }

    /// [`try_reserve`](Self::try_reserve) for `shape`.
    pub fn try_reserve_shape(&self, shape: &ShapeKey) -> Result<PooledVm<P>, PoolError> {
        crate::reserve::try_reserve(self.shared(), Which::Shape(shape))
    }

    /// [`reserve_now`](Self::reserve_now) for `shape`.
    pub async fn reserve_shape_now(&self, shape: &ShapeKey) -> Result<PooledVm<P>, PoolError> {
        crate::reserve::reserve(self.shared(), Which::Shape(shape), false).await
    }

    /// [`reserve_timeout`](Self::reserve_timeout) for `shape`.
    pub async fn reserve_shape_timeout(
        &self,
        shape: &ShapeKey,
        timeout: Duration,
    ) -> Result<PooledVm<P>, PoolError> {
        Self::with_timeout(timeout, crate::reserve::reserve(self.shared(), Which::Shape(shape), true)).await
    }

    async fn with_timeout(
        timeout: Duration,
        reserve: impl std::future::Future<Output = Result<PooledVm<P>, PoolError>>,
    ) -> Result<PooledVm<P>, PoolError> {
        match tokio::time::timeout(timeout, reserve).await {
            Ok(result) => result,
            Err(_) => Err(PoolError::Timeout),
        }
    }

    /// Ready VMs of the default shape (of all shapes if there is no default shape), as the
    /// VM-pool guide awaits it; [`available_now`](Self::available_now) is the same count for code
    /// that cannot await.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let pool = Pool::builder(MemoryProvider::new())
    ///     .shape(ShapeKey::new("small"), MemorySpec::new(256))
    ///     .depth(2..=2)
    ///     .build()
    ///     .await?;
    /// assert_eq!(pool.available_count().await, 2);
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub async fn available_count(&self) -> usize {
        self.available_now()
    }

    /// [`available_count`](Self::available_count) without awaiting (it never waits).
    pub fn available_now(&self) -> usize {
        let st = self.shared().lock();
        match &st.default_shape {
            Some(key) => st.buckets.get(key).map_or(0, |b| b.ready.len() + b.probing),
            None => st.buckets.values().map(|b| b.ready.len() + b.probing).sum(),
        }
    }

    /// The pool at this instant: per shape what is ready, filling, leased and waiting, and the
    /// memory budget. A plain struct, for health endpoints and tests.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let shape = ShapeKey::new("small");
    /// let pool = Pool::builder(MemoryProvider::new())
    ///     .shape(shape.clone(), MemorySpec::new(256))
    ///     .depth(2..=2)
    ///     .build()
    ///     .await?;
    /// let vm = pool.reserve().await?;
    /// let status = pool.status();
    /// let bucket = status.shape(&shape).expect("registered");
    /// assert_eq!((bucket.leased, bucket.low_water), (1, 2));
    /// assert!(status.memory_used_mb >= 2 * 256); // the leased VM and at least one ready
    /// # drop(vm); pool.shutdown().await; Ok(()) }
    /// ```
    pub fn status(&self) -> Status {
        let shared = self.shared();
        let now = Instant::now();
        let st = shared.lock();
        let memory = shared.provider.memory();
        let shared_mb = memory.shared_mb();
        let mut shapes: Vec<ShapeStatus> = st
            .buckets
            .values()
            .map(|b| {
                let mut target = b.target(now);
                if let Some(budget) = shared.settings.memory_budget_mb {
                    let per_vm = memory.estimate_mb(&b.key, &b.spec);
                    let have = b.fresh_ready() + b.filling;
                    target = target.min(crate::shared::budget_cap(
                        budget,
                        shared_mb,
                        st.mem_used_mb,
                        per_vm,
                        have,
                    ));
                }
                let backoff_remaining = b.backoff_until.filter(|u| *u > now).map(|u| u - now);
                ShapeStatus {
                    key: (*b.key).clone(),
                    ready: b.ready.len() + b.probing,
                    filling: b.filling,
                    leased: b.leased,
                    waiting: b.waiters.len(),
                    low_water: b.low_water(),
                    high_water: b.high_water(),
                    target,
                    fill_failures: b.fill_failures,
                    consecutive_failures: b.consecutive_failures,
                    last_error: b.last_error.clone(),
                    backing_off: backoff_remaining.is_some(),
                    backoff_remaining,
                    fill_latency: b.demand.fill_latency(),
                    last_fill: b.last_fill,
                }
            })
            .collect();
        shapes.sort_by(|a, b| a.key.cmp(&b.key));
        Status {
            shapes,
            memory_used_mb: st.mem_used_mb.saturating_add(shared_mb),
            shared_memory_mb: shared_mb,
            memory_budget_mb: shared.settings.memory_budget_mb,
            alive: st.alive,
            shutting_down: st.closing,
        }
    }

    /// Counters and gauges of every registered shape, as plain numbers (for Prometheus, see
    /// [`register_metrics`](Self::register_metrics)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let shape = ShapeKey::new("small");
    /// let pool = Pool::builder(MemoryProvider::new()).shape(shape.clone(), MemorySpec::new(64)).build().await?;
    /// drop(pool.reserve().await?);
    /// let metrics = pool.metrics();
    /// assert_eq!(metrics.shape(&shape).map(|m| m.acquired), Some(1));
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub fn metrics(&self) -> MetricsSnapshot {
        let st = self.shared().lock();
        let mut shapes: Vec<ShapeMetrics> =
            st.buckets.values().map(|b| ShapeMetrics::read(&b.key, &b.metrics)).collect();
        shapes.sort_by(|a, b| a.shape.cmp(&b.shape));
        MetricsSnapshot { shapes }
    }

    /// Registers the pool's metrics (prefix `firepit_pool_`, label `shape`: the shape's name) into
    /// `registry`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    /// let pool = Pool::builder(MemoryProvider::new()).shape(ShapeKey::new("small"), MemorySpec::new(64)).build().await?;
    /// let mut registry = Registry::default();
    /// pool.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// encode(&mut text, &registry)?;
    /// assert!(text.contains(r#"firepit_pool_vms_created_total{shape="small"} 1"#));
    /// # Ok(()) }
    /// ```
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.shared().metrics.register(registry);
    }

    /// Stops the pool: reserves fail with `ShuttingDown`, ready VMs are destroyed, fills in flight
    /// are awaited and destroyed, all within the shutdown budget. Idempotent. Leases still out are
    /// destroyed when dropped.
    pub async fn shutdown(&self) {
        crate::shutdown::shutdown(self.shared()).await;
    }

    pub(crate) fn close(&self) {
        self.shared().begin_close();
    }

    /// `build()`'s wait: every shape at low water, or an error.
    pub(crate) async fn warm_up(&self) -> Result<(), PoolError> {
        crate::warmup::warm_up(self.shared()).await
    }
}
