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
use crate::shared::Shared;

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

/// Takes a ready VM if fairness allows, else queues (when `wait`) or fails with `Exhausted`.
pub(crate) fn take_or_enqueue<P: Provider>(
    shared: &Arc<Shared<P>>,
    key: &ShapeKey,
    wait: bool,
    priority: bool,
    count_demand: bool,
) -> Result<Step<P>, PoolError> {
    let mut st = shared.lock();
    if st.closing {
        return Err(PoolError::ShuttingDown);
    }
    let Some(b) = st.buckets.get_mut(key) else { return Err(PoolError::UnknownShape(key.clone())) };
    if count_demand && let Some(a) = &b.config.adaptive {
        let window = a.window;
        b.demand.record_acquire(Instant::now(), window);
    }
    let taken = if b.waiters.is_empty() || priority { b.take_ready() } else { None };
    let step = match taken {
        Some(entry) => {
            b.leased += 1;
            b.sync_gauges();
            Step::Got(Held {
                entry: Some(entry),
                shape: Arc::clone(&b.key),
                check: b.config.health_check,
                generation: b.generation,
                shared: Arc::clone(shared),
                metrics: Arc::clone(&b.metrics),
            })
        }
        None if !wait => return Err(PoolError::Exhausted),
        None => {
            let (tx, rx) = oneshot::channel();
            let id = shared.next_id();
            let waiter = Waiter { id, tx };
            if priority {
                b.waiters.push_front(waiter)
            } else {
                b.waiters.push_back(waiter)
            }
            Step::Wait(WaitFor {
                rx,
                id,
                shape: Arc::clone(&b.key),
                check: b.config.health_check,
                generation: b.generation,
                shared: Arc::clone(shared),
                metrics: Arc::clone(&b.metrics),
                done: false,
            })
        }
    };
    drop(st);
    shared.refill_wake.notify_one();
    Ok(step)
}

/// `reserve()`: waits for a VM, runs the health check, retries with priority on failure.
pub(crate) async fn reserve<P: Provider>(
    shared: &Arc<Shared<P>>,
    key: &ShapeKey,
) -> Result<PooledVm<P>, PoolError> {
    let started = Instant::now();
    let mut retry = false;
    loop {
        let held = match take_or_enqueue(shared, key, true, retry, !retry)? {
            Step::Got(held) => held,
            Step::Wait(wait) => wait.await?,
        };
        retry = true;
        if let Some(check) = shared.health.as_ref().filter(|_| held.check) {
            let verdict = match &held.entry {
                Some(entry) => check.check_dyn(&entry.vm).await,
                None => continue,
            };
            if let Err(why) = verdict {
                reject(shared, held, &why.reason);
                continue;
            }
        }
        return finish(held, started);
    }
}

/// `try_reserve()`: never waits. VMs of a checked shape were checked when they became ready (see
/// `refill`).
pub(crate) fn try_reserve<P: Provider>(
    shared: &Arc<Shared<P>>,
    key: &ShapeKey,
) -> Result<PooledVm<P>, PoolError> {
    let started = Instant::now();
    match take_or_enqueue(shared, key, false, false, true)? {
        Step::Got(held) => finish(held, started),
        Step::Wait(_) => Err(PoolError::Exhausted),
    }
}

fn finish<P: Provider>(held: Held<P>, started: Instant) -> Result<PooledVm<P>, PoolError> {
    if held.shared.is_closing() {
        // Sent before the close began; `Held`'s drop hands it to the shutdown eviction.
        return Err(PoolError::ShuttingDown);
    }
    let metrics = Arc::clone(&held.metrics);
    let Some(lease) = held.into_lease() else { return Err(PoolError::Exhausted) };
    metrics.acquired.inc();
    metrics.observe_wait(started.elapsed());
    Ok(lease)
}

fn reject<P: Provider>(shared: &Arc<Shared<P>>, mut held: Held<P>, reason: &str) {
    let Some(entry) = held.entry.take() else { return };
    tracing::warn!(vm = crate::provider::PoolVm::id(&entry.vm), shape = %held.shape, reason, "VM failed its health check; trying the next");
    let mut st = shared.lock();
    if let Some(b) = st.unlease(&held.shape, held.generation) {
        b.metrics.validation_failures.inc();
    }
    shared.evict(&mut st, &held.shape, entry, EvictReason::Unhealthy);
}
