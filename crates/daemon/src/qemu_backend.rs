//! The real backend: [`LeaseBackend`] over the engine's `Pool<QemuProvider>`.
//!
//! The daemon names shapes (`small`, `big`); the engine keys buckets by [`ShapeKey`]. This adapter
//! keeps the name → key table, opens each shape's image and registers it with the provider, and
//! maps the engine's errors onto the daemon's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use firepit_agent::{ExecRequest, ExecResult};
use firepit_pool::{HealthCheck, PoolError, PooledVm, Provider, ShapeConfig, ShapeKey, Unhealthy};
use firepit_qemu::{ImagePaths, ProviderConfig, QemuError, QemuProvider, QemuVm};

use crate::backend::{
    AcquireError, BoxError, BoxFuture, ExecError, FillStrategy, LeaseBackend, LeasedVm, OwnedProcess,
    OwnershipHook, ShapeError, ShapeSpec, ShapeStatusView,
};

type QemuPool = firepit_pool::Pool<RecordedProvider>;

/// The QEMU provider, with every VM it hands to the pool recorded in the daemon's state dir (so a
/// restarted daemon can reap what a crashed one left) and forgotten once destroyed.
///
/// A VM still booting when the daemon dies is not recorded; QEMU's parent-death signal kills it,
/// and its runtime directory lies under the state dir, which the next start sweeps.
/// Everything else is the QEMU provider's: every `Provider` method is passed on.
#[derive(Clone)]
pub struct RecordedProvider {
    inner: QemuProvider,
    hook: Arc<dyn OwnershipHook>,
}

impl Provider for RecordedProvider {
    type Vm = QemuVm;
    type Error = QemuError;

    async fn create(&self, shape: &ShapeKey) -> Result<QemuVm, QemuError> {
        let vm = self.inner.create(shape).await?;
        let process = OwnedProcess {
            vm_id: vm.id().to_owned(),
            pid: vm.pid(),
            runtime_dir: vm.runtime_dir().to_path_buf(),
        };
        self.hook.spawned(&process);
        Ok(vm)
    }

    async fn probe(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        self.inner.probe(vm).await
    }

    async fn destroy(&self, vm: QemuVm) {
        let id = vm.id().to_owned();
        self.inner.destroy(vm).await;
        self.hook.destroyed(&id);
    }

    fn shape_unregistered(&self, shape: &ShapeKey) {
        // Drops the shape's snapshot template (removed once its last clone is gone).
        self.inner.shape_unregistered(shape);
    }

    fn memory_estimate_mb(&self, shape: &ShapeKey) -> u64 {
        self.inner.memory_estimate_mb(shape)
    }

    fn shared_memory_mb(&self) -> u64 {
        self.inner.shared_memory_mb()
    }
}

/// One registered shape: its engine key and the spec it came from.
#[derive(Debug, Clone)]
struct Shape {
    key: ShapeKey,
    spec: ShapeSpec,
}

/// Shapes by name, shared with the health check (which needs to know which shapes want it).
#[derive(Debug, Default)]
struct ShapeTable {
    by_name: HashMap<String, Shape>,
    checked: HashSet<ShapeKey>,
}

/// Pings the agent of VMs whose shape asked for a health check.
struct ShapeHealthCheck {
    table: Arc<RwLock<ShapeTable>>,
}

impl HealthCheck<QemuVm> for ShapeHealthCheck {
    async fn check(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        let wanted = self.table.read().map(|t| t.checked.contains(vm.shape())).unwrap_or(true);
        if wanted { firepit_qemu::agent_health_check(vm).await } else { Ok(()) }
    }
}

/// Why a shape cannot be served by the QEMU backend.
#[derive(Debug, thiserror::Error)]
pub enum ShapeSetupError {
    /// Its image directory does not hold a firepit image.
    #[error("shape `{shape}`: cannot open its image")]
    Image {
        /// The shape.
        shape: String,
        /// Why.
        #[source]
        source: firepit_image::ImageError,
    },
    /// The provider refused its image.
    #[error("shape `{shape}`: the QEMU provider refused its image")]
    Provider {
        /// The shape.
        shape: String,
        /// Why.
        #[source]
        source: QemuError,
    },
    /// Its memory does not fit the engine's 32-bit MiB count.
    #[error("shape `{shape}`: memory_mb {memory_mb} is too large")]
    MemoryTooLarge {
        /// The shape.
        shape: String,
        /// What it asked for.
        memory_mb: u64,
    },
}

/// Why the QEMU backend did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The QEMU provider could not be set up (binary, runtime dir, user).
    #[error("cannot set up the QEMU provider")]
    Provider(#[source] QemuError),
    /// A configured shape cannot be served.
    #[error(transparent)]
    Shape(#[from] ShapeSetupError),
    /// The pools did not warm up.
    #[error("the pools did not warm up")]
    Pool(#[source] PoolError),
}

/// [`LeaseBackend`] over a pool of QEMU microVMs.
pub struct QemuBackend {
    pool: QemuPool,
    provider: QemuProvider,
    table: Arc<RwLock<ShapeTable>>,
    accelerator: String,
}

impl QemuBackend {
    /// Starts the pools for `shapes` and returns once every shape reached its low water mark.
    pub async fn start(
        provider_config: ProviderConfig,
        shapes: Vec<ShapeSpec>,
        parallel_fills: usize,
        memory_budget_mb: u64,
        shutdown_budget: Duration,
        hook: Arc<dyn OwnershipHook>,
    ) -> Result<Self, StartError> {
        let provider = QemuProvider::new(provider_config).map_err(StartError::Provider)?;
        let table = Arc::new(RwLock::new(ShapeTable::default()));
        let recorded = RecordedProvider { inner: provider.clone(), hook };
        let mut builder = firepit_pool::Pool::builder(recorded)
            .max_parallel_fills(parallel_fills)
            .shutdown_budget(shutdown_budget)
            .health_check(ShapeHealthCheck { table: table.clone() });
        if memory_budget_mb > 0 {
            builder = builder.memory_budget_mb(memory_budget_mb);
        }
        for spec in shapes {
            let shape = prepare_shape(&provider, spec)?;
            builder = builder.shape_with(shape.key.clone(), shape_config(&shape.spec));
            insert(&mut write(&table), shape);
        }
        let pool = builder.build().await.map_err(StartError::Pool)?;
        let accelerator = provider.accel().await.as_str().to_owned();
        Ok(Self { pool, provider, table, accelerator })
    }

    fn key(&self, name: &str) -> Option<ShapeKey> {
        read(&self.table).by_name.get(name).map(|s| s.key.clone())
    }
}

/// Opens the shape's image, registers it with the provider and derives its engine key.
fn prepare_shape(provider: &QemuProvider, spec: ShapeSpec) -> Result<Shape, ShapeSetupError> {
    let image = firepit_image::Image::open(&spec.image)
        .map_err(|source| ShapeSetupError::Image { shape: spec.name.clone(), source })?;
    let fill = match spec.fill {
        FillStrategy::ColdBoot => firepit_qemu::FillStrategy::ColdBoot,
        FillStrategy::Snapshot => firepit_qemu::FillStrategy::Snapshot,
    };
    let paths = ImagePaths::new(image.kernel(), image.initramfs());
    provider
        .register_image_with(image.id(), paths, fill)
        .map_err(|source| ShapeSetupError::Provider { shape: spec.name.clone(), source })?;
    let memory_mb = u32::try_from(spec.memory_mb).map_err(|_| ShapeSetupError::MemoryTooLarge {
        shape: spec.name.clone(),
        memory_mb: spec.memory_mb,
    })?;
    // The name is part of the key's version so two names over one image stay two buckets.
    let version = format!("{}+{}", image.kernel_version(), spec.name);
    let key = ShapeKey::new(image.id(), version, spec.cpus, memory_mb);
    // Per shape: two shapes over one image may fill differently.
    provider.set_fill_strategy(&key, fill);
    Ok(Shape { key, spec })
}

fn shape_config(spec: &ShapeSpec) -> ShapeConfig {
    ShapeConfig { depth: spec.depth.low..=spec.depth.high, max_age: spec.max_age(), ..ShapeConfig::default() }
}

fn insert(table: &mut ShapeTable, shape: Shape) {
    if shape.spec.health_check {
        table.checked.insert(shape.key.clone());
    }
    table.by_name.insert(shape.spec.name.clone(), shape);
}

fn read(table: &RwLock<ShapeTable>) -> RwLockReadGuard<'_, ShapeTable> {
    table.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(table: &RwLock<ShapeTable>) -> RwLockWriteGuard<'_, ShapeTable> {
    table.write().unwrap_or_else(|poisoned| poisoned.into_inner())
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

impl LeaseBackend for QemuBackend {
    fn acquire<'a>(
        &'a self,
        shape: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        Box::pin(async move {
            let key = self.key(shape).ok_or_else(|| AcquireError::UnknownShape(shape.to_owned()))?;
            let vm = if wait.is_zero() {
                self.pool.try_reserve_shape(&key)
            } else {
                self.pool.reserve_shape_timeout(&key, wait).await
            };
            let vm = vm.map_err(|e| acquire_error(shape, wait, e))?;
            Ok(Box::new(QemuLease { vm }) as Box<dyn LeasedVm>)
        })
    }

    fn status(&self) -> Vec<ShapeStatusView> {
        let status = self.pool.status();
        let table = read(&self.table);
        let mut views: Vec<ShapeStatusView> = table
            .by_name
            .values()
            .filter_map(|shape| {
                let s = status.shape(&shape.key)?;
                Some(ShapeStatusView {
                    name: shape.spec.name.clone(),
                    ready: s.ready,
                    filling: s.filling,
                    leased: s.leased,
                    depth_low: s.low_water,
                    depth_high: s.high_water,
                    fill_failures: s.fill_failures,
                    consecutive_failures: u64::from(s.consecutive_failures),
                    last_error: s.last_error.clone(),
                    accelerator: self.accelerator.clone(),
                    fill: shape.spec.fill,
                    last_fill: s.last_fill.map(str::to_owned),
                    fill_state: (shape.spec.fill == FillStrategy::Snapshot)
                        .then(|| self.provider.template_state(&shape.key).to_string()),
                })
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.pool.register_metrics(registry);
    }

    fn register_shape<'a>(&'a self, spec: ShapeSpec) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            if read(&self.table).by_name.contains_key(&spec.name) {
                return Err(ShapeError::AlreadyExists(spec.name));
            }
            let name = spec.name.clone();
            let invalid = |source: BoxError| ShapeError::Invalid { shape: name.clone(), source };
            let shape = prepare_shape(&self.provider, spec).map_err(|e| invalid(Box::new(e)))?;
            self.pool.register_shape(shape.key.clone(), shape_config(&shape.spec)).map_err(|e| match e {
                PoolError::ShuttingDown => ShapeError::ShuttingDown,
                other => invalid(Box::new(other)),
            })?;
            insert(&mut write(&self.table), shape);
            Ok(())
        })
    }

    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            let shape = write(&self.table)
                .by_name
                .remove(name)
                .ok_or_else(|| ShapeError::Unknown(name.to_owned()))?;
            write(&self.table).checked.remove(&shape.key);
            self.pool.unregister_shape(&shape.key).await.map_err(|e| match e {
                PoolError::ShuttingDown => ShapeError::ShuttingDown,
                other => ShapeError::Invalid { shape: name.to_owned(), source: Box::new(other) },
            })
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.shutdown())
    }
}

/// A leased QEMU VM; dropping it releases (destroys) the VM and the pool refills.
struct QemuLease {
    vm: PooledVm<RecordedProvider>,
}

impl LeasedVm for QemuLease {
    fn vm_id(&self) -> &str {
        self.vm.id()
    }

    fn sandbox(&self) -> &dyn crate::sandbox::Sandbox {
        // `Sandbox for QemuVm` is in qemu_sandbox.rs.
        &*self.vm
    }

    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, ExecError>> {
        Box::pin(async move {
            match self.vm.exec_request(request).await {
                Ok(out) => Ok(ExecResult {
                    exit_code: out.exit_code,
                    signal: out.signal,
                    stdout: out.stdout,
                    stderr: out.stderr,
                    truncated: out.truncated,
                    timed_out: out.timed_out,
                    duration_ms: u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
                }),
                Err(firepit_qemu::QemuError::Agent(error @ firepit_qemu::AgentError::Remote { .. })) => {
                    Err(ExecError::Refused(error.to_string()))
                }
                Err(other) => Err(ExecError::Unreachable(other.to_string())),
            }
        })
    }
}
