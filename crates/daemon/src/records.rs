//! Ownership records: which VM processes and runtime directories this daemon owns, on disk.
//!
//! Why: QEMU processes die with the daemon when it exits normally (the backend kills them, and
//! the provider sets `PR_SET_PDEATHSIG`), but after `kill -9`, an OOM kill or a crash, runtime
//! directories and possibly processes remain. Each VM gets one small JSON file in
//! `<state_dir>/owned/`, written when it is spawned and removed when it is destroyed; the next
//! daemon started on the **same state dir** reaps whatever a previous run left there, before it
//! fills its pools. A lock file (`flock`) makes sure two live daemons never share a state dir, so a
//! daemon only ever reaps its own predecessors.
//!
//! A pid is only killed when `/proc/<pid>/cmdline` and the process start time still match what
//! was recorded, so a pid reused by an unrelated process is left alone. (A child recorded in the
//! instant between fork and exec has no command line of its own yet; its start time, set at fork,
//! identifies it alone.)

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

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
struct Record {
    vm_id: String,
    pid: u32,
    runtime_dir: PathBuf,
    /// `/proc/<pid>/cmdline` at record time, base64.
    cmdline: String,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    start_time: Option<u64>,
}

/// What [`RecordStore::reap_previous`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Processes killed.
    pub killed: usize,
    /// Records whose process was already gone.
    pub gone: usize,
    /// Records whose pid now belongs to another program (left alone).
    pub mismatched: usize,
    /// Runtime directories removed.
    pub dirs_removed: usize,
    /// Problems met (each is also logged).
    pub errors: Vec<String>,
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
    /// assert_eq!(store.reap_previous().killed, 0);
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

    fn path_of(&self, vm_id: &str) -> PathBuf {
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

    fn record_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.owned) else { return Vec::new() };
        entries.filter_map(Result::ok).map(|e| e.path()).collect()
    }

    /// Kills every recorded process that still matches its record, removes its runtime dir and the
    /// record. Call once, at start-up, before filling (it blocks: wrap it in `spawn_blocking`).
    pub fn reap_previous(&self) -> ReapReport {
        let mut report = ReapReport::default();
        for path in self.record_files() {
            if path.extension().is_some_and(|e| e == "json")
                && let Err(error) = reap_one(&path, &mut report)
            {
                warn!(record = %path.display(), %error, "cannot reap a recorded VM");
                report.errors.push(error);
            }
            if let Err(e) = std::fs::remove_file(&path) {
                report.errors.push(format!("cannot remove record {}: {e}", path.display()));
            }
        }
        if report != ReapReport::default() {
            info!(
                killed = report.killed,
                gone = report.gone,
                mismatched = report.mismatched,
                dirs_removed = report.dirs_removed,
                "reaped VMs left by a previous run"
            );
        }
        report
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

fn reap_one(path: &Path, report: &mut ReapReport) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let record: Record = serde_json::from_slice(&text).map_err(|e| format!("corrupt record: {e}"))?;
    let recorded_cmdline = BASE64.decode(&record.cmdline).map_err(|e| format!("corrupt cmdline: {e}"))?;
    // A zombie is dead already (its parent reaps it): only a running process counts as alive.
    let now = std::fs::read(format!("/proc/{}/cmdline", record.pid));
    match now {
        _ if !is_alive(record.pid) => report.gone += 1,
        Err(_) => report.gone += 1,
        // Our process in the middle of exiting: the kernel has released its memory (the command
        // line reads empty) but it is not a zombie yet. It is gone in a moment.
        Ok(now)
            if now.is_empty()
                && record.start_time.is_some()
                && start_time(record.pid) == record.start_time =>
        {
            wait_gone(record.pid)?;
            report.gone += 1;
        }
        Ok(now) if !same_process(&record, &recorded_cmdline, &now) => report.mismatched += 1,
        Ok(_) => {
            kill_and_wait(record.pid)?;
            report.killed += 1;
        }
    }
    remove_runtime_dir(&record.runtime_dir, report)
}

/// Whether the live process `pid` is still the one recorded: same start time (when recorded) and
/// same command line (when recorded); at least one of the two must have been recorded.
fn same_process(record: &Record, recorded_cmdline: &[u8], now: &[u8]) -> bool {
    let start_ok = record.start_time.is_none() || start_time(record.pid) == record.start_time;
    let cmdline_ok =
        if recorded_cmdline.is_empty() { record.start_time.is_some() } else { recorded_cmdline == now };
    start_ok && cmdline_ok
}

fn kill_and_wait(pid: u32) -> Result<(), String> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    // SAFETY: kill has no memory preconditions; the pid was checked against its record just before.
    if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
        return Err(format!("cannot kill pid {pid}: {}", std::io::Error::last_os_error()));
    }
    wait_gone(pid)
}

/// Waits up to 5 s until `pid` is dead (gone or a zombie).
fn wait_gone(pid: u32) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("pid {pid} still alive after 5 s"))
}

fn remove_runtime_dir(dir: &Path, report: &mut ReapReport) -> Result<(), String> {
    // Refuse anything that is not an absolute path at least two levels deep: a corrupt record
    // must never make us remove `/` or `/tmp`.
    if !dir.is_absolute() || dir.components().count() < 3 {
        return Err(format!("refusing to remove runtime dir {}", dir.display()));
    }
    match std::fs::symlink_metadata(dir) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
            report.dirs_removed += 1;
            Ok(())
        }
        Ok(_) => Err(format!("runtime dir {} is not a directory; left alone", dir.display())),
    }
}

/// Whether `pid` exists and is not a zombie (state field of `/proc/<pid>/stat`).
fn is_alive(pid: u32) -> bool {
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
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
