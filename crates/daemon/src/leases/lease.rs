//! One lease: its identity, options, state and the slot that holds its VM (see the module docs of
//! [`crate::leases`] for why nothing else may hold the VM).
//!
//! The slot is an async read-write lock: a call on the VM ([`Lease::on_vm`]) holds it for reading,
//! a change of state (end, pause, resume) for writing. A change first marks the lease as stopped
//! (its *run token* fires), so every call in flight drops its work and lets go of the slot at
//! once; then it takes the slot. So the VM of an ended lease is destroyed right away, however
//! long a call on it would have taken.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use firepit_api::{EndReason, LeaseState, Metadata, OnExpiry};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use crate::backend::{BoxFuture, LeasedVm, PausedVm};
use crate::leases::clock::Clock;
use crate::leases::context::Shared;

/// What a client chose for a lease at acquire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Its labels.
    pub metadata: Metadata,
    /// A call while paused resumes it first.
    pub auto_resume: bool,
    /// What the TTL running out does.
    pub on_expiry: OnExpiry,
}

/// Where a lease's VM is.
pub(crate) enum Slot {
    /// Running: the lease holds it.
    Running(Box<dyn LeasedVm>),
    /// Paused: only its saved state exists.
    Paused(Box<dyn PausedVm>),
    /// Ended (or between states).
    Empty,
}

/// How a lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct End {
    pub reason: EndReason,
    pub detail: Option<String>,
    pub at: SystemTime,
}

/// The part of a lease's state a std mutex guards (never held across an await).
pub(crate) struct Status {
    pub state: LeaseState,
    /// Fires when the current run stops (pause or end); replaced at resume.
    pub run: CancellationToken,
    pub end: Option<End>,
    pub paused_at: Option<SystemTime>,
    pub pid: Option<u32>,
    pub cgroup: Option<String>,
    /// While paused: what the backend said about the saved state (kept in the lease's record).
    pub saved: Option<serde_json::Value>,
}

/// Why a call on a lease could not run, or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// The lease ended (before or during the call).
    #[error("lease `{id}` ended ({reason}){}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Ended {
        /// The lease.
        id: String,
        /// Why it ended.
        reason: &'static str,
        /// More about it.
        detail: Option<String>,
    },
    /// The lease is paused (or was paused during the call).
    #[error("lease `{id}` is paused{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_else(|| ": resume it first, or acquire with auto_resume".into()))]
    Paused {
        /// The lease.
        id: String,
        /// Why the call could not resume it, when it tried.
        detail: Option<String>,
    },
}

/// One VM held by a client (see the module docs).
pub struct Lease {
    /// The lease id (`l-` and 16 hex digits).
    pub id: String,
    /// The shape the VM belongs to.
    pub shape: String,
    /// The VM's id (kept across a pause).
    pub vm_id: String,
    /// One span per lease: calls, renew, release and expiry log inside it.
    pub span: Span,
    /// When the VM was handed out.
    pub created: SystemTime,
    /// What the client chose at acquire.
    pub options: LeaseOptions,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) slot: RwLock<Slot>,
    pub(crate) status: Mutex<Status>,
    pub(crate) clock: Clock,
    /// Fires when the lease ends (its whole life, across pauses).
    pub(crate) gone: CancellationToken,
    pub(crate) shared: Arc<Shared>,
}

impl Lease {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        shape: String,
        vm_id: String,
        created: SystemTime,
        options: LeaseOptions,
        idempotency_key: Option<String>,
        slot: Slot,
        clock: Clock,
        shared: Arc<Shared>,
    ) -> Self {
        let state = match slot {
            Slot::Running(_) => LeaseState::Running,
            Slot::Paused(_) => LeaseState::Paused,
            Slot::Empty => LeaseState::Ended,
        };
        let (pid, cgroup) = match &slot {
            Slot::Running(vm) => (vm.pid(), vm.cgroup()),
            _ => (None, None),
        };
        let paused_at = (state == LeaseState::Paused).then(SystemTime::now);
        let saved = match &slot {
            Slot::Paused(paused) => Some(paused.saved()),
            _ => None,
        };
        let span = tracing::info_span!(parent: None, "lease", lease_id = %id, vm_id = %vm_id, shape = %shape);
        Self {
            id,
            shape,
            vm_id,
            span,
            created,
            options,
            idempotency_key,
            slot: RwLock::new(slot),
            status: Mutex::new(Status {
                state,
                run: CancellationToken::new(),
                end: None,
                paused_at,
                pid,
                cgroup,
                saved,
            }),
            clock,
            gone: CancellationToken::new(),
            shared,
        }
    }

    /// Running, paused or ended.
    pub fn state(&self) -> LeaseState {
        self.status().state
    }

    /// Fires when the current run of the lease stops: it was paused or it ended. A stream on the
    /// lease selects on it and then ends with [`Lease::interruption`].
    pub fn stopped(&self) -> CancellationToken {
        self.status().run.clone()
    }

    /// Fires when the lease ends (not when it is paused).
    pub fn ended(&self) -> CancellationToken {
        self.gone.clone()
    }

    /// Why calls on the lease do not run now: it ended, or it is paused.
    pub fn interruption(&self) -> Interrupted {
        let status = self.status();
        match &status.end {
            Some(end) => Interrupted::Ended {
                id: self.id.clone(),
                reason: end.reason.as_str(),
                detail: end.detail.clone(),
            },
            None => Interrupted::Paused { id: self.id.clone(), detail: None },
        }
    }

    /// Runs `work` on the lease's VM, unless the lease is not running; if the lease stops running
    /// (ended, paused) before `work` is done, `work` is dropped and the lease's
    /// [`interruption`](Self::interruption) returned. A paused lease acquired with `auto_resume`
    /// is resumed first.
    ///
    /// `work` borrows the VM for its own length only: whatever it returns must not borrow it
    /// (streams it opens are the guest's handles, which end when the VM does).
    pub async fn on_vm<T>(
        self: &Arc<Self>,
        work: impl for<'v> FnOnce(&'v dyn LeasedVm) -> BoxFuture<'v, T>,
    ) -> Result<T, Interrupted> {
        let mut resumed = false;
        loop {
            let slot = self.slot.read().await;
            match &*slot {
                Slot::Running(vm) => {
                    let run = self.stopped();
                    if run.is_cancelled() {
                        return Err(self.interruption());
                    }
                    return tokio::select! {
                        biased;
                        () = run.cancelled() => Err(self.interruption()),
                        out = work(vm.as_ref()) => Ok(out),
                    };
                }
                Slot::Paused(_) if self.options.auto_resume && !resumed && self.status().end.is_none() => {
                    drop(slot);
                    resumed = true;
                    if let Err(error) = self.resume().await {
                        return Err(match error {
                            crate::leases::transitions::TransitionError::Ended(interrupted) => interrupted,
                            other => Interrupted::Paused {
                                id: self.id.clone(),
                                detail: Some(format!("auto_resume failed: {other}")),
                            },
                        });
                    }
                }
                _ => return Err(self.interruption()),
            }
        }
    }

    /// How the lease ended, once it did.
    pub fn end_reason(&self) -> Option<(EndReason, Option<String>)> {
        self.status().end.as_ref().map(|end| (end.reason, end.detail.clone()))
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }
}

/// Locks a std mutex, recovering from poisoning: every critical section here leaves the state
/// consistent, so a panic elsewhere must not take the daemon down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
