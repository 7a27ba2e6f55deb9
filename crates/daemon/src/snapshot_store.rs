//! The daemon's snapshots on disk: `<snapshots dir>/<id>/` holds the backend's saved VM (`vm/`) and
//! what the API shows of it (`info.json`, a [`SnapshotInfo`]).
//!
//! A snapshot is made in `.tmp-<id>/` (the backend saves into `.tmp-<id>/vm`, then `info.json` is
//! written) and renamed to `<id>` in one step once complete, so a name without the `.tmp-` prefix
//! is always a whole snapshot. At start ([`SnapshotStore::open`]) the directory is listed again:
//! complete snapshots are known again, `.tmp-*` leftovers of a daemon killed while saving and
//! directories without a readable `info.json` are removed (each logged). Below the leases; the
//! lease table ([`crate::leases`]) drives it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use firepit_api::SnapshotInfo;
use tracing::{info, warn};

/// The file of a snapshot's [`SnapshotInfo`].
const INFO_FILE: &str = "info.json";
/// The directory the backend saves the VM into.
const VM_DIR: &str = "vm";
/// The prefix of a snapshot being made.
const SCRATCH_PREFIX: &str = ".tmp-";

/// Why a snapshot's files could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct StoreIoError {
    /// What was being done.
    pub what: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreIoError {
    let what = what.into();
    move |source| StoreIoError { what, source }
}

/// The snapshots under one directory (see the module docs).
pub struct SnapshotStore {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, SnapshotInfo>>,
}

impl SnapshotStore {
    /// Opens `dir` (created, mode 0700, if missing) and lists its snapshots again, removing what
    /// is not a whole one.
    pub fn open(dir: &Path) -> Result<Self, StoreIoError> {
        use std::os::unix::fs::DirBuilderExt;
        let creating = format!("creating the snapshots directory {}", dir.display());
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir).map_err(io(creating))?;
        let mut index = BTreeMap::new();
        let listing = format!("listing the snapshots directory {}", dir.display());
        for entry in std::fs::read_dir(dir).map_err(io(listing.clone()))? {
            let entry = entry.map_err(io(listing.clone()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            match read_info(&path, &name) {
                Some(info) if !name.starts_with(SCRATCH_PREFIX) => {
                    index.insert(name, info);
                }
                _ if name.starts_with(SCRATCH_PREFIX) || name.starts_with("s-") => {
                    warn!(dir = %path.display(), "removing a half-written snapshot (its daemon stopped while saving it)");
                    remove_dir(&path);
                }
                _ => warn!(dir = %path.display(), "not a snapshot: left alone"),
            }
        }
        info!(dir = %dir.display(), snapshots = index.len(), "snapshots listed");
        Ok(Self { dir: dir.to_path_buf(), index: Mutex::new(index) })
    }

    /// A new snapshot id (`s-` and 16 hex digits).
    pub fn new_id() -> String {
        format!("s-{:016x}", rand::random::<u64>())
    }

    /// Where the backend saves snapshot `id`'s VM while it is made (its parent exists on return).
    pub fn scratch_vm_dir(&self, id: &str) -> Result<PathBuf, StoreIoError> {
        use std::os::unix::fs::DirBuilderExt;
        let scratch = self.scratch(id);
        let creating = format!("creating {}", scratch.display());
        std::fs::DirBuilder::new().mode(0o700).create(&scratch).map_err(io(creating))?;
        Ok(scratch.join(VM_DIR))
    }

    /// Writes `info` next to the saved VM and renames the finished snapshot to its id.
    pub fn publish(&self, info: SnapshotInfo) -> Result<SnapshotInfo, StoreIoError> {
        let scratch = self.scratch(&info.snapshot_id);
        let json = serde_json::to_vec_pretty(&info).map_err(|e| StoreIoError {
            what: "encoding a snapshot's info".into(),
            source: std::io::Error::other(e),
        })?;
        let file = scratch.join(INFO_FILE);
        std::fs::write(&file, json).map_err(io(format!("writing {}", file.display())))?;
        let target = self.dir.join(&info.snapshot_id);
        let renaming = format!("renaming {} to {}", scratch.display(), target.display());
        std::fs::rename(&scratch, &target).map_err(io(renaming))?;
        lock(&self.index).insert(info.snapshot_id.clone(), info.clone());
        Ok(info)
    }

    /// Removes what a failed snapshot `id` left.
    pub fn discard_scratch(&self, id: &str) {
        remove_dir(&self.scratch(id));
    }

    /// The snapshot `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<SnapshotInfo> {
        lock(&self.index).get(id).cloned()
    }

    /// Where snapshot `id`'s saved VM is (whether or not it exists).
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id).join(VM_DIR)
    }

    /// Every snapshot, oldest first.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let mut all: Vec<SnapshotInfo> = lock(&self.index).values().cloned().collect();
        all.sort_by(|a, b| {
            (a.created_at_unix_ms, &a.snapshot_id).cmp(&(b.created_at_unix_ms, &b.snapshot_id))
        });
        all
    }

    /// Forgets snapshot `id` and removes its files; `None` when there is no such snapshot.
    pub async fn remove(&self, id: &str) -> Option<Result<SnapshotInfo, StoreIoError>> {
        let info = lock(&self.index).remove(id)?;
        let dir = self.dir.join(id);
        let removing = format!("removing {}", dir.display());
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
        Some(match removed {
            Ok(Ok(())) => Ok(info),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(info),
            Ok(Err(e)) => Err(StoreIoError { what: removing, source: e }),
            Err(e) => Err(StoreIoError { what: removing, source: std::io::Error::other(e) }),
        })
    }

    fn scratch(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{SCRATCH_PREFIX}{id}"))
    }
}

/// The info of the snapshot in `path` (directory `name`), if it is whole.
fn read_info(path: &Path, name: &str) -> Option<SnapshotInfo> {
    let bytes = std::fs::read(path.join(INFO_FILE)).ok()?;
    let info: SnapshotInfo = serde_json::from_slice(&bytes).ok()?;
    (info.snapshot_id == name && path.join(VM_DIR).exists()).then_some(info)
}

/// Locks the index, recovering from poisoning (every critical section leaves it consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "removing a snapshot's files failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotStore;
    use firepit_api::SnapshotInfo;

    fn info(id: &str, at: u64) -> SnapshotInfo {
        SnapshotInfo {
            snapshot_id: id.into(),
            source_lease_id: "l-1".into(),
            shape: "small".into(),
            created_at: firepit_api::rfc3339_ms(at),
            created_at_unix_ms: at,
            size_bytes: 1,
        }
    }

    #[tokio::test]
    async fn whole_snapshots_are_listed_again_and_half_written_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        for (id, at) in [("s-2", 2), ("s-1", 1)] {
            std::fs::create_dir(store.scratch_vm_dir(id).unwrap()).unwrap();
            store.publish(info(id, at)).unwrap();
        }
        // A daemon killed while saving, and one killed after the rename but with no info (never
        // happens: info is written before) are both not snapshots.
        std::fs::create_dir(store.scratch_vm_dir("s-3").unwrap()).unwrap();
        std::fs::create_dir_all(dir.path().join("s-4").join("vm")).unwrap();
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        drop(store);
        let store = SnapshotStore::open(dir.path()).unwrap();
        let ids: Vec<String> = store.list().into_iter().map(|s| s.snapshot_id).collect();
        assert_eq!(ids, ["s-1", "s-2"]);
        assert!(!dir.path().join(".tmp-s-3").exists());
        assert!(!dir.path().join("s-4").exists());
        assert!(dir.path().join("lost+found").exists(), "what is not firepit's stays");
        assert!(store.remove("s-1").await.unwrap().is_ok());
        assert!(!dir.path().join("s-1").exists());
        assert!(store.remove("s-1").await.is_none());
        assert_eq!(store.get("s-2").unwrap().shape, "small");
    }
}
