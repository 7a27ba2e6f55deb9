//! What one VM of a facade pool looks like: image, size, console, accelerator.
//!
//! The library's way to describe a shape: like a [`ShapeSpec`] (which it becomes, with the same
//! defaults, on its way to the pool through [`PoolShape`](crate::PoolShape)), but naming a kernel
//! and an initramfs instead of an image directory, and with the provider-wide accelerator and boot
//! deadline beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_qemu::{Accel, FillStrategy};
use firepit_shape::{Depth, ShapeSpec};

/// The guest and machine size of the VMs of one pool, as the seed API names it.
///
/// Build it from a built image ([`VmConfig::from_image`]) or from a kernel and an initramfs
/// ([`VmConfig::new`]); then hand it to [`Firepit::pool`](crate::Firepit::pool).
///
/// ```
/// use firepit::VmConfig;
/// let config = VmConfig::new("/images/vmlinuz", "/images/initramfs.cpio.gz");
/// assert_eq!((config.cpus, config.memory_mb), (1, 256));
/// assert!(!config.console_enabled);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    /// The guest kernel (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    pub initramfs: PathBuf,
    /// Names the image (in snapshot template manifests and logs). `None`: taken from a
    /// `manifest.json` next to the kernel when there is one, else a content hash of kernel and
    /// initramfs.
    pub image_id: Option<String>,
    /// Virtual CPUs per VM.
    pub cpus: u32,
    /// Guest memory per VM, in MiB.
    pub memory_mb: u64,
    /// Whether [`QemuVm::console`](firepit_qemu::QemuVm::console) is meant to be used; the serial
    /// console is always attached (the provider reads the guest's readiness line from it).
    pub console_enabled: bool,
    /// Accelerator (`auto` probes KVM once and falls back to TCG). `FIREPIT_ACCEL` overrides it.
    pub accel: Accel,
    /// Deadline from QEMU start to a ready guest.
    pub boot_timeout: Duration,
    /// How the pool makes new VMs. Default [`FillStrategy::Snapshot`]: one template VM per shape
    /// is booted, and every VM after it is a copy-on-write clone restored in ~0.1 s (cold boot is
    /// the fallback when the template cannot be built or restored). Set
    /// [`FillStrategy::ColdBoot`] to boot every VM.
    pub fill_strategy: FillStrategy,
}

impl VmConfig {
    /// A config for the given kernel and initramfs, with the shape defaults of [`ShapeSpec::new`]
    /// (1 vCPU, 256 MiB, snapshot fill) and the provider's (accelerator, boot deadline).
    pub fn new(kernel: impl Into<PathBuf>, initramfs: impl Into<PathBuf>) -> Self {
        let provider = firepit_qemu::ProviderConfig::default();
        let shape = ShapeSpec::new(String::new(), PathBuf::new());
        Self {
            kernel: kernel.into(),
            initramfs: initramfs.into(),
            image_id: None,
            cpus: shape.cpus,
            memory_mb: shape.memory_mb,
            console_enabled: false,
            accel: provider.accel,
            boot_timeout: provider.boot_timeout,
            fill_strategy: shape.fill,
        }
    }

    /// A config for an image built by [`firepit_image`] (its id names the image).
    ///
    /// ```no_run
    /// let image = firepit::image::Image::open("target/firepit-image".as_ref())?;
    /// let config = firepit::VmConfig::from_image(&image);
    /// assert_eq!(config.image_id.as_deref(), Some(image.id()));
    /// # Ok::<(), firepit::image::ImageError>(())
    /// ```
    pub fn from_image(image: &firepit_image::Image) -> Self {
        let mut config = Self::new(image.kernel(), image.initramfs());
        config.image_id = Some(image.id().to_owned());
        config
    }

    /// The shape these VMs are, named `name`, kept at `depth` VMs: what goes to the pool through
    /// [`PoolShape::with_image`](crate::PoolShape::with_image) (the kernel and initramfs go beside
    /// it; `image` is the kernel's directory, for the record). `max_age` counts whole seconds,
    /// rounded up.
    pub(crate) fn shape_spec(
        &self,
        name: &str,
        depth: usize,
        max_age: Option<Duration>,
        health_check: bool,
    ) -> ShapeSpec {
        let image = self.kernel.parent().map(Path::to_path_buf).unwrap_or_default();
        ShapeSpec {
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            depth: Depth { low: depth, high: depth },
            max_age_secs: max_age.map(|age| age.as_secs() + u64::from(age.subsec_nanos() > 0)),
            fill: self.fill_strategy,
            health_check,
            ..ShapeSpec::new(name, image)
        }
    }

    /// The image id: the configured one, a firepit manifest's next to the kernel, or a content hash.
    pub(crate) fn resolve_image_id(&self) -> Result<String, std::io::Error> {
        if let Some(id) = &self.image_id {
            return Ok(id.clone());
        }
        if let Some(dir) = self.kernel.parent()
            && let Ok(image) = firepit_image::Image::open(dir)
            && same_file(image.kernel(), &self.kernel)
            && same_file(image.initramfs(), &self.initramfs)
        {
            return Ok(image.id().to_owned());
        }
        content_hash(&[&self.kernel, &self.initramfs])
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// First 16 hex digits of the SHA-256 over the files' contents.
fn content_hash(files: &[&Path]) -> Result<String, std::io::Error> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for file in files {
        let bytes = std::fs::read(file)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(&hasher.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_id_is_a_content_hash_when_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), b"kernel").unwrap();
        std::fs::write(dir.path().join("i"), b"initrd").unwrap();
        let config = VmConfig::new(dir.path().join("k"), dir.path().join("i"));
        let id = config.resolve_image_id().unwrap();
        assert_eq!(id.len(), 16);
        std::fs::write(dir.path().join("i"), b"other").unwrap();
        assert_ne!(config.resolve_image_id().unwrap(), id, "the id must follow the content");
    }

    #[test]
    fn a_vm_config_is_a_shape_with_the_shape_defaults() {
        let config = VmConfig::new("/images/vmlinuz", "/images/initrd");
        let defaults = ShapeSpec::new("default", "/images");
        let spec = config.shape_spec("default", 2, Some(Duration::from_millis(1500)), true);
        assert_eq!(
            (spec.cpus, spec.memory_mb, spec.fill),
            (defaults.cpus, defaults.memory_mb, defaults.fill)
        );
        assert_eq!(spec.depth, Depth { low: 2, high: 2 });
        assert_eq!(spec.max_age_secs, Some(2), "rounded up to whole seconds");
        assert_eq!(spec, ShapeSpec { depth: spec.depth, max_age_secs: Some(2), ..defaults });
    }

    #[test]
    fn missing_kernel_is_an_error_naming_the_path() {
        let config = VmConfig::new("/nonexistent/vmlinuz", "/nonexistent/initrd");
        let err = config.resolve_image_id().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinuz"), "{err}");
    }
}
