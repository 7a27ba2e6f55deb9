//! The chaos task: while the clients cycle, it injects one fault every interval (random kind from
//! a shuffled deck, so every kind comes up), and once restarts the daemon with `kill -9`.
//!
//! Only processes of this soak's daemon are touched: a QEMU pid is taken from the daemon's
//! ownership records and signalled only if its command line still points into the soak's state dir.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use firepit_api::AcquireRequest;
use firepit_client::ClientError;
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::daemon_dir::ChildDaemonError;
use crate::procfs::{QemuProcess, qemu_under, still_running};
use crate::soak_clients::{Sent, SoakShared, send};
use crate::soak_daemon::{SHAPE, SoakDaemon};
use crate::soak_leaks::{RunLeakWatch, owned_vms};
use crate::soak_report::{Failure, FaultKind};

/// What the chaos task reports back.
#[derive(Debug, Default)]
pub struct ChaosOutcome {
    /// Seconds from the daemon's `kill -9` until the new one answered.
    pub restart_secs: f64,
    /// The restart reaped the old QEMUs and runtime dirs and left the decoys alone.
    pub restart_reaped_only_its_own: bool,
    /// Whether the restart happened at all.
    pub restarted: bool,
}

/// The chaos task's state.
pub struct Chaos {
    shared: Arc<SoakShared>,
    /// Mean pause between faults.
    interval: Duration,
    restart_at: u64,
    deck: Vec<FaultKind>,
    fill_window_open: Arc<AtomicBool>,
    stall_leased: bool,
    background: JoinSet<()>,
    /// Unowned-QEMU watch.
    pub leak_watch: RunLeakWatch,
    /// What happened.
    pub outcome: ChaosOutcome,
}

fn signal(process: QemuProcess, state_dir: &std::path::Path, signal: libc::c_int) -> bool {
    // Re-check right before signalling: still the same process, still one of the soak's QEMUs.
    if !qemu_under(state_dir).contains(&process) {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(process.pid) else { return false };
    // SAFETY: kill(2) on a QEMU process of this soak's daemon, checked just above.
    unsafe { libc::kill(pid, signal) == 0 }
}

impl Chaos {
    /// A chaos task that restarts the daemon once `restart_at` cycles have started.
    pub fn new(shared: Arc<SoakShared>, interval: Duration, restart_at: u64) -> Self {
        Self {
            shared,
            interval,
            restart_at,
            deck: Vec::new(),
            fill_window_open: Arc::new(AtomicBool::new(false)),
            stall_leased: false,
            background: JoinSet::new(),
            leak_watch: RunLeakWatch::new(Duration::from_secs(150)),
            outcome: ChaosOutcome::default(),
        }
    }

    /// Injects faults until `done` fires; then waits for every window and stall to end.
    pub async fn run(
        &mut self,
        daemon: &mut SoakDaemon,
        done: &tokio_util::sync::CancellationToken,
    ) -> Result<(), ChildDaemonError> {
        while !done.is_cancelled() {
            let pause = self.interval.mul_f64(rand::rng().random_range(0.5..1.5));
            tokio::select! {
                () = done.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            daemon.sample_rss();
            self.leak_watch.scan(&daemon.state_dir);
            if !self.outcome.restarted
                && self.shared.cycles_started.load(Ordering::Acquire) >= self.restart_at
            {
                self.restart(daemon).await?;
                continue;
            }
            if self.deck.is_empty() {
                self.deck = FaultKind::ALL.into_iter().filter(|k| *k != FaultKind::DaemonRestart).collect();
                self.deck.shuffle(&mut rand::rng());
            }
            if let Some(kind) = self.deck.pop()
                && !self.inject(kind, daemon)
            {
                self.deck.insert(0, kind); // not possible right now: later
            }
            if self.shared.log.fault_counts().values().all(|n| *n > 0) {
                self.shared.every_kind_injected.store(true, Ordering::Release);
            }
        }
        // Close what is still open (fill window, stalls, expiry checks) before the final checks.
        while let Some(result) = self.background.join_next().await {
            if let Err(error) = result {
                tracing::warn!(%error, "a soak chaos task failed");
            }
        }
        if daemon.fail_fills_file.exists()
            && let Err(error) = std::fs::remove_file(&daemon.fail_fills_file)
        {
            tracing::warn!(%error, "cannot remove the fill-failure trigger");
        }
        Ok(())
    }

    fn pick_vm(&self, daemon: &SoakDaemon, leased: bool) -> Option<(QemuProcess, String)> {
        let live = qemu_under(&daemon.state_dir);
        let mut candidates: Vec<(QemuProcess, String)> = owned_vms(&daemon.state_dir)
            .into_iter()
            .filter(|o| self.shared.is_leased(&o.vm_id) == leased && !self.shared.is_abandoned(&o.vm_id))
            .filter_map(|o| live.iter().find(|p| p.pid == o.pid).map(|p| (*p, o.vm_id)))
            .collect();
        candidates.shuffle(&mut rand::rng());
        candidates.pop()
    }

    /// Injects one fault; false when it cannot be injected now.
    fn inject(&mut self, kind: FaultKind, daemon: &SoakDaemon) -> bool {
        let log = &self.shared.log;
        match kind {
            FaultKind::KillLeasedVm | FaultKind::KillIdleVm => {
                let Some((process, vm_id)) = self.pick_vm(daemon, kind == FaultKind::KillLeasedVm) else {
                    return false;
                };
                let index = log.fault(kind, Some(vm_id));
                if !signal(process, &daemon.state_dir, libc::SIGKILL) {
                    log.retract(index);
                    return false;
                }
                true
            }
            FaultKind::AgentStall => {
                // Alternate: an idle one (the health check must refuse it) and a leased one (the
                // exec waits, then answers or fails with the agent timeout).
                self.stall_leased = !self.stall_leased;
                let leased = !self.stall_leased;
                let Some((process, vm_id)) = self.pick_vm(daemon, leased) else { return false };
                let index = log.fault(kind, Some(vm_id));
                if !signal(process, &daemon.state_dir, libc::SIGSTOP) {
                    log.retract(index);
                    return false;
                }
                let stall = Duration::from_millis(rand::rng().random_range(4_000..14_000));
                let state_dir = daemon.state_dir.clone();
                self.background.spawn(async move {
                    tokio::time::sleep(stall).await;
                    signal(process, &state_dir, libc::SIGCONT);
                });
                true
            }
            FaultKind::FillFailure => {
                if self.fill_window_open.swap(true, Ordering::AcqRel) {
                    return false;
                }
                let trigger = daemon.fail_fills_file.clone();
                if let Err(error) = std::fs::write(&trigger, b"") {
                    tracing::warn!(%error, "cannot create the fill-failure trigger");
                    self.fill_window_open.store(false, Ordering::Release);
                    return false;
                }
                let index = log.fault(kind, None);
                let window = Duration::from_millis(rand::rng().random_range(2_000..6_000));
                let (shared, open) = (self.shared.clone(), self.fill_window_open.clone());
                self.background.spawn(async move {
                    tokio::time::sleep(window).await;
                    if let Err(error) = std::fs::remove_file(&trigger) {
                        tracing::warn!(%error, "cannot remove the fill-failure trigger");
                    }
                    shared.log.close(index);
                    open.store(false, Ordering::Release);
                });
                true
            }
            FaultKind::ExecTimeout => {
                self.shared.exec_timeout_tokens.fetch_add(1, Ordering::AcqRel);
                true
            }
            FaultKind::DroppedRequest => {
                self.shared.drop_tokens.fetch_add(1, Ordering::AcqRel);
                true
            }
            FaultKind::LeaseExpired => {
                let shared = self.shared.clone();
                let state_dir = daemon.state_dir.clone();
                self.background.spawn(async move { abandon_lease(shared, state_dir).await });
                true
            }
            FaultKind::StalledClient => {
                let (shared, state_dir) = (self.shared.clone(), daemon.state_dir.clone());
                let expire = rand::rng().random_bool(0.5);
                self.background.spawn(crate::soak_stall::stalled_client(shared, state_dir, expire));
                true
            }
            FaultKind::DaemonRestart => false,
        }
    }

    /// `kill -9` the daemon, restart it on the same state dir, and check that the restart reaped
    /// the previous run's QEMUs and runtime dirs and nothing else (a decoy process and file).
    async fn restart(&mut self, daemon: &mut SoakDaemon) -> Result<(), ChildDaemonError> {
        while self.fill_window_open.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.outcome.restarted = true;
        let old_qemus = qemu_under(&daemon.state_dir);
        let vms_dir = daemon.state_dir.join("vms");
        let old_dirs: Vec<PathBuf> =
            std::fs::read_dir(&vms_dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        let decoy_file = daemon.state_dir.join("soak-decoy");
        let decoy_written = std::fs::write(&decoy_file, b"not the daemon's").is_ok();
        let mut decoy = tokio::process::Command::new("sleep").arg("600").kill_on_drop(true).spawn().ok();

        let index = self.shared.log.fault(FaultKind::DaemonRestart, None);
        let killed_at = Instant::now();
        daemon.kill_hard().await;
        daemon.start(Duration::from_secs(300)).await?;
        self.shared.log.close(index);
        self.outcome.restart_secs = killed_at.elapsed().as_secs_f64();

        let deadline = Instant::now() + Duration::from_secs(10);
        while old_qemus.iter().any(|p| still_running(*p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let qemus_gone = !old_qemus.iter().any(|p| still_running(*p));
        let new: HashSet<PathBuf> =
            std::fs::read_dir(&vms_dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        let dirs_gone = old_dirs.iter().all(|d| !new.contains(d));
        let decoy_alive = decoy.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        let decoy_kept = decoy_written && decoy_file.exists();
        tracing::info!(
            qemus_gone,
            dirs_gone,
            decoy_alive,
            decoy_kept,
            old = old_qemus.len(),
            "soak: daemon restarted"
        );
        self.outcome.restart_reaped_only_its_own = qemus_gone && dirs_gone && decoy_alive && decoy_kept;
        if let Some(mut child) = decoy {
            let _killed = child.start_kill();
            let _reaped = child.wait().await;
        }
        if let Err(error) = std::fs::remove_file(&decoy_file) {
            tracing::warn!(%error, "cannot remove the decoy file");
        }
        Ok(())
    }
}

/// Acquires a lease with a 2 s TTL, uses it once, never releases it; then checks that it expired
/// (renew answers 404) and that its VM was destroyed (its record is gone).
async fn abandon_lease(shared: Arc<SoakShared>, state_dir: PathBuf) {
    let log = &shared.log;
    let request =
        AcquireRequest { shape: SHAPE.into(), wait_ms: 90_000, ttl_ms: Some(2_000), snapshot: None };
    let started = Instant::now();
    let fail = |what: &'static str, message: String, start: Instant, vm_id: Option<String>| {
        log.failed(Failure {
            what,
            message,
            cycle_start: started,
            start,
            end: Instant::now(),
            vm_id,
            after_own_drop: false,
        })
    };
    let lease = match send(log, None, shared.client.acquire(&request, None)).await {
        Sent::Ok(lease) => lease,
        Sent::Failed(error) => return fail("acquire (expiry)", error.to_string(), started, None),
        Sent::Hung | Sent::Aborted => return fail("acquire (expiry)", "no answer".into(), started, None),
    };
    shared.abandoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(lease.vm_id.clone());
    log.fault(FaultKind::LeaseExpired, Some(lease.vm_id.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let checked = Instant::now();
    match send(log, None, shared.client.renew(&lease.lease_id, None)).await {
        Sent::Failed(ClientError::Api { status, .. }) if status.as_u16() == 404 => {}
        Sent::Ok(_) => {
            shared.timeouts_enforced.store(false, Ordering::Release);
            fail(
                "renew (expiry)",
                "a lease past its TTL was still renewable".into(),
                checked,
                Some(lease.vm_id),
            );
            return;
        }
        Sent::Failed(error) => return fail("renew (expiry)", error.to_string(), checked, Some(lease.vm_id)),
        Sent::Hung | Sent::Aborted => {
            return fail("renew (expiry)", "no answer".into(), checked, Some(lease.vm_id));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while owned_vms(&state_dir).iter().any(|o| o.vm_id == lease.vm_id) {
        if Instant::now() >= deadline {
            shared.timeouts_enforced.store(false, Ordering::Release);
            fail(
                "expiry",
                "the VM of an expired lease still runs 30 s later".into(),
                checked,
                Some(lease.vm_id),
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
