//! The real backend: [`LeaseBackend`] over the facade's pool of QEMU microVMs.
//!
//! A thin adapter. Shapes are wired by the facade ([`PoolShape`]: a `ShapeSpec` becomes the
//! pool's key and settings and the provider's spec) and kept by the pool alone: a lease names its
//! shape, and the name *is* the pool's [`ShapeKey`]. The provider records the VMs it hands to the
//! pool through its ownership hook (see [`crate::wiring`]), so nothing here wraps it. What is left
//! is mapping the engine's errors and status onto the daemon's.

use std::net::SocketAddr;
use std::time::Duration;

use firepit::{AgentPing, PoolShape, VmPool};
use firepit_net::NetError;
use firepit_pool::{PoolError, PooledVm, ShapeKey};
use firepit_qemu::{QemuError, QemuProvider};

use crate::backend::{
    AcquireError, BoxFuture, EgressPolicy, FillStrategy, LeaseBackend, LeasedVm, NetworkError, NetworkSpec,
    ShapeError, ShapeSpec, ShapeStatusView, UsageDepth, VmExit, VmUsage,
};
use crate::metrics::ShapeCounters;
use crate::net_metrics::NetworkCollector;

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
        Ok(Self { pool, accelerator })
    }

    /// The pool behind the backend.
    pub fn pool(&self) -> &VmPool {
        &self.pool
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
            Ok(Box::new(QemuLease { vm }) as Box<dyn LeasedVm>)
        })
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
                    fill_state: (fill == FillStrategy::Snapshot)
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

    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            let unregistered = self.pool.unregister_shape(&ShapeKey::new(name)).await;
            unregistered.map_err(|e| shape_error(name, firepit::Error::Pool(e)))
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.shutdown())
    }
}

/// A leased QEMU VM; dropping it releases (destroys) the VM and the pool refills.
struct QemuLease {
    vm: PooledVm<QemuProvider>,
}

impl LeasedVm for QemuLease {
    fn vm_id(&self) -> &str {
        self.vm.id()
    }

    fn guest(&self) -> &firepit_guest::Guest {
        self.vm.guest()
    }

    fn forward_port(&self, guest_port: u16) -> BoxFuture<'_, Result<SocketAddr, NetworkError>> {
        Box::pin(async move { self.vm.forward_port(guest_port).await.map_err(network_error) })
    }

    fn remove_forward(&self, guest_port: u16) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async move { self.vm.remove_forward(guest_port).await.map_err(network_error) })
    }

    fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        self.vm.forwards()
    }

    fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), NetworkError> {
        self.vm.narrow_egress(policy).map_err(network_error)
    }

    fn exited(&self) -> BoxFuture<'static, VmExit> {
        let report = self.vm.exit_report();
        Box::pin(async move {
            let (info, panic) = report.await;
            let status = info.map_or_else(|| "exit status unknown".to_owned(), |info| info.to_string());
            let detail = match panic {
                Some(line) => format!("QEMU {status}; the guest's console: {line}"),
                None => format!("QEMU {status}"),
            };
            VmExit { detail }
        })
    }

    fn pid(&self) -> Option<u32> {
        Some(self.vm.pid())
    }

    fn cgroup(&self) -> Option<String> {
        self.vm.cgroup().map(ToString::to_string)
    }

    fn host_usage(&self, depth: UsageDepth) -> Option<VmUsage> {
        Some(self.vm.host_usage(depth))
    }
}

fn network_error(error: QemuError) -> NetworkError {
    match error {
        QemuError::Network(NetError::NoNetwork { .. }) => NetworkError::Disabled,
        QemuError::Network(NetError::NoSuchForward { guest_port }) => NetworkError::NoSuchForward(guest_port),
        other => NetworkError::Failed(other.into()),
    }
}
