//! The state every part of the engine shares: one mutex over all buckets, plus the wake-ups.
//!
//! The mutex is a `std` mutex held only for bookkeeping (never across an `.await`), so the hot path
//! (`try_reserve`, a lease's drop) is a lock, a pop and a few atomic stores. Everything slow
//! (create, probe, destroy, health checks) runs outside it, in tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::bucket::{Bucket, Entry};
use crate::health::DynHealthCheck;
use crate::metrics::{EvictReason, Metrics};
use crate::provider::Provider;
use crate::shape::ShapeKey;

/// Pool-wide settings (per-shape ones live in [`ShapeConfig`](crate::ShapeConfig)).
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub max_parallel_fills: usize,
    pub memory_budget_mb: Option<u64>,
    pub shutdown_budget: Duration,
    pub warmup_timeout: Duration,
    pub warmup_max_failures: u32,
    pub probe_timeout: Duration,
}

/// A VM on its way to `Provider::destroy`.
pub(crate) struct Retired<V> {
    pub vm: V,
    pub memory_mb: u64,
}

pub(crate) struct State<P: Provider> {
    pub buckets: HashMap<ShapeKey, Bucket<P>>,
    pub default_shape: Option<ShapeKey>,
    /// Memory of every VM alive: ready, probing, filling, leased or being destroyed.
    pub mem_used_mb: u64,
    /// VMs alive (same set as `mem_used_mb`).
    pub alive: usize,
    /// Leases whose shape was unregistered while they were out.
    pub orphan_leased: usize,
    pub closing: bool,
}

impl<P: Provider> State<P> {
    pub fn leased_total(&self) -> usize {
        self.buckets.values().map(|b| b.leased).sum::<usize>() + self.orphan_leased
    }

    /// A leased VM of `shape` (registration `generation`) came back or was released.
    pub fn unlease(&mut self, shape: &ShapeKey, generation: u64) -> Option<&mut Bucket<P>> {
        match self.buckets.get_mut(shape).filter(|b| b.generation == generation) {
            Some(b) => {
                b.leased = b.leased.saturating_sub(1);
                b.sync_gauges();
                Some(b)
            }
            None => {
                self.orphan_leased = self.orphan_leased.saturating_sub(1);
                None
            }
        }
    }
}

pub(crate) struct Shared<P: Provider> {
    pub provider: P,
    pub state: Mutex<State<P>>,
    pub health: Option<Box<dyn DynHealthCheck<P::Vm>>>,
    pub metrics: Metrics,
    pub settings: PoolSettings,
    pub fill_permits: Arc<Semaphore>,
    /// Wakes the refiller: a VM left, a fill ended, memory was freed, a shape was registered.
    pub refill_wake: Notify,
    /// Wakes the maintenance task (new shape: new deadlines).
    pub maint_wake: Notify,
    /// Fires (notify_waiters) on every fill outcome and destroy: `build()` and `shutdown()` wait on it.
    pub progress: Notify,
    /// Stops the refiller, the maintenance task and the exit watchers.
    pub cancel: CancellationToken,
    /// Stops the reaper once nothing is alive after close.
    pub reaper_stop: CancellationToken,
    pub retire_tx: mpsc::UnboundedSender<Retired<P::Vm>>,
    pub watch_tx: mpsc::UnboundedSender<crate::watch::Watch>,
    pub closing: AtomicBool,
    pub next_id: AtomicU64,
}

impl<P: Provider> Shared<P> {
    pub fn lock(&self) -> MutexGuard<'_, State<P>> {
        // A panic while holding the lock cannot leave the counts half-updated in a way that is
        // worse than refusing service, so keep going with the data as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Sends a VM charged `memory_mb` to the reaper. If the reaper is gone (no runtime any more),
    /// the VM value is dropped here and cleans up after itself.
    pub fn retire(&self, st: &mut State<P>, vm: P::Vm, memory_mb: u64) {
        if let Err(mpsc::error::SendError(back)) = self.retire_tx.send(Retired { vm, memory_mb }) {
            tracing::debug!("reaper gone; dropping VM {} in place", crate::provider::PoolVm::id(&back.vm));
            drop(back);
            self.forget(st, memory_mb);
        }
    }

    /// Accounts for a VM that no longer exists.
    pub fn forget(&self, st: &mut State<P>, memory_mb: u64) {
        st.alive = st.alive.saturating_sub(1);
        st.mem_used_mb = st.mem_used_mb.saturating_sub(memory_mb);
        if st.closing && st.alive == 0 {
            self.reaper_stop.cancel();
        }
        self.progress.notify_waiters();
    }

    /// Evicts a ready VM (already removed from its bucket): counts and retires it.
    pub fn evict(&self, st: &mut State<P>, shape: &ShapeKey, entry: Entry<P::Vm>, reason: EvictReason) {
        if let Some(b) = st.buckets.get(shape) {
            b.metrics.evicted(reason).inc();
        }
        tracing::debug!(vm = crate::provider::PoolVm::id(&entry.vm), %shape, %reason, "evicting VM");
        let Entry { vm, watch, charge_mb, .. } = entry;
        drop(watch);
        self.retire(st, vm, charge_mb);
        self.refill_wake.notify_one();
    }

    /// Offers a VM that was out of the bucket (cancelled hand-out, probe) back: to the first
    /// waiter, else into `ready` in age order. If the bucket is gone or closing, it is retired.
    pub fn give_back(&self, st: &mut State<P>, shape: &ShapeKey, generation: u64, entry: Entry<P::Vm>) {
        let closing = st.closing;
        match st.buckets.get_mut(shape) {
            Some(b) if b.generation == generation && !closing => {
                if let Some(entry) = b.hand_to_waiter(entry) {
                    b.put_back(entry);
                }
                b.sync_gauges();
            }
            _ => {
                let reason = if closing { EvictReason::Shutdown } else { EvictReason::Unregistered };
                self.evict(st, shape, entry, reason);
            }
        }
    }

    /// Closes the pool without waiting: no more hand-outs, waiters fail, ready VMs are retired,
    /// background tasks stop. Safe to call from `Drop`, outside a runtime, more than once.
    pub fn begin_close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cancel.cancel();
        let mut st = self.lock();
        st.closing = true;
        let keys: Vec<ShapeKey> = st.buckets.keys().cloned().collect();
        for key in keys {
            let drained = match st.buckets.get_mut(&key) {
                Some(b) => {
                    b.clear_waiters();
                    let drained = b.drain_ready();
                    b.sync_gauges();
                    drained
                }
                None => continue,
            };
            for entry in drained {
                self.evict(&mut st, &key, entry, EvictReason::Shutdown);
            }
        }
        if st.alive == 0 {
            self.reaper_stop.cancel();
        }
        drop(st);
        self.progress.notify_waiters();
    }
}

/// Sleeps until `at`, or forever when there is nothing to wake for (the refiller and the
/// maintenance task otherwise wait on their notifications and the cancellation token).
pub(crate) async fn sleep_until_or_forever(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The cap the memory budget puts on a shape's target: the `have` VMs it already counts (ready or
/// filling, charged what they cost) plus as many more at `per_vm_mb` (the next fill's estimate) as
/// fit in what is left of `budget_mb` after `used_mb` (every alive VM's charge) and `shared_mb`
/// (held once). For the refiller and for the status it reports.
///
/// Counting the VMs that exist at their own charges, not at the estimate, matters for snapshot
/// clones: the estimate is the largest clone seen, the average is smaller, and a cap of
/// `budget / estimate` stopped a 12 GB pool of ≈32 MiB clones at 293 with 2.4 GB unused.
pub(crate) fn budget_cap(budget_mb: u64, shared_mb: u64, used_mb: u64, per_vm_mb: u64, have: usize) -> usize {
    let room = budget_mb.saturating_sub(shared_mb).saturating_sub(used_mb);
    have.saturating_add((room / per_vm_mb.max(1)) as usize)
}
