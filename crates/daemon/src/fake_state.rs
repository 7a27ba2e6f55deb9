//! The fake backend's state, below the backend ([`crate::fake`]) and its VMs ([`crate::fake_vm`]):
//! the shapes and their counts, the VMs made unreachable or killed, and each VM's [`Reachable`]
//! gate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use firepit_guest::{Gate, GuestError, Wake};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};

#[cfg(doc)]
use crate::backend::LeaseBackend;
use crate::backend::{EgressPolicy, ShapeSpec};
use crate::metrics::ShapeLabel;

/// The in-memory backend (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct FakeBackend {
    pub(crate) state: Arc<Shared>,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) shapes: Mutex<BTreeMap<String, FakeShape>>,
    pub(crate) refilled: Notify,
    pub(crate) next_id: AtomicU64,
    pub(crate) shut_down: std::sync::atomic::AtomicBool,
    pub(crate) ready_gauge: Family<ShapeLabel, Gauge>,
    pub(crate) narrowed: Mutex<BTreeMap<String, Vec<EgressPolicy>>>,
    /// VMs that stopped answering ([`FakeBackend::make_unreachable`]).
    pub(crate) unreachable: Mutex<BTreeSet<String>>,
    /// Each leased VM's exit, set by [`FakeBackend::kill_vm`].
    pub(crate) exits: Mutex<HashMap<String, watch::Sender<Option<String>>>>,
    /// Whether [`LeaseBackend::pause`] works.
    pub(crate) pausable: std::sync::atomic::AtomicBool,
    /// Whether saves fail for want of room (`FakeBackend::set_no_room`).
    pub(crate) no_room: std::sync::atomic::AtomicBool,
}

pub(crate) struct FakeShape {
    pub(crate) spec: ShapeSpec,
    pub(crate) ready: usize,
    pub(crate) leased: usize,
    pub(crate) paused: usize,
    pub(crate) destroyed: u64,
    pub(crate) fill_failures: u64,
    pub(crate) consecutive_failures: u64,
    pub(crate) last_error: Option<String>,
}

impl FakeBackend {
    /// Whether [`LeaseBackend::shutdown`] ran.
    pub fn is_shut_down(&self) -> bool {
        self.state.shut_down.load(Ordering::SeqCst)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, FakeShape>> {
        lock(&self.state.shapes)
    }

    pub(crate) fn set_gauge(&self, shape: &str, ready: usize) {
        self.state.ready_gauge.get_or_create(&ShapeLabel { shape: shape.to_owned() }).set(ready as i64);
    }
}

/// A fake VM's gate: it answers until [`FakeBackend::make_unreachable`] says otherwise.
pub(crate) struct Reachable {
    pub(crate) state: Arc<Shared>,
    pub(crate) vm: String,
}

impl std::fmt::Debug for Reachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reachable").field("vm", &self.vm).finish()
    }
}

impl Gate for Reachable {
    fn check(&self) -> Result<Option<Wake>, GuestError> {
        let unreachable = lock(&self.state.unreachable);
        if unreachable.contains(&self.vm) { Err(GuestError::Closed) } else { Ok(None) }
    }
}

/// Locks a std mutex, recovering from poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
