//! The small types a lease's parts share, below all of them: where a lease's VM is ([`Slot`]), how
//! a lease ended ([`End`]), why a call on it did not run ([`Interrupted`]) or a pause or resume did
//! not happen ([`TransitionError`]), and the poison-tolerant [`lock`] of their std mutexes.

use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use firepit_api::EndReason;

use crate::backend::{LeasedVm, PausedVm};
use crate::boxed::BoxError;

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

/// Why a pause or resume did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The lease ended.
    #[error(transparent)]
    Ended(Interrupted),
    /// The backend could not do it; the lease is as it was (running, or paused).
    #[error("{what} failed: {error}")]
    Failed {
        /// `pause` or `resume`.
        what: &'static str,
        /// Why.
        error: BoxError,
    },
}

/// Locks a std mutex, recovering from poisoning: every critical section here leaves the state
/// consistent, so a panic elsewhere must not take the daemon down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
