//! One bucket per shape: its ready VMs, its waiters, its counts and its fill health.
//!
//! A bucket is plain data behind the pool's one mutex; nothing here awaits. The invariants:
//! a ready VM never sits in a bucket that has waiters (it is handed to the first waiter instead),
//! and every VM the bucket knows of is counted once, in `ready`, `filling` or `leased`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::DropGuard;

use crate::adaptive::DemandEstimate;
use crate::config::ShapeConfig;
use crate::metrics::{EvictReason, ShapeMetricHandles};
use crate::provider::Provider;
use crate::shape::ShapeKey;

/// A ready VM and what the pool knows about it.
pub(crate) struct Entry<V> {
    pub vm: V,
    /// What the VM is charged against the memory budget (`MemoryAccounting::charge_mb`, read once
    /// when it was delivered), MiB.
    pub charge_mb: u64,
    /// When the VM became ready.
    pub created: Instant,
    /// Set once the VM outlived `max_age` / `idle_ttl`: it no longer counts as depth and is
    /// evicted as soon as a replacement is ready.
    pub expired: Option<EvictReason>,
    /// Cancels the task watching `PoolVm::exited` when the entry leaves the bucket.
    pub watch: Option<DropGuard>,
    /// The provider put the VM to rest (`Provider::pause`): it is woken (`Provider::resume`) when
    /// it is handed out.
    pub paused: bool,
}

/// A `reserve()` waiting for a VM; the VM is sent through `tx`.
pub(crate) struct Waiter<V> {
    pub id: u64,
    pub tx: oneshot::Sender<Entry<V>>,
}

pub(crate) struct Bucket<P: Provider> {
    pub key: Arc<ShapeKey>,
    /// Distinguishes this registration from an earlier one of the same key.
    pub generation: u64,
    pub config: ShapeConfig,
    /// What the provider makes this shape's VMs from (passed to every `create`).
    pub spec: Arc<P::Spec>,
    /// `MemoryAccounting::full_mb` of the spec, read at registration (for the budget check).
    pub full_mb: u64,
    /// Oldest first.
    pub ready: VecDeque<Entry<P::Vm>>,
    /// Change it only through the methods below, which keep `queued` in step.
    pub waiters: VecDeque<Waiter<P::Vm>>,
    /// How many callers are queued, readable without the pool's lock (a fill asks it whether to
    /// pause its new VM: not when a caller waits for it).
    pub queued: Arc<AtomicUsize>,
    pub filling: usize,
    /// Handed out (including VMs under their hand-out health check) and not yet released.
    pub leased: usize,
    /// Ready VMs temporarily out of `ready` for a background probe.
    pub probing: usize,
    /// Entries of `ready` marked expired (kept in step by the methods below).
    pub expired_in_ready: usize,
    pub fill_failures: u64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// `PoolVm::fill_kind` of the last VM a fill delivered.
    pub last_fill: Option<&'static str>,
    pub backoff_until: Option<Instant>,
    /// The last refill pass could not start a fill because of the memory budget.
    pub budget_blocked: bool,
    pub demand: DemandEstimate,
    pub metrics: Arc<ShapeMetricHandles>,
}

/// A new shape's registration, as the pool validated it.
pub(crate) struct NewShape<S> {
    pub key: ShapeKey,
    pub spec: S,
    pub config: ShapeConfig,
    pub full_mb: u64,
}

impl<P: Provider> Bucket<P> {
    pub fn new(shape: NewShape<P::Spec>, generation: u64, metrics: ShapeMetricHandles) -> Self {
        let NewShape { key, spec, config, full_mb } = shape;
        let metrics = Arc::new(metrics);
        Self {
            key: Arc::new(key),
            generation,
            config,
            spec: Arc::new(spec),
            full_mb,
            ready: VecDeque::new(),
            waiters: VecDeque::new(),
            queued: Arc::default(),
            filling: 0,
            leased: 0,
            probing: 0,
            expired_in_ready: 0,
            fill_failures: 0,
            consecutive_failures: 0,
            last_error: None,
            last_fill: None,
            backoff_until: None,
            budget_blocked: false,
            demand: DemandEstimate::default(),
            metrics,
        }
    }

    pub fn low_water(&self) -> usize {
        *self.config.depth.start()
    }

    pub fn high_water(&self) -> usize {
        *self.config.depth.end()
    }

    /// Ready VMs that still count as depth (not expired), plus those out for a probe.
    pub fn fresh_ready(&self) -> usize {
        self.ready.len() - self.expired_in_ready.min(self.ready.len()) + self.probing
    }

    fn left_ready(&mut self, entry: Option<Entry<P::Vm>>) -> Option<Entry<P::Vm>> {
        if entry.as_ref().is_some_and(|e| e.expired.is_some()) {
            self.expired_in_ready = self.expired_in_ready.saturating_sub(1);
        }
        entry
    }

    /// Marks a ready entry expired.
    pub fn mark_expired(&mut self, pos: usize, reason: EvictReason) {
        if let Some(e) = self.ready.get_mut(pos)
            && e.expired.is_none()
        {
            e.expired = Some(reason);
            self.expired_in_ready += 1;
        }
    }

    /// Removes every ready entry.
    pub fn drain_ready(&mut self) -> Vec<Entry<P::Vm>> {
        self.expired_in_ready = 0;
        self.ready.drain(..).collect()
    }

    /// The depth the refiller aims for now, before the memory budget.
    pub fn target(&self, now: Instant) -> usize {
        self.demand.target(now, self.high_water(), self.config.adaptive.as_ref())
    }

    /// Takes the oldest fresh VM, or the oldest expired one if none is fresh.
    pub fn take_ready(&mut self) -> Option<Entry<P::Vm>> {
        let pos = if self.expired_in_ready == 0 {
            0
        } else {
            self.ready.iter().position(|e| e.expired.is_none()).unwrap_or(0)
        };
        let entry = self.ready.remove(pos);
        self.left_ready(entry)
    }

    /// Takes the ready VM at `pos`.
    pub fn take_at(&mut self, pos: usize) -> Option<Entry<P::Vm>> {
        let entry = self.ready.remove(pos);
        self.left_ready(entry)
    }

    /// Puts a VM back in age order (after a cancelled hand-out or a probe).
    pub fn put_back(&mut self, entry: Entry<P::Vm>) {
        if entry.expired.is_some() {
            self.expired_in_ready += 1;
        }
        let pos = self.ready.partition_point(|e| e.created <= entry.created);
        self.ready.insert(pos, entry);
    }

    /// Queues a caller (first in line when `front`: a retry after a failed health check).
    pub fn queue_waiter(&mut self, waiter: Waiter<P::Vm>, front: bool) {
        if front {
            self.waiters.push_front(waiter);
        } else {
            self.waiters.push_back(waiter);
        }
        self.queued.store(self.waiters.len(), Ordering::Relaxed);
    }

    /// Drops every queued caller (their `reserve` fails).
    pub fn clear_waiters(&mut self) {
        self.waiters.clear();
        self.queued.store(0, Ordering::Relaxed);
    }

    /// Hands `entry` to the first live waiter; gives it back if there is none.
    pub fn hand_to_waiter(&mut self, entry: Entry<P::Vm>) -> Option<Entry<P::Vm>> {
        let left = self.serve_waiter(entry);
        self.queued.store(self.waiters.len(), Ordering::Relaxed);
        left
    }

    fn serve_waiter(&mut self, mut entry: Entry<P::Vm>) -> Option<Entry<P::Vm>> {
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.tx.send(entry) {
                Ok(()) => {
                    // The waiter owns it now (its future gives it back if it is dropped unread).
                    self.leased += 1;
                    return None;
                }
                Err(back) => entry = back,
            }
        }
        Some(entry)
    }

    /// Removes waiter `id`; `false` if it is no longer queued (it was served).
    pub fn remove_waiter(&mut self, id: u64) -> bool {
        match self.waiters.iter().position(|w| w.id == id) {
            Some(pos) => {
                self.waiters.remove(pos);
                self.queued.store(self.waiters.len(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn sync_gauges(&self) {
        self.metrics.ready.set((self.ready.len() + self.probing) as i64);
        self.metrics.filling.set(self.filling as i64);
        self.metrics.leased.set(self.leased as i64);
    }
}
