//! The refiller: keeps every bucket at its target depth, event-driven.
//!
//! One task plans; each fill runs in its own task. The planner runs when something changed (a VM
//! was handed out or evicted, a fill ended, memory was freed, a shape was registered: all of these
//! `notify_one` the refiller) or when a backoff ends, never on a polling interval. A pass starts as
//! many fills as the bucket lacks, bounded by the fill semaphore (`max_parallel_fills`) and the
//! memory budget. A failed fill puts the bucket in exponential backoff with jitter; the failure is
//! kept in the bucket (status) and counted (metrics), and the fill is retried when the backoff ends,
//! so a failing provider never silently shrinks the pool.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bucket::Entry;
use crate::error::error_chain;
use crate::shared::{Shared, State};
use crate::{PoolVm, Provider, ShapeKey};

pub(crate) async fn run<P: Provider>(shared: Arc<Shared<P>>) {
    loop {
        let wake_at = plan(&shared);
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.refill_wake.notified() => {}
            () = sleep => {}
        }
    }
}

/// One planning pass. Returns when the planner must run again at the latest (a backoff end).
fn plan<P: Provider>(shared: &Arc<Shared<P>>) -> Option<Instant> {
    let now = Instant::now();
    let mut st = shared.lock();
    if st.closing {
        return None;
    }
    let mut wake_at: Option<Instant> = None;
    let keys: Vec<ShapeKey> = st.buckets.keys().cloned().collect();
    for key in keys {
        let budget = shared.settings.memory_budget_mb;
        let State { buckets, mem_used_mb, alive, .. } = &mut *st;
        let Some(b) = buckets.get_mut(&key) else { continue };
        if let Some(until) = b.backoff_until {
            if until > now {
                wake_at = Some(wake_at.map_or(until, |w| w.min(until)));
                continue;
            }
            b.backoff_until = None;
        }
        let mut target = b.target(now);
        if let Some(budget) = budget {
            target = target.min((budget / u64::from(key.memory_mb).max(1)) as usize);
        }
        let have = b.fresh_ready() + b.filling;
        let mut started = 0usize;
        b.budget_blocked = false;
        for _ in have..target {
            if let Some(budget) = budget
                && *mem_used_mb + u64::from(key.memory_mb) > budget
            {
                b.budget_blocked = true;
                break;
            }
            let Ok(permit) = Arc::clone(&shared.fill_permits).try_acquire_owned() else { break };
            b.filling += 1;
            *alive += 1;
            *mem_used_mb += u64::from(key.memory_mb);
            started += 1;
            let task_shared = Arc::clone(shared);
            let shape = (*b.key).clone();
            let generation = b.generation;
            tokio::spawn(fill(task_shared, shape, generation, permit));
        }
        if started > 0 {
            b.metrics.refill_runs.inc();
            b.sync_gauges();
        }
        if b.budget_blocked {
            crate::maintenance::retire_expired(shared, &mut st, &key);
        }
    }
    wake_at
}

/// Creates one VM and delivers it (to the first waiter, else into `ready`).
async fn fill<P: Provider>(
    shared: Arc<Shared<P>>,
    shape: ShapeKey,
    generation: u64,
    permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let mut result = shared.provider.create(&shape).await.map_err(|e| error_chain(&e));
    let latency = started.elapsed();
    // First health check when the VM becomes ready, so `try_reserve` (which cannot await) only
    // hands out VMs that passed one; `reserve` checks again right before hand-out.
    let mut rejected = None;
    if let (Ok(vm), Some(check)) = (&result, &shared.health)
        && let Err(why) = check.check_dyn(vm).await
    {
        if let Ok(vm) = result {
            rejected = Some(vm);
        }
        result = Err(format!("new VM failed its health check: {why}"));
    }
    {
        let mut st = shared.lock();
        if let Some(vm) = rejected {
            if let Some(b) = st.buckets.get(&shape) {
                b.metrics.validation_failures.inc();
                b.metrics.created.inc();
            }
            // Still alive and charged: the reaper destroys it and frees its memory.
            st.alive += 1;
            st.mem_used_mb += u64::from(shape.memory_mb);
            shared.retire(&mut st, vm, shape.memory_mb);
        }
        let closing = st.closing;
        let bucket = st.buckets.get_mut(&shape).filter(|b| b.generation == generation);
        match (result, bucket) {
            (Ok(vm), Some(b)) if !closing => {
                b.filling -= 1;
                b.metrics.created.inc();
                b.consecutive_failures = 0;
                b.backoff_until = None;
                b.demand.record_fill(latency);
                let entry = Entry {
                    watch: Some(watch_exit(&shared, &shape, &vm)),
                    vm,
                    created: Instant::now(),
                    expired: None,
                };
                if let Some(entry) = b.hand_to_waiter(entry) {
                    b.ready.push_back(entry);
                }
                b.sync_gauges();
                crate::maintenance::retire_expired(&shared, &mut st, &shape);
            }
            (Ok(vm), bucket) => {
                // Shape unregistered or pool closing while the VM booted: destroy it.
                if let Some(b) = bucket {
                    b.filling -= 1;
                    b.metrics.created.inc();
                    b.sync_gauges();
                }
                shared.retire(&mut st, vm, shape.memory_mb);
            }
            (Err(message), bucket) => {
                if let Some(b) = bucket {
                    b.filling -= 1;
                    b.fill_failures += 1;
                    b.consecutive_failures = b.consecutive_failures.saturating_add(1);
                    let delay = b.config.backoff.delay(b.consecutive_failures);
                    b.backoff_until = Some(Instant::now() + delay);
                    b.metrics.fill_failures.inc();
                    tracing::warn!(%shape, failures = b.consecutive_failures, ?delay, error = %message, "fill failed; backing off");
                    b.last_error = Some(message);
                    b.sync_gauges();
                } else {
                    tracing::warn!(%shape, error = %message, "fill failed for a shape that is gone");
                }
                shared.forget(&mut st, shape.memory_mb);
            }
        }
    }
    drop(permit);
    shared.progress.notify_waiters();
    shared.refill_wake.notify_one();
}

/// Watches `PoolVm::exited` for a ready VM; evicts it at once when it dies. The returned guard
/// stops the watch when the entry leaves the bucket.
pub(crate) fn watch_exit<P: Provider>(
    shared: &Arc<Shared<P>>,
    shape: &ShapeKey,
    vm: &P::Vm,
) -> tokio_util::sync::DropGuard {
    let token = CancellationToken::new();
    let guard = token.clone().drop_guard();
    let exited = vm.exited();
    let id = vm.id().to_owned();
    let weak = Arc::downgrade(shared);
    let shape = shape.clone();
    let stop = shared.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = token.cancelled() => {}
            () = stop.cancelled() => {}
            () = exited => {
                if let Some(shared) = weak.upgrade() {
                    crate::maintenance::evict_by_id(&shared, &shape, &id, crate::EvictReason::Exited);
                }
            }
        }
    });
    guard
}
