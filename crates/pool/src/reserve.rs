//! Getting a VM out of a bucket: FIFO-fair, cancellation-safe.
//!
//! A caller either takes a ready VM at once (only when nobody is queued, so late callers cannot
//! overtake) or joins the bucket's FIFO queue with a oneshot channel. A new VM goes to the first
//! queued caller (`Bucket::hand_to_waiter`) under the pool's lock. Every step that holds a VM
//! outside the bucket is a guard whose `Drop` gives the VM back:
//! - [`WaitFor`] (queued): on drop it leaves the queue; if a VM was already sent, it closes the
//!   channel, takes the VM out and gives it to the next waiter or back to `ready`;
//! - [`Held`] (running the health check): on drop it gives the VM back.
//!
//! So a `reserve()` future dropped at any `.await` (e.g. by a timeout) never loses a VM.
//!
//! The fast path — a ready VM, nobody queued, nothing to wake or check — is one lock, a pop and a
//! few atomic stores: it never yields to the scheduler. The refiller is woken when a VM is *handed
//! out* (after its wake-up and health check), not when it is taken, so a fill's start never
//! competes with the hand-out for the CPU; a caller that has to queue wakes it at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bucket::{Entry, Waiter};
use crate::error::PoolError;
use crate::lease::PooledVm;
use crate::metrics::{EvictReason, ShapeMetricHandles};
use crate::provider::Provider;
use crate::shape::ShapeKey;
use crate::shared::{Shared, State};

/// A VM taken out of its bucket, counted as leased, not yet handed to the caller.
pub(crate) struct Held<P: Provider> {
    entry: Option<Entry<P::Vm>>,
    shape: Arc<ShapeKey>,
    /// The shape wants the pool's health check before hand-out (`ShapeConfig::health_check`).
    check: bool,
    generation: u64,
    shared: Arc<Shared<P>>,
    metrics: Arc<ShapeMetricHandles>,
}

impl<P: Provider> Held<P> {
    fn into_lease(mut self) -> Option<PooledVm<P>> {
        let entry = self.entry.take()?;
        let Entry { vm, charge_mb, created, watch, .. } = entry;
        drop(watch);
        let (shape, shared) = (Arc::clone(&self.shape), Arc::clone(&self.shared));
        Some(PooledVm::new((vm, charge_mb), shape, self.generation, created, shared))
    }
}

impl<P: Provider> Drop for Held<P> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            let mut st = self.shared.lock();
            st.unlease(&self.shape, self.generation);
            self.shared.give_back(&mut st, &self.shape, self.generation, entry);
        }
    }
}

/// A queued `reserve()`; resolves when the bucket sends it a VM.
pub(crate) struct WaitFor<P: Provider> {
    rx: oneshot::Receiver<Entry<P::Vm>>,
    id: u64,
    shape: Arc<ShapeKey>,
    check: bool,
    generation: u64,
    shared: Arc<Shared<P>>,
    metrics: Arc<ShapeMetricHandles>,
    done: bool,
}

impl<P: Provider> Future for WaitFor<P> {
    type Output = Result<Held<P>, PoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(entry)) => {
                this.done = true;
                Poll::Ready(Ok(Held {
                    entry: Some(entry),
                    shape: Arc::clone(&this.shape),
                    check: this.check,
                    generation: this.generation,
                    shared: Arc::clone(&this.shared),
                    metrics: Arc::clone(&this.metrics),
                }))
            }
            Poll::Ready(Err(_)) => {
                this.done = true;
                Poll::Ready(Err(if this.shared.is_closing() {
                    PoolError::ShuttingDown
                } else {
                    PoolError::UnknownShape((*this.shape).clone())
                }))
            }
        }
    }
}

impl<P: Provider> Drop for WaitFor<P> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.shared.lock();
        let still_queued = st
            .buckets
            .get_mut(&*self.shape)
            .filter(|b| b.generation == self.generation)
            .is_some_and(|b| b.remove_waiter(self.id));
        if still_queued {
            return;
        }
        // Served (or the bucket is gone): a VM may be sitting in the channel. Take it back.
        self.rx.close();
        if let Ok(entry) = self.rx.try_recv() {
            st.unlease(&self.shape, self.generation);
            self.shared.give_back(&mut st, &self.shape, self.generation, entry);
        }
    }
}

pub(crate) enum Step<P: Provider> {
    Got(Held<P>),
    Wait(WaitFor<P>),
}

/// The bucket a reserve is for: the pool's default shape or a named one (resolved under the lock,
/// so the fast path locks once).
#[derive(Clone, Copy)]
pub(crate) enum Which<'a> {
    Default,
    Shape(&'a ShapeKey),
}

fn resolve<'s, P: Provider>(
    st: &'s mut State<P>,
    which: Which<'_>,
) -> Result<&'s mut crate::bucket::Bucket<P>, PoolError> {
    let State { buckets, default_shape, closing, .. } = st;
    let key = match which {
        Which::Shape(key) => key,
        Which::Default => default_shape.as_ref().ok_or(PoolError::NoDefaultShape)?,
    };
    if *closing {
        return Err(PoolError::ShuttingDown);
    }
    buckets.get_mut(key).ok_or_else(|| PoolError::UnknownShape(key.clone()))
}

/// Takes a ready VM if fairness allows, else queues (when `wait`) or fails with `Exhausted`.
pub(crate) fn take_or_enqueue<P: Provider>(
    shared: &Arc<Shared<P>>,
    which: Which<'_>,
    wait: bool,
    priority: bool,
    count_demand: bool,
) -> Result<Step<P>, PoolError> {
    let mut st = shared.lock();
    let b = resolve(&mut st, which)?;
    if count_demand && let Some(a) = &b.config.adaptive {
        let window = a.window;
        b.demand.record_acquire(Instant::now(), window);
    }
    let taken = if b.waiters.is_empty() || priority { b.take_ready() } else { None };
    if let Some(entry) = taken {
        b.leased += 1;
        b.sync_gauges();
        // The refiller is woken when the VM is handed out (`finish`) or evicted.
        return Ok(Step::Got(Held {
            entry: Some(entry),
            shape: Arc::clone(&b.key),
            check: b.config.health_check,
            generation: b.generation,
            shared: Arc::clone(shared),
            metrics: Arc::clone(&b.metrics),
        }));
    }
    if !wait {
        return Err(PoolError::Exhausted);
    }
    let (tx, rx) = oneshot::channel();
    let id = shared.next_id();
    let waiter = Waiter { id, tx };
    b.queue_waiter(waiter, priority);
    let wait = WaitFor {
        rx,
        id,
        shape: Arc::clone(&b.key),
        check: b.config.health_check,
        generation: b.generation,
        shared: Arc::clone(shared),
        metrics: Arc::clone(&b.metrics),
        done: false,
    };
    drop(st);
    shared.refill_wake.notify_one();
    Ok(Step::Wait(wait))
}

/// `reserve()` (`wait`) and `reserve_now()` (not `wait`): takes a VM (queueing for one when
/// `wait`), wakes it if it rests, runs the health check, and retries with priority on failure.
pub(crate) async fn reserve<P: Provider>(
    shared: &Arc<Shared<P>>,
    which: Which<'_>,
    wait: bool,
) -> Result<PooledVm<P>, PoolError> {
    let started = Instant::now();
    let mut step = take_or_enqueue(shared, which, wait, false, true)?;
    loop {
        let mut held = match step {
            Step::Got(held) => held,
            Step::Wait(waiting) => waiting.await?,
        };
        let shape = match ready_for_hand_out(shared, &mut held).await {
            Ok(()) => return finish(held, started),
            Err(why) => {
                let shape = Arc::clone(&held.shape);
                reject(shared, held, &why);
                shape
            }
        };
        step = take_or_enqueue(shared, Which::Shape(&shape), wait, true, false)?;
    }
}

/// Wakes a resting VM (`Provider::resume`) and runs the shape's health check. On the fast path
/// (the VM runs, no check) this completes at its first poll.
async fn ready_for_hand_out<P: Provider>(shared: &Shared<P>, held: &mut Held<P>) -> Result<(), String> {
    let Some(entry) = held.entry.as_mut() else { return Err("the VM is gone".to_owned()) };
    if entry.paused {
        shared.provider.resume(&entry.vm).await.map_err(|why| format!("waking it failed: {why}"))?;
        entry.paused = false;
    }
    if let Some(check) = shared.health.as_ref().filter(|_| held.check) {
        check.check_dyn(&entry.vm).await.map_err(|why| why.reason)?;
    }
    Ok(())
}

/// `try_reserve()`: never waits. VMs of a checked shape were checked when they became ready (see
/// `refill`). A resting VM is handed out at once and woken by a spawned `Provider::resume`.
pub(crate) fn try_reserve<P: Provider>(
    shared: &Arc<Shared<P>>,
    which: Which<'_>,
) -> Result<PooledVm<P>, PoolError> {
    let started = Instant::now();
    match take_or_enqueue(shared, which, false, false, true)? {
        Step::Got(mut held) => {
            wake_detached(shared, &mut held);
            finish(held, started)
        }
        Step::Wait(_) => Err(PoolError::Exhausted),
    }
}

/// Starts waking a resting VM without waiting for it (the provider's VM waits for the wake-up
/// itself before it serves its user). Outside a runtime nothing is spawned: the VM wakes on use.
fn wake_detached<P: Provider>(shared: &Shared<P>, held: &mut Held<P>) {
    let Some(entry) = held.entry.as_mut().filter(|entry| entry.paused) else { return };
    entry.paused = false;
    let resume = shared.provider.resume(&entry.vm);
    let vm = crate::provider::PoolVm::id(&entry.vm).to_owned();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(why) = resume.await {
                    tracing::warn!(%vm, reason = %why, "waking a VM handed out by try_reserve failed");
                }
            });
        }
        Err(_) => tracing::debug!(%vm, "no runtime to wake a resting VM in; it wakes on first use"),
    }
}

fn finish<P: Provider>(held: Held<P>, started: Instant) -> Result<PooledVm<P>, PoolError> {
    if held.shared.is_closing() {
        // Sent before the close began; `Held`'s drop hands it to the shutdown eviction.
        return Err(PoolError::ShuttingDown);
    }
    let metrics = Arc::clone(&held.metrics);
    let shared = Arc::clone(&held.shared);
    let Some(lease) = held.into_lease() else { return Err(PoolError::Exhausted) };
    metrics.acquired.inc();
    metrics.observe_wait(started.elapsed());
    // Handed out: now the refiller may start the replacement.
    shared.refill_wake.notify_one();
    Ok(lease)
}

fn reject<P: Provider>(shared: &Arc<Shared<P>>, mut held: Held<P>, reason: &str) {
    let Some(entry) = held.entry.take() else { return };
    tracing::warn!(vm = crate::provider::PoolVm::id(&entry.vm), shape = %held.shape, reason, "VM not fit for hand-out (health check or wake-up failed); trying the next");
    let mut st = shared.lock();
    if let Some(b) = st.unlease(&held.shape, held.generation) {
        b.metrics.validation_failures.inc();
    }
    shared.evict(&mut st, &held.shape, entry, EvictReason::Unhealthy);
}
