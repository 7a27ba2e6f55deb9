//! Crash recovery: what a daemon cleans up when it starts on a state dir whose previous run died
//! without cleaning up (`kill -9`, an OOM kill, a panic, a power cut), and in which order.
//!
//! Nothing needs recovering after a clean stop: the pool destroys every VM, the provider removes
//! their runtime directories and the records are forgotten one by one. After a crash, a QEMU
//! process may still run (a parent-death signal fires only when the thread that spawned it
//! exits), runtime directories are left, and so are snapshot template files. [`recover`] runs once,
//! at start-up, after the state dir is locked ([`RecordStore::open`]: so it only ever cleans up
//! after this state dir's own predecessors) and before any pool fills:
//!
//! 1. **Recorded VMs** ([`reap_records`]): every VM the previous run had handed to its pool has a
//!    record. Its process is killed if it still runs *and* is still the process recorded (same
//!    start time, same command line: a reused pid is left alone), its runtime directory is removed,
//!    and the record is dropped.
//! 2. **VMs that were still booting** ([`vms_dir`]): they were never recorded, and their QEMU died
//!    with the daemon's threads, but their runtime directories are under `<state dir>/vms`, the
//!    provider's runtime directory. Whatever is left there now is stale and is removed wholesale.
//! 3. **Cgroups** (`[cgroups]`, [`firepit_qemu::remove_stale_cgroups`]): every VM's QEMU ran in a
//!    cgroup named after the VM (`fp-<pid>-<n>`) under the configured parent; those of firepit
//!    processes that no longer run — the crashed daemon's, now that its QEMUs are dead (step 1,
//!    or the parent-death signal) — are removed. One that still holds a process is left alone and
//!    logged. A host without usable cgroups has nothing to remove.
//! 4. **Template leftovers**, when the QEMU backend starts (`firepit_qemu::QemuProvider::new`):
//!    files named after firepit processes that no longer run — runtime directories, template RAM
//!    files in `/dev/shm`, scratch and discarded templates (`firepit-<pid>-t<n>`) in the template
//!    directory — are removed. Complete templates are kept: the next fill reuses one whose
//!    manifest and files check out, and rebuilds a stale or damaged one.
//!
//! Steps 1 and 2 can fail only in ways the daemon cannot ignore (2: the stale directory cannot be
//! removed, so the provider could not start clean): they are errors. A record that cannot be
//! reaped is not: it is reported ([`ReapReport::errors`]) and logged, and start-up goes on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tracing::{info, warn};

use crate::records::{Record, RecordStore, is_alive, start_time};

/// The QEMU provider's runtime directory under a daemon's state dir: `<state dir>/vms`.
///
/// ```
/// let dir = firepit_daemon::recovery::vms_dir("/var/lib/firepit".as_ref());
/// assert_eq!(dir, std::path::Path::new("/var/lib/firepit/vms"));
/// ```
pub fn vms_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("vms")
}

/// Why start-up recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// What a previous run left under the state dir could not be removed.
    #[error("cannot clear the stale VM directory {}", dir.display())]
    StaleVmDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blocking recovery task panicked or was cancelled.
    #[error("the recovery task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Why one record could not be reaped (each is logged; start-up goes on).
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    /// The record file could not be read.
    #[error("cannot read record {}", path.display())]
    Read {
        /// The record file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The record file is not a record.
    #[error("record {} is corrupt", path.display())]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The recorded command line is not base64.
    #[error("record {}: its command line is corrupt", path.display())]
    CorruptCmdline {
        /// The record file.
        path: PathBuf,
        /// Why.
        #[source]
        source: base64::DecodeError,
    },
    /// The recorded pid does not fit a `pid_t`.
    #[error("pid {pid} is out of range")]
    PidOutOfRange {
        /// The recorded pid.
        pid: u32,
    },
    /// SIGKILL was refused.
    #[error("cannot kill pid {pid}")]
    Kill {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The process outlived its SIGKILL by 5 s.
    #[error("pid {pid} still alive 5 s after SIGKILL (state {state}, waiting in `{wchan}`)")]
    StillAlive {
        /// The process.
        pid: u32,
        /// Its state letter from `/proc/<pid>/stat` (`D`: an uninterruptible wait).
        state: String,
        /// The kernel function it waits in (`/proc/<pid>/wchan`).
        wchan: String,
    },
    /// The recorded runtime directory is not an absolute path at least two levels deep (a corrupt
    /// record must never make recovery remove `/` or `/tmp`).
    #[error("refusing to remove runtime dir {}", dir.display())]
    UnsafeRuntimeDir {
        /// The recorded directory.
        dir: PathBuf,
    },
    /// The recorded runtime directory is a file or a symlink: left alone.
    #[error("runtime dir {} is not a directory; left alone", dir.display())]
    NotADirectory {
        /// The recorded directory.
        dir: PathBuf,
    },
    /// Removing the runtime directory failed.
    #[error("cannot remove runtime dir {}", dir.display())]
    RemoveDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Removing the record file failed (the next start tries again).
    #[error("cannot remove record {}", path.display())]
    RemoveRecord {
        /// The record file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What [`reap_records`] did.
#[derive(Debug, Default)]
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
    pub errors: Vec<ReapError>,
}

impl ReapReport {
    fn is_empty(&self) -> bool {
        self.killed + self.gone + self.mismatched + self.dirs_removed == 0 && self.errors.is_empty()
    }
}

/// What [`recover`] did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Step 1: the recorded VMs.
    pub reaped: ReapReport,
    /// Step 2: entries removed from `<state dir>/vms` (VMs that were still booting).
    pub stale_vm_dirs: usize,
    /// Step 3: cgroup directories of dead firepit processes' VMs removed (one per hierarchy
    /// under cgroup v1).
    pub stale_cgroups: usize,
}

/// Runs steps 1 to 3 of crash recovery for `state_dir`, whose lock `records` holds, and the VM
/// cgroups under `cgroups`' parent (see the module docs for what is recovered and in which order;
/// step 4 happens when the QEMU provider starts). Blocking work runs on tokio's blocking pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use firepit_daemon::{recovery, records::RecordStore};
/// let state = tempfile::tempdir()?;
/// std::fs::create_dir_all(recovery::vms_dir(state.path()).join("fp-1-1"))?; // a VM that was booting
/// let records = Arc::new(RecordStore::open(state.path())?);
/// let cgroups = firepit_qemu::CgroupConfig::default();
/// let recovered = recovery::recover(state.path(), records, &cgroups).await?;
/// assert_eq!((recovered.reaped.killed, recovered.stale_vm_dirs), (0, 1));
/// assert!(!recovery::vms_dir(state.path()).exists());
/// # Ok(()) }
/// ```
pub async fn recover(
    state_dir: &Path,
    records: Arc<RecordStore>,
    cgroups: &firepit_qemu::CgroupConfig,
) -> Result<Recovery, RecoveryError> {
    let vms = vms_dir(state_dir);
    let cgroups = cgroups.clone();
    tokio::task::spawn_blocking(move || {
        let reaped = reap_records(&records);
        let stale_vm_dirs = sweep(&vms)?;
        let stale_cgroups = match firepit_qemu::remove_stale_cgroups(&cgroups) {
            Ok(sweep) => sweep.removed,
            Err(error) => {
                // No usable cgroups here: the provider says so too, and runs VMs without them.
                tracing::debug!(error = %error, "no cgroups to sweep");
                0
            }
        };
        Ok(Recovery { reaped, stale_vm_dirs, stale_cgroups })
    })
    .await
    .map_err(RecoveryError::Task)?
}

/// Step 2: removes `vms` (the provider recreates it) and says how many entries it held.
fn sweep(vms: &Path) -> Result<usize, RecoveryError> {
    let Ok(entries) = std::fs::read_dir(vms) else { return Ok(0) };
    let stale = entries.count();
    std::fs::remove_dir_all(vms)
        .map_err(|source| RecoveryError::StaleVmDir { dir: vms.to_owned(), source })?;
    if stale > 0 {
        info!(dir = %vms.display(), entries = stale, "removed runtime directories of VMs a previous run was booting");
    }
    Ok(stale)
}

/// Step 1: kills every recorded process that still matches its record, removes its runtime dir
/// and drops the record. Blocking.
///
/// ```
/// use firepit_daemon::{recovery, records::RecordStore};
/// let dir = tempfile::tempdir()?;
/// let store = RecordStore::open(dir.path())?;
/// let report = recovery::reap_records(&store);
/// assert_eq!((report.killed, report.gone, report.errors.len()), (0, 0, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reap_records(records: &RecordStore) -> ReapReport {
    let mut report = ReapReport::default();
    for path in records.record_files() {
        if path.extension().is_some_and(|e| e == "json")
            && let Err(error) = reap_one(&path, &mut report)
        {
            warn!(record = %path.display(), error = %firepit_pool::error_chain(&error), "cannot reap a recorded VM");
            report.errors.push(error);
        }
        if let Err(source) = std::fs::remove_file(&path) {
            report.errors.push(ReapError::RemoveRecord { path, source });
        }
    }
    if !report.is_empty() {
        info!(
            killed = report.killed,
            gone = report.gone,
            mismatched = report.mismatched,
            dirs_removed = report.dirs_removed,
            errors = report.errors.len(),
            "reaped VMs left by a previous run"
        );
    }
    report
}

fn reap_one(path: &Path, report: &mut ReapReport) -> Result<(), ReapError> {
    let text = std::fs::read(path).map_err(|source| ReapError::Read { path: path.to_owned(), source })?;
    let record: Record = serde_json::from_slice(&text)
        .map_err(|source| ReapError::Corrupt { path: path.to_owned(), source })?;
    let recorded_cmdline = BASE64
        .decode(&record.cmdline)
        .map_err(|source| ReapError::CorruptCmdline { path: path.to_owned(), source })?;
    let now = std::fs::read(format!("/proc/{}/cmdline", record.pid));
    settle(&record, &recorded_cmdline, now, report)?;
    remove_runtime_dir(&record.runtime_dir, report)
}

/// Kills the recorded process if it is still ours, given its command line `now`, and counts
/// what happened to it.
fn settle(
    record: &Record,
    recorded_cmdline: &[u8],
    now: std::io::Result<Vec<u8>>,
    report: &mut ReapReport,
) -> Result<(), ReapError> {
    // A zombie is dead already (its parent reaps it): only a running process counts as alive.
    match now {
        _ if !is_alive(record.pid) => report.gone += 1,
        Err(_) => report.gone += 1,
        // Our process (same pid, same start time) whose command line reads empty: it is in the
        // middle of exiting (its memory released, not a zombie yet) or of its exec (the new
        // image's arguments not mapped yet). Either way it is ours and must go: kill it.
        Ok(now)
            if now.is_empty()
                && record.start_time.is_some()
                && start_time(record.pid) == record.start_time =>
        {
            match kill_and_wait(record.pid) {
                Err(ReapError::Kill { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
                    report.gone += 1;
                }
                Err(error) => return Err(error),
                Ok(()) => report.killed += 1,
            }
        }
        Ok(now) if !same_process(record, recorded_cmdline, &now) => report.mismatched += 1,
        Ok(_) => {
            kill_and_wait(record.pid)?;
            report.killed += 1;
        }
    }
    Ok(())
}

/// Whether the live process `pid` is still the one recorded: same start time (when recorded) and
/// same command line (when recorded); at least one of the two must have been recorded. (A child
/// recorded between fork and exec has no command line of its own yet; its start time, set at
/// fork, identifies it alone.)
fn same_process(record: &Record, recorded_cmdline: &[u8], now: &[u8]) -> bool {
    let start_ok = record.start_time.is_none() || start_time(record.pid) == record.start_time;
    let cmdline_ok =
        if recorded_cmdline.is_empty() { record.start_time.is_some() } else { recorded_cmdline == now };
    start_ok && cmdline_ok
}

fn kill_and_wait(pid: u32) -> Result<(), ReapError> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| ReapError::PidOutOfRange { pid })?;
    // SAFETY: kill has no memory preconditions; the pid was checked against its record just before.
    if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
        return Err(ReapError::Kill { pid, source: std::io::Error::last_os_error() });
    }
    wait_gone(pid)
}

/// Waits up to 5 s until `pid` is dead (gone or a zombie).
fn wait_gone(pid: u32) -> Result<(), ReapError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let read = |what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let state = read("stat")
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    Err(ReapError::StillAlive { pid, state, wchan: read("wchan") })
}

fn remove_runtime_dir(dir: &Path, report: &mut ReapReport) -> Result<(), ReapError> {
    if !dir.is_absolute() || dir.components().count() < 3 {
        return Err(ReapError::UnsafeRuntimeDir { dir: dir.to_owned() });
    }
    match std::fs::symlink_metadata(dir) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(dir)
                .map_err(|source| ReapError::RemoveDir { dir: dir.to_owned(), source })?;
            report.dirs_removed += 1;
            Ok(())
        }
        Ok(_) => Err(ReapError::NotADirectory { dir: dir.to_owned() }),
    }
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
