//! What a root disk is ([`RootDisk`], [`DiskFormat`]) and what can go wrong preparing one
//! ([`DiskError`]): plain types below the configuration and the errors that name them; the overlay
//! work itself is in `disk`.

use std::path::PathBuf;

/// The format of a root disk's base file (what `-F` says to `qemu-img create`).
///
/// ```
/// assert_eq!(firepit_qemu::DiskFormat::Raw.as_str(), "raw");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A raw file system image (e.g. ext4 made by `mkfs.ext4 -d`).
    Raw,
    /// A qcow2 image.
    Qcow2,
}

impl DiskFormat {
    /// `raw` or `qcow2`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A root disk: its base file (never written) and that file's format.
///
/// ```
/// use firepit_qemu::{DiskFormat, RootDisk};
/// let disk = RootDisk::new("/images/python3/disk.img", DiskFormat::Raw);
/// assert_eq!(disk.format, DiskFormat::Raw);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDisk {
    /// The base image. Give an absolute path: overlays name it as their backing file.
    pub base: PathBuf,
    /// Its format.
    pub format: DiskFormat,
}

impl RootDisk {
    /// A root disk with base `base` in `format`.
    pub fn new(base: impl Into<PathBuf>, format: DiskFormat) -> Self {
        Self { base: base.into(), format }
    }
}

/// Why a VM's root disk could not be prepared.
///
/// ```
/// let err = firepit_qemu::DiskError::QemuImgNotFound { binary: "qemu-img".into() };
/// assert!(err.to_string().contains("apt-get install qemu-utils"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// `qemu-img` is not installed.
    #[error("{binary} not found: run `apt-get install qemu-utils` or set ProviderConfig::qemu_img_binary")]
    QemuImgNotFound {
        /// The binary asked for.
        binary: PathBuf,
    },
    /// The base image cannot be used.
    #[error("root disk {base}: {source}")]
    Base {
        /// The base image.
        base: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// Running `qemu-img` failed.
    #[error("running {binary}: {source}")]
    Run {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A shape's `disk_mb` was given for a root disk without an ext2/3/4 file system.
    #[error(
        "disk_mb needs a root disk with an ext4 file system, and {base} has none: leave disk_mb out \
         for this image, or use an ext4 image (`firepit image build`/`import` make them)"
    )]
    NotExt4 {
        /// The base image.
        base: PathBuf,
    },
    /// An e2fsprogs tool (needed to size a root disk for `disk_mb`) is not installed.
    #[error("{binary} not found: run `apt-get install e2fsprogs` (sizing a root disk for disk_mb needs it)")]
    E2fsprogsNotFound {
        /// The tool.
        binary: PathBuf,
    },
    /// Making the copy of a root disk sized for `disk_mb` failed.
    #[error("sizing {base} to {disk_mb} MiB free: `{step}` failed ({status}): {stderr}")]
    Sizing {
        /// The base image.
        base: PathBuf,
        /// The free space asked for, MiB.
        disk_mb: u64,
        /// The tool that failed.
        step: String,
        /// How it ended.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// `qemu-img create` of an overlay failed or took too long.
    #[error("creating the overlay {overlay} over {base} failed ({status}): {stderr}")]
    Overlay {
        /// The overlay that was to be created.
        overlay: PathBuf,
        /// Its backing file.
        base: PathBuf,
        /// How `qemu-img` ended.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
}
