//! A paused lease's VM: no process, only a saved state on the host, and the door back to a
//! running VM. The lease model ([`crate::leases`]) moves a lease between running and paused; how
//! a VM's state is saved and restored is the backend's ([`LeaseBackend::pause`],
//! [`PausedVm::resume`], [`LeaseBackend::adopt_paused`] after a restart).
//!
//! Contract:
//! - A `PausedVm` owns its saved state. Dropping it keeps the state (a daemon that stops leaves
//!   its paused leases paused, for the next run to adopt); [`PausedVm::discard`] deletes it (the
//!   lease ended).
//! - [`PausedVm::saved`] is what the daemon writes in the lease's record: enough for
//!   [`LeaseBackend::adopt_paused`] to find the state again after a restart.
//! - A failed [`PausedVm::resume`] gives the paused VM back: the lease stays paused.
//!
//! [`LeaseBackend::pause`]: crate::backend::LeaseBackend::pause
//! [`LeaseBackend::adopt_paused`]: crate::backend::LeaseBackend::adopt_paused

use crate::backend::LeasedVm;
use crate::boxed::{BoxError, BoxFuture};

/// A lease's VM while it is paused (see the module docs).
pub trait PausedVm: Send + Sync {
    /// The VM's id (it keeps it across the pause).
    fn vm_id(&self) -> &str;

    /// What the lease's record keeps of the saved state (a path, a manifest id).
    fn saved(&self) -> serde_json::Value;

    /// Starts the VM again from its saved state.
    fn resume(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn LeasedVm>, ResumeFailed>>;

    /// Deletes the saved state (the lease ended while paused).
    fn discard(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A pause that did not happen: the VM, still running, and why.
pub struct PauseFailed {
    /// The VM, as it was.
    pub vm: Box<dyn LeasedVm>,
    /// Why.
    pub error: BoxError,
}

impl std::fmt::Debug for PauseFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseFailed").field("vm", &self.vm.vm_id()).field("error", &self.error).finish()
    }
}

/// A resume that did not happen: the paused VM, still paused, and why.
pub struct ResumeFailed {
    /// The VM, still paused.
    pub paused: Box<dyn PausedVm>,
    /// Why.
    pub error: BoxError,
}

impl std::fmt::Debug for ResumeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeFailed").field("vm", &self.paused.vm_id()).field("error", &self.error).finish()
    }
}
