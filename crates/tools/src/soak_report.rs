//! What the soak observed: the fault log, failed requests, and the rule that attributes a failure
//! to an injected fault.
//!
//! # Attribution rule
//!
//! A failed request is **explained** when one of these holds, else it is **unexplained** (a bug):
//! 1. *VM fault*: the cycle's VM was `kill -9`ed or `SIGSTOP`ped by the chaos task before the
//!    request ended.
//! 2. *Dropped*: the cycle aborted one of its own requests on purpose and this is the retried
//!    release answering `404 lease_not_found` (the aborted release may have gone through).
//! 3. *Window*: the request is an acquire that overlapped a fill-failure window (from its start
//!    until [`WINDOW_GRACE`] after its end: the engine's largest backoff plus a fill), or any
//!    request that overlapped a daemon restart (from the
//!    `kill -9` until [`RESTART_GRACE`] after the new daemon answered `/healthz`), or the cycle
//!    started before a daemon restart (its lease died with the daemon).
//!
//! Lease expiries and exec timeouts are injected on requests of their own and checked exactly
//! (an expired lease must answer 404, a timed-out exec must say `timed_out`); any deviation is
//! unexplained.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// How long after a fill-failure window its effects may still be felt (the engine's backoff cap
/// is 30 s, then one fill).
pub const WINDOW_GRACE: Duration = Duration::from_secs(60);
/// How long after the restarted daemon answered a request may still fail because of the restart.
pub const RESTART_GRACE: Duration = Duration::from_secs(5);

/// The kinds of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `kill -9` of the QEMU of a VM a soak client holds.
    KillLeasedVm,
    /// `kill -9` of the QEMU of a ready VM (held by no client and no abandoned lease).
    KillIdleVm,
    /// Fills fail for a while (`faults.fail_fills_file` exists).
    FillFailure,
    /// The QEMU of a VM is `SIGSTOP`ped for a few seconds (the agent stops answering).
    AgentStall,
    /// An exec that sleeps past its `timeout_ms`.
    ExecTimeout,
    /// A client aborts a request mid-way (drops the connection).
    DroppedRequest,
    /// A lease is acquired with a short TTL and never released.
    LeaseExpired,
    /// The daemon is `kill -9`ed and restarted on the same state dir.
    DaemonRestart,
    /// A client stops reading an exec stream, a download and a terminal; its lease is released or
    /// expires (see the `soak_stall` module).
    StalledClient,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 9] = [
        Self::KillLeasedVm,
        Self::KillIdleVm,
        Self::FillFailure,
        Self::AgentStall,
        Self::ExecTimeout,
        Self::DroppedRequest,
        Self::LeaseExpired,
        Self::DaemonRestart,
        Self::StalledClient,
    ];

    /// The key in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Self::KillLeasedVm => "kill_leased_vm",
            Self::KillIdleVm => "kill_idle_vm",
            Self::FillFailure => "fill_failure",
            Self::AgentStall => "agent_stall",
            Self::ExecTimeout => "exec_timeout",
            Self::DroppedRequest => "dropped_request",
            Self::LeaseExpired => "lease_expired",
            Self::DaemonRestart => "daemon_restart",
            Self::StalledClient => "stalled_client",
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
struct FaultEvent {
    kind: FaultKind,
    start: Instant,
    /// For windows (fill failure, restart): when it closed; `None` while open.
    end: Option<Instant>,
    vm_id: Option<String>,
    /// The injection did not happen after all (e.g. the process was gone): not counted.
    retracted: bool,
}

/// Everything injected and everything that failed, shared by the clients and the chaos task.
#[derive(Default)]
pub struct SoakLog {
    faults: Mutex<Vec<FaultEvent>>,
    failures: Mutex<Vec<Failure>>,
    requests: Mutex<u64>,
}

/// One failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `acquire`, `exec`, `release`, ...
    pub what: &'static str,
    /// The error.
    pub message: String,
    /// When the cycle began.
    pub cycle_start: Instant,
    /// When the request began and ended.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// The cycle's VM, when it had one.
    pub vm_id: Option<String>,
    /// Rule 2: a retried release after an aborted one, answered 404.
    pub after_own_drop: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SoakLog {
    /// Records a fault; returns its index (to close a window later).
    pub fn fault(&self, kind: FaultKind, vm_id: Option<String>) -> usize {
        tracing::info!(kind = kind.name(), vm_id = vm_id.as_deref().unwrap_or("-"), "soak: fault injected");
        let mut faults = lock(&self.faults);
        faults.push(FaultEvent { kind, start: Instant::now(), end: None, vm_id, retracted: false });
        faults.len() - 1
    }

    /// Closes a window opened by [`Self::fault`].
    pub fn close(&self, index: usize) {
        if let Some(event) = lock(&self.faults).get_mut(index) {
            event.end = Some(Instant::now());
        }
    }

    /// Takes back a fault that could not be injected after all.
    pub fn retract(&self, index: usize) {
        if let Some(event) = lock(&self.faults).get_mut(index) {
            event.retracted = true;
        }
    }

    /// Counts one request sent.
    pub fn request(&self) {
        *lock(&self.requests) += 1;
    }

    /// Records a failed request.
    pub fn failed(&self, failure: Failure) {
        tracing::debug!(what = failure.what, message = %failure.message, "soak request failed");
        lock(&self.failures).push(failure);
    }

    /// Faults injected, by kind (every kind present, zero when never injected).
    pub fn fault_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts: BTreeMap<&'static str, u64> = FaultKind::ALL.iter().map(|k| (k.name(), 0)).collect();
        for event in lock(&self.faults).iter().filter(|e| !e.retracted) {
            *counts.entry(event.kind.name()).or_default() += 1;
        }
        counts
    }

    /// Requests sent.
    pub fn requests(&self) -> u64 {
        *lock(&self.requests)
    }

    /// Explained failures counted by reason, and the unexplained ones (the rule in the module docs).
    pub fn classify(&self) -> (BTreeMap<&'static str, u64>, Vec<Failure>) {
        let faults = lock(&self.faults).clone();
        let mut explained = BTreeMap::new();
        let mut unexplained = Vec::new();
        for failure in lock(&self.failures).iter() {
            match explanation(failure, &faults) {
                Some(reason) => *explained.entry(reason).or_default() += 1,
                None => unexplained.push(failure.clone()),
            }
        }
        (explained, unexplained)
    }
}

/// The reason a failure is explained (see the module docs), or `None`.
fn explanation(failure: &Failure, faults: &[FaultEvent]) -> Option<&'static str> {
    if failure.after_own_drop {
        return Some("own_drop");
    }
    faults.iter().filter(|f| !f.retracted).find_map(|fault| match fault.kind {
        FaultKind::KillLeasedVm | FaultKind::KillIdleVm | FaultKind::AgentStall => {
            (fault.vm_id.is_some() && fault.vm_id == failure.vm_id && fault.start <= failure.end)
                .then_some("vm_fault")
        }
        // Failing fills only starve acquires.
        FaultKind::FillFailure => (failure.what.starts_with("acquire")
            && overlaps(failure, fault, WINDOW_GRACE))
        .then_some("fill_window"),
        FaultKind::DaemonRestart => (overlaps(failure, fault, RESTART_GRACE)
            || failure.cycle_start <= fault.start && fault.start <= failure.end)
            .then_some("daemon_restart"),
        FaultKind::ExecTimeout
        | FaultKind::DroppedRequest
        | FaultKind::LeaseExpired
        | FaultKind::StalledClient => None,
    })
}

fn overlaps(failure: &Failure, window: &FaultEvent, grace: Duration) -> bool {
    let end = window.end.map_or(failure.end, |e| e + grace);
    failure.start <= end && window.start <= failure.end
}

/// The one JSON line `firepit soak --json` prints.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    /// Whether every pass condition held.
    pub pass: bool,
    /// Cycles run (acquire, exec, release).
    pub cycles: u64,
    /// Cycles whose every request succeeded.
    pub cycles_ok: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Requests sent by clients and the chaos task.
    pub requests: u64,
    /// Requests that failed.
    pub requests_failed: u64,
    /// Explained failures by reason: `vm_fault`, `own_drop`, `fill_window`, `daemon_restart`.
    pub requests_failed_explained: BTreeMap<&'static str, u64>,
    /// Failed requests not attributable to an injected fault (must be 0).
    pub requests_failed_unexplained: u64,
    /// The first unexplained failures, for the reader.
    pub unexplained: Vec<String>,
    /// Soak QEMU processes alive after the final stop, plus those seen owned by no record
    /// during the run (must be 0).
    pub leaked_vms: u64,
    /// Of those, seen during the run.
    pub leaked_vms_during_run: u64,
    /// Files left beyond the durable ones (must be 0).
    pub leaked_files: u64,
    /// Their paths.
    pub leaked_file_paths: Vec<String>,
    /// After the `kill -9` restart: the old QEMUs and runtime dirs were gone and an unrelated
    /// process and file survived.
    pub restart_reaped_only_its_own: bool,
    /// Expired leases answered 404 and their VMs were destroyed; timed-out execs said so.
    pub timeouts_enforced: bool,
    /// VMs the daemon's health check refused at hand-out (stalled or killed idle VMs caught).
    pub health_check_rejections: u64,
    /// Peak RSS of the daemon over all its runs, KiB.
    pub daemon_max_rss_kib: u64,
    /// The pool was back at full depth within the bound after the chaos stopped.
    pub full_depth_regained: bool,
    /// The daemon stopped cleanly (exit 0) on SIGTERM at the end.
    pub clean_stop: bool,
    /// Durations, seconds.
    pub durations: Durations,
}

/// Wall-clock durations in seconds.
#[derive(Debug, Default, Serialize)]
pub struct Durations {
    /// The whole soak.
    pub total_s: f64,
    /// Clients and chaos running.
    pub chaos_s: f64,
    /// From `kill -9` of the daemon until the new one answered.
    pub restart_s: f64,
    /// From the end of the chaos until full depth (the bound when not regained).
    pub regain_s: f64,
    /// Median and 99th percentile of successful cycles.
    pub cycle_p50_s: f64,
    /// 99th percentile.
    pub cycle_p99_s: f64,
}
