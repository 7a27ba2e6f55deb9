//! [`QemuProvider`]: the pool's door to QEMU microVMs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use firepit_pool::{Provider, ShapeKey, Unhealthy};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::argv::{GuestMemory, LaunchSpec, kernel_args, tsc_khz_from_cpuinfo};
use crate::boot;
use crate::caps::QemuCaps;
use crate::config::{Accel, FillKind, FillStrategy, ImagePaths, ProviderConfig};
use crate::error::{QemuError, SpawnError};
use crate::rundir::{MAX_SOCKET_PATH, RuntimeDir, ensure_base};
use crate::vm::QemuVm;
use std::path::Path;

/// Room kept in socket paths for `/<vm id>/console.sock`.
const VM_PATH_SUFFIX: usize = 48;

/// Unique VM ids across every provider of this process.
static NEXT_VM: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone)]
pub(crate) struct RegisteredImage {
    pub paths: ImagePaths,
    pub fill: FillStrategy,
}

#[derive(Debug)]
pub(crate) struct ProviderInner {
    pub config: Arc<ProviderConfig>,
    pub caps: QemuCaps,
    requested_accel: Accel,
    resolved_accel: OnceCell<Accel>,
    images: RwLock<HashMap<String, RegisteredImage>>,
    /// Fill strategies set per shape; they win over the image's.
    shape_fills: RwLock<HashMap<ShapeKey, FillStrategy>>,
    tsc_khz: u64,
    pub snapshots: crate::snapshot::Templates,
    /// The user QEMU runs as (`ProviderConfig::run_as`, resolved).
    run_as: Option<crate::process::Credentials>,
}

/// Makes, probes and destroys QEMU microVMs; implements [`firepit_pool::Provider`].
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit_qemu::QemuError> {
/// use firepit_pool::{Provider, ShapeKey};
/// use firepit_qemu::{ImagePaths, ProviderConfig, QemuProvider};
/// let provider = QemuProvider::new(ProviderConfig::default())?;
/// provider.register_image("img", ImagePaths::new("out/vmlinuz", "out/initramfs.cpio.gz"))?;
/// let vm = provider.create(&ShapeKey::new("img", "1", 1, 256)).await?;
/// println!("{}", vm.exec(["uname", "-r"]).await?.stdout_lossy());
/// provider.destroy(vm).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QemuProvider {
    pub(crate) inner: Arc<ProviderInner>,
}

impl QemuProvider {
    /// Checks the configuration and the QEMU binary, creates the runtime directory and removes what
    /// firepit processes that were killed (SIGKILL leaves no chance to clean up) left in it and in
    /// /dev/shm.
    pub fn new(config: ProviderConfig) -> Result<Self, QemuError> {
        let requested_accel = config.requested_accel().map_err(|e| QemuError::Config(e.to_string()))?;
        if config.boot_timeout.is_zero() || config.probe_timeout.is_zero() || config.agent_timeout.is_zero() {
            return Err(QemuError::Config(
                "boot_timeout, probe_timeout and agent_timeout must be > 0".into(),
            ));
        }
        let room = config.runtime_dir.as_os_str().len() + VM_PATH_SUFFIX;
        if room > MAX_SOCKET_PATH {
            return Err(QemuError::Config(format!(
                "runtime_dir {} is too long for Unix socket paths (keep it under {} bytes)",
                config.runtime_dir.display(),
                MAX_SOCKET_PATH - VM_PATH_SUFFIX
            )));
        }
        let run_as = config.run_as.as_deref().map(crate::run_as::resolve).transpose()?;
        if let Some(user) = run_as {
            crate::run_as::make_reachable(&config.runtime_dir, user)?;
        }
        let caps = QemuCaps::detect(&config.qemu_binary)?;
        ensure_base(&config.runtime_dir, run_as.is_some())?;
        crate::rundir::remove_stale(&config.runtime_dir);
        // Scratch and discarded templates of dead processes (`firepit-<pid>-t<n>`).
        crate::rundir::remove_stale_in(&config.template_dir);
        let tsc_khz = tsc_khz_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        tracing::info!(qemu = %caps.version, sandbox = caps.sandbox, accel = %requested_accel, "QEMU provider ready");
        Ok(Self {
            inner: Arc::new(ProviderInner {
                config: Arc::new(config),
                caps,
                requested_accel,
                resolved_accel: OnceCell::new(),
                images: RwLock::new(HashMap::new()),
                shape_fills: RwLock::new(HashMap::new()),
                tsc_khz,
                snapshots: Default::default(),
                run_as,
            }),
        })
    }

    /// Registers (or replaces) an image under `image_id` with the configured fill strategy; shapes
    /// name images by this id. Fails if a file is missing.
    pub fn register_image(&self, image_id: &str, paths: ImagePaths) -> Result<(), QemuError> {
        self.register_image_with(image_id, paths, self.inner.config.fill_strategy)
    }

    /// Registers an image with an explicit [`FillStrategy`].
    pub fn register_image_with(
        &self,
        image_id: &str,
        paths: ImagePaths,
        fill: FillStrategy,
    ) -> Result<(), QemuError> {
        if fill == FillStrategy::Snapshot && self.inner.run_as.is_some() {
            return Err(QemuError::Config(format!(
                "image {image_id}: snapshot fill does not support run_as yet (the template's state \
                 directory is not given to QEMU's user); use cold boot or drop run_as"
            )));
        }
        for path in [&paths.kernel, &paths.initramfs] {
            if !path.is_file() {
                return Err(SpawnError::ImageFileMissing { path: path.clone() }.into());
            }
        }
        let mut images = self.inner.images.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        images.insert(image_id.to_string(), RegisteredImage { paths, fill });
        Ok(())
    }

    /// Sets the fill strategy of one shape, over its image's (two shapes of one image may fill
    /// differently). Forgotten when the pool unregisters the shape.
    pub fn set_fill_strategy(&self, shape: &ShapeKey, fill: FillStrategy) {
        let mut fills = self.inner.shape_fills.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        fills.insert(shape.clone(), fill);
    }

    /// The fill strategy `shape` uses: its own, else its image's.
    pub fn fill_strategy(&self, shape: &ShapeKey) -> Result<FillStrategy, QemuError> {
        let own = self
            .inner
            .shape_fills
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(shape)
            .copied();
        match own {
            Some(fill) => Ok(fill),
            None => Ok(self.inner.image(&shape.image_id)?.fill),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// What the QEMU binary supports.
    pub fn caps(&self) -> &QemuCaps {
        &self.inner.caps
    }

    /// The accelerator VMs run under (runs detection on first call when `Auto`).
    pub async fn accel(&self) -> Accel {
        self.inner.accel().await
    }

    /// Where the snapshot template of `shape` stands (fallback to cold boot shows as `Failed`, with
    /// the reason); its `Display` is a one-line status.
    pub fn template_state(&self, shape: &ShapeKey) -> crate::TemplateState {
        self.inner.snapshots.state(shape, self.inner.config.snapshot_retry_after)
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
    pub fn remove_templates(&self) -> usize {
        let dir = &self.inner.config.template_dir;
        let in_use = self.inner.snapshots.dirs_in_use();
        let mut removed = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Scratch names are builds or clones' discarded templates of live processes.
            if in_use.contains(&path) || name.starts_with("firepit-") {
                continue;
            }
            crate::template_store::remove(&path);
            removed += 1;
        }
        let _ = std::fs::remove_dir(dir); // only succeeds when empty
        removed
    }

    /// Boots a VM from scratch (ignores the image's fill strategy).
    pub async fn cold_boot(&self, shape: &ShapeKey) -> Result<QemuVm, QemuError> {
        let image = self.inner.image(&shape.image_id)?;
        self.inner.cold_boot(shape, &image.paths, FillKind::ColdBoot).await
    }
}

impl ProviderInner {
    pub(crate) async fn accel(&self) -> Accel {
        *self
            .resolved_accel
            .get_or_init(|| async {
                match self.requested_accel {
                    Accel::Auto => crate::accel::detect_accel(&self.config.qemu_binary).await.accel,
                    forced => forced,
                }
            })
            .await
    }

    pub(crate) fn image(&self, image_id: &str) -> Result<RegisteredImage, QemuError> {
        let images = self.images.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        images.get(image_id).cloned().ok_or_else(|| SpawnError::UnknownImage(image_id.to_string()).into())
    }

    /// A fresh VM id and its runtime directory.
    pub(crate) fn new_dir(&self) -> Result<(String, RuntimeDir), QemuError> {
        let id = format!("fp-{}-{}", std::process::id(), NEXT_VM.fetch_add(1, Ordering::Relaxed));
        let dir = RuntimeDir::create(&self.config.runtime_dir, &id)?;
        if let Some(owner) = self.run_as {
            // QEMU creates its agent socket (and a snapshot's state file) in here.
            crate::rundir::chown(dir.path(), owner)?;
        }
        Ok((id, dir))
    }

    pub(crate) fn spec(
        &self,
        id: &str,
        accel: Accel,
        shape: &ShapeKey,
        paths: &ImagePaths,
        dir: &Path,
        memory: GuestMemory,
    ) -> Result<LaunchSpec, QemuError> {
        if shape.vcpus == 0 || shape.memory_mb < 32 {
            return Err(QemuError::Config(format!("shape {shape}: need at least 1 vCPU and 32 MiB")));
        }
        Ok(LaunchSpec {
            name: id.to_string(),
            accel,
            vcpus: shape.vcpus,
            memory_mb: shape.memory_mb,
            kernel: paths.kernel.clone(),
            initramfs: paths.initramfs.clone(),
            kernel_args: kernel_args(self.tsc_khz, &self.config.extra_kernel_args),
            sandbox: self.caps.sandbox,
            runtime_dir: dir.to_path_buf(),
            memory,
            incoming: None,
            tb_size_mb: None,
            without_kernel: false,
            run_as: self.run_as,
        })
    }

    pub(crate) async fn cold_boot(
        &self,
        shape: &ShapeKey,
        paths: &ImagePaths,
        fill: FillKind,
    ) -> Result<QemuVm, QemuError> {
        let started_at = Instant::now();
        let deadline = started_at + self.config.boot_timeout;
        let accel = self.accel().await;
        let (id, dir) = self.new_dir()?;
        let spec = self.spec(&id, accel, shape, paths, dir.path(), GuestMemory::Anonymous)?;
        let started = boot::start(&self.config.qemu_binary, &spec, dir, &self.config, deadline).await?;
        boot::wait_ready(&started, self.config.boot_timeout, deadline).await?;
        let boot_duration = started_at.elapsed();
        tracing::info!(vm = %id, %shape, %accel, pid = started.process.pid(), ?boot_duration, fill = fill.as_str(), "VM booted");
        Ok(self.vm(id, shape, accel, boot_duration, started, fill))
    }

    pub(crate) fn vm(
        &self,
        id: String,
        shape: &ShapeKey,
        accel: Accel,
        boot_duration: Duration,
        started: boot::Started,
        fill: FillKind,
    ) -> QemuVm {
        QemuVm {
            id,
            shape: shape.clone(),
            accel,
            boot_duration,
            config: self.config.clone(),
            qmp: started.qmp,
            console: started.console,
            agent: started.agent,
            process: started.process,
            dir: started.dir,
            template: None,
            fill,
            memory_charge_mb: None,
        }
    }
}

impl Provider for QemuProvider {
    type Vm = QemuVm;
    type Error = QemuError;

    async fn create(&self, shape: &ShapeKey) -> Result<QemuVm, QemuError> {
        let image = self.inner.image(&shape.image_id)?;
        match self.fill_strategy(shape)? {
            FillStrategy::ColdBoot => self.inner.cold_boot(shape, &image.paths, FillKind::ColdBoot).await,
            FillStrategy::Snapshot => crate::snapshot::create_clone(&self.inner, shape, &image.paths).await,
        }
    }

    async fn probe(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        if let Some(info) = vm.exit_info() {
            return Err(Unhealthy::new(format!("qemu exited ({info})")));
        }
        crate::exec::agent_health_check(vm).await
    }

    async fn destroy(&self, vm: QemuVm) {
        vm.shutdown().await;
    }

    fn memory_estimate_mb(&self, shape: &ShapeKey) -> u64 {
        self.inner.snapshots.charges.estimate_mb(shape)
    }

    fn shared_memory_mb(&self) -> u64 {
        self.inner.snapshots.charges.shared_mb()
    }

    fn shape_unregistered(&self, shape: &ShapeKey) {
        self.inner.shape_fills.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(shape);
        self.forget_template(shape);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_fill_strategy_wins_over_its_images_until_the_shape_is_unregistered() {
        let dir = tempfile::tempdir().unwrap();
        let (kernel, initramfs) = (dir.path().join("vmlinuz"), dir.path().join("initramfs"));
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initramfs, b"i").unwrap();
        let config = ProviderConfig {
            runtime_dir: dir.path().join("run"),
            template_dir: dir.path().join("templates"),
            ..Default::default()
        };
        let provider = QemuProvider::new(config).unwrap();
        provider
            .register_image_with("img", ImagePaths::new(kernel, initramfs), FillStrategy::ColdBoot)
            .unwrap();
        let (cold, snap) = (ShapeKey::new("img", "1+cold", 1, 64), ShapeKey::new("img", "1+snap", 1, 64));
        provider.set_fill_strategy(&snap, FillStrategy::Snapshot);
        assert_eq!(provider.fill_strategy(&cold).unwrap(), FillStrategy::ColdBoot);
        assert_eq!(provider.fill_strategy(&snap).unwrap(), FillStrategy::Snapshot);
        provider.shape_unregistered(&snap);
        assert_eq!(provider.fill_strategy(&snap).unwrap(), FillStrategy::ColdBoot);
        assert!(provider.fill_strategy(&ShapeKey::new("other", "1", 1, 64)).is_err());
    }
}
