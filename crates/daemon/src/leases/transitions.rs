//! A lease's changes of state: end (from running or paused), pause and resume. Each marks the
//! lease first (calls in flight stop at once, see [`crate::leases::lease`]), then takes its VM slot,
//! then records the new state and announces it.
//!
//! Pausing and resuming are the backend's work ([`LeaseBackend::pause`],
//! [`PausedVm::resume`](crate::backend::PausedVm::resume)); here the lease keeps its id, its
//! options and what was left of its TTL. Both are idempotent: pausing a paused lease and resuming
//! a running one succeed without doing anything.
//!
//! [`LeaseBackend::pause`]: crate::backend::LeaseBackend::pause

use std::sync::Arc;
use std::time::SystemTime;

use firepit_api::{EndReason, EventKind, LeaseState};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::{PauseFailed, ResumeFailed};
use crate::leases::lease::Lease;
pub use crate::leases::state::TransitionError;
use crate::leases::state::{End, Slot};

impl Lease {
    /// Ends the lease for `reason`: its VM is destroyed (a paused lease's saved state deleted)
    /// now, every call and stream on it ends with `lease_ended`, the end is recorded and
    /// announced. `false` when it had ended already.
    pub(crate) async fn finish(self: &Arc<Self>, reason: EndReason, detail: Option<String>) -> bool {
        {
            let mut status = self.status();
            if status.end.is_some() {
                return false;
            }
            status.end = Some(End { reason, detail: detail.clone(), at: SystemTime::now() });
            status.state = LeaseState::Ended;
            // In the same step as the state: a view never shows an ended lease with a VM.
            status.pid = None;
            status.cgroup = None;
            status.run.cancel();
        }
        self.gone.cancel();
        let slot = std::mem::replace(&mut *self.slot.write().await, Slot::Empty);
        match slot {
            // Dropping the VM releases it to the backend: destroyed, the pool refills.
            Slot::Running(vm) => drop(vm),
            Slot::Paused(paused) => paused.discard().await,
            Slot::Empty => {}
        }
        self.status().saved = None;
        self.persist();
        // The metric's `outcome` label keeps its earlier values.
        let how = match reason {
            EndReason::TtlExpired => "expired",
            EndReason::HostShutdown => "shutdown",
            other => other.as_str(),
        };
        self.shared.metrics.lease_ended(&self.shape, how);
        self.shared.announce(EventKind::LeaseEnded, self, |event| {
            event.reason = Some(reason);
            event.detail = detail.clone();
        });
        self.span.in_scope(|| info!(how, detail = detail.as_deref().unwrap_or(""), "lease ended"));
        true
    }

    /// Pauses the lease: calls and streams on it end with `lease_paused`, the backend saves its
    /// VM's state and stops it, the TTL clock stops. `reason` is what the announcement says
    /// (`ttl_expired` for a pause by `on_expiry`). A pause that fails leaves the lease running.
    pub async fn pause(self: &Arc<Self>, reason: Option<EndReason>) -> Result<(), TransitionError> {
        let before = {
            let mut status = self.status();
            let before = status.state;
            if before == LeaseState::Running {
                status.state = LeaseState::Paused;
                status.paused_at = Some(SystemTime::now());
                status.run.cancel();
            }
            before
        };
        match before {
            LeaseState::Ended => return Err(TransitionError::Ended(self.interruption())),
            LeaseState::Paused => {
                // Another pause may still be writing: answer once it is done.
                let _settled = self.slot.read().await;
                return match self.state() {
                    LeaseState::Paused => Ok(()),
                    LeaseState::Ended => Err(TransitionError::Ended(self.interruption())),
                    LeaseState::Running => Err(TransitionError::Failed {
                        what: "pause",
                        error: "a pause at the same time failed".into(),
                    }),
                };
            }
            LeaseState::Running => {}
        }
        let mut slot = self.slot.write().await;
        let Slot::Running(vm) = std::mem::replace(&mut *slot, Slot::Empty) else {
            return Err(TransitionError::Ended(self.interruption()));
        };
        match self.shared.backend.pause(vm).await {
            Ok(paused) => {
                let saved = paused.saved();
                *slot = Slot::Paused(paused);
                drop(slot);
                self.clock.stop(self.shared.settings.paused_retention);
                let ended = {
                    let mut status = self.status();
                    status.pid = None;
                    status.cgroup = None;
                    status.saved = Some(saved);
                    status.end.is_some()
                };
                if !ended {
                    self.persist();
                    self.shared.announce(EventKind::LeasePaused, self, |event| event.reason = reason);
                    self.span.in_scope(|| info!(reason = reason.map(EndReason::as_str), "lease paused"));
                }
                Ok(())
            }
            Err(PauseFailed { vm, error }) => {
                *slot = Slot::Running(vm);
                drop(slot);
                let mut status = self.status();
                if status.end.is_none() {
                    status.state = LeaseState::Running;
                    status.paused_at = None;
                    status.run = CancellationToken::new();
                }
                drop(status);
                self.span.in_scope(|| warn!(%error, "pause failed; the lease keeps running"));
                Err(TransitionError::Failed { what: "pause", error })
            }
        }
    }

    /// Resumes a paused lease: the backend starts its VM from the saved state, the TTL clock runs
    /// again with what was left. A resume that fails leaves the lease paused.
    pub async fn resume(self: &Arc<Self>) -> Result<(), TransitionError> {
        let mut slot = self.slot.write().await;
        if self.status().end.is_some() {
            return Err(TransitionError::Ended(self.interruption()));
        }
        let paused = match std::mem::replace(&mut *slot, Slot::Empty) {
            Slot::Paused(paused) => paused,
            Slot::Running(vm) => {
                *slot = Slot::Running(vm);
                return Ok(());
            }
            Slot::Empty => return Err(TransitionError::Ended(self.interruption())),
        };
        match paused.resume().await {
            Ok(vm) => {
                let (pid, cgroup) = (vm.pid(), vm.cgroup());
                let exited = vm.exited();
                *slot = Slot::Running(vm);
                drop(slot);
                let run = {
                    let mut status = self.status();
                    if status.end.is_some() {
                        return Err(TransitionError::Ended(self.interruption()));
                    }
                    status.state = LeaseState::Running;
                    status.paused_at = None;
                    status.run = CancellationToken::new();
                    status.pid = pid;
                    status.cgroup = cgroup;
                    status.saved = None;
                    status.run.clone()
                };
                self.clock.start();
                self.persist();
                if let Some(watch) = self.shared.watch.get() {
                    watch(self.clone(), exited, run);
                }
                self.shared.announce(EventKind::LeaseResumed, self, |_| {});
                self.span.in_scope(|| info!("lease resumed"));
                Ok(())
            }
            Err(ResumeFailed { paused, error }) => {
                *slot = Slot::Paused(paused);
                self.span.in_scope(|| warn!(%error, "resume failed; the lease stays paused"));
                Err(TransitionError::Failed { what: "resume", error })
            }
        }
    }
}
