//! The seed API: `Firepit::pool(config).cpus(1).memory_mb(256).console_enabled().build(4)`.
//!
//! It is one shape, named [`POOL_SHAPE`](crate::POOL_SHAPE) unless the config names it, wired like
//! every other shape: the builder sets fields of the [`VmConfig`]'s `ShapeSpec` (depth `n..=n` at
//! the end), which goes through [`PoolShape::from_vm_config`] — checked as the daemon checks its
//! shapes — into a pool over one QEMU provider, with the agent ping as the pool's health check.

use std::time::Duration;

use firepit_pool::{HealthCheck, Unhealthy};
use firepit_qemu::{Accel, FillStrategy, ProviderConfig, QemuProvider, QemuVm};
use firepit_shape::Depth;

use crate::error::Error;
use crate::vm_config::VmConfig;
use crate::wiring::{PoolShape, VmPool};

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
        VmPoolBuilder { config, provider: ProviderConfig::default() }
    }
}

/// Builder returned by [`Firepit::pool`]; [`build`](Self::build) boots the VMs. Its setters write
/// the [`VmConfig`]'s shape (fields without a setter, such as the network, are set on
/// `VmConfig::shape` before), and `build` checks the whole shape as the daemon does: a pool of
/// 32 MiB or 65 vCPUs fails with the same [`Error::InvalidShape`] the daemon gives.
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
}

impl VmPoolBuilder {
    /// Virtual CPUs per VM (default 1; 1..=64 as for every shape).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.config.shape.cpus = cpus;
        self
    }

    /// Guest memory per VM in MiB (default 256; 64..=65536 as for every shape).
    pub fn memory_mb(mut self, memory_mb: u64) -> Self {
        self.config.shape.memory_mb = memory_mb;
        self
    }

    /// How much each VM may write to its disk, MiB (16..=1048576; see
    /// [`ShapeSpec::disk_mb`](firepit_shape::ShapeSpec::disk_mb)): past it the guest gets `ENOSPC`.
    /// Default: the image's own free space.
    pub fn disk_mb(mut self, disk_mb: u64) -> Self {
        self.config.shape.disk_mb = Some(disk_mb);
        self
    }

    /// Makes the serial console the caller's: the guest keeps a shell on it and
    /// [`QemuVm::console`] hands it out (see [`VmConfig::console_enabled`]; off by default).
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
        self.config.shape.fill = strategy;
        self
    }

    /// Replace idle VMs older than this (whole seconds, rounded up: a shape counts seconds; at
    /// most a year).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        let secs = max_age.as_secs() + u64::from(max_age.subsec_nanos() > 0);
        self.config.shape.max_age_secs = Some(secs);
        self
    }

    /// Turns the agent ping before hand-out off (default on).
    pub fn without_health_check(mut self) -> Self {
        self.config.shape.health_check = false;
        self
    }

    /// Whether idle VMs pause while they wait in the pool (default `true`: their vCPUs stop, so
    /// they use no CPU, and they are woken, guest clock set, as they are handed out).
    pub fn pause_idle(mut self, pause: bool) -> Self {
        self.config.shape.pause_idle = pause;
        self
    }

    /// A command from the image to run in every new VM before it is handed out, after firepit's
    /// own warm-up (see [`ShapeSpec::warm_up_argv`](firepit_shape::ShapeSpec::warm_up_argv)): the
    /// programs it runs then start faster in the user's first command too.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), firepit::Error> {
    /// use firepit::{Firepit, VmConfig};
    /// let pool = Firepit::pool(VmConfig::new("vmlinuz", "disk.img"))
    ///     .warm_up_command(["/bin/bash", "-lc", "true"])
    ///     .build(2)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn warm_up_command<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.shape.warm_up_argv = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Everything else of the QEMU provider (runtime dir, QEMU binary, timeouts). The fields this
    /// builder sets itself (accelerator, boot timeout) win over the ones given here.
    pub fn provider_config(mut self, config: ProviderConfig) -> Self {
        self.provider = config;
        self
    }

    /// Boots `n` identical VMs (the shape's depth: `n..=n`, 1..=64 as for every shape) and returns
    /// once all `n` are ready; dropped leases are replaced so the pool keeps `n` ready. Its one
    /// shape is named [`POOL_SHAPE`](crate::POOL_SHAPE) unless the config names it. Before
    /// anything starts, the shape is checked ([`ShapeSpec::validate`](crate::ShapeSpec::validate):
    /// [`Error::InvalidShape`], the daemon's error for the same shape) and the image told apart
    /// ([`VmConfig::resolve`]): one that is no initramfs and no disk fails here, naming the file
    /// and what it is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use firepit::{Error, Firepit, VmConfig};
    /// let pool = Firepit::pool(VmConfig::new("./kernel", "./initrd")).memory_mb(32);
    /// let err = pool.build(1).await.unwrap_err();
    /// assert!(matches!(&err, Error::InvalidShape(e) if e.key == "memory_mb"));
    /// assert_eq!(err.to_string(), "shape \"default\": `memory_mb` = 32: must be 64..=65536");
    /// # }
    /// ```
    pub async fn build(self, n: usize) -> Result<VmPool, Error> {
        if n == 0 {
            return Err(Error::InvalidConfig(
                "build(0): a pool needs at least one VM; use build(1) or more".into(),
            ));
        }
        let Self { mut config, mut provider } = self;
        config.shape.depth = Depth { low: n, high: n };
        provider.accel = config.accel;
        provider.boot_timeout = config.boot_timeout;
        let boot_timeout = provider.boot_timeout;
        // Before anything starts: the shape is checked, and an image that is no initramfs and no
        // disk fails here.
        let shape = tokio::task::spawn_blocking(move || PoolShape::from_vm_config(&config))
            .await
            .map_err(Error::Task)??;
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

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_shape::ShapeSpec;

    /// What `build` answers for `builder`, which must fail before anything starts.
    async fn refused(builder: VmPoolBuilder, n: usize) -> firepit_shape::InvalidShape {
        match builder.build(n).await {
            Err(Error::InvalidShape(invalid)) => invalid,
            other => panic!("not refused as an invalid shape: {:?}", other.map(|_| "a pool")),
        }
    }

    #[tokio::test]
    async fn the_library_refuses_what_every_shape_is_refused_with_the_same_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = VmConfig::new(dir.path().join("vmlinuz"), dir.path());
        let daemon = |spec: ShapeSpec| spec.validate().unwrap_err();
        let shape = ShapeSpec { depth: Depth { low: 1, high: 1 }, ..config.shape.clone() };

        let tiny = refused(Firepit::pool(config.clone()).memory_mb(32), 1).await;
        assert_eq!(tiny, daemon(ShapeSpec { memory_mb: 32, ..shape.clone() }));
        assert_eq!(tiny.to_string(), "shape \"default\": `memory_mb` = 32: must be 64..=65536");
        let wide = refused(Firepit::pool(config.clone()).cpus(65), 1).await;
        assert_eq!(wide, daemon(ShapeSpec { cpus: 65, ..shape.clone() }));
        assert_eq!(wide.to_string(), "shape \"default\": `cpus` = 65: must be 1..=64");
        let deep = refused(Firepit::pool(config.clone()), 65).await;
        assert_eq!(deep.key, "depth.high", "build(n) is the shape's depth, bounded like the daemon's");
        let zero_age = refused(Firepit::pool(config.clone()).max_age(Duration::ZERO), 1).await;
        assert_eq!(zero_age.key, "max_age_secs");
        let mut named = config;
        named.shape.name = "Tests".into();
        assert_eq!(refused(Firepit::pool(named), 1).await.key, "name");
    }
}
