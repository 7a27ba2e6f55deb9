//! `Pool::builder(provider)…build().await`: settings, validation, start, warm-up.
//!
//! A shape is added with its key and the provider's spec of its VMs. Builder-wide settings
//! (`depth`, `max_age`, …) are defaults for every shape added with [`PoolBuilder::shape`], whatever
//! the call order; [`PoolBuilder::shape_with`] gives one shape its own [`ShapeConfig`]. `build()` validates everything once (messages say what to change), starts
//! the background tasks and returns when every shape has reached its low water — or fails after
//! `warmup_max_failures` consecutive provider errors, or after `warmup_timeout`. It never hangs.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::{AdaptiveDepth, Backoff, ShapeConfig, check_budget, check_memory};
use crate::error::PoolError;
use crate::health::{DynHealthCheck, HealthCheck};
use crate::pool::Pool;
use crate::provider::Provider;
use crate::shape::ShapeKey;
use crate::shared::PoolSettings;

/// Configures and starts a [`Pool`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), firepit_pool::PoolError> {
/// use std::time::Duration;
/// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
/// let pool = Pool::builder(MemoryProvider::new())
///     .shape(ShapeKey::new("small"), MemorySpec::new(256))
///     .depth(2..=4)
///     .max_age(Duration::from_secs(600))
///     .build()
///     .await?;
/// assert!(pool.available_now() >= 2);
/// # pool.shutdown().await; Ok(()) }
/// ```
pub struct PoolBuilder<P: Provider> {
    provider: P,
    defaults: ShapeConfig,
    shapes: Vec<(ShapeKey, P::Spec, Option<ShapeConfig>)>,
    settings: PoolSettings,
    health: Option<Box<dyn DynHealthCheck<P::Vm>>>,
}

impl<P: Provider> Pool<P> {
    /// Starts configuring a pool over `provider`.
    ///
    /// ```
    /// use firepit_pool::{Pool, testing::MemoryProvider};
    /// let builder = Pool::builder(MemoryProvider::new()).max_parallel_fills(8);
    /// # drop(builder);
    /// ```
    pub fn builder(provider: P) -> PoolBuilder<P> {
        PoolBuilder::new(provider)
    }
}

impl<P: Provider> PoolBuilder<P> {
    fn new(provider: P) -> Self {
        Self {
            provider,
            defaults: ShapeConfig::default(),
            shapes: Vec::new(),
            settings: PoolSettings {
                max_parallel_fills: 4,
                memory_budget_mb: None,
                shutdown_budget: Duration::from_secs(10),
                warmup_timeout: Duration::from_secs(120),
                warmup_max_failures: 3,
                probe_timeout: Duration::from_secs(5),
            },
            health: None,
        }
    }

    /// Adds a shape named `key` whose VMs the provider makes from `spec`, with the builder-wide
    /// settings. The first shape is the default shape.
    pub fn shape(mut self, key: ShapeKey, spec: P::Spec) -> Self {
        self.shapes.push((key, spec, None));
        self
    }

    /// Adds a shape with its own settings.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeConfig, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let (small, big) = (ShapeKey::new("small"), ShapeKey::new("big"));
    /// let pool = Pool::builder(MemoryProvider::new())
    ///     .shape(small.clone(), MemorySpec::new(256))
    ///     .shape_with(big.clone(), MemorySpec::new(2048), ShapeConfig { depth: 2..=2, ..ShapeConfig::default() })
    ///     .build()
    ///     .await?;
    /// assert_eq!(pool.status().shape(&big).map(|s| s.ready), Some(2));
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub fn shape_with(mut self, key: ShapeKey, spec: P::Spec, config: ShapeConfig) -> Self {
        self.shapes.push((key, spec, Some(config)));
        self
    }

    /// The provider the pool will use (e.g. to check a spec with it before adding a shape).
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Low..=high water for shapes added with [`shape`](Self::shape). Default `1..=1`.
    pub fn depth(mut self, depth: RangeInclusive<usize>) -> Self {
        self.defaults.depth = depth;
        self
    }

    /// Replace ready VMs older than this. Default: never.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.defaults.max_age = Some(max_age);
        self
    }

    /// Replace ready VMs idle longer than this. Default: never.
    pub fn idle_ttl(mut self, idle_ttl: Duration) -> Self {
        self.defaults.idle_ttl = Some(idle_ttl);
        self
    }

    /// Probe idle VMs with `Provider::probe` this often. Default 30 s.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.defaults.probe_interval = Some(interval);
        self
    }

    /// Upper bound on a single probe. Default 5 s.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.settings.probe_timeout = timeout;
        self
    }

    /// Grow depth with demand. Default: fixed depth.
    pub fn adaptive(mut self, adaptive: AdaptiveDepth) -> Self {
        self.defaults.adaptive = Some(adaptive);
        self
    }

    /// Retry policy for failed fills.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.defaults.backoff = backoff;
        self
    }

    /// Whether shapes added with [`shape`](Self::shape) let their idle VMs rest
    /// ([`ShapeConfig::pause_idle`]). Default `true`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{FaultPlan, MemoryProvider, MemorySpec}};
    /// let provider = MemoryProvider::with_plan(FaultPlan { pause: true, ..FaultPlan::default() });
    /// let pool = Pool::builder(provider.clone())
    ///     .shape(ShapeKey::new("small"), MemorySpec::new(64))
    ///     .pause_idle(false)                    // idle VMs keep running
    ///     .build()
    ///     .await?;
    /// assert_eq!(provider.paused(), 0);
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub fn pause_idle(mut self, pause: bool) -> Self {
        self.defaults.pause_idle = pause;
        self
    }

    /// Fills running at once, over all shapes. Default 4.
    pub fn max_parallel_fills(mut self, n: usize) -> Self {
        self.settings.max_parallel_fills = n;
        self
    }

    /// Cap on the memory of all alive VMs (ready, filling, leased), MiB. Fills wait for room.
    pub fn memory_budget_mb(mut self, mb: u64) -> Self {
        self.settings.memory_budget_mb = Some(mb);
        self
    }

    /// How long `shutdown()` waits for fills and destroys. Default 10 s.
    pub fn shutdown_budget(mut self, budget: Duration) -> Self {
        self.settings.shutdown_budget = budget;
        self
    }

    /// How long `build()` waits for the low water. Default 120 s.
    pub fn warmup_timeout(mut self, timeout: Duration) -> Self {
        self.settings.warmup_timeout = timeout;
        self
    }

    /// Consecutive failed creates of one shape after which `build()` gives up. Default 3.
    pub fn warmup_max_failures(mut self, n: u32) -> Self {
        self.settings.warmup_max_failures = n;
        self
    }

    /// Check every VM before it is handed out (see [`HealthCheck`]): once when it becomes ready and
    /// again right before `reserve()` hands it out. A VM that fails is destroyed, never handed out.
    /// A shape whose [`ShapeConfig::health_check`] is `false` skips it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, Unhealthy, testing::{MemoryProvider, MemorySpec}};
    /// let pool = Pool::builder(MemoryProvider::new())
    ///     .shape(ShapeKey::new("small"), MemorySpec::new(64))
    ///     // Any `Fn(&Vm) -> impl Future<Output = Result<(), Unhealthy>> + 'static` will do.
    ///     .health_check(|vm: &firepit_pool::testing::MemoryVm| {
    ///         let fine = vm.spec().memory_mb >= 64;
    ///         async move { if fine { Ok(()) } else { Err(Unhealthy::new("too small")) } }
    ///     })
    ///     .build()
    ///     .await?;
    /// # pool.shutdown().await; Ok(()) }
    /// ```
    pub fn health_check(mut self, check: impl HealthCheck<P::Vm>) -> Self {
        self.health = Some(Box::new(check));
        self
    }

    /// Checks the pool-wide settings and every shape; returns each shape's settings (its own, or
    /// the builder-wide ones).
    fn validate(&self) -> Result<Vec<ShapeConfig>, PoolError> {
        let s = &self.settings;
        let invalid = |m: &str| Err(PoolError::InvalidConfig(m.to_owned()));
        if s.max_parallel_fills == 0 {
            return invalid("max_parallel_fills is 0, so no VM could ever be created: use at least 1");
        }
        if s.memory_budget_mb == Some(0) {
            return invalid(
                "memory_budget_mb is 0, so no VM fits: give a budget of at least one VM's memory_mb",
            );
        }
        if s.shutdown_budget.is_zero() || s.warmup_timeout.is_zero() || s.probe_timeout.is_zero() {
            return invalid("shutdown_budget, warmup_timeout and probe_timeout must be positive durations");
        }
        if s.warmup_max_failures == 0 {
            return invalid("warmup_max_failures is 0: use at least 1 (default 3)");
        }
        let memory = self.provider.memory();
        let mut seen = HashSet::new();
        let mut configs = Vec::new();
        let mut lows = Vec::new();
        for (key, spec, config) in &self.shapes {
            if !seen.insert(key.clone()) {
                return Err(PoolError::InvalidConfig(format!(
                    "shape {key} is added twice: add each shape once"
                )));
            }
            let config = config.clone().unwrap_or_else(|| self.defaults.clone());
            config.validate(key)?;
            let full_mb = memory.full_mb(spec);
            check_memory(key, full_mb)?;
            lows.push((*config.depth.start(), full_mb));
            configs.push(config);
        }
        check_budget(s.memory_budget_mb, lows.into_iter())?;
        Ok(configs)
    }

    /// The Capsa-style form: `n` identical VMs of every shape (depth `n..=n`), returns when all are
    /// ready.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), firepit_pool::PoolError> {
    /// use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
    /// let pool = Pool::builder(MemoryProvider::new()).shape(ShapeKey::new("small"), MemorySpec::new(64)).build_n(4).await?;
    /// assert_eq!(pool.available_now(), 4);
    /// # Ok(()) }
    /// ```
    pub async fn build_n(self, n: usize) -> Result<Pool<P>, PoolError> {
        self.depth(n..=n).build().await
    }

    /// Validates, starts the pool and waits until every shape has its low water ready. Fails
    /// with [`PoolError::InvalidConfig`] (what to change), [`PoolError::WarmupFailed`] (the
    /// provider's error after `warmup_max_failures` failed creates in a row),
    /// [`PoolError::WarmupTimeout`] or [`PoolError::NoRuntime`]; it never hangs. See the
    /// [`PoolBuilder`] example.
    pub async fn build(self) -> Result<Pool<P>, PoolError> {
        let configs = self.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PoolError::NoRuntime);
        }
        let pool = Pool::start(self.provider, self.settings, self.health);
        for ((key, spec, _), config) in self.shapes.into_iter().zip(configs) {
            pool.register_shape(key, spec, config)?;
        }
        if let Err(err) = pool.warm_up().await {
            // Close without waiting, so build() returns within warmup_timeout; what was created is
            // destroyed in the background (fills in flight when they finish).
            pool.close();
            return Err(err);
        }
        Ok(pool)
    }
}
