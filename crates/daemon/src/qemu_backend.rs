//! The real backend: [`LeaseBackend`] over the facade's pool of QEMU microVMs.
//!
//! A thin adapter. Shapes are wired by the facade ([`PoolShape`]: a `ShapeSpec` becomes the
//! pool's key and settings and the provider's spec) and kept by the pool alone: a lease names its
//! shape, and the name *is* the pool's [`ShapeKey`]. The provider records the VMs it hands to the
//! pool through its ownership hook (see [`crate::wiring`]), so nothing here wraps it. What is left
//! is mapping the engine's errors and status onto the daemon's.

use std::time::Duration;

use firepit::{AgentPing, PoolShape, VmPool};
use firepit_pool::{PoolError, ShapeKey};
use firepit_qemu::QemuProvider;

use crate::backend::{
    AcquireError, BoxFuture, FillStrategy, Forks, LeaseBackend, LeasedVm, NetworkSpec, PauseFailed, PausedVm,
    SaveError, SavedSnapshot, ShapeError, ShapeSpec, ShapeStatusView,
};
use crate::boxed::BoxError;
use crate::metrics::ShapeCounters;
use crate::net_metrics::NetworkCollector;
use crate::qemu_lease::QemuLease;

/// Why the QEMU backend did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configured shape cannot be served (its image does not open, the provider refuses it).
    #[error("shape `{shape}` cannot be served")]
    Shape {
        /// The shape's name.
        shape: String,
        /// Why.
        #[source]
        source: firepit::Error,
    },
    /// The pools did not warm up.
    #[error("the pools did not warm up")]
    Pool(#[source] PoolError),
}

/// How the pool of the backend is run (the daemon's `[limits]` and `[shutdown]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Fills running at once, over all shapes.
    pub parallel_fills: usize,
    /// Cap on the memory of all VMs, MiB; 0: none.
    pub memory_budget_mb: u64,
    /// How long stopping the pool may take.
    pub shutdown_budget: Duration,
}

/// [`LeaseBackend`] over a pool of QEMU microVMs.
pub struct QemuBackend {
    pool: VmPool,
    accelerator: String,
    /// Where paused leases' VMs are saved; `None`: this backend does not pause.
    paused_dir: Option<std::path::PathBuf>,
}

impl QemuBackend {
    /// Starts the pool over `provider` with `shapes` and returns once every shape reached its low
    /// water mark. The agent ping is the health check of the shapes that ask for one.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use firepit_daemon::backend::{LeaseBackend, ShapeSpec};
    /// use firepit_daemon::qemu_backend::{PoolLimits, QemuBackend};
    /// use firepit_qemu::{ProviderConfig, QemuProvider};
    /// let provider = QemuProvider::new(ProviderConfig::default())?;
    /// let shapes = [ShapeSpec::new("small", firepit_image::default_dir())];
    /// let limits = PoolLimits { parallel_fills: 2, memory_budget_mb: 0, shutdown_budget: Duration::from_secs(10) };
    /// let backend = QemuBackend::start(provider, &shapes, limits).await?;
    /// let vm = backend.acquire("small", Duration::from_secs(30)).await?;
    /// println!("leased {}", vm.vm_id());
    /// # Ok(()) }
    /// ```
    pub async fn start(
        provider: QemuProvider,
        shapes: &[ShapeSpec],
        limits: PoolLimits,
    ) -> Result<Self, StartError> {
        let accelerator = provider.accel().await.as_str().to_owned();
        let mut builder = firepit_pool::Pool::builder(provider)
            .max_parallel_fills(limits.parallel_fills)
            .shutdown_budget(limits.shutdown_budget)
            .health_check(AgentPing);
        if limits.memory_budget_mb > 0 {
            builder = builder.memory_budget_mb(limits.memory_budget_mb);
        }
        for spec in shapes {
            let shape = |source| StartError::Shape { shape: spec.name.clone(), source };
            builder = PoolShape::open(spec).and_then(|wired| wired.add_to(builder)).map_err(shape)?;
        }
        let pool = builder.build().await.map_err(StartError::Pool)?;
        Ok(Self { pool, accelerator, paused_dir: None })
    }

    /// The pool behind the backend.
    pub fn pool(&self) -> &VmPool {
        &self.pool
    }

    /// Lets leases pause: a paused lease's VM is saved in `dir/VM-ID` (on disk, not tmpfs: it
    /// must outlive a reboot) and its QEMU exits.
    pub fn with_paused_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.paused_dir = Some(dir);
        self
    }
}

fn acquire_error(shape: &str, wait: Duration, error: PoolError) -> AcquireError {
    match error {
        PoolError::UnknownShape(_) => AcquireError::UnknownShape(shape.to_owned()),
        PoolError::Exhausted | PoolError::Timeout => {
            AcquireError::Exhausted { shape: shape.to_owned(), waited_ms: wait.as_millis() as u64 }
        }
        PoolError::ShuttingDown => AcquireError::ShuttingDown,
        other => AcquireError::Backend(Box::new(other)),
    }
}

fn shape_error(shape: &str, error: firepit::Error) -> ShapeError {
    match error {
        firepit::Error::Pool(PoolError::DuplicateShape(_)) => ShapeError::AlreadyExists(shape.to_owned()),
        firepit::Error::Pool(PoolError::UnknownShape(_)) => ShapeError::Unknown(shape.to_owned()),
        firepit::Error::Pool(PoolError::ShuttingDown) => ShapeError::ShuttingDown,
        other => ShapeError::Invalid { shape: shape.to_owned(), source: Box::new(other) },
    }
}

impl LeaseBackend for QemuBackend {
    fn acquire<'a>(
        &'a self,
        shape: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        Box::pin(async move {
            let key = ShapeKey::new(shape);
            let vm = if wait.is_zero() {
                // Never waits for a fill, but readies the VM like `reserve` does: woken if it
                // rested in the pool, health-checked if the shape asks for it.
                self.pool.reserve_shape_now(&key).await
            } else {
                self.pool.reserve_shape_timeout(&key, wait).await
            };
            let vm = vm.map_err(|e| acquire_error(shape, wait, e))?;
            Ok(Box::new(QemuLease::pooled(vm)) as Box<dyn LeasedVm>)
        })
    }

    fn memory_mb(&self) -> crate::backend::MemoryUse {
        let status = self.pool.status();
        crate::backend::MemoryUse { used_mb: status.memory_used_mb, budget_mb: status.memory_budget_mb }
    }

    fn status(&self) -> Vec<ShapeStatusView> {
        let provider = self.pool.provider();
        // Sorted by key, which is the name.
        let status = self.pool.status();
        status
            .shapes
            .into_iter()
            .filter_map(|s| {
                let spec = self.pool.spec(&s.key)?;
                let fill = spec.fill;
                Some(ShapeStatusView {
                    image_id: spec.image_id.clone(),
                    root_disk: spec.image.disk.as_ref().map(|disk| disk.base.display().to_string()),
                    name: s.key.to_string(),
                    ready: s.ready,
                    filling: s.filling,
                    leased: s.leased,
                    depth_low: s.low_water,
                    depth_high: s.high_water,
                    fill_failures: s.fill_failures,
                    consecutive_failures: u64::from(s.consecutive_failures),
                    last_error: s.last_error,
                    cpus: spec.cpus,
                    memory_mb: spec.memory_mb,
                    disk_mb: spec.disk_mb,
                    accelerator: self.accelerator.clone(),
                    fill,
                    last_fill: s.last_fill.map(str::to_owned),
                    // A shape on a daemon snapshot has no template of its own.
                    fill_state: (fill == FillStrategy::Snapshot && spec.snapshot.is_none())
                        .then(|| provider.template_state(&s.key).to_string()),
                })
            })
            .collect()
    }

    fn network(&self, shape: &str) -> Option<NetworkSpec> {
        self.pool.spec(&ShapeKey::new(shape)).map(|spec| spec.network.clone())
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.pool.register_metrics(registry);
        // Read at each scrape from the provider's per-shape counters.
        let pool = self.pool.clone();
        let source = move || {
            let stats = pool.provider().network_stats();
            stats.into_iter().map(|(shape, stats)| (shape.to_string(), stats)).collect()
        };
        registry.register_collector(Box::new(NetworkCollector::new(Box::new(source))));
        // Every shape, 0 until one of its VMs was handed out without its warm-up.
        let pool = self.pool.clone();
        let warm_up_failures = move || {
            let failed = pool.provider().warm_up_failures();
            let shapes = pool.status().shapes.into_iter().map(|s| s.key);
            let count = |key: &ShapeKey| failed.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
            let mut counts: Vec<(String, u64)> = shapes.map(|key| (key.to_string(), count(&key))).collect();
            // Unregistered shapes keep their count (counters only grow).
            for (key, n) in &failed {
                if !counts.iter().any(|(name, _)| name == key.as_str()) {
                    counts.push((key.to_string(), *n));
                }
            }
            counts
        };
        registry.register_collector(Box::new(ShapeCounters::new(
            "firepit_vm_warm_up_failures",
            "New VMs handed out without their warm-up (it failed in the guest: their first command is slower)",
            Box::new(warm_up_failures),
        )));
        let pool = self.pool.clone();
        let cgroups = move || pool.provider().cgroups();
        registry.register_collector(Box::new(crate::cgroup_metrics::CgroupCollector::new(Box::new(cgroups))));
    }

    fn register_shape<'a>(&'a self, spec: ShapeSpec) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            if self.pool.spec(&ShapeKey::new(spec.name.clone())).is_some() {
                return Err(ShapeError::AlreadyExists(spec.name));
            }
            PoolShape::open(&spec)
                .and_then(|shape| shape.register(&self.pool))
                .map_err(|e| shape_error(&spec.name, e))
        })
    }

    fn register_snapshot_shape<'a>(
        &'a self,
        spec: ShapeSpec,
        dir: std::path::PathBuf,
    ) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            if self.pool.spec(&ShapeKey::new(spec.name.clone())).is_some() {
                return Err(ShapeError::AlreadyExists(spec.name));
            }
            let opened = tokio::task::spawn_blocking(move || firepit_qemu::SavedVm::open(&dir)).await;
            let invalid = |source: BoxError| ShapeError::Invalid { shape: spec.name.clone(), source };
            let saved = opened.map_err(|e| invalid(e.into()))?.map_err(|e| invalid(e.into()))?;
            PoolShape::from_snapshot(&spec, saved)
                .and_then(|shape| shape.register(&self.pool))
                .map_err(|e| shape_error(&spec.name, e))
        })
    }

    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            let unregistered = self.pool.unregister_shape(&ShapeKey::new(name)).await;
            unregistered.map_err(|e| shape_error(name, firepit::Error::Pool(e)))
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.shutdown())
    }

    fn can_pause(&self) -> bool {
        self.paused_dir.is_some()
    }

    fn pause(&self, vm: Box<dyn LeasedVm>) -> BoxFuture<'_, Result<Box<dyn PausedVm>, PauseFailed>> {
        Box::pin(async move {
            let Some(dir) = &self.paused_dir else {
                return Err(PauseFailed { vm, error: "this daemon has no directory for paused VMs".into() });
            };
            let provider = self.pool.provider().clone();
            let paused = match vm.as_any().and_then(|any| any.downcast_ref::<QemuLease>()) {
                Some(lease) => crate::qemu_lease::pause(&provider, lease.qemu(), dir).await,
                None => Err("not a VM of this backend".into()),
            };
            match paused {
                // The VM's QEMU has exited: releasing it lets the pool clean up and refill.
                Ok(paused) => Ok(Box::new(paused) as Box<dyn PausedVm>),
                Err(error) => Err(PauseFailed { vm, error }),
            }
        })
    }

    fn adopt_paused(&self, saved: &serde_json::Value) -> Result<Box<dyn PausedVm>, BoxError> {
        let paused = crate::qemu_lease::adopt(self.pool.provider(), saved)?;
        Ok(Box::new(paused))
    }

    fn remove_unkept_paused(&self, kept: &[serde_json::Value]) -> usize {
        self.paused_dir.as_deref().map_or(0, |dir| crate::qemu_lease::remove_unkept(dir, kept))
    }

    fn can_snapshot(&self) -> bool {
        true
    }

    fn save_snapshot<'a>(
        &'a self,
        vm: &'a dyn LeasedVm,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<SavedSnapshot, SaveError>> {
        Box::pin(crate::qemu_snapshots::snapshot(self.pool.provider(), vm, dir))
    }

    fn start_snapshot<'a>(
        &'a self,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        Box::pin(async move {
            crate::qemu_snapshots::start(self.pool.provider(), dir).await.map_err(AcquireError::Backend)
        })
    }

    fn fork<'a>(&'a self, vm: &'a dyn LeasedVm, count: usize) -> BoxFuture<'a, Result<Forks, SaveError>> {
        Box::pin(crate::qemu_snapshots::fork(self.pool.provider(), vm, count))
    }
}
