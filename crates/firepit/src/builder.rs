//! The seed API: `Firepit::pool(config).cpus(1).memory_mb(256).console_enabled().build(4)`.

use std::time::Duration;

use firepit_pool::{HealthCheck, ShapeKey, Unhealthy};
use firepit_qemu::{Accel, FillStrategy, ProviderConfig, QemuProvider, QemuVm};

use crate::{Error, VmConfig, VmPool};

/// Entry point of the facade: pools of QEMU microVMs.
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit::Error> {
/// use firepit::{Firepit, VmConfig};
/// let image = firepit::image::Image::open("target/firepit-image".as_ref())?;
/// let pool = Firepit::pool(VmConfig::from_image(&image)).cpus(1).memory_mb(256).build(2).await?;
/// let vm = pool.reserve().await?;
/// let out = vm.exec(["uname", "-r"]).await?;
/// println!("{}", out.stdout_lossy());
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
        VmPoolBuilder { config, provider: ProviderConfig::default(), max_age: None, health_check: true }
    }
}

/// Builder returned by [`Firepit::pool`]; [`build`](Self::build) boots the VMs.
#[derive(Debug, Clone)]
pub struct VmPoolBuilder {
    config: VmConfig,
    provider: ProviderConfig,
    max_age: Option<Duration>,
    health_check: bool,
}

impl VmPoolBuilder {
    /// Virtual CPUs per VM (default 1).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.config.cpus = cpus;
        self
    }

    /// Guest memory per VM in MiB (default 256).
    pub fn memory_mb(mut self, memory_mb: u32) -> Self {
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

    /// Snapshot restore (default) or cold boot.
    pub fn fill_strategy(mut self, strategy: FillStrategy) -> Self {
        self.config.fill_strategy = strategy;
        self
    }

    /// Replace idle VMs older than this.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Turns the agent ping before hand-out off (default on).
    pub fn without_health_check(mut self) -> Self {
        self.health_check = false;
        self
    }

    /// Everything else of the QEMU provider (runtime dir, QEMU binary, timeouts). The fields this
    /// builder sets itself (accelerator, boot timeout, fill strategy) win over the ones given here.
    pub fn provider_config(mut self, config: ProviderConfig) -> Self {
        self.provider = config;
        self
    }

    /// Boots `n` identical VMs and returns once all `n` are ready; dropped leases are replaced so the
    /// pool keeps `n` ready. The image is told apart first ([`VmConfig::resolve`]): one that is no
    /// initramfs and no disk fails here, naming the file and what it is, before anything starts.
    pub async fn build(self, n: usize) -> Result<VmPool, Error> {
        if n == 0 {
            return Err(Error::InvalidConfig(
                "build(0): a pool needs at least one VM; use build(1) or more".into(),
            ));
        }
        let Self { config, mut provider, max_age, health_check } = self;
        let resolve = config.clone();
        // Before anything starts: an image that is no initramfs and no disk fails here.
        let resolved = tokio::task::spawn_blocking(move || resolve.resolve()).await??;
        provider.accel = config.accel;
        provider.boot_timeout = config.boot_timeout;
        provider.fill_strategy = config.fill_strategy;
        let boot_timeout = provider.boot_timeout;
        let qemu = QemuProvider::new(provider)?;
        qemu.register_image(&resolved.image_id, resolved.paths)?;
        let shape = ShapeKey::new(resolved.image_id, resolved.version, config.cpus, config.memory_mb);
        let mut builder = firepit_pool::Pool::builder(qemu)
            .shape(shape)
            .depth(n..=n)
            // Boots run two at a time on a small host; a warm-up may need n/2 boot deadlines.
            .warmup_timeout(
                boot_timeout.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1)),
            );
        if let Some(max_age) = max_age {
            builder = builder.max_age(max_age);
        }
        if health_check {
            builder = builder.health_check(AgentPing);
        }
        Ok(builder.build().await?)
    }
}

/// Health check: the guest agent answers a ping (within the provider's probe timeout).
///
/// ```
/// let _check = firepit::AgentPing;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentPing;

impl HealthCheck<QemuVm> for AgentPing {
    async fn check(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        firepit_qemu::agent_health_check(vm).await
    }
}
