//! What the VMs of a facade pool are: a shape, and the files and settings only the library names.
//!
//! A [`VmConfig`] *is* a [`ShapeSpec`] — the same description, defaults and validation as a
//! `[[shape]]` table of the daemon or the body of `PUT /v1/shapes/{name}` — with what only a
//! library user says beside it: the kernel the image file boots with (and the initramfs a root
//! disk boots with), whether the console is the caller's, and the provider-wide accelerator and
//! boot deadline. [`Firepit::pool`](crate::Firepit::pool)'s builder sets the shape's fields;
//! [`PoolShape::from_vm_config`](crate::PoolShape::from_vm_config) checks the shape
//! ([`ShapeSpec::validate`]) and wires it like any other. [`VmConfig::resolve`] tells the image
//! file apart and says what the provider boots; [`PoolShape::open`](crate::PoolShape::open) uses
//! it for a shape whose image is a file or a stored disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_image::ImageKind;
use firepit_qemu::{Accel, DiskFormat, ExecDefaults, ImagePaths, RootDisk};
use firepit_shape::ShapeSpec;

use crate::error::Error;

/// The name of the one shape of a pool built by [`Firepit::pool`](crate::Firepit::pool) (the
/// default of [`VmConfig::shape`]'s name): the `shape` label of its metrics, and the key of its
/// entry in [`Status`](crate::Status).
pub const POOL_SHAPE: &str = "default";

/// The VMs of one pool, as the seed API names them: a [`ShapeSpec`] and the kernel it boots.
///
/// Build it from a kernel and an image file ([`VmConfig::new`]: an initramfs, or a root disk —
/// raw ext4 or qcow2 — told apart by content when the pool is built), from a built firepit image
/// ([`VmConfig::from_image`]) or from a disk in the image store ([`VmConfig::from_disk`]); then
/// hand it to [`Firepit::pool`](crate::Firepit::pool), whose builder sets the common fields.
/// Every other field of the shape is set on [`shape`](Self::shape) directly; the pool's build
/// checks it all as the daemon checks its shapes, with the same errors.
///
/// A root disk needs nothing of firepit in it: it boots with firepit's initramfs (from
/// [`initramfs`](Self::initramfs), by default the default image's), which starts the agent inside
/// the disk's root and hands over to the disk's init; every VM writes to its own copy-on-write
/// overlay, removed with the VM, and the disk file itself is never written.
///
/// ```
/// use firepit::{VmConfig, shape::NetworkSpec};
/// let mut config = VmConfig::new("./kernel", "./disk.img");
/// assert_eq!((config.shape.name.as_str(), config.shape.cpus, config.shape.memory_mb), ("default", 1, 256));
/// assert_eq!(config.shape.image, std::path::Path::new("./disk.img"));
/// assert!(!config.console_enabled);
/// config.shape.network = NetworkSpec::nat();     // any field of the shape
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    /// The shape: its name ([`POOL_SHAPE`] unless set), its `image` — here the initramfs
    /// (`-initrd`) or the root disk image (raw ext4 or qcow2) the VMs boot, told apart by content
    /// ([`ImageKind::detect`]; anything else fails the pool's build, naming the file and what was
    /// found, before a VM starts) — and everything else a shape says: vCPUs, memory, depth (the
    /// `n` of [`build`](crate::VmPoolBuilder::build)), fill, age, health check, network, pausing
    /// and warm-up, with [`ShapeSpec::new`]'s defaults.
    pub shape: ShapeSpec,
    /// The guest kernel (`-kernel`).
    pub kernel: PathBuf,
    /// firepit's initramfs, to boot a root disk with (it must match the kernel's modules). `None`:
    /// the default image's ([`firepit_image::default_dir`]). Unused when the shape's image is an
    /// initramfs.
    pub initramfs: Option<PathBuf>,
    /// Environment, working directory and user for `exec` (an imported OCI image's `Env`,
    /// `WorkingDir` and `User`); requests override them.
    pub exec_defaults: ExecDefaults,
    /// Names the image (in snapshot template manifests and logs). `None`: taken from a
    /// `manifest.json` next to the kernel when there is one, else a content hash of kernel and
    /// initramfs (for a disk: of those and the disk file's path, size, modification time and
    /// inode).
    pub image_id: Option<String>,
    /// Whether the VMs' serial console is the caller's. On: the guest keeps an interactive shell
    /// on it and [`QemuVm::console`](firepit_qemu::QemuVm::console) hands it out. Off (the
    /// default): the guest runs no shell there — one process less in every VM, nothing listening
    /// on a line nobody reads — and `console()` fails with
    /// [`ConfigError::ConsoleDisabled`](firepit_qemu::ConfigError::ConsoleDisabled), which says to
    /// turn it on. The console is attached either way (boot output and the readiness line come
    /// through it); a root disk with its own init decides itself what runs on its console.
    pub console_enabled: bool,
    /// Accelerator (`auto` probes KVM once and falls back to TCG). `FIREPIT_ACCEL` overrides it.
    pub accel: Accel,
    /// Deadline from QEMU start to a ready guest.
    pub boot_timeout: Duration,
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
    /// A config for `kernel` and `image` (an initramfs, or a root disk): the shape
    /// [`ShapeSpec::new`]`(`[`POOL_SHAPE`]`, image)` (1 vCPU, 256 MiB, snapshot fill, …), no
    /// console, and the provider's accelerator and boot deadline.
    pub fn new(kernel: impl Into<PathBuf>, image: impl Into<PathBuf>) -> Self {
        let provider = firepit_qemu::ProviderConfig::default();
        Self {
            shape: ShapeSpec::new(POOL_SHAPE, image),
            kernel: kernel.into(),
            initramfs: None,
            exec_defaults: ExecDefaults::default(),
            image_id: None,
            console_enabled: false,
            accel: provider.accel,
            boot_timeout: provider.boot_timeout,
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
    /// assert_eq!(config.shape.image, disk.disk());
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
        let image = &self.shape.image;
        let kind = ImageKind::detect(image)?;
        if !kind.is_disk() {
            let image_id = self.initramfs_id(image)?;
            let paths = ImagePaths::new(&self.kernel, image).with_exec_defaults(self.exec_defaults.clone());
            return Ok(ResolvedImage { image_id, paths });
        }
        let initramfs = match &self.initramfs {
            Some(path) => path.clone(),
            None => firepit_image::Image::open_default()?.initramfs().to_path_buf(),
        };
        // Overlays name the base by absolute path.
        let base = image.canonicalize().map_err(|e| io_error(image, e))?;
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
