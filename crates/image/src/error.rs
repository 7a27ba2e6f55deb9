//! One error type for building and opening images; every variant says what failed and what to do.

use std::path::{Path, PathBuf};

/// Why an image could not be built or opened.
///
/// ```
/// use firepit_image::{Image, ImageError};
/// match Image::open("/nonexistent".as_ref()) {
///     Err(ImageError::NotAnImage { path, .. }) => assert!(path.ends_with("manifest.json")),
///     other => panic!("expected NotAnImage, got {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// There is no image at the default location.
    #[error(
        "no guest image in {} (the default location; FIREPIT_IMAGE_DIR overrides it): \
         build it with `firepit image build`",
        dir.display()
    )]
    NoDefaultImage {
        /// The default image directory.
        dir: std::path::PathBuf,
        /// Why opening it failed.
        #[source]
        source: Box<ImageError>,
    },
    /// `apt-get` / `apt-cache` is not installed: the builder needs Debian's package tools.
    #[error(
        "`{tool}` not found: firepit builds its guest image from Debian packages; run it on Debian \
         (or a derivative) with apt installed"
    )]
    AptMissing {
        /// The missing program.
        tool: &'static str,
    },
    /// apt could not resolve or download a package.
    #[error("package {package} is not available: {detail}; run `apt-get update` as root and retry")]
    PackageUnavailable {
        /// The package asked for.
        package: String,
        /// What apt said.
        detail: String,
    },
    /// apt failed and we are not root, which is the likely reason.
    #[error("`{command}` failed and firepit is not running as root: run the build as root ({detail})")]
    NotRoot {
        /// The apt command line.
        command: String,
        /// What apt said.
        detail: String,
    },
    /// The agent binary does not exist.
    #[error(
        "agent binary {0} not found: build it with `scripts/build-image`, or with \
         `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static' cargo build \
         --profile agent -p firepit-agent --target x86_64-unknown-linux-gnu`"
    )]
    AgentMissing(PathBuf),
    /// The agent binary is not a static x86-64 ELF executable (it would not run in the guest).
    #[error(
        "agent binary {path} is unusable in the guest: {reason}; build it statically (see scripts/build-image)"
    )]
    AgentNotStatic {
        /// The agent given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A package's contents are not what the builder expects.
    #[error("package {package}: {detail}")]
    BadPackage {
        /// The .deb file.
        package: PathBuf,
        /// What is missing or malformed.
        detail: String,
    },
    /// A package could not be unpacked (a damaged or partial download).
    #[error(
        "package {package}: reading its {part} failed: {source}; delete the file (it is downloaded again) and retry"
    )]
    PackageUnreadable {
        /// The .deb file.
        package: PathBuf,
        /// Which part of it (`ar archive`, `data tarball`, a file's path, ...).
        part: String,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel package lacks modules the image needs.
    #[error(
        "package {package}: {missing}; pick a kernel that has them, or drop them from ImageBuilder::modules"
    )]
    ModulesMissing {
        /// The kernel .deb file.
        package: PathBuf,
        /// The modules not found.
        #[source]
        missing: crate::modules::MissingModules,
    },
    /// The disk (or quota) is full.
    #[error("no space left while writing {0}: free some disk space (the build needs about 150 MB) and retry")]
    DiskFull(PathBuf),
    /// Any other I/O error, with the path involved.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `manifest.json` is missing or unreadable: the directory holds no image (build one first).
    #[error("{path} is not a firepit image: {source}; build one with `firepit image build --out DIR`")]
    NotAnImage {
        /// The manifest path.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// `manifest.json` is not a manifest this firepit reads (damaged, or from another version).
    #[error(
        "{path} is not a firepit image manifest: {source}; rebuild the image with `firepit image build --out DIR`"
    )]
    BadManifest {
        /// The manifest path.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A file the manifest lists (kernel, initramfs) is missing or unreadable.
    #[error("image file {path}: {source}; rebuild the image with `firepit image build --out DIR`")]
    ImageFileUnreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file the manifest lists has another size than the manifest says (damaged or replaced).
    #[error(
        "image file {path} has {actual} bytes, the manifest says {expected}; rebuild the image with \
         `firepit image build --out DIR`"
    )]
    ImageFileSize {
        /// The file.
        path: PathBuf,
        /// Its size on disk.
        actual: u64,
        /// The size the manifest records.
        expected: u64,
    },
    /// A file given as a guest image is neither an initramfs nor a root disk firepit can boot.
    #[error(
        "{path} is not a usable guest image: found {found}; give an initramfs (newc cpio, optionally \
         gzip/zstd/xz), a raw ext4 disk image or a qcow2 disk image"
    )]
    UnusableImage {
        /// The file given.
        path: PathBuf,
        /// What was found there instead.
        found: String,
    },
    /// A program the disk builders run is not installed.
    #[error("`{tool}` not found: install it with `apt-get install {package}` (scripts/setup does)")]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A program the disk builders run failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line (program and the arguments that matter).
        command: String,
        /// How it exited.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A package name that Debian would not accept (and that must not reach a command line).
    #[error(
        "{name:?} is not a Debian package name: use lowercase letters, digits and `+-.` (optionally \
         `=VERSION`), e.g. `python3` or `git`"
    )]
    InvalidPackageName {
        /// The name given.
        name: String,
    },
    /// An image name that is not lower-case letters, digits, `.`, `_` and `-` (starting with a
    /// letter), or that looks like an image id.
    #[error("image name {name:?}: use lower-case letters, digits, `.`, `_` and `-`, starting with a letter")]
    InvalidImageName {
        /// The name given.
        name: String,
    },
    /// No image with this id is in the store.
    #[error("no image {id} in {}: list the images with `firepit image ls`", store.display())]
    NotInStore {
        /// The id asked for.
        id: String,
        /// The store directory.
        store: PathBuf,
    },
    /// A stored image's `image.json` is unreadable.
    #[error("{path} is not a firepit disk image record: {detail}; remove its directory and build it again")]
    BadDiskRecord {
        /// The record's path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Importing an OCI image failed.
    #[error(transparent)]
    Oci(#[from] crate::oci_error::OciError),
}

impl ImageError {
    /// Wraps an I/O error with the path it concerns; ENOSPC / EDQUOT become [`ImageError::DiskFull`].
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| {
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                Self::DiskFull(path)
            } else {
                Self::Io { action, path, source }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_left_becomes_disk_full_with_the_path() {
        let error = ImageError::io("writing", Path::new("/out/vmlinuz"))(std::io::Error::from_raw_os_error(
            libc::ENOSPC,
        ));
        assert!(matches!(&error, ImageError::DiskFull(p) if p == Path::new("/out/vmlinuz")));
        assert!(error.to_string().contains("free some disk space"), "{error}");
    }

    #[test]
    fn other_io_errors_name_the_action_and_path() {
        let error =
            ImageError::io("reading", Path::new("/x"))(std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(error.to_string().starts_with("reading /x: "), "{error}");
    }
}
