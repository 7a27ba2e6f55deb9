//! [`OciImporter`]: a root disk from an OCI image — an image layout directory, an `oci-archive`
//! tarball, or a `docker save` tarball.
//!
//! # Why
//! Every sandbox peer builds guests from container images: that is where users' software already
//! is. An image is a stack of tar layers plus a config; its root file system is the layers applied
//! in order, with *whiteouts* removing what lower layers put there. firepit applies them into a
//! directory and writes it as an ext4 disk (`mkfs.ext4 -d`), which boots with firepit's kernel,
//! initramfs and agent like any root disk.
//!
//! # How
//! - `layout`: finds the image manifest (following an image index to `linux/amd64`), its config
//!   and its layers, checking every blob against its SHA-256 digest. An archive is unpacked into a
//!   staging directory first; a `docker save` archive's own `manifest.json` is understood too.
//! - `apply`: applies each layer (gzip, zstd or plain tar) in order: first its whiteouts
//!   (`.wh.NAME` deletes `NAME`, `.wh..wh..opq` empties its directory of what lower layers put
//!   there), then its entries with owners, modes, times and extended attributes kept. Every path
//!   is resolved inside the root (symlinks included), so no layer can write outside it.
//! - `config`: the image config's `Env`, `WorkingDir` and `User` become the image's
//!   [`ExecConfig`](crate::ExecConfig) (the user resolved to `uid:gid` with the image's own
//!   `/etc/passwd` and `/etc/group`); firepit applies them to every exec on the host side.
//!
//! Registries: no registry is reachable here, so there is no pull. A pull would fetch the
//! manifest, config and layer blobs into an OCI layout directory (the same content-addressed
//! files, checked the same way) and hand that directory to [`OciImporter::import`].
//!
//! Needs root, like the package builder: the tree's files keep their owners from the layers.

mod apply;
mod config;
mod layout;

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::builder::Progress;
use crate::error::ImageError;
use crate::kind::ImageKind;
pub use crate::oci_error::OciError;
use crate::store::{DISK_FILE, DiskImage, DiskRecord, ImageSource, ImageStore, STORE_FORMAT};

/// Imports OCI images into an [`ImageStore`].
///
/// ```no_run
/// use firepit_image::{ImageStore, OciImporter};
/// let image = OciImporter::new(&ImageStore::open_default())
///     .import("app-oci/".as_ref(), &mut |p| eprintln!("[{}/{}] {}", p.step, p.total, p.message))?;
/// println!("{}: runs as {:?} in {:?}", image.id(), image.record().exec.user, image.record().exec.working_dir);
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OciImporter {
    store: ImageStore,
    reference: Option<String>,
    free_space_mb: u64,
}

impl OciImporter {
    /// An importer into `store`.
    pub fn new(store: &ImageStore) -> Self {
        Self { store: store.clone(), reference: None, free_space_mb: 256 }
    }

    /// Which image of a layout holding several: its `org.opencontainers.image.ref.name` (or a
    /// `docker save` repo tag).
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Free space left in the file system for the guest's writes (default 256 MiB, sparse).
    pub fn free_space_mb(mut self, mb: u64) -> Self {
        self.free_space_mb = mb;
        self
    }

    /// Imports the image at `path` (layout directory or archive), or returns the stored one when
    /// this image (same manifest digest) was imported before.
    pub fn import(&self, path: &Path, progress: &mut dyn FnMut(Progress)) -> Result<DiskImage, ImageError> {
        let mut say = |step: u32, total: u32, message: String| progress(Progress { step, total, message });
        if !crate::mkdisk::is_root() {
            return Err(ImageError::ToolFailed {
                command: "firepit image import".into(),
                status: "not started".into(),
                stderr: "importing an image needs root (its files keep their owners)".into(),
            });
        }
        let staging = self.store.stage()?;
        let image = layout::open(path, self.reference.as_deref(), staging.path())?;
        let mut hasher = Sha256::new();
        hasher.update(format!(
            "firepit oci import format {STORE_FORMAT}\n{}\n{}\n",
            image.digest, self.free_space_mb
        ));
        let fingerprint = hex::encode(hasher.finalize());
        let id = fingerprint[..16].to_owned();
        let _lock = self.store.lock(&id)?;
        let total = image.layers.len() as u32 + 3;
        say(
            1,
            total,
            format!("read {}: {} layers, manifest {}", path.display(), image.layers.len(), image.digest),
        );
        if let Ok(stored) = self.store.get(&id) {
            say(total, total, format!("cached image {id}"));
            return Ok(stored);
        }
        let exec = config::exec_config(&image.config)?;
        let tree = staging.path().join("rootfs");
        std::fs::create_dir(&tree).map_err(ImageError::io("creating", &tree))?;
        for (n, layer) in image.layers.iter().enumerate() {
            say(
                n as u32 + 2,
                total,
                format!("applying layer {}/{} {}", n + 1, image.layers.len(), layer.digest),
            );
            apply::apply_layer(&tree, &layer.path, &layer.digest)?;
        }
        let exec = config::resolve_user(exec, &tree)?;
        say(total - 1, total, "writing the ext4 disk".into());
        let disk = staging.path().join(DISK_FILE);
        let disk_bytes = crate::mkdisk::make_ext4(&tree, &disk, self.free_space_mb, "firepit-oci")?;
        std::fs::remove_dir_all(&tree).map_err(ImageError::io("removing", &tree))?;
        layout::remove_unpacked(staging.path())?;
        say(total, total, format!("saving image {id}"));
        let record = DiskRecord {
            format: STORE_FORMAT,
            id,
            kind: ImageKind::RawExt4,
            disk_file: DISK_FILE.into(),
            disk_bytes,
            source: ImageSource::Oci {
                path: path.to_path_buf(),
                digest: image.digest,
                reference: image.reference,
            },
            packages: Vec::new(),
            exec,
            created_unix: crate::store::now_unix(),
            input_fingerprint: fingerprint,
        };
        self.store.commit(staging, &record)
    }
}
