//! The image store: root disks built from packages or imported from OCI images, one directory per
//! image, next to the default image.
//!
//! # Layout
//! `<store>/<id>/disk.img` (a raw ext4 image) and `<store>/<id>/image.json` ([`DiskRecord`]: what
//! the image is, where it came from, the defaults its commands run with). The id is a hash of the
//! inputs (packages, suite, apt sources; or the OCI manifest digest), so asking for the same image
//! twice finds the first. A build stages in `<store>/.tmp-<pid>-<n>/` and renames the directory
//! into place with its record written: a reader never sees half an image, and a build that dies
//! leaves only a `.tmp-*` directory, swept by the next build. Builds of one id are serialised by a
//! `flock` on `<store>/.lock-<id>`.
//!
//! ```no_run
//! let store = firepit_image::ImageStore::open_default();
//! for image in store.list()? {
//!     println!("{} {} {}", image.id(), image.record().kind.as_str(), image.disk().display());
//! }
//! # Ok::<(), firepit_image::ImageError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::apt::PackageRef;
use crate::error::ImageError;
use crate::kind::ImageKind;

/// File name of a stored image's record.
pub const DISK_RECORD_FILE: &str = "image.json";
/// File name of a stored image's disk.
pub const DISK_FILE: &str = "disk.img";
/// Bump when the record or the disk layout changes.
pub(crate) const STORE_FORMAT: u32 = 1;

static NEXT_STAGING: AtomicU64 = AtomicU64::new(1);

/// Where a stored image came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ImageSource {
    /// Debian packages installed with `mmdebstrap` (see [`PackageDiskBuilder`](crate::PackageDiskBuilder)).
    Packages {
        /// The packages asked for (their dependencies came along).
        packages: Vec<String>,
        /// The Debian suite (`bookworm`).
        suite: String,
    },
    /// An OCI image layout or archive (see [`OciImporter`](crate::OciImporter)).
    Oci {
        /// The path imported.
        path: PathBuf,
        /// The image manifest's digest (`sha256:...`).
        digest: String,
        /// The reference it was tagged with, if the layout named one.
        reference: Option<String>,
    },
}

impl std::fmt::Display for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::Packages { packages, suite } => {
                write!(f, "packages {} ({suite})", packages.join(","))
            }
            ImageSource::Oci { path, digest, reference } => {
                let short = digest.get(..19).unwrap_or(digest);
                match reference {
                    Some(reference) => write!(f, "oci {} {reference} ({short})", path.display()),
                    None => write!(f, "oci {} ({short})", path.display()),
                }
            }
        }
    }
}

/// What commands in the image run with unless a request says otherwise: an OCI image config's
/// `Env`, `WorkingDir` and `User` (the user resolved to `uid:gid` against the image's own
/// `/etc/passwd` and `/etc/group` when it was imported).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// `NAME=value` pairs, in order.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// `uid:gid`.
    pub user: Option<String>,
    /// The image's `Entrypoint` and `Cmd`, recorded for reference (firepit runs what exec names).
    pub command: Vec<String>,
}

/// `image.json`: what a stored image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskRecord {
    /// Record format (this firepit writes 1).
    pub format: u32,
    /// The image id (16 hex digits of the input hash); also its directory's name.
    pub id: String,
    /// What the disk file is (firepit writes raw ext4).
    pub kind: ImageKind,
    /// The disk file's name in the image directory.
    pub disk_file: String,
    /// The disk's size in bytes (the guest sees this much; the file is sparse).
    pub disk_bytes: u64,
    /// Where it came from.
    pub source: ImageSource,
    /// For a package image: the packages asked for, at the versions installed.
    pub packages: Vec<PackageRef>,
    /// Defaults for exec.
    pub exec: ExecConfig,
    /// Seconds since the Unix epoch when it was built.
    pub created_unix: u64,
    /// SHA-256 of every input; the id is its first 16 hex digits.
    pub input_fingerprint: String,
}

/// A root disk image in the store.
#[derive(Debug, Clone)]
pub struct DiskImage {
    dir: PathBuf,
    record: DiskRecord,
}

impl DiskImage {
    /// Opens the stored image in `dir` (reads `image.json`, checks the disk file's size).
    ///
    /// ```no_run
    /// let image = firepit_image::DiskImage::open("/var/lib/firepit/images/0123456789abcdef".as_ref())?;
    /// println!("{}", image.record().source);
    /// # Ok::<(), firepit_image::ImageError>(())
    /// ```
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(DISK_RECORD_FILE);
        let bad = |detail: String| ImageError::BadDiskRecord { path: path.clone(), detail };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let record: DiskRecord = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if record.format != STORE_FORMAT {
            return Err(bad(format!("record format {} (this firepit reads {STORE_FORMAT})", record.format)));
        }
        let disk = dir.join(&record.disk_file);
        let len = std::fs::metadata(&disk).map_err(|e| bad(format!("{}: {e}", disk.display())))?.len();
        if len != record.disk_bytes {
            return Err(bad(format!(
                "{} has {len} bytes, the record says {}",
                disk.display(),
                record.disk_bytes
            )));
        }
        Ok(Self { dir: dir.to_path_buf(), record })
    }

    /// The image id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk file (the read-only base of every VM's overlay).
    pub fn disk(&self) -> PathBuf {
        self.dir.join(&self.record.disk_file)
    }

    /// Everything `image.json` records.
    pub fn record(&self) -> &DiskRecord {
        &self.record
    }

    /// Bytes the image's files take on the host (the disk is sparse).
    pub fn usage_bytes(&self) -> u64 {
        allocated_bytes(&self.disk()) + allocated_bytes(&self.dir.join(DISK_RECORD_FILE))
    }
}

/// Bytes a file occupies on its file system (0 when it cannot be read).
pub(crate) fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |meta| meta.blocks() * 512)
}

/// A directory of stored images (see the module docs).
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// The store in `dir` (created when the first image is saved).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store at [`default_store_dir`](crate::default_store_dir).
    pub fn open_default() -> Self {
        Self::new(crate::location::default_store_dir())
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image `id`, or the image a name given with [`ImageStore::set_name`] points to.
    pub fn get(&self, id: &str) -> Result<DiskImage, ImageError> {
        let not_here = || ImageError::NotInStore { id: id.to_owned(), store: self.dir.clone() };
        if !is_id(id) {
            let named = is_name(id).then(|| std::fs::read_to_string(self.dir.join(NAMES_DIR).join(id)).ok());
            return match named.flatten().map(|text| text.trim().to_owned()) {
                Some(target) if is_id(&target) => self.get(&target),
                _ => Err(not_here()),
            };
        }
        let dir = self.dir.join(id);
        if !dir.join(DISK_RECORD_FILE).exists() {
            return Err(not_here());
        }
        DiskImage::open(&dir)
    }

    /// Names the stored image `id` `name` (a shape's `image = "name"` then finds it), replacing
    /// what the name pointed to before. A name is lower-case letters, digits, `.`, `_` and `-`,
    /// starting with a letter.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = firepit_image::ImageStore::new(dir.path());
    /// assert!(store.set_name("Bad Name", "0123456789abcdef").is_err());
    /// assert!(store.set_name("e2b-base", "0123456789abcdef").is_err()); // no such image yet
    /// ```
    pub fn set_name(&self, name: &str, id: &str) -> Result<(), ImageError> {
        if !is_name(name) {
            return Err(ImageError::InvalidImageName { name: name.to_owned() });
        }
        self.get(id)?;
        let dir = self.dir.join(NAMES_DIR);
        std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
        let partial = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&partial, format!("{id}\n")).map_err(ImageError::io("writing", &partial))?;
        let path = dir.join(name);
        std::fs::rename(&partial, &path).map_err(ImageError::io("writing", &path))
    }

    /// Every image in the store, by id. A damaged entry is skipped with a warning.
    pub fn list(&self) -> Result<Vec<DiskImage>, ImageError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("reading", &self.dir)(e)),
        };
        let mut images: Vec<DiskImage> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_str().is_some_and(is_id))
            .filter_map(|entry| match DiskImage::open(&entry.path()) {
                Ok(image) => Some(image),
                Err(error) => {
                    tracing::warn!(%error, "skipping a damaged stored image");
                    None
                }
            })
            .collect();
        images.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(images)
    }

    /// Removes the image `id` (VMs running from it keep their open files).
    pub fn remove(&self, id: &str) -> Result<(), ImageError> {
        let image = self.get(id)?;
        std::fs::remove_dir_all(image.dir()).map_err(ImageError::io("removing", image.dir()))
    }

    /// Serialises builds of `id` (across processes) until the returned file is dropped.
    pub(crate) fn lock(&self, id: &str) -> Result<std::fs::File, ImageError> {
        std::fs::create_dir_all(&self.dir).map_err(ImageError::io("creating", &self.dir))?;
        crate::files::lock_file(&self.dir.join(format!(".lock-{id}")))
    }

    /// A fresh staging directory, removed when dropped unless committed; sweeps the staging
    /// directories of dead processes first.
    pub(crate) fn stage(&self) -> Result<Staging, ImageError> {
        std::fs::create_dir_all(&self.dir).map_err(ImageError::io("creating", &self.dir))?;
        self.sweep();
        let n = NEXT_STAGING.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!(".tmp-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(ImageError::io("creating", &dir))?;
        Ok(Staging { dir: Some(dir) })
    }

    /// Writes `record` into `staging` and moves it into place as `<store>/<id>`.
    pub(crate) fn commit(&self, mut staging: Staging, record: &DiskRecord) -> Result<DiskImage, ImageError> {
        let Some(dir) = staging.dir.clone() else {
            return Err(ImageError::BadDiskRecord {
                path: self.dir.clone(),
                detail: "staging committed twice".into(),
            });
        };
        let json = serde_json::to_vec_pretty(record).map_err(|e| ImageError::BadDiskRecord {
            path: dir.join(DISK_RECORD_FILE),
            detail: e.to_string(),
        })?;
        crate::files::write_atomic(&dir.join(DISK_RECORD_FILE), &json)?;
        let target = self.dir.join(&record.id);
        if target.exists() {
            // A stale or damaged entry of the same id (a rebuild): replace it.
            std::fs::remove_dir_all(&target).map_err(ImageError::io("replacing", &target))?;
        }
        std::fs::rename(&dir, &target).map_err(ImageError::io("moving into place", &target))?;
        staging.dir = None;
        DiskImage::open(&target)
    }

    fn sweep(&self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(".tmp-").and_then(|rest| rest.split('-').next()) else {
                continue;
            };
            let alive = pid
                .parse::<u32>()
                .is_ok_and(|pid| pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists());
            if !alive && let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), %error, "removing a dead build's staging dir failed");
            }
        }
    }
}

/// A build's staging directory, removed on drop unless committed.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: Option<PathBuf>,
}

impl Staging {
    pub(crate) fn path(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new("/nonexistent"))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take()
            && let Err(error) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(path = %dir.display(), %error, "removing a build's staging dir failed");
        }
    }
}

/// 16 lowercase hex digits.
/// Where image names live in the store: one file per name holding an image id.
const NAMES_DIR: &str = "names";

fn is_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && !is_id(name)
}

fn is_id(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
