//! [`QemuProvider`]: the pool's door to QEMU microVMs.
//!
//! The provider keeps no table of shapes: the pool hands it each shape's [`VmSpec`] with every
//! `create`, and the provider routes it to a cold boot ([`Launcher`]) or a snapshot clone
//! ([`crate::snapshot`]) by the spec's fill strategy. What it keeps per shape is only what it
//! learns while filling: the shape's snapshot template and the memory its clones cost.

use std::sync::Arc;

use firepit_pool::{MemoryAccounting, Provider, ShapeKey, Unhealthy};
use firepit_shape::FillStrategy;

use crate::caps::QemuCaps;
use crate::config::{Accel, FillKind, ProviderConfig};
use crate::config_error::ConfigError;
use crate::error::{QemuError, SpawnError};
use crate::launch::Launcher;
use crate::ownership::{OwnedProcess, OwnershipHook};
use crate::snapshot::Templates;
use crate::snapshot::state::TemplateState;
use crate::vm::QemuVm;
use crate::vm_spec::VmSpec;

struct ProviderInner {
    launcher: Launcher,
    snapshots: Templates,
    /// Told about every VM handed to the pool and every VM destroyed.
    hook: Option<Arc<dyn OwnershipHook>>,
    warm_up_failures: crate::warm::WarmUpFailures,
}

/// Makes, probes and destroys QEMU microVMs; implements [`firepit_pool::Provider`] with
/// [`VmSpec`] as the per-shape spec.
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit_qemu::QemuError> {
/// use firepit_pool::{Provider, ShapeKey};
/// use firepit_qemu::{FillStrategy, ImagePaths, ProviderConfig, QemuProvider, VmSpec};
/// let provider = QemuProvider::new(ProviderConfig::default())?;
/// let mut spec = VmSpec::new("img", ImagePaths::new("out/vmlinuz", "out/initramfs.cpio.gz"));
/// spec.fill = FillStrategy::ColdBoot;
/// let shape = ShapeKey::new("small");
/// provider.check(&shape, &spec)?;                 // files exist, size can boot
/// let vm = provider.create(&shape, &spec).await?;
/// println!("{}", vm.exec(["uname", "-r"]).await?.stdout_lossy());
/// provider.destroy(vm).await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct QemuProvider {
    inner: Arc<ProviderInner>,
}

impl std::fmt::Debug for QemuProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuProvider")
            .field("config", &self.inner.launcher.config)
            .field("ownership_hook", &self.inner.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl QemuProvider {
    /// Checks the configuration and the QEMU binary, creates the runtime directory and removes what
    /// firepit processes that were killed (SIGKILL leaves no chance to clean up) left in it, in
    /// /dev/shm and in the template directory. Fails with [`QemuError::Config`] for a setting to
    /// change, or [`SpawnError::BinaryNotFound`] when QEMU is not installed.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use firepit_qemu::{Accel, ProviderConfig, QemuProvider};
    /// let provider = QemuProvider::new(ProviderConfig {
    ///     accel: Accel::Tcg,
    ///     boot_timeout: Duration::from_secs(30),
    ///     runtime_dir: "/run/firepit-vms".into(),
    ///     ..ProviderConfig::default()
    /// })?;
    /// println!("{}, seccomp sandbox: {}", provider.caps().version, provider.caps().sandbox);
    /// # Ok::<(), firepit_qemu::QemuError>(())
    /// ```
    pub fn new(config: ProviderConfig) -> Result<Self, QemuError> {
        Self::build(config, None)
    }

    /// [`new`](Self::new), with `hook` told about every VM the provider hands to the pool and
    /// every VM it destroys (see [`OwnershipHook`]): how the daemon records the QEMU processes it
    /// owns, so a restart after a crash can reap them.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use firepit_qemu::{OwnedProcess, OwnershipHook, ProviderConfig, QemuProvider};
    /// struct Log;
    /// impl OwnershipHook for Log {
    ///     fn spawned(&self, process: &OwnedProcess) { println!("{} is pid {}", process.vm_id, process.pid) }
    ///     fn destroyed(&self, vm_id: &str) { println!("{vm_id} is gone") }
    /// }
    /// let provider = QemuProvider::with_ownership_hook(ProviderConfig::default(), Arc::new(Log))?;
    /// # Ok::<(), firepit_qemu::QemuError>(())
    /// ```
    pub fn with_ownership_hook(
        config: ProviderConfig,
        hook: Arc<dyn OwnershipHook>,
    ) -> Result<Self, QemuError> {
        Self::build(config, Some(hook))
    }

    fn build(config: ProviderConfig, hook: Option<Arc<dyn OwnershipHook>>) -> Result<Self, QemuError> {
        Ok(Self {
            inner: Arc::new(ProviderInner {
                launcher: Launcher::new(config)?,
                snapshots: Templates::default(),
                hook,
                warm_up_failures: Default::default(),
            }),
        })
    }

    /// Whether this provider can make VMs of `spec`: its files exist (kernel, initramfs, a root
    /// disk's base), its shape is within the bounds every shape is held to
    /// ([`ShapeSpec::validate_vm`](firepit_shape::ShapeSpec::validate_vm): vCPUs, memory,
    /// network; [`ConfigError::InvalidShape`]), and snapshot fill is not
    /// combined with [`ProviderConfig::run_as`] (not supported yet). Cheap: a shape is checked when
    /// it is added to a pool, and again by every `create`. The files' contents are not checked
    /// here: `firepit_image::ImageKind` tells a usable disk from anything else.
    ///
    /// ```
    /// use firepit_pool::ShapeKey;
    /// use firepit_qemu::{ImagePaths, QemuError, SpawnError, VmSpec};
    /// # fn demo(provider: &firepit_qemu::QemuProvider) {
    /// let spec = VmSpec::new("img", ImagePaths::new("/nonexistent/vmlinuz", "/nonexistent/initrd"));
    /// let err = provider.check(&ShapeKey::new("small"), &spec).unwrap_err();
    /// assert!(matches!(err, QemuError::Spawn(SpawnError::ImageFileMissing { .. })));
    /// # }
    /// ```
    pub fn check(&self, shape: &ShapeKey, spec: &VmSpec) -> Result<(), QemuError> {
        crate::launch::check_shape(shape, spec)?;
        if spec.fill == FillStrategy::Snapshot && self.inner.launcher.run_as.is_some() {
            return Err(ConfigError::SnapshotWithRunAs { image: spec.image_id.clone() }.into());
        }
        let disk = spec.image.disk.as_ref().map(|disk| &disk.base);
        for path in [&spec.image.kernel, &spec.image.initramfs].into_iter().chain(disk) {
            if !path.is_file() {
                return Err(SpawnError::ImageFileMissing { path: path.clone() }.into());
            }
        }
        Ok(())
    }

    /// The configuration in use.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.launcher.config
    }

    /// What the QEMU binary supports.
    pub fn caps(&self) -> &QemuCaps {
        &self.inner.launcher.caps
    }

    /// The accelerator VMs run under (runs detection on first call when `Auto`).
    pub async fn accel(&self) -> Accel {
        self.inner.launcher.accel().await
    }

    /// Whether VMs get cgroups on this host (and why not), and how many were started without one
    /// (see [`CgroupConfig`](crate::CgroupConfig)).
    ///
    /// ```no_run
    /// let provider = firepit_qemu::QemuProvider::new(firepit_qemu::ProviderConfig::default())?;
    /// println!("{:?}", provider.cgroups().support);
    /// # Ok::<(), firepit_qemu::QemuError>(())
    /// ```
    pub fn cgroups(&self) -> crate::vm_cgroup::CgroupStatus {
        self.inner.launcher.cgroups.status()
    }

    /// Where the snapshot template of `shape` stands (fallback to cold boot shows as `Failed`, with
    /// the reason); its `Display` is a one-line status.
    pub fn template_state(&self, shape: &ShapeKey) -> TemplateState {
        self.inner.snapshots.state(shape, self.inner.launcher.config.snapshot_retry_after)
    }

    /// Failed warm-ups per shape since the provider started (shapes without one are left out). A
    /// failed warm-up does not fail the fill: the VM is handed out unwarmed (see `warm.rs`). For
    /// metrics: export each as a counter labelled with the shape.
    ///
    /// ```no_run
    /// # fn demo(provider: &firepit_qemu::QemuProvider) {
    /// for (shape, failed) in provider.warm_up_failures() {
    ///     println!("{shape}: {failed} VMs handed out without their warm-up");
    /// }
    /// # }
    /// ```
    pub fn warm_up_failures(&self) -> Vec<(ShapeKey, u64)> {
        self.inner.warm_up_failures.snapshot()
    }

    /// Forgets the snapshot template of `shape` and discards its files: they are moved aside at once
    /// (no later provider reuses them) and removed once the last clone restored from it is gone. The
    /// next fill builds a new one. The pool calls this through
    /// [`Provider::shape_unregistered`] when the shape is unregistered.
    pub fn forget_template(&self, shape: &ShapeKey) {
        self.inner.snapshots.forget(shape);
    }

    /// Removes every template in the template directory that no provider of this process uses, and
    /// the directory itself when it ends up empty. Templates in use are left alone (forget their
    /// shapes first). Returns how many were removed. For an explicit cleanup (e.g. after the last
    /// pool stopped, when `keep_templates` kept them for reuse).
    ///
    /// ```no_run
    /// use firepit_qemu::{ProviderConfig, QemuProvider};
    /// let provider = QemuProvider::new(ProviderConfig::default())?;
    /// println!("removed {} snapshot templates", provider.remove_templates());
    /// # Ok::<(), firepit_qemu::QemuError>(())
    /// ```
    pub fn remove_templates(&self) -> usize {
        let dir = &self.inner.launcher.config.template_dir;
        let in_use = self.inner.snapshots.dirs_in_use();
        let mut removed = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Scratch names are builds or clones' discarded templates of live processes.
            if in_use.contains(&path) || name.starts_with("firepit-") {
                continue;
            }
            crate::snapshot::store::remove(&path);
            removed += 1;
        }
        let _ = std::fs::remove_dir(dir); // only succeeds when empty
        removed
    }

    /// The launcher (for the network methods in `provider_net.rs`).
    pub(crate) fn launcher(&self) -> &Launcher {
        &self.inner.launcher
    }

    /// Tells the ownership hook, if any, that `vm`'s process is now owned (a VM made outside the
    /// pool's `create`: resumed, forked, started from a snapshot; see `lifecycle`).
    pub(crate) fn report_spawned(&self, vm: &QemuVm) {
        if let Some(hook) = &self.inner.hook {
            hook.spawned(&OwnedProcess::of(vm));
        }
    }

    /// Boots a VM of `spec` from scratch (whatever its fill strategy), outside any pool: the caller
    /// owns the VM and ends it with [`QemuVm::shutdown`] (see there for an example). The ownership
    /// hook is not told about it.
    pub async fn cold_boot(&self, shape: &ShapeKey, spec: &VmSpec) -> Result<QemuVm, QemuError> {
        self.check(shape, spec)?;
        let spec = self.inner.launcher.sized(spec).await?;
        self.inner.launcher.cold_boot(shape, &spec, FillKind::ColdBoot).await
    }
}

impl Provider for QemuProvider {
    type Vm = QemuVm;
    type Spec = VmSpec;
    type Error = QemuError;

    async fn create(&self, shape: &ShapeKey, spec: &VmSpec) -> Result<QemuVm, QemuError> {
        if let Some(saved) = &spec.snapshot {
            // Already warm (the snapshot's processes run on); told to the ownership hook there.
            return self.start_from_snapshot_in(saved).await;
        }
        self.check(shape, spec)?;
        let inner = &self.inner;
        // A root disk sized for the shape's `disk_mb` (templates record that copy as their base).
        let spec = &*inner.launcher.sized(spec).await?;
        let vm = match spec.fill {
            FillStrategy::ColdBoot => inner.launcher.cold_boot(shape, spec, FillKind::ColdBoot).await?,
            FillStrategy::Snapshot => inner.snapshots.create_clone(&inner.launcher, shape, spec).await?,
        };
        let mut vm = vm;
        if spec.warm_up {
            if let Err(e) =
                crate::warm::warm_up(&vm, shape, &spec.shape.warm_up_argv, &inner.warm_up_failures).await
            {
                vm.shutdown().await;
                return Err(e);
            }
            // A clone is charged its PSS: include what the warm-up added (code, copied pages).
            if vm.memory_charge_mb.is_some()
                && let Ok((_, kib)) = crate::memory_charge::process_memory_kib(vm.pid())
                && kib > 0
            {
                let mb = crate::memory_charge::kib_to_mib_ceil(kib);
                vm.memory_charge_mb = Some(mb);
                inner.snapshots.charges.clone_measured(shape, mb);
            }
        }
        if let Some(hook) = &inner.hook {
            hook.spawned(&OwnedProcess::of(&vm));
        }
        Ok(vm)
    }

    async fn probe(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        if let Some(info) = vm.exit_info() {
            return Err(Unhealthy::new(format!("qemu exited ({info})")));
        }
        if vm.waker.rest.is_resting() {
            return crate::health::probe_resting(vm, vm.config.probe_timeout).await;
        }
        crate::health::agent_health_check(vm).await
    }

    /// Stops the VM's vCPUs (QMP `stop`): a resting VM costs no CPU (`pause.rs` says how a resting VM
    /// is probed and woken).
    async fn pause(&self, vm: &QemuVm) -> Result<bool, Unhealthy> {
        match crate::pause::pause(&vm.waker.rest, &vm.qmp).await {
            Ok(()) => Ok(true),
            Err(e) => Err(Unhealthy::new(format!("QMP stop failed: {e}"))),
        }
    }

    /// `cont`, then the host's clock to the agent (whose answer the hand-out check counts).
    fn resume(
        &self,
        vm: &QemuVm,
    ) -> impl std::future::Future<Output = Result<(), Unhealthy>> + Send + 'static {
        let waker = vm.waker();
        async move {
            match waker.wake().await {
                Ok(_) => Ok(()),
                Err(e) => Err(Unhealthy::new(format!("waking the VM failed: {e}"))),
            }
        }
    }

    async fn destroy(&self, vm: QemuVm) {
        let id = vm.id().to_owned();
        vm.shutdown().await;
        if let Some(hook) = &self.inner.hook {
            hook.destroyed(&id);
        }
    }

    fn shape_unregistered(&self, shape: &ShapeKey) {
        self.forget_template(shape);
    }

    fn memory(&self) -> &dyn MemoryAccounting<VmSpec, QemuVm> {
        &self.inner.snapshots.charges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImagePaths;

    fn provider(dir: &std::path::Path, run_as_nobody: bool) -> Option<QemuProvider> {
        let config = ProviderConfig {
            runtime_dir: dir.join("run"),
            template_dir: dir.join("templates"),
            // Resolving a run_as user needs root; without it this part of the test is moot.
            run_as: run_as_nobody.then(|| "nobody".to_owned()),
            ..Default::default()
        };
        QemuProvider::new(config).ok()
    }

    #[test]
    fn check_refuses_missing_files_shapes_out_of_bounds_and_snapshot_with_run_as() {
        let dir = tempfile::tempdir().unwrap();
        let (kernel, initramfs) = (dir.path().join("vmlinuz"), dir.path().join("initramfs"));
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initramfs, b"i").unwrap();
        let provider = provider(dir.path(), false).expect("a provider without run_as");
        let shape = ShapeKey::new("small");
        let good = VmSpec::new("img", ImagePaths::new(&kernel, &initramfs));
        provider.check(&shape, &good).unwrap();
        for (field, value) in
            [("cpus", 0), ("cpus", 65), ("memory_mb", 32), ("memory_mb", u64::from(u32::MAX) + 1)]
        {
            let mut bad = good.clone();
            match field {
                "cpus" => bad.cpus = value as u32,
                _ => bad.memory_mb = value,
            }
            let err = provider.check(&shape, &bad).unwrap_err();
            let QemuError::Config(ConfigError::InvalidShape(invalid)) = &err else {
                panic!("{field} = {value}: {err}")
            };
            let expected = firepit_shape::ShapeSpec { name: "small".into(), ..bad.shape.clone() }
                .validate_vm()
                .unwrap_err();
            assert_eq!(invalid, &expected, "the shape's own error, naming the pool's shape");
        }
        let mut no_egress = good.clone();
        no_egress.network.host_ports = vec![8080];
        let err = provider.check(&shape, &no_egress).unwrap_err();
        assert!(err.to_string().contains("network.mode"), "host ports without a network: {err}");
        let missing = VmSpec::new("img", ImagePaths::new(dir.path().join("nope"), &initramfs));
        let err = provider.check(&shape, &missing).unwrap_err();
        assert!(err.to_string().contains("nope"), "the error names the missing file: {err}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let run_as = provider_with_run_as(dir.path());
            let err = run_as.check(&shape, &good).unwrap_err();
            assert!(matches!(err, QemuError::Config(ConfigError::SnapshotWithRunAs { .. })), "{err}");
            let mut cold = good;
            cold.fill = FillStrategy::ColdBoot;
            run_as.check(&shape, &cold).unwrap();
        }
    }

    fn provider_with_run_as(dir: &std::path::Path) -> QemuProvider {
        let other = dir.join("as-nobody");
        std::fs::create_dir(&other).unwrap();
        provider(&other, true).expect("root can run QEMU as nobody")
    }
}
