//! The image on disk: `vmlinuz`, `initramfs.cpio.gz` and `manifest.json`, which says what is inside
//! and which inputs produced it (so an unchanged rebuild is skipped).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apt::PackageRef;
use crate::error::ImageError;

/// File name of the kernel in an image directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// File name of the initramfs in an image directory.
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";
/// File name of the manifest in an image directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A package that went into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageInfo {
    /// Name and version.
    #[serde(flatten)]
    pub package: PackageRef,
    /// File name of the .deb used (apt checked its hash against the signed package lists).
    pub deb_file: String,
}

/// What `manifest.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Image id: the first 16 hex digits of sha256("<kernel_sha256>\n<initramfs_sha256>"), a content
    /// hash of the kernel and initramfs. Names the image in a `ShapeKey`.
    pub id: String,
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
    /// Kernel command line this image is meant to boot with (the provider may add to it).
    pub kernel_cmdline: String,
    /// sha256 of `vmlinuz`.
    pub kernel_sha256: String,
    /// sha256 of `initramfs.cpio.gz`.
    pub initramfs_sha256: String,
    /// Size of `vmlinuz` in bytes.
    pub kernel_bytes: u64,
    /// Size of `initramfs.cpio.gz` in bytes.
    pub initramfs_bytes: u64,
    /// sha256 of the agent binary inside.
    pub agent_sha256: String,
    /// Size, mtime and inode of the agent file hashed: while they are unchanged the hash is reused.
    pub agent_stamp: String,
    /// The packages used.
    pub packages: Vec<PackageInfo>,
    /// Kernel modules loaded by `/init`, in load order.
    pub modules: Vec<String>,
    /// Every path in the initramfs.
    pub files: Vec<String>,
    /// firepit-image version that built it.
    pub builder_version: String,
    /// Hash of every input (package versions, agent, init script, builder version): equal
    /// fingerprints mean the build can be skipped.
    pub input_fingerprint: String,
    /// Hash of the apt package lists when the package versions were resolved: while it is
    /// unchanged, a rebuild reuses `packages` instead of asking apt (which takes seconds).
    pub apt_lists_stamp: Option<String>,
}

/// A built image: its directory and manifest. Made by [`ImageBuilder::build`](crate::ImageBuilder::build)
/// or read back with [`Image::open`]; hand its two files to the VM provider.
///
/// ```no_run
/// let image = firepit_image::Image::open("target/firepit-image".as_ref())?;
/// let manifest = image.manifest();
/// println!("image {} (kernel {}, modules {:?})", image.id(), manifest.kernel_version, manifest.modules);
/// println!("boot with: -kernel {} -initrd {}", image.kernel().display(), image.initramfs().display());
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Image {
    dir: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    manifest: Manifest,
}

impl Image {
    /// Opens the image in `dir` (reads `manifest.json`, checks the kernel and initramfs are there).
    ///
    /// ```no_run
    /// let image = firepit_image::Image::open("target/firepit-image".as_ref())?;
    /// println!("{} kernel {}", image.id(), image.kernel_version());
    /// # Ok::<(), firepit_image::ImageError>(())
    /// ```
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ImageError::NotAnImage { path: path.clone(), source })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|source| ImageError::BadManifest { path: path.clone(), source })?;
        let image = Self {
            dir: dir.to_path_buf(),
            kernel: dir.join(KERNEL_FILE),
            initramfs: dir.join(INITRAMFS_FILE),
            manifest,
        };
        for (file, bytes) in
            [(&image.kernel, image.manifest.kernel_bytes), (&image.initramfs, image.manifest.initramfs_bytes)]
        {
            let len = std::fs::metadata(file)
                .map_err(|source| ImageError::ImageFileUnreadable { path: file.clone(), source })?
                .len();
            if len != bytes {
                return Err(ImageError::ImageFileSize { path: file.clone(), actual: len, expected: bytes });
            }
        }
        Ok(image)
    }

    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the kernel (`vmlinuz`), for QEMU's `-kernel`.
    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// Path of the initramfs (`initramfs.cpio.gz`), for QEMU's `-initrd`.
    pub fn initramfs(&self) -> &Path {
        &self.initramfs
    }

    /// The image id (content hash).
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// The kernel release.
    pub fn kernel_version(&self) -> &str {
        &self.manifest.kernel_version
    }

    /// Everything the manifest records.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(kernel_bytes: u64) -> Manifest {
        Manifest {
            id: "0123456789abcdef".into(),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            kernel_cmdline: "console=ttyS0".into(),
            kernel_sha256: String::new(),
            initramfs_sha256: String::new(),
            kernel_bytes,
            initramfs_bytes: 2,
            agent_sha256: String::new(),
            agent_stamp: String::new(),
            packages: Vec::new(),
            modules: Vec::new(),
            files: Vec::new(),
            builder_version: "0".into(),
            input_fingerprint: String::new(),
            apt_lists_stamp: None,
        }
    }

    #[test]
    fn open_says_which_part_of_an_image_is_missing_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Image::open(dir.path()), Err(ImageError::NotAnImage { .. })));
        std::fs::write(dir.path().join(MANIFEST_FILE), b"{\"id\": 1}").unwrap();
        assert!(matches!(Image::open(dir.path()), Err(ImageError::BadManifest { .. })));
        let json = serde_json::to_vec(&manifest(3)).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), json).unwrap();
        let missing = Image::open(dir.path()).unwrap_err();
        assert!(
            matches!(&missing, ImageError::ImageFileUnreadable { path, .. } if path.ends_with(KERNEL_FILE))
        );
        std::fs::write(dir.path().join(KERNEL_FILE), b"k").unwrap();
        std::fs::write(dir.path().join(INITRAMFS_FILE), b"ir").unwrap();
        let short = Image::open(dir.path()).unwrap_err();
        assert!(matches!(short, ImageError::ImageFileSize { actual: 1, expected: 3, .. }), "{short}");
        let json = serde_json::to_vec(&manifest(1)).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), json).unwrap();
        assert_eq!(Image::open(dir.path()).unwrap().id(), "0123456789abcdef");
    }
}
