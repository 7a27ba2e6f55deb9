//! Per-VM runtime directories (sockets, snapshot state): created 0700, removed on drop.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::config_error::ConfigError;
use crate::error::{QemuError, SpawnError};
use crate::process::Credentials;

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

/// Creates the provider's base runtime directory (0700, parents as needed) and makes sure it is
/// really ours: the default `<tmp>/firepit-<uid>` is a predictable name in a world-writable
/// directory, so another local user could have created it first (to read or swap our sockets).
/// A directory owned by someone else, or a symlink, is refused; one of ours that is open to others
/// is tightened to 0700.
///
/// With `traversable` (QEMU runs as another user, see `ProviderConfig::run_as`) the mode is 0711:
/// others may pass through to a VM directory they own, but not list or create anything.
pub(crate) fn ensure_base(path: &Path, traversable: bool) -> Result<(), QemuError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| SpawnError::io(format!("creating runtime directory {}", path.display()), e))?;
    ensure_private(path, if traversable { 0o711 } else { 0o700 })
}

/// Changes the owner of `path` (a VM directory or socket) to the user QEMU runs as.
pub(crate) fn chown(path: &Path, owner: Credentials) -> Result<(), SpawnError> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| SpawnError::io(format!("chown {}:{} {}", owner.uid, owner.gid, path.display()), e))
}

/// Refuses `path` unless it is a directory (not a symlink) owned by this process's effective user;
/// sets its mode to `mode` if it has other permission bits.
fn ensure_private(path: &Path, mode: u32) -> Result<(), QemuError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| SpawnError::io(format!("inspecting runtime directory {}", path.display()), e))?;
    if !meta.file_type().is_dir() {
        return Err(ConfigError::RuntimeDirNotADirectory { dir: path.to_path_buf() }.into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(ConfigError::RuntimeDirForeign { dir: path.to_path_buf(), owner: meta.uid(), me }.into());
    }
    if meta.mode() & 0o777 != mode {
        if meta.mode() & 0o077 & !mode != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.mode() & 0o777), "runtime directory was open to others; tightening it");
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SpawnError::io(format!("chmod {mode:o} {}", path.display()), e))?;
    }
    Ok(())
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
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
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
    fn base_dir_is_created_0700_and_an_open_one_of_ours_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("a/b/firepit");
        ensure_base(&base, false).unwrap();
        assert_eq!(std::fs::metadata(&base).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_base(&base, false).unwrap();
        assert_eq!(std::fs::metadata(&base).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn base_dir_that_is_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("elsewhere")).unwrap();
        let link = root.path().join("firepit");
        std::os::unix::fs::symlink(root.path().join("elsewhere"), &link).unwrap();
        let err = ensure_base(&link, false).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn base_dir_owned_by_another_user_is_refused() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to chown a directory to another user");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("firepit");
        std::fs::create_dir(&base).unwrap();
        std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
        let err = ensure_base(&base, false).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
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
