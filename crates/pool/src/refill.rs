//! The refiller: keeps every bucket at its target depth, event-driven.
//!
//! One task plans; fills run in tasks (one per planning pass and shape, each running its creates
//! concurrently). A fill that only tops a bucket up after a hand-out starts a moment later (1 % of
//! a fill's duration, at most 2 ms: see `top_up_delay`), so that starting it does not take the CPU
//! from the caller that just got its VM. The planner runs when something changed — a VM was handed out or evicted, a fill
//! ended, memory was freed, a shape was registered: all of these `notify_one` the refiller — or
//! when a backoff ends, never on a polling interval. A pass starts as many fills as the bucket
//! lacks, bounded by the fill semaphore (`max_parallel_fills`) and the memory budget. A failed fill
//! puts the bucket in exponential backoff with jitter; the failure is kept in the bucket (status)
//! and counted (metrics), and the fill is retried when the backoff ends, so a failing provider
//! never silently shrinks the pool.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::bucket::Entry;
use crate::error::error_chain;
use crate::provider::Provider;
use crate::shape::ShapeKey;
use crate::shared::{Shared, State};

pub(crate) async fn run<P: Provider>(shared: Arc<Shared<P>>) {
    loop {
        let wake_at = plan(&shared);
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.refill_wake.notified() => {}
            () = crate::shared::sleep_until_or_forever(wake_at) => {}
        }
        if let Some(delay) = top_up_delay(&shared) {
            // Let the hand-out that woke us finish first (unless a fill becomes urgent meanwhile).
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = tokio::time::sleep_until(until) => break,
                    () = shared.refill_wake.notified() => {
                        if top_up_delay(&shared).is_none() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Longest a top-up waits, and the share of a fill's duration it may wait.
const TOP_UP_DELAY_MAX: Duration = Duration::from_millis(2);
const TOP_UP_DELAY_SHARE: u32 = 100;

/// How long to hold back fills that only top a bucket up. A hand-out wakes the refiller, and
/// starting a fill takes the CPU for a moment (a VMM's process start): started at once, it competes
/// with the caller that just got its VM (a server still writing its response). So when every bucket
/// that lacks VMs still has ready ones and nobody waits, fills start after 1 % of their observed
/// duration, at most [`TOP_UP_DELAY_MAX`]; fills that take under 100 ms (where that would be under
/// the timer's millisecond) and urgent ones (a caller waits, or nothing is ready) start at once.
fn top_up_delay<P: Provider>(shared: &Shared<P>) -> Option<Duration> {
    let now = Instant::now();
    let st = shared.lock();
    let mut delay: Option<Duration> = None;
    for b in st.buckets.values() {
        if b.fresh_ready() + b.filling >= b.target(now) {
            continue;
        }
        if !b.waiters.is_empty() || b.fresh_ready() == 0 {
            return None;
        }
        let share = b.demand.fill_latency().map_or(Duration::ZERO, |fill| fill / TOP_UP_DELAY_SHARE);
        if share < Duration::from_millis(1) {
            return None;
        }
        delay = Some(delay.map_or(share, |d| d.max(share)).min(TOP_UP_DELAY_MAX));
    }
    delay
}

/// One planning pass. Returns when the planner must run again at the latest (a backoff end).
fn plan<P: Provider>(shared: &Arc<Shared<P>>) -> Option<Instant> {
    let now = Instant::now();
    let mut st = shared.lock();
    if st.closing {
        return None;
    }
    let budget = shared.settings.memory_budget_mb;
    let mut wake_at: Option<Instant> = None;
    let mut blocked = Vec::new();
    let memory = shared.provider.memory();
    let shared_mb = memory.shared_mb();
    let State { buckets, mem_used_mb, alive, .. } = &mut *st;
    for b in buckets.values_mut() {
        if let Some(until) = b.backoff_until {
            if until > now {
                wake_at = Some(wake_at.map_or(until, |w| w.min(until)));
                continue;
            }
            b.backoff_until = None;
        }
        let memory_mb = memory.estimate_mb(&b.key, &b.spec).max(1);
        let wanted = b.target(now);
        let have = b.fresh_ready() + b.filling;
        let target = match budget {
            Some(budget) => {
                wanted.min(crate::shared::budget_cap(budget, shared_mb, *mem_used_mb, memory_mb, have))
            }
            None => wanted,
        };
        let mut permits = Vec::new();
        // The budget holds back a fill the shape wants: an expired VM may make room (below).
        b.budget_blocked = target < wanted && have < wanted;
        if b.budget_blocked {
            blocked.push((*b.key).clone());
        }
        for _ in have..target {
            let Ok(permit) = Arc::clone(&shared.fill_permits).try_acquire_owned() else { break };
            b.filling += 1;
            *alive += 1;
            *mem_used_mb += memory_mb;
            permits.push(permit);
        }
        if !permits.is_empty() {
            b.metrics.refill_runs.inc();
            b.sync_gauges();
            let batch = Batch {
                shape: Arc::clone(&b.key),
                spec: Arc::clone(&b.spec),
                check: b.config.health_check,
                pause: b.config.pause_idle,
                queued: Arc::clone(&b.queued),
                generation: b.generation,
                charged_mb: memory_mb,
            };
            tokio::spawn(fill_batch(Arc::clone(shared), batch, permits));
        }
    }
    for key in blocked {
        crate::maintenance::retire_expired(shared, &mut st, &key);
    }
    wake_at
}

/// Fills started together for one shape.
struct Batch<S> {
    shape: Arc<ShapeKey>,
    /// What the provider makes the shape's VMs from.
    spec: Arc<S>,
    /// Run the pool's health check on each new VM (`ShapeConfig::health_check`).
    check: bool,
    /// Let each new VM rest until it is handed out (`ShapeConfig::pause_idle`).
    pause: bool,
    /// Callers queued for the shape (`Bucket::queued`): a VM someone waits for is not paused.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// The bucket generation the fills belong to (a re-registered shape is a new generation).
    generation: u64,
    /// Memory reserved per fill (the provider's estimate), corrected to the VM's own charge on arrival.
    charged_mb: u64,
}

/// Creates one VM per permit, concurrently, delivering each as soon as it is ready.
async fn fill_batch<P: Provider>(
    shared: Arc<Shared<P>>,
    batch: Batch<P::Spec>,
    permits: Vec<OwnedSemaphorePermit>,
) {
    let batch_ref = &batch;
    let mut creates: FuturesUnordered<_> = permits
        .into_iter()
        .map(|permit| {
            let shared = &shared;
            async move {
                let started = Instant::now();
                let result = create_checked(shared, batch_ref).await;
                (result, started.elapsed(), permit)
            }
        })
        .collect();
    while let Some((result, latency, permit)) = creates.next().await {
        deliver(&shared, &batch, result, latency);
        drop(permit);
        shared.progress.notify_waiters();
        shared.refill_wake.notify_one();
    }
}

/// The outcome of one fill: a VM and whether it rests (`Provider::pause`), or the reason it failed
/// (and the VM that failed its check).
type FillResult<V> = Result<(V, bool), (String, Option<V>)>;

/// Creates a VM and runs the health check once (if its shape wants it), so `try_reserve` (which
/// cannot await) only hands out VMs that passed one; `reserve` checks again right before hand-out.
/// Then, if the shape lets idle VMs rest and nobody is waiting for this one, the provider pauses it.
///
/// A shutdown cancels a fill still in progress: the provider's `create` future is dropped, so a
/// slow boot never outlives the pool (providers clean up a half-made VM when dropped).
async fn create_checked<P: Provider>(shared: &Shared<P>, batch: &Batch<P::Spec>) -> FillResult<P::Vm> {
    let vm = tokio::select! {
        biased;
        () = shared.cancel.cancelled() => {
            return Err(("fill cancelled: the pool is shutting down".to_owned(), None));
        }
        created = shared.provider.create(&batch.shape, &batch.spec) => created.map_err(|e| (error_chain(&e), None))?,
    };
    if let Some(check) = shared.health.as_ref().filter(|_| batch.check)
        && let Err(why) = check.check_dyn(&vm).await
    {
        return Err((format!("new VM failed its health check: {why}"), Some(vm)));
    }
    if !batch.pause || batch.queued.load(Ordering::Relaxed) > 0 {
        // A waiter takes it at once: pausing would only add a pause and a resume to its wait.
        return Ok((vm, false));
    }
    match shared.provider.pause(&vm).await {
        Ok(paused) => Ok((vm, paused)),
        Err(why) => Err((format!("pausing the new VM failed: {why}"), Some(vm))),
    }
}

fn deliver<P: Provider>(
    shared: &Arc<Shared<P>>,
    batch: &Batch<P::Spec>,
    result: FillResult<P::Vm>,
    latency: Duration,
) {
    let Batch { shape, spec, generation, charged_mb, .. } = batch;
    let generation = *generation;
    let mut st = shared.lock();
    // The fill reserved the provider's estimate; from now on the VM is charged its own figure.
    let charge_mb = match &result {
        Ok((vm, _)) | Err((_, Some(vm))) => {
            let actual = shared.provider.memory().charge_mb(shape, spec, vm);
            st.mem_used_mb = st.mem_used_mb.saturating_sub(*charged_mb).saturating_add(actual);
            actual
        }
        Err((_, None)) => *charged_mb,
    };
    let closing = st.closing;
    let bucket = st.buckets.get_mut(&**shape).filter(|b| b.generation == generation);
    match (result, bucket) {
        (Ok((vm, paused)), Some(b)) if !closing => {
            b.filling -= 1;
            b.metrics.created.inc();
            let kind = crate::provider::PoolVm::fill_kind(&vm);
            b.metrics.filled.count(kind);
            b.last_fill = kind;
            b.consecutive_failures = 0;
            b.backoff_until = None;
            b.demand.record_fill(latency);
            let watch = crate::watch::watch_exit(&shared.watch_tx, shape, &vm);
            let entry =
                Entry { vm, charge_mb, created: Instant::now(), expired: None, watch: Some(watch), paused };
            if let Some(entry) = b.hand_to_waiter(entry) {
                b.ready.push_back(entry);
            }
            b.sync_gauges();
            if b.expired_in_ready > 0 {
                crate::maintenance::retire_expired(shared, &mut st, shape);
            }
        }
        (Ok((vm, _)), bucket) => {
            // Shape unregistered or pool closing while the VM booted: destroy it.
            if let Some(b) = bucket {
                b.filling -= 1;
                b.metrics.created.inc();
                b.sync_gauges();
            }
            shared.retire(&mut st, vm, charge_mb);
        }
        (Err((message, rejected)), bucket) => {
            if closing {
                // A fill cancelled by shutdown is no failure of the provider.
                if let Some(b) = bucket {
                    b.filling -= 1;
                    b.sync_gauges();
                }
            } else if let Some(b) = bucket {
                b.filling -= 1;
                b.fill_failures += 1;
                b.consecutive_failures = b.consecutive_failures.saturating_add(1);
                let delay = b.config.backoff.delay(b.consecutive_failures);
                b.backoff_until = Some(Instant::now() + delay);
                b.metrics.fill_failures.inc();
                if rejected.is_some() {
                    b.metrics.created.inc();
                    b.metrics.validation_failures.inc();
                }
                tracing::warn!(%shape, failures = b.consecutive_failures, ?delay, error = %message, "fill failed; backing off");
                b.last_error = Some(message);
                b.sync_gauges();
            } else {
                tracing::warn!(%shape, error = %message, "fill failed for a shape that is gone");
            }
            match rejected {
                // Still alive and charged: the reaper destroys it and frees its memory.
                Some(vm) => shared.retire(&mut st, vm, charge_mb),
                None => shared.forget(&mut st, charge_mb),
            }
        }
    }
}
