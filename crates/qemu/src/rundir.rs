//! Per-VM runtime directories (sockets, snapshot state): created 0700, removed on drop.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::SpawnError;

/// Longest Unix socket path (`sun_path` is 108 bytes including the NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// A directory removed (with its contents) when dropped.
#[derive(Debug)]
pub(crate) struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Creates `parent/name` with mode 0700; a stale directory of the same name is replaced.
    pub(crate) fn create(parent: &Path, name: &str) -> Result<Self, SpawnError> {
        let path = parent.join(name);
        if path.exists() {
            tracing::warn!(path = %path.display(), "removing a stale runtime directory");
            std::fs::remove_dir_all(&path)
                .map_err(|e| SpawnError::io(format!("removing stale {}", path.display()), e))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| SpawnError::io(format!("creating runtime directory {}", path.display()), e))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "removing runtime directory failed")
            }
        }
    }
}

/// Creates the provider's base runtime directory (0700, parents as needed).
pub(crate) fn ensure_base(path: &Path) -> Result<(), SpawnError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| SpawnError::io(format!("creating runtime directory {}", path.display()), e))
}

/// Removes what firepit processes that died without cleaning up left behind: runtime directories
/// `fp-<pid>-*` / `firepit-<pid>-t*` under `base` and template files `firepit-<pid>-t*` in /dev/shm,
/// for every `<pid>` that no longer runs. Returns how many entries were removed.
pub(crate) fn remove_stale(base: &Path) -> usize {
    remove_stale_in(base) + remove_stale_in(Path::new("/dev/shm"))
}

/// [`remove_stale`] for one directory (also the template directory: scratch and discarded
/// templates use the `firepit-<pid>-t<n>` names).
pub(crate) fn remove_stale_in(dir: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), pid, "removed leftovers of a dead firepit process");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "removing stale leftovers failed")
            }
        }
    }
    removed
}

/// The pid in `fp-<pid>-<n>` or `firepit-<pid>-t<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("fp-").or_else(|| name.strip_prefix("firepit-"))?;
    let (pid, tail) = rest.split_once('-')?;
    let valid_tail = tail.trim_start_matches('t').parse::<u64>().is_ok();
    if valid_tail { pid.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn runtime_dir_is_private_and_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let dir = RuntimeDir::create(base.path(), "vm-1").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("qmp.sock"), b"").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn owner_pid_is_read_only_from_firepit_names() {
        assert_eq!(owner_pid("fp-123-4"), Some(123));
        assert_eq!(owner_pid("firepit-99-t2"), Some(99));
        assert_eq!(owner_pid("fp-123-x"), None);
        assert_eq!(owner_pid("other-1-2"), None);
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        // Pid 0x3fffffff is above the default pid_max: never a live process.
        std::fs::create_dir(base.path().join("fp-1073741823-1")).unwrap();
        let mine = format!("fp-{}-1", std::process::id());
        std::fs::create_dir(base.path().join(&mine)).unwrap();
        std::fs::create_dir(base.path().join("unrelated")).unwrap();
        assert_eq!(remove_stale(base.path()), 1);
        assert!(base.path().join(&mine).exists() && base.path().join("unrelated").exists());
    }

    #[test]
    fn stale_runtime_dir_is_replaced() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("vm-2")).unwrap();
        std::fs::write(base.path().join("vm-2/old"), b"").unwrap();
        let dir = RuntimeDir::create(base.path(), "vm-2").unwrap();
        assert!(!dir.path().join("old").exists());
    }
}
