//! The seed API: `Firepit::pool(config).cpus(1).memory_mb(256).console_enabled().build(4)`.
//!
//! It is one shape named [`POOL_SHAPE`], wired like every other shape: the [`VmConfig`] becomes a
//! `ShapeSpec` (depth `n..=n`) and goes through [`PoolShape`](crate::PoolShape) into a pool over
//! one QEMU provider, with the agent ping as the pool's health check.

use std::time::Duration;

use firepit_pool::{HealthCheck, Unhealthy};
use firepit_qemu::{Accel, FillStrategy, ProviderConfig, QemuProvider, QemuVm};

use crate::error::Error;
use crate::vm_config::VmConfig;
use crate::wiring::{PoolShape, VmPool};

/// The name of the one shape of a pool built by [`Firepit::pool`]: the `shape` label of its
/// metrics, and the key of its entry in [`Status`](crate::Status).
pub const POOL_SHAPE: &str = "default";

/// Entry point of the facade: pools of QEMU microVMs.
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit::Error> {
/// use firepit::{Firepit, ShapeKey, VmConfig};
/// let image = firepit::image::Image::open("target/firepit-image".as_ref())?;
/// let pool = Firepit::pool(VmConfig::from_image(&image)).cpus(1).memory_mb(256).build(2).await?;
/// let vm = pool.reserve().await?;
/// let out = vm.exec(["uname", "-r"]).await?;
/// println!("{}", out.stdout_lossy());
/// assert_eq!(vm.shape(), &ShapeKey::new(firepit::POOL_SHAPE));
/// # Ok(()) }
/// ```
///
/// The VM-pool guide's test runner: a root disk that knows nothing of firepit (`./run-test` is on
/// it), tests in parallel on fresh VMs through the console, joined with `handle.await??`.
///
/// ```no_run
/// use std::time::Duration;
/// use firepit::{Firepit, VmConfig};
///
/// async fn run_tests() -> Result<(), firepit::Error> {
///     let pool = Firepit::pool(VmConfig::new("./kernel", "./disk.img"))
///         .cpus(1)
///         .memory_mb(256)
///         .console_enabled()
///         .build(4)
///         .await?;
///     println!("{} VMs ready", pool.available_count().await);
///     let mut handles = Vec::new();
///     for name in ["test_a", "test_b", "test_c"] {
///         let pool = pool.clone();
///         handles.push(tokio::spawn(async move {
///             let vm = pool.reserve().await?;
///             let console = vm.console().await?;
///             console.send(&format!("./run-test {name}\n")).await?;
///             console.read_until_timeout("TEST_DONE", Duration::from_secs(60)).await?;
///             Ok::<_, firepit::Error>(())
///         }));
///     }
///     for handle in handles {
///         handle.await??;
///     }
///     pool.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Firepit;

impl Firepit {
    /// Starts building a pool of VMs that look like `config`.
    pub fn pool(config: VmConfig) -> VmPoolBuilder {
        VmPoolBuilder {
            config,
            provider: ProviderConfig::default(),
            max_age: None,
            health_check: true,
            pause_idle: true,
        }
    }
}

/// Builder returned by [`Firepit::pool`]; [`build`](Self::build) boots the VMs.
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit::Error> {
/// use std::time::Duration;
/// use firepit::{FillStrategy, Firepit, VmConfig};
/// let image = firepit::image::Image::open("target/firepit-image".as_ref())?;
/// let pool = Firepit::pool(VmConfig::from_image(&image))
///     .memory_mb(512)
///     .fill_strategy(FillStrategy::ColdBoot)    // boot every VM (the default restores snapshots)
///     .max_age(Duration::from_secs(600))
///     .build(2)
///     .await?;
/// # pool.shutdown().await; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct VmPoolBuilder {
    config: VmConfig,
    provider: ProviderConfig,
    max_age: Option<Duration>,
    health_check: bool,
    pause_idle: bool,
}

impl VmPoolBuilder {
    /// Virtual CPUs per VM (default 1).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.config.cpus = cpus;
        self
    }

    /// Guest memory per VM in MiB (default 256).
    pub fn memory_mb(mut self, memory_mb: u64) -> Self {
        self.config.memory_mb = memory_mb;
        self
    }

    /// Marks the serial console as used by the caller ([`QemuVm::console`]).
    pub fn console_enabled(mut self) -> Self {
        self.config.console_enabled = true;
        self
    }

    /// Accelerator (default `auto`: KVM where it really boots a guest, else TCG).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.config.accel = accel;
        self
    }

    /// Deadline for one VM to boot (default 60 s, generous for TCG).
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.config.boot_timeout = timeout;
        self
    }

    /// Snapshot restore (the default: one template VM is booted, every further VM is a
    /// copy-on-write clone of it, cold boot being the fallback) or cold boot of every VM.
    pub fn fill_strategy(mut self, strategy: FillStrategy) -> Self {
        self.config.fill_strategy = strategy;
        self
    }

    /// Replace idle VMs older than this (whole seconds, rounded up: a shape counts seconds).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Turns the agent ping before hand-out off (default on).
    pub fn without_health_check(mut self) -> Self {
        self.health_check = false;
        self
    }

    /// Whether idle VMs pause while they wait in the pool (default `true`: their vCPUs stop, so
    /// they use no CPU, and they are woken, guest clock set, as they are handed out).
    pub fn pause_idle(mut self, pause: bool) -> Self {
        self.pause_idle = pause;
        self
    }

    /// Everything else of the QEMU provider (runtime dir, QEMU binary, timeouts). The fields this
    /// builder sets itself (accelerator, boot timeout) win over the ones given here.
    pub fn provider_config(mut self, config: ProviderConfig) -> Self {
        self.provider = config;
        self
    }

    /// Boots `n` identical VMs and returns once all `n` are ready; dropped leases are replaced so the
    /// pool keeps `n` ready. Its one shape is named [`POOL_SHAPE`]. The image is told apart first
    /// ([`VmConfig::resolve`]): one that is no initramfs and no disk fails here, naming the file
    /// and what it is, before anything starts.
    pub async fn build(self, n: usize) -> Result<VmPool, Error> {
        if n == 0 {
            return Err(Error::InvalidConfig(
                "build(0): a pool needs at least one VM; use build(1) or more".into(),
            ));
        }
        let Self { config, mut provider, max_age, health_check, pause_idle } = self;
        let resolve = config.clone();
        // Before anything starts: an image that is no initramfs and no disk fails here.
        let resolved =
            tokio::task::spawn_blocking(move || resolve.resolve()).await.map_err(Error::Task)??;
        provider.accel = config.accel;
        provider.boot_timeout = config.boot_timeout;
        let boot_timeout = provider.boot_timeout;
        let mut spec = config.shape_spec(POOL_SHAPE, n, max_age, health_check);
        spec.pause_idle = pause_idle;
        let shape = PoolShape::with_image(&spec, resolved.image_id, resolved.paths);
        // Fills run up to 4 at a time, but on a small host concurrent boots take about as long
        // as sequential ones: allow one boot deadline per VM, plus one for a snapshot template.
        let warmup = boot_timeout.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1));
        let builder = firepit_pool::Pool::builder(QemuProvider::new(provider)?)
            .warmup_timeout(warmup)
            .health_check(AgentPing);
        Ok(shape.add_to(builder)?.build().await?)
    }
}

/// Health check: the guest agent answers a ping (within the provider's probe timeout). Shapes
/// whose `health_check` is off skip it.
///
/// ```no_run
/// # async fn demo(provider: firepit::qemu::QemuProvider, shape: firepit::PoolShape) -> Result<(), firepit::Error> {
/// let builder = firepit::pool::Pool::builder(provider).health_check(firepit::AgentPing);
/// let pool = shape.add_to(builder)?.build().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentPing;

impl HealthCheck<QemuVm> for AgentPing {
    async fn check(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        firepit_qemu::agent_health_check(vm).await
    }
}
