//! A saved VM on disk: the directory's layout, its manifest, and the checks before a load.
//!
//! Layout of a saved VM's directory (a paused VM or a snapshot):
//! - `state.bin`: the VM's migration stream — device state and every guest page that is not all
//!   zeros (QEMU elides zero pages), so the file holds about the memory the guest has touched;
//! - `disk.qcow2` and `layer-N.qcow2` (only with a root disk): the VM's disk layers, top first,
//!   each naming the next by a *relative* backing path, the last naming the image's base by its
//!   absolute path; a directory can thus move or be copied as a whole;
//! - `manifest.json`, written last: what the VM is (its shape, image, size), what made it (QEMU
//!   version, a hash of the command line it starts again with), its network (address, narrowings,
//!   forwards) and every file's size and SHA-256.
//!
//! Sizes are checked before a load; the hashes while loading (the stream's next to QEMU reading
//! it, the disk layers while they are copied): a file that differs in any byte is never run.

use std::path::{Path, PathBuf};

use firepit_net::NetworkState;
use firepit_shape::ShapeSpec;
use serde::{Deserialize, Serialize};

use crate::argv::RamBlock;
use crate::config::ImagePaths;
use crate::lifecycle_error::LifecycleError;

/// The manifest's file name; written last, so a directory without it is a save that never finished.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// The migration stream's file name.
pub(crate) const STATE_FILE: &str = "state.bin";
/// The top disk layer's file name (the lower ones are `layer-1.qcow2`, `layer-2.qcow2`, …).
pub(crate) const TOP_LAYER: &str = crate::disk::OVERLAY_FILE;
/// The manifest format this firepit writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// Why a VM was saved.
///
/// ```
/// use firepit_qemu::SavedKind;
/// assert_eq!(serde_json::to_string(&SavedKind::Paused).unwrap(), "\"paused\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedKind {
    /// Paused: its QEMU exited; it resumes as the same VM (same address, forwards, identity).
    Paused,
    /// A snapshot of a VM that kept running: new VMs start from it, each with an identity of its
    /// own.
    Snapshot,
}

/// One file of a saved VM: its name in the directory, size and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSum {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What the VM is made from: its shape, its image, whether the console is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedSpec {
    /// The pool's name of the shape (its key), which may differ from `shape.name`.
    pub key: String,
    pub shape: ShapeSpec,
    pub image_id: String,
    pub image: ImagePaths,
    pub console: bool,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedManifest {
    pub format: u32,
    pub kind: SavedKind,
    /// The id of the VM that was saved.
    pub vm_id: String,
    pub spec: SavedSpec,
    /// The RAM block the stream names (see [`RamBlock`]).
    pub ram_block: RamBlock,
    /// First line of `qemu -version`.
    pub qemu_version: String,
    /// SHA-256 of the command line the VM starts again with (per-VM paths as placeholders).
    pub cmdline_sha256: String,
    /// The migration stream.
    pub state: FileSum,
    /// The disk layers, top first; empty without a root disk.
    pub disk: Vec<FileSum>,
    /// The root disk's base as `crate::disk::base_stamp` described it when saved.
    pub base_stamp: Option<String>,
    /// The network (address, narrowings, forwards); `None` without one.
    pub network: Option<NetworkState>,
    /// Seconds since the Unix epoch when the VM was saved.
    pub created_unix: u64,
}

impl SavedManifest {
    /// Bytes the saved VM takes on disk (stream and disk layers).
    pub(crate) fn total_bytes(&self) -> u64 {
        self.state.bytes + self.disk.iter().map(|layer| layer.bytes).sum::<u64>()
    }
}

/// Writes `manifest` into `dir` (the last file of a save).
pub(crate) fn write(dir: &Path, manifest: &SavedManifest) -> Result<(), LifecycleError> {
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(manifest).map_err(|source| LifecycleError::Manifest {
        what: format!("encoding {}", path.display()),
        source,
    })?;
    std::fs::write(&path, text).map_err(|e| LifecycleError::io(format!("writing {}", path.display()), e))
}

/// Reads the manifest of the saved VM in `dir` and checks what is cheap to check: its format,
/// and that every file it names has its size.
pub(crate) fn read(dir: &Path) -> Result<SavedManifest, LifecycleError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LifecycleError::NotSaved { dir: dir.to_path_buf() });
        }
        Err(e) => return Err(LifecycleError::io(format!("reading {}", path.display()), e)),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| damaged(dir, e))?;
    let format = value.get("format").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if format != u64::from(FORMAT) {
        let (found, wanted) = (format.to_string(), FORMAT.to_string());
        return Err(LifecycleError::Incompatible {
            dir: dir.to_path_buf(),
            what: "manifest format",
            found,
            wanted,
        });
    }
    let manifest: SavedManifest = serde_json::from_value(value).map_err(|e| damaged(dir, e))?;
    for file in std::iter::once(&manifest.state).chain(&manifest.disk) {
        check_size(dir, file)?;
    }
    Ok(manifest)
}

fn damaged(dir: &Path, why: impl std::fmt::Display) -> LifecycleError {
    LifecycleError::Damaged { dir: dir.to_path_buf(), why: format!("{MANIFEST_FILE}: {why}") }
}

/// Fails unless `dir`/`file.file` exists with `file.bytes` bytes (and its name is a plain name).
pub(crate) fn check_size(dir: &Path, file: &FileSum) -> Result<PathBuf, LifecycleError> {
    let plain = Path::new(&file.file).file_name().is_some_and(|name| name == file.file.as_str());
    if !plain {
        return Err(damaged(dir, format!("{:?} is not a file name", file.file)));
    }
    let path = dir.join(&file.file);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() == file.bytes => Ok(path),
        Ok(meta) => Err(LifecycleError::Damaged {
            dir: dir.to_path_buf(),
            why: format!(
                "{} has {} bytes, the manifest says {} (truncated?)",
                file.file,
                meta.len(),
                file.bytes
            ),
        }),
        Err(e) => Err(LifecycleError::Damaged { dir: dir.to_path_buf(), why: format!("{}: {e}", file.file) }),
    }
}

/// Fails unless `actual` (a SHA-256 computed while loading) is the one `file` says.
pub(crate) fn check_sum(dir: &Path, file: &FileSum, actual: &str) -> Result<(), LifecycleError> {
    if actual == file.sha256 {
        return Ok(());
    }
    let why = format!("{} does not match its SHA-256 in the manifest", file.file);
    Err(LifecycleError::Damaged { dir: dir.to_path_buf(), why })
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn manifest(dir: &Path) -> SavedManifest {
        std::fs::write(dir.join(STATE_FILE), b"stream").unwrap();
        SavedManifest {
            format: FORMAT,
            kind: SavedKind::Paused,
            vm_id: "fp-1-1".into(),
            spec: SavedSpec {
                key: "small".into(),
                shape: ShapeSpec::new("small", "/images/default"),
                image_id: "img".into(),
                image: ImagePaths::new("/images/vmlinuz", "/images/initrd"),
                console: false,
            },
            ram_block: RamBlock::Backend,
            qemu_version: "QEMU emulator version 7.2.22".into(),
            cmdline_sha256: "00".into(),
            state: FileSum {
                file: STATE_FILE.into(),
                bytes: 6,
                sha256: crate::snapshot::store::sha256_hex(b"stream"),
            },
            disk: Vec::new(),
            base_stamp: None,
            network: None,
            created_unix: 1,
        }
    }

    #[test]
    fn a_manifest_reads_back_and_files_of_another_size_or_name_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let written = manifest(dir.path());
        assert!(matches!(read(dir.path()), Err(LifecycleError::NotSaved { .. })), "no manifest yet");
        write(dir.path(), &written).unwrap();
        assert_eq!(read(dir.path()).unwrap(), written);
        std::fs::write(dir.path().join(STATE_FILE), b"strea").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("5 bytes, the manifest says 6"), "{err}");
        let mut escaping = written.clone();
        escaping.state.file = "../state.bin".into();
        write(dir.path(), &escaping).unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("not a file name"));
        let mut newer = serde_json::to_value(&written).unwrap();
        newer["format"] = 99.into();
        std::fs::write(dir.path().join(MANIFEST_FILE), newer.to_string()).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(LifecycleError::Incompatible { what: "manifest format", .. })
        ));
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        assert!(matches!(read(dir.path()), Err(LifecycleError::Damaged { .. })), "not JSON");
    }

    #[test]
    fn a_sum_that_differs_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest(dir.path());
        check_sum(dir.path(), &manifest.state, &manifest.state.sha256).unwrap();
        let err = check_sum(dir.path(), &manifest.state, "ff").unwrap_err();
        assert!(err.to_string().contains("does not match its SHA-256"), "{err}");
    }
}
