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
    fn stale_runtime_dir_is_replaced() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("vm-2")).unwrap();
        std::fs::write(base.path().join("vm-2/old"), b"").unwrap();
        let dir = RuntimeDir::create(base.path(), "vm-2").unwrap();
        assert!(!dir.path().join("old").exists());
    }
}
