//! What one VM of a facade pool looks like: image, size, console, accelerator.
//!
//! The library's way to describe a shape: like a [`ShapeSpec`] (which it becomes, with the same
//! defaults, on its way to the pool through [`PoolShape`](crate::PoolShape)), but naming a kernel
//! and an image file (an initramfs or a root disk) instead of an image directory, and with the
//! provider-wide accelerator and boot deadline beside it. [`VmConfig::resolve`] tells the image
//! file apart and says what the provider boots; [`PoolShape::open`](crate::PoolShape::open) uses
//! it for a shape whose image is a file or a stored disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_guest::ExecDefaults;
use firepit_image::ImageKind;
use firepit_qemu::{Accel, DiskFormat, FillStrategy, ImagePaths, RootDisk};
use firepit_shape::{Depth, ShapeSpec};

use crate::error::Error;

/// The guest and machine size of the VMs of one pool, as the seed API names it.
///
/// Build it from a kernel and an image file ([`VmConfig::new`]: an initramfs, or a root disk —
/// raw ext4 or qcow2 — told apart by content when the pool is built), from a built firepit image
/// ([`VmConfig::from_image`]) or from a disk in the image store ([`VmConfig::from_disk`]); then
/// hand it to [`Firepit::pool`](crate::Firepit::pool).
///
/// A root disk needs nothing of firepit in it: it boots with firepit's initramfs (from
/// [`initramfs`](Self::initramfs), by default the default image's), which starts the agent inside
/// the disk's root and hands over to the disk's init; every VM writes to its own copy-on-write
/// overlay, removed with the VM, and the disk file itself is never written.
///
/// ```
/// use firepit::VmConfig;
/// let config = VmConfig::new("./kernel", "./disk.img");
/// assert_eq!((config.cpus, config.memory_mb), (1, 256));
/// assert!(!config.console_enabled);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    /// The guest kernel (`-kernel`).
    pub kernel: PathBuf,
    /// An initramfs (`-initrd`), or a root disk image (raw ext4 or qcow2); told apart by content
    /// ([`ImageKind::detect`]). Anything else fails the pool's build, naming the file and what
    /// was found, before a VM starts.
    pub image: PathBuf,
    /// firepit's initramfs, to boot a root disk with (it must match the kernel's modules). `None`:
    /// the default image's ([`firepit_image::default_dir`]). Unused when `image` is an initramfs.
    pub initramfs: Option<PathBuf>,
    /// Environment, working directory and user for `exec` (an imported OCI image's `Env`,
    /// `WorkingDir` and `User`); requests override them.
    pub exec_defaults: ExecDefaults,
    /// Names the image (in snapshot template manifests and logs). `None`: taken from a
    /// `manifest.json` next to the kernel when there is one, else a content hash of kernel and
    /// initramfs (for a disk: of those and the disk file's path, size, modification time and
    /// inode).
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
    /// the fallback when the template cannot be built or restored). With a root disk the
    /// template's disk at save time is the base of every clone's overlay. Set
    /// [`FillStrategy::ColdBoot`] to boot every VM.
    pub fill_strategy: FillStrategy,
}

/// A [`VmConfig`] resolved for the provider: the id of its image and the files it boots.
/// [`VmConfig::resolve`] makes it; they become the shape's [`VmSpec`](firepit_qemu::VmSpec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Names the image (`VmSpec::image_id`).
    pub image_id: String,
    /// Kernel, initramfs, root disk and exec defaults (`VmSpec::image`).
    pub paths: ImagePaths,
}

impl VmConfig {
    /// A config for `kernel` and `image` (an initramfs, or a root disk), with the shape defaults
    /// of [`ShapeSpec::new`] (1 vCPU, 256 MiB, snapshot fill) and the provider's (accelerator,
    /// boot deadline).
    pub fn new(kernel: impl Into<PathBuf>, image: impl Into<PathBuf>) -> Self {
        let provider = firepit_qemu::ProviderConfig::default();
        let shape = ShapeSpec::new(String::new(), PathBuf::new());
        Self {
            kernel: kernel.into(),
            image: image.into(),
            initramfs: None,
            exec_defaults: ExecDefaults::default(),
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

    /// A config for a disk in the image store (built from packages or imported from an OCI
    /// image), booted with `firepit`'s kernel and initramfs; the disk's exec defaults apply. Its
    /// image id names both the disk and the firepit image it boots with.
    ///
    /// ```no_run
    /// use firepit::image::{Image, ImageStore, PackageDiskBuilder};
    /// let disk = PackageDiskBuilder::new(&ImageStore::open_default(), ["python3"]).build(&mut |_| {})?;
    /// let config = firepit::VmConfig::from_disk(&Image::open_default()?, &disk);
    /// assert_eq!(config.image, disk.disk());
    /// # Ok::<(), firepit::image::ImageError>(())
    /// ```
    pub fn from_disk(firepit: &firepit_image::Image, disk: &firepit_image::DiskImage) -> Self {
        let mut config = Self::new(firepit.kernel(), disk.disk());
        config.initramfs = Some(firepit.initramfs().to_path_buf());
        let exec = &disk.record().exec;
        config.exec_defaults =
            ExecDefaults { env: exec.env.clone(), cwd: exec.working_dir.clone(), user: exec.user.clone() };
        config.image_id = Some(format!("{}+{}", disk.id(), firepit.id()));
        config
    }

    /// The shape these VMs are, named `name`, kept at `depth` VMs: what goes to the pool through
    /// [`PoolShape::with_image`](crate::PoolShape::with_image) (the files [`resolve`](Self::resolve)
    /// found go beside it; `image` is the kernel's directory, for the record). `max_age` counts
    /// whole seconds, rounded up.
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

    /// Tells the image apart by content and says what the provider boots: the image id and the
    /// files. Blocking (reads and hashes files): call it from `spawn_blocking` in async code.
    /// Fails with [`firepit_image::ImageError::UnusableImage`] (through [`Error::ImageBuild`])
    /// for a file that is neither an initramfs nor a disk, and with `NoDefaultImage` when a disk
    /// needs the default image's initramfs and there is none.
    ///
    /// ```no_run
    /// let resolved = firepit::VmConfig::new("./kernel", "./disk.img").resolve()?;
    /// assert!(resolved.paths.disk.is_some());
    /// # Ok::<(), firepit::Error>(())
    /// ```
    pub fn resolve(&self) -> Result<ResolvedImage, Error> {
        let kind = ImageKind::detect(&self.image)?;
        if !kind.is_disk() {
            let image_id = self.initramfs_id(&self.image)?;
            let paths =
                ImagePaths::new(&self.kernel, &self.image).with_exec_defaults(self.exec_defaults.clone());
            return Ok(ResolvedImage { image_id, paths });
        }
        let initramfs = match &self.initramfs {
            Some(path) => path.clone(),
            None => firepit_image::Image::open_default()?.initramfs().to_path_buf(),
        };
        // Overlays name the base by absolute path.
        let base = self.image.canonicalize().map_err(|e| io_error(&self.image, e))?;
        let format = if kind == ImageKind::Qcow2 { DiskFormat::Qcow2 } else { DiskFormat::Raw };
        let image_id = match &self.image_id {
            Some(id) => id.clone(),
            None => disk_id(&self.initramfs_id(&initramfs)?, &base)?,
        };
        let paths = ImagePaths::new(&self.kernel, initramfs)
            .with_disk(RootDisk::new(base, format))
            .with_exec_defaults(self.exec_defaults.clone());
        Ok(ResolvedImage { image_id, paths })
    }

    /// The id for kernel + `initramfs`: configured, from a firepit manifest next to the kernel, or
    /// a content hash.
    fn initramfs_id(&self, initramfs: &Path) -> Result<String, Error> {
        if let Some(id) = &self.image_id {
            return Ok(id.clone());
        }
        if let Some(dir) = self.kernel.parent()
            && let Ok(image) = firepit_image::Image::open(dir)
            && same_file(image.kernel(), &self.kernel)
            && same_file(image.initramfs(), initramfs)
        {
            return Ok(image.id().to_owned());
        }
        content_hash(&[&self.kernel, initramfs])
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Image(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// First 16 hex digits of the SHA-256 over the files' contents.
fn content_hash(files: &[&Path]) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| io_error(file, e))?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(&hasher.finalize()[..8]))
}

/// An id for the initramfs and a disk file (hashing a disk of gigabytes would take seconds: its
/// path, size, modification time and inode stand for its content).
fn disk_id(initramfs_id: &str, base: &Path) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(base).map_err(|e| io_error(base, e))?;
    let stamp = format!(
        "{initramfs_id}\n{}\n{} {}.{} {}",
        base.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    Ok(hex::encode(&Sha256::digest(stamp.as_bytes())[..8]))
}

#[cfg(test)]
mod tests;
