//! What a backend saves of a running VM besides a pause: snapshots (a VM's state in a directory,
//! from which new VMs start) and forks (new VMs copied from a running one at once), and why a
//! save failed ([`SaveError`], shared with the pause so that too little room is
//! `507 insufficient_storage` for both).
//!
//! The backend only saves and starts; the daemon owns the snapshots' ids, directories, listing and
//! removal (`crate::snapshot_store`), so every backend stores them the same way.

use crate::boxed::BoxError;

/// What [`LeaseBackend::save_snapshot`](crate::backend::LeaseBackend::save_snapshot) saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSnapshot {
    /// The shape of the VM saved: VMs started from it are of it.
    pub shape: String,
    /// Bytes written.
    pub size_bytes: u64,
}

/// Why saving a VM's state (a pause, a snapshot, a fork) did not happen; the VM runs on.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The directory the state goes to has too little room (the message says how much it needs
    /// and has).
    #[error("{0}")]
    NoRoom(String),
    /// This backend cannot save VMs.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else; the cause says what.
    #[error("saving the VM failed")]
    Failed(#[source] BoxError),
}

impl SaveError {
    /// The `SaveError::NoRoom` behind `error`, if it is one (a pause's error is boxed).
    pub fn no_room<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e str> {
        match error.downcast_ref::<SaveError>() {
            Some(SaveError::NoRoom(message)) => Some(message),
            _ => None,
        }
    }
}
