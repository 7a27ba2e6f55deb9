//! Snapshot templates on disk, so a new provider reuses what an earlier one built.
//!
//! Layout: `<template_dir>/<shape dir>/{memory, state.bin, manifest.json}`, one directory per shape
//! (name, image id, vCPUs, memory), plus `disk.qcow2` for an image with a root disk: the
//! template's overlay at save time, read-only, the base of every clone's overlay. The manifest says
//! whose template it is: image id, shape, QEMU version, a hash of the clone command line (with
//! per-VM paths replaced by placeholders) and the root disk's base (path, size, mtime, inode).
//! A template is reused only when all of them match and its files pass a check (sizes, and the
//! SHA-256 of the device state); otherwise it is *stale* (key mismatch) or *corrupt* and is rebuilt.
//!
//! Writes are crash-safe: a template is built in `firepit-<pid>-t<n>` (swept as a dead process's
//! leftover if the builder dies) and renamed into place with its manifest written last. A template
//! that is dropped (shape unregistered, stale, corrupt, failing) is first renamed back to such a
//! name, so no loader finds it, then removed once the last clone that maps it is gone (unlinking
//! a mapped file would be safe for the clone, but firepit keeps the promise that it never does).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::config_error::ConfigError;
use crate::error::{QemuError, SnapshotError, SpawnError};

/// The guest RAM file (mapped `share=on` by the template, copy-on-write by clones).
pub(crate) const MEMORY_FILE: &str = "memory";
/// The device state written by the template's migration.
pub(crate) const STATE_FILE: &str = "state.bin";
/// What the template is and whose it is; written last.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 2;

static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(1);

/// What a template must match to be reused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TemplateKey {
    /// The image id the shape names.
    pub image_id: String,
    /// The shape: its name, image and machine size (`name@image/1cpu/256MiB`).
    pub shape: String,
    /// First line of `qemu -version`.
    pub qemu_version: String,
    /// SHA-256 (hex) of the clone command line with per-VM paths replaced by placeholders.
    pub cmdline_sha256: String,
    /// The root disk's base as `crate::disk::base_stamp` describes it; `None`: no root disk.
    #[serde(default)]
    pub disk: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub format: u32,
    #[serde(flatten)]
    pub key: TemplateKey,
    pub memory_bytes: u64,
    pub state_bytes: u64,
    pub state_sha256: String,
    /// Size of the template's disk (`disk.qcow2`); `None`: the image has no root disk.
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// Seconds since the Unix epoch when the template was snapshotted.
    pub created_unix: u64,
}

/// What a shape directory holds.
#[derive(Debug)]
pub(crate) enum Found {
    /// Nothing: build a template.
    Absent,
    /// A template for this key whose files check out.
    Valid(Manifest),
    /// A template made for another image, QEMU or command line (says which).
    Stale(TemplateFault),
    /// Files missing, truncated, or not what the manifest says.
    Corrupt(TemplateFault),
}

/// Why a template on disk cannot be used; shown in `TemplateState` and the logs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateFault {
    /// The template directory is there but has no manifest (a build that died half-way).
    #[error("{0} is missing")]
    ManifestMissing(PathBuf),
    /// The manifest is not a manifest of this firepit.
    #[error("{path} is not a template manifest: {source}")]
    ManifestInvalid { path: PathBuf, source: serde_json::Error },
    /// Written by a firepit with another manifest format.
    #[error("manifest format {found} (this firepit writes {FORMAT})")]
    Format { found: u32 },
    /// Made for another image, shape, QEMU or command line.
    #[error("made for {what} {found:?}, now {wanted:?}")]
    KeyMismatch { what: &'static str, found: String, wanted: String },
    /// A file has another size than the manifest says.
    #[error("{path} has {actual} bytes, the manifest says {expected} (truncated?)")]
    Size { path: PathBuf, actual: u64, expected: u64 },
    /// The device state is not what was saved.
    #[error("{path} does not match its SHA-256 in the manifest")]
    Checksum { path: PathBuf },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    /// The manifest on disk is no longer the one the template was loaded with.
    #[error("its manifest changed on disk")]
    ManifestChanged,
    /// The template's directory disappeared.
    #[error("its directory is gone")]
    Gone,
}

/// Creates the template directory (0700) if needed and checks that it is private: a real
/// directory (not a symlink), owned by this user, with no group or other access. The default lives
/// in world-writable /dev/shm, where another user could have made it first to read guest memory
/// or plant a template; firepit then refuses it (the shape cold-boots, saying why).
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), QemuError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // Check before creating: `ensure_base` would quietly tighten a directory of ours that was open
    // to others, who may already have planted files in it.
    if std::fs::symlink_metadata(path).is_err() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(path)
            .map_err(|e| SpawnError::io(format!("creating template directory {}", path.display()), e))?;
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| SpawnError::io(format!("checking template directory {}", path.display()), e))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mode = meta.permissions().mode() & 0o777;
    if !meta.file_type().is_dir() || meta.uid() != uid || mode & 0o077 != 0 {
        let (dir, owner) = (path.to_path_buf(), meta.uid());
        return Err(ConfigError::TemplateDirNotPrivate { dir, me: uid, owner, mode }.into());
    }
    Ok(())
}

/// SHA-256 of `bytes` as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn file_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((total, hex(&hasher.finalize())));
        }
        total += n as u64;
        hasher.update(&buffer[..n]);
    }
}

/// A file-system-safe directory name for a shape: readable, plus a short hash against collisions.
pub(crate) fn shape_dir_name(shape: &str) -> String {
    let readable: String = shape
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' })
        .take(80)
        .collect();
    format!("{readable}-{}", &sha256_hex(shape.as_bytes())[..12])
}

/// Reads and checks the template in `dir` against `key`.
pub(crate) fn inspect(dir: &Path, key: &TemplateKey) -> Found {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if dir.exists() {
                Found::Corrupt(TemplateFault::ManifestMissing(manifest_path))
            } else {
                Found::Absent
            };
        }
        Err(source) => return Found::Corrupt(TemplateFault::Unreadable { path: manifest_path, source }),
    };
    let manifest: Manifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(source) => return Found::Corrupt(TemplateFault::ManifestInvalid { path: manifest_path, source }),
    };
    if manifest.format != FORMAT {
        return Found::Stale(TemplateFault::Format { found: manifest.format });
    }
    if let Some(mismatch) = key_mismatch(&manifest.key, key) {
        return Found::Stale(mismatch);
    }
    let memory = dir.join(MEMORY_FILE);
    match std::fs::metadata(&memory) {
        Ok(m) if m.len() == manifest.memory_bytes => {}
        Ok(m) => {
            let (actual, expected) = (m.len(), manifest.memory_bytes);
            return Found::Corrupt(TemplateFault::Size { path: memory, actual, expected });
        }
        Err(source) => return Found::Corrupt(TemplateFault::Unreadable { path: memory, source }),
    }
    if let Some(expected) = manifest.disk_bytes {
        let disk = dir.join(crate::disk::OVERLAY_FILE);
        match std::fs::metadata(&disk) {
            Ok(m) if m.len() == expected => {}
            Ok(m) => return Found::Corrupt(TemplateFault::Size { path: disk, actual: m.len(), expected }),
            Err(source) => return Found::Corrupt(TemplateFault::Unreadable { path: disk, source }),
        }
    }
    let state = dir.join(STATE_FILE);
    match file_sha256(&state) {
        Ok((actual, _)) if actual != manifest.state_bytes => {
            Found::Corrupt(TemplateFault::Size { path: state, actual, expected: manifest.state_bytes })
        }
        Ok((_, sha)) if sha != manifest.state_sha256 => {
            Found::Corrupt(TemplateFault::Checksum { path: state })
        }
        Ok(_) => Found::Valid(manifest),
        Err(source) => Found::Corrupt(TemplateFault::Unreadable { path: state, source }),
    }
}

fn key_mismatch(found: &TemplateKey, wanted: &TemplateKey) -> Option<TemplateFault> {
    let (found_disk, wanted_disk) =
        (found.disk.clone().unwrap_or_default(), wanted.disk.clone().unwrap_or_default());
    let pairs = [
        ("image id", &found.image_id, &wanted.image_id),
        ("shape", &found.shape, &wanted.shape),
        ("QEMU version", &found.qemu_version, &wanted.qemu_version),
        ("command line hash", &found.cmdline_sha256, &wanted.cmdline_sha256),
        ("root disk", &found_disk, &wanted_disk),
    ];
    pairs.into_iter().find(|(_, found, wanted)| found != wanted).map(|(what, found, wanted)| {
        TemplateFault::KeyMismatch { what, found: found.clone(), wanted: wanted.clone() }
    })
}

/// Hashes the state file of a freshly built template in `scratch`, writes its manifest, and moves
/// it to `target` (which must not exist).
pub(crate) fn publish(
    scratch: &Path,
    target: &Path,
    key: &TemplateKey,
    memory_bytes: u64,
) -> Result<Manifest, QemuError> {
    let state = scratch.join(STATE_FILE);
    let (state_bytes, state_sha256) =
        file_sha256(&state).map_err(|e| SpawnError::io(format!("reading {}", state.display()), e))?;
    let created_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let disk_bytes = match std::fs::metadata(scratch.join(crate::disk::OVERLAY_FILE)) {
        Ok(meta) => Some(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(
                SpawnError::io(format!("inspecting the template disk in {}", scratch.display()), e).into()
            );
        }
    };
    let manifest = Manifest {
        format: FORMAT,
        key: key.clone(),
        memory_bytes,
        state_bytes,
        state_sha256,
        disk_bytes,
        created_unix,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(SnapshotError::Manifest)?;
    let manifest_path = scratch.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, text)
        .map_err(|e| SpawnError::io(format!("writing {}", manifest_path.display()), e))?;
    std::fs::rename(scratch, target).map_err(|e| {
        SpawnError::io(format!("moving template {} to {}", scratch.display(), target.display()), e)
    })?;
    Ok(manifest)
}

/// A fresh scratch directory name under `base`: `firepit-<pid>-t<n>` (swept if this process dies).
pub(crate) fn scratch_path(base: &Path) -> PathBuf {
    let n = NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed);
    base.join(format!("firepit-{}-t{n}", std::process::id()))
}

/// Moves `dir` out of the loaders' way (to a scratch name); returns where it went.
pub(crate) fn retire(dir: &Path) -> std::io::Result<PathBuf> {
    let base = dir.parent().unwrap_or(dir);
    let to = scratch_path(base);
    std::fs::rename(dir, &to)?;
    Ok(to)
}

/// Removes `dir` and everything in it; a missing directory is fine.
pub(crate) fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "snapshot template removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "removing snapshot template files failed"),
    }
}

#[cfg(test)]
mod tests;
