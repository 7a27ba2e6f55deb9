//! Ownership records: which VM processes and runtime directories this daemon owns, on disk.
//!
//! Why: QEMU processes die with the daemon when it exits normally (the backend kills them, and
//! the provider sets `PR_SET_PDEATHSIG`), but after `kill -9`, an OOM kill or a crash, runtime
//! directories and possibly processes remain. Each VM gets one small JSON file in
//! `<state_dir>/owned/`, written when the QEMU provider hands it to the pool and removed when it is
//! destroyed: the [`RecordStore`] is the provider's [`OwnershipHook`]. The next daemon started on
//! the **same state dir** reaps whatever a previous run left there before it fills its pools (see
//! [`crate::recovery`], which also says what else is cleaned up, and in which order). A lock file
//! (`flock`) makes sure two live daemons never share a state dir, so a daemon only ever reaps its
//! own predecessors.
//!
//! A record keeps the process's command line and start time, so that recovery kills a pid only
//! while it is still the process recorded (a pid reused by an unrelated process is left alone).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::backend::{OwnedProcess, OwnershipHook};

/// Why the record store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another live daemon holds the state dir.
    #[error("state dir {0} is in use by another firepit daemon; give each daemon its own `state_dir`")]
    Locked(PathBuf),
}

/// One record file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub vm_id: String,
    pub pid: u32,
    pub runtime_dir: PathBuf,
    /// `/proc/<pid>/cmdline` at record time, base64.
    pub cmdline: String,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    pub start_time: Option<u64>,
}

/// The durable record of owned VM processes, locked for this daemon's lifetime.
#[derive(Debug)]
pub struct RecordStore {
    owned: PathBuf,
    _lock: File,
}

impl RecordStore {
    /// Creates (mode 0700) and locks `state_dir`.
    ///
    /// # Example
    /// ```
    /// use firepit_daemon::records::RecordStore;
    /// let dir = tempfile::tempdir()?;
    /// let store = RecordStore::open(dir.path())?;
    /// assert!(RecordStore::open(dir.path()).is_err()); // one daemon per state dir
    /// assert!(store.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(state_dir: &Path) -> Result<Self, RecordError> {
        let owned = state_dir.join("owned");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&owned)
            .map_err(|source| RecordError::Io { what: "cannot create", path: owned.clone(), source })?;
        let lock_path = state_dir.join("daemon.lock");
        let lock =
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|source| RecordError::Io { what: "cannot open", path: lock_path.clone(), source })?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(RecordError::Locked(state_dir.to_owned()));
        }
        Ok(Self { owned, _lock: lock })
    }

    pub(crate) fn path_of(&self, vm_id: &str) -> PathBuf {
        let name: String = vm_id.bytes().map(|b| format!("{b:02x}")).collect();
        self.owned.join(format!("{name}.json"))
    }

    /// Records a process (atomically: temp file + rename).
    pub fn record(&self, process: &OwnedProcess) -> Result<(), RecordError> {
        let mut cmdline = std::fs::read(format!("/proc/{}/cmdline", process.pid)).unwrap_or_default();
        // Between fork and the end of exec a child shows no command line, or ours: then record none
        // and let the start time alone identify it (it is set at fork and survives exec).
        if cmdline == std::fs::read("/proc/self/cmdline").unwrap_or_default() {
            cmdline.clear();
        }
        let record = Record {
            vm_id: process.vm_id.clone(),
            pid: process.pid,
            runtime_dir: process.runtime_dir.clone(),
            cmdline: BASE64.encode(cmdline),
            start_time: start_time(process.pid),
        };
        let path = self.path_of(&process.vm_id);
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(&record).map_err(|e| RecordError::Io {
            what: "cannot encode record",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&tmp, json).map_err(|source| RecordError::Io {
            what: "cannot write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| RecordError::Io { what: "cannot rename", path, source })
    }

    /// Forgets a destroyed process.
    pub fn forget(&self, vm_id: &str) -> Result<(), RecordError> {
        let path = self.path_of(vm_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(RecordError::Io { what: "cannot remove", path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Number of records on disk.
    pub fn len(&self) -> usize {
        self.record_files().len()
    }

    /// True when no process is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every file in the record directory (records, and temporary files of an interrupted write).
    pub(crate) fn record_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.owned) else { return Vec::new() };
        entries.filter_map(Result::ok).map(|e| e.path()).collect()
    }
}

impl OwnershipHook for RecordStore {
    fn spawned(&self, process: &OwnedProcess) {
        if let Err(error) = self.record(process) {
            warn!(vm_id = %process.vm_id, %error, "cannot record an owned VM process");
        }
    }

    fn destroyed(&self, vm_id: &str) {
        if let Err(error) = self.forget(vm_id) {
            warn!(vm_id, %error, "cannot forget a destroyed VM process");
        }
    }
}

/// Whether `pid` exists and is not a zombie (state field of `/proc/<pid>/stat`).
pub(crate) fn is_alive(pid: u32) -> bool {
    stat_fields(pid)
        .is_some_and(|fields| !matches!(fields.first().map(String::as_str), Some("Z" | "X" | "x")))
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, comes first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The process start time (field 22 of `/proc/<pid>/stat`), which tells a reused pid apart.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
