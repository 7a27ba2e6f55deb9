//! [`QemuProvider`]: the pool's door to QEMU microVMs.
//!
//! The provider keeps the registered images and each shape's fill strategy, and routes every
//! `create` to a cold boot ([`Launcher`]) or a snapshot clone ([`crate::snapshot`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use firepit_pool::{Provider, ShapeKey, Unhealthy};

use crate::caps::QemuCaps;
use crate::config::{Accel, FillKind, FillStrategy, ImagePaths, ProviderConfig};
use crate::config_error::ConfigError;
use crate::error::{QemuError, SpawnError};
use crate::launch::Launcher;
use crate::snapshot::Templates;
use crate::template_state::TemplateState;
use crate::vm::QemuVm;

#[derive(Debug, Clone)]
struct RegisteredImage {
    paths: ImagePaths,
    fill: FillStrategy,
}

#[derive(Debug)]
struct ProviderInner {
    launcher: Launcher,
    images: RwLock<HashMap<String, RegisteredImage>>,
    /// Fill strategies set per shape; they win over the image's.
    shape_fills: RwLock<HashMap<ShapeKey, FillStrategy>>,
    snapshots: Templates,
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
    inner: Arc<ProviderInner>,
}

impl QemuProvider {
    /// Checks the configuration and the QEMU binary, creates the runtime directory and removes what
    /// firepit processes that were killed (SIGKILL leaves no chance to clean up) left in it and in
    /// /dev/shm. Fails with [`QemuError::Config`] for a setting to change, or
    /// [`SpawnError::BinaryNotFound`] when QEMU is not installed.
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
        Ok(Self {
            inner: Arc::new(ProviderInner {
                launcher: Launcher::new(config)?,
                images: RwLock::new(HashMap::new()),
                shape_fills: RwLock::new(HashMap::new()),
                snapshots: Templates::default(),
            }),
        })
    }

    /// Registers (or replaces) an image under `image_id` with the configured fill strategy; shapes
    /// name images by this id. Fails if a file is missing.
    pub fn register_image(&self, image_id: &str, paths: ImagePaths) -> Result<(), QemuError> {
        self.register_image_with(image_id, paths, self.inner.launcher.config.fill_strategy)
    }

    /// Registers an image with an explicit [`FillStrategy`]. Fails if a file is missing, or for
    /// `Snapshot` together with [`ProviderConfig::run_as`] (not supported yet).
    ///
    /// ```no_run
    /// use firepit_pool::ShapeKey;
    /// use firepit_qemu::{FillStrategy, ImagePaths, ProviderConfig, QemuProvider, TemplateState};
    /// let provider = QemuProvider::new(ProviderConfig::default())?;
    /// let paths = ImagePaths::new("out/vmlinuz", "out/initramfs.cpio.gz");
    /// provider.register_image_with("img", paths, FillStrategy::Snapshot)?;
    /// // One shape of the image cold-boots anyway: it wants a fresh kernel every time.
    /// let fresh = ShapeKey::new("img", "1+fresh", 1, 256);
    /// provider.set_fill_strategy(&fresh, FillStrategy::ColdBoot);
    /// assert_eq!(provider.fill_strategy(&fresh)?, FillStrategy::ColdBoot);
    /// let cloned = ShapeKey::new("img", "1", 1, 256);
    /// assert_eq!(provider.template_state(&cloned), TemplateState::Missing); // built by the first fill
    /// # Ok::<(), firepit_qemu::QemuError>(())
    /// ```
    pub fn register_image_with(
        &self,
        image_id: &str,
        paths: ImagePaths,
        fill: FillStrategy,
    ) -> Result<(), QemuError> {
        if fill == FillStrategy::Snapshot && self.inner.launcher.run_as.is_some() {
            return Err(ConfigError::SnapshotWithRunAs { image: image_id.to_string() }.into());
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

    /// Where the snapshot template of `shape` stands (fallback to cold boot shows as `Failed`, with
    /// the reason); its `Display` is a one-line status.
    pub fn template_state(&self, shape: &ShapeKey) -> TemplateState {
        self.inner.snapshots.state(shape, self.inner.launcher.config.snapshot_retry_after)
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
            crate::template_store::remove(&path);
            removed += 1;
        }
        let _ = std::fs::remove_dir(dir); // only succeeds when empty
        removed
    }

    /// Boots a VM from scratch (ignores the image's fill strategy), outside any pool: the caller
    /// owns the VM and ends it with [`QemuVm::shutdown`] (see there for an example).
    pub async fn cold_boot(&self, shape: &ShapeKey) -> Result<QemuVm, QemuError> {
        let image = self.inner.image(&shape.image_id)?;
        self.inner.launcher.cold_boot(shape, &image.paths, FillKind::ColdBoot).await
    }
}

impl QemuProvider {
    /// The launcher (for the network methods in `provider_net.rs`).
    pub(crate) fn launcher(&self) -> &Launcher {
        &self.inner.launcher
    }
}

impl ProviderInner {
    fn image(&self, image_id: &str) -> Result<RegisteredImage, QemuError> {
        let images = self.images.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        images.get(image_id).cloned().ok_or_else(|| SpawnError::UnknownImage(image_id.to_string()).into())
    }
}

impl Provider for QemuProvider {
    type Vm = QemuVm;
    type Error = QemuError;

    async fn create(&self, shape: &ShapeKey) -> Result<QemuVm, QemuError> {
        let image = self.inner.image(&shape.image_id)?;
        match self.fill_strategy(shape)? {
            FillStrategy::ColdBoot => {
                self.inner.launcher.cold_boot(shape, &image.paths, FillKind::ColdBoot).await
            }
            FillStrategy::Snapshot => {
                self.inner.snapshots.create_clone(&self.inner.launcher, shape, &image.paths).await
            }
        }
    }

    async fn probe(&self, vm: &QemuVm) -> Result<(), Unhealthy> {
        if let Some(info) = vm.exit_info() {
            return Err(Unhealthy::new(format!("qemu exited ({info})")));
        }
        crate::health::agent_health_check(vm).await
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
        self.inner.launcher.networks.forget(shape);
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
