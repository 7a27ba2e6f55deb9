//! One lease: its identity, options, state and the slot that holds its VM (see the module docs of
//! [`crate::leases`] for why nothing else may hold the VM).
//!
//! The slot is an async read-write lock: a call on the VM ([`Lease::on_vm`]) holds it for reading,
//! a change of state (end, pause, resume) for writing. A change first marks the lease as stopped
//! (its *run token* fires), so every call in flight drops its work and lets go of the slot at
//! once; then it takes the slot. So the VM of an ended lease is destroyed right away, however
//! long a call on it would have taken.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firepit_api::{EndReason, LeaseState, LeaseView, Metadata, OnExpiry};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use crate::backend::{BoxFuture, LeasedVm, PausedVm};
use crate::leases::clock::Clock;
use crate::leases::context::Shared;
pub use crate::leases::state::Interrupted;
use crate::leases::state::{End, Slot, TransitionError, lock};

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

    /// A paused lease of a previous run, live again from its record `view` and the backend's
    /// adopted saved state. Its TTL clock stays stopped with what was left; its paused retention
    /// starts again from now.
    pub(crate) fn adopted(view: &LeaseView, paused: Box<dyn PausedVm>, shared: Arc<Shared>) -> Self {
        let options = LeaseOptions {
            metadata: view.metadata.clone(),
            auto_resume: view.auto_resume,
            on_expiry: view.on_expiry,
        };
        let remaining = Duration::from_millis(view.ttl_remaining_ms.unwrap_or(0));
        let created = UNIX_EPOCH + Duration::from_millis(view.created_at_unix_ms);
        let clock = Clock::stopped(remaining, shared.settings.paused_retention);
        let (id, shape, vm_id) = (view.id.clone(), view.shape.clone(), view.vm_id.clone());
        let lease = Self::new(id, shape, vm_id, created, options, None, Slot::Paused(paused), clock, shared);
        if let Some(at) = view.paused_at_unix_ms {
            lease.status().paused_at = Some(UNIX_EPOCH + Duration::from_millis(at));
        }
        lease
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
                            TransitionError::Ended(interrupted) => interrupted,
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
