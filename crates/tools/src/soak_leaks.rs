//! Leak accounting for the soak: QEMU processes and files of *this* soak's daemon only.
//!
//! A QEMU process belongs to the soak when its command line mentions the soak's state dir (its
//! sockets live there). The daemon's ownership records (`<state>/owned/*.json`) say which of them a
//! live entry owns. Durable files after a clean stop: `daemon.lock`, the empty dirs `owned/`
//! and `vms/`, and the ended leases' records in `leases/` (kept for their retention); anything else under the state dir, the API socket, or a snapshot template
//! `/dev/shm/firepit-<daemon pid>-t*` is a leaked file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::procfs::{QemuProcess, qemu_under};

/// One ownership record: vm id → pid.
#[derive(Debug, Clone)]
pub struct OwnedVm {
    /// The VM's id.
    pub vm_id: String,
    /// Its QEMU pid.
    pub pid: u32,
}

/// The daemon's ownership records (see `firepit_daemon::records`), as it wrote them.
pub fn owned_vms(state_dir: &Path) -> Vec<OwnedVm> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("owned")) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let value: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some(OwnedVm {
                vm_id: value.get("vm_id")?.as_str()?.to_owned(),
                pid: u32::try_from(value.get("pid")?.as_u64()?).ok()?,
            })
        })
        .collect()
}

/// Watches, during the run, for soak QEMU processes no record owns for longer than `grace` (a VM
/// is recorded once booted, so a booting one is unrecorded for up to the boot timeout).
pub struct RunLeakWatch {
    grace: Duration,
    unrecorded_since: HashMap<QemuProcess, Instant>,
    leaked: HashSet<QemuProcess>,
}

impl RunLeakWatch {
    /// A watch that flags a process unrecorded for longer than `grace`.
    pub fn new(grace: Duration) -> Self {
        Self { grace, unrecorded_since: HashMap::new(), leaked: HashSet::new() }
    }

    /// One scan of /proc against the records.
    pub fn scan(&mut self, state_dir: &Path) {
        let recorded: HashSet<u32> = owned_vms(state_dir).iter().map(|o| o.pid).collect();
        let now = Instant::now();
        let live: HashSet<QemuProcess> = qemu_under(state_dir).into_iter().collect();
        self.unrecorded_since.retain(|p, _| live.contains(p) && !recorded.contains(&p.pid));
        for process in live.into_iter().filter(|p| !recorded.contains(&p.pid)) {
            let since = *self.unrecorded_since.entry(process).or_insert(now);
            if now.duration_since(since) > self.grace && self.leaked.insert(process) {
                tracing::error!(pid = process.pid, "soak: QEMU process owned by no record");
            }
        }
    }

    /// Processes seen unowned for longer than the grace.
    pub fn leaked(&self) -> usize {
        self.leaked.len()
    }
}

/// Files left after the daemon's final stop beyond the durable ones (see the module docs).
pub fn leftover_files(state_dir: &Path, socket: &Path, daemon_pids: &[u32]) -> Vec<PathBuf> {
    let mut left = Vec::new();
    walk(state_dir, &mut left);
    let durable = [state_dir.join("daemon.lock"), state_dir.join("owned"), state_dir.join("vms")];
    // Ended leases' records (`<state>/leases/<id>.json`) are kept on purpose, for their retention.
    let records = state_dir.join("leases");
    left.retain(|p| {
        let record = p.parent() == Some(records.as_path()) && p.extension().is_some_and(|x| x == "json");
        !durable.contains(p) && *p != records && !record
    });
    if socket.exists() {
        left.push(socket.to_owned());
    }
    let prefixes: Vec<String> = daemon_pids.iter().map(|pid| format!("firepit-{pid}-t")).collect();
    for entry in std::fs::read_dir("/dev/shm").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            left.push(entry.path());
        }
    }
    left
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, out);
        }
        out.push(path);
    }
}
