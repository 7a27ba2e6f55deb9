//! Checking a snapshot template's files once, not before every restore.
//!
//! QEMU 7.2 hangs (it does not fail) on a damaged device-state file, so a template's files are
//! checked before a clone is restored from them: the manifest read and compared, the sizes, the
//! SHA-256 of the state file. Done before *every* restore, that put file reads and a hash on the
//! start of each fill, which competes for the CPU with the hand-out that woke the refiller.
//!
//! So the files' identity and stamps (device, inode, size, modification and change time of the
//! manifest, the state file and the memory file) are recorded when a full check passes, and a
//! restore whose stamps are unchanged skips the full check. Writing, truncating, replacing or
//! renaming one of the files changes its inode or its change time (which user space cannot set
//! back), and the next restore checks in full again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use crate::snapshot::store::{MANIFEST_FILE, MEMORY_FILE, STATE_FILE};

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// The stamps of a template's three files; `None` if one cannot be read.
fn stamps(dir: &Path) -> Option<[FileStamp; 3]> {
    Some([
        FileStamp::of(&dir.join(MANIFEST_FILE))?,
        FileStamp::of(&dir.join(STATE_FILE))?,
        FileStamp::of(&dir.join(MEMORY_FILE))?,
    ])
}

/// The stamps of the template's files when they last passed a full check.
#[derive(Debug, Default)]
pub(crate) struct CheckedStamps(Mutex<Option<[FileStamp; 3]>>);

impl CheckedStamps {
    /// Runs `full_check` on the template in `dir` unless its files are the very ones that passed
    /// the last full check. A failed check forgets the stamps.
    pub(crate) fn check<E>(&self, dir: &Path, full_check: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let before = stamps(dir);
        if before.is_some() && *self.lock() == before {
            return Ok(());
        }
        if let Err(e) = full_check() {
            *self.lock() = None;
            return Err(e);
        }
        // Only what did not change while it was being checked counts as checked.
        let after = stamps(dir);
        *self.lock() = if before == after { after } else { None };
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<[FileStamp; 3]>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [(MANIFEST_FILE, &b"{}"[..]), (STATE_FILE, b"device state"), (MEMORY_FILE, b"")]
        {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    fn count(checks: &std::cell::Cell<u32>) -> Result<(), ()> {
        checks.set(checks.get() + 1);
        Ok(())
    }

    #[test]
    fn unchanged_files_are_checked_once() {
        let (dir, stamps, checks) = (template(), CheckedStamps::default(), std::cell::Cell::new(0));
        for _ in 0..3 {
            stamps.check(dir.path(), || count(&checks)).unwrap();
        }
        assert_eq!(checks.get(), 1);
    }

    #[test]
    fn a_rewritten_or_replaced_file_is_checked_again() {
        let (dir, stamps, checks) = (template(), CheckedStamps::default(), std::cell::Cell::new(0));
        stamps.check(dir.path(), || count(&checks)).unwrap();
        // Same size, same content: only the change time (or the inode) tells.
        std::fs::write(dir.path().join(STATE_FILE), b"device state").unwrap();
        let state = dir.path().join(STATE_FILE);
        let replaced = dir.path().join("replacement");
        std::fs::write(&replaced, b"device state").unwrap();
        std::fs::rename(&replaced, &state).unwrap();
        stamps.check(dir.path(), || count(&checks)).unwrap();
        assert_eq!(checks.get(), 2);
        stamps.check(dir.path(), || count(&checks)).unwrap();
        assert_eq!(checks.get(), 2);
    }

    #[test]
    fn a_failed_check_is_not_remembered() {
        let (dir, stamps) = (template(), CheckedStamps::default());
        assert!(stamps.check(dir.path(), || Err::<(), _>("corrupt")).is_err());
        let checks = std::cell::Cell::new(0);
        stamps.check(dir.path(), || count(&checks)).unwrap();
        assert_eq!(checks.get(), 1, "the next restore checks in full");
        std::fs::remove_file(dir.path().join(MEMORY_FILE)).unwrap();
        assert!(stamps.check(dir.path(), || Err::<(), _>("gone")).is_err(), "a missing file is checked");
    }
}
