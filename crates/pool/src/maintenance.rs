//! Background care of idle VMs: age / idle eviction and liveness probes.
//!
//! Expired VMs (older than `max_age`, idle longer than `idle_ttl`) stop counting as depth at once,
//! so the refiller starts their replacements; the expired VM itself stays available and is evicted
//! only once enough fresh VMs are ready (at least the low water), so eviction never empties the
//! pool under load. When the memory budget blocks the replacement and nobody is waiting, one expired
//! VM is evicted first to make room. Probes take one VM at a time out of `ready`, run
//! [`Provider::probe`] with a timeout, and put it back or evict it. Dead VMs (`PoolVm::exited`) are
//! evicted the moment they die: the watcher task (`watch`) calls [`evict_by_id`] for them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::metrics::EvictReason;
use crate::provider::{PoolVm, Provider};
use crate::shape::ShapeKey;
use crate::shared::{Shared, State};

pub(crate) async fn run<P: Provider>(shared: Arc<Shared<P>>) {
    let mut next_probe: HashMap<ShapeKey, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        let mut wake_at = sweep(&shared, now);
        let due = probe_schedule(&shared, &mut next_probe, now);
        for key in &due {
            probe_bucket(&shared, key).await;
        }
        let now = Instant::now();
        for (key, at) in next_probe.iter_mut() {
            if due.contains(key)
                && let Some(interval) = probe_interval(&shared, key)
            {
                *at = now + interval;
            }
            wake_at = Some(wake_at.map_or(*at, |w| w.min(*at)));
        }
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.maint_wake.notified() => {}
            () = crate::shared::sleep_until_or_forever(wake_at) => {}
        }
    }
}

fn probe_interval<P: Provider>(shared: &Shared<P>, key: &ShapeKey) -> Option<std::time::Duration> {
    shared.lock().buckets.get(key).and_then(|b| b.config.probe_interval)
}

/// Shapes whose probe is due; keeps `next_probe` in step with the registered shapes.
fn probe_schedule<P: Provider>(
    shared: &Shared<P>,
    next: &mut HashMap<ShapeKey, Instant>,
    now: Instant,
) -> Vec<ShapeKey> {
    let st = shared.lock();
    next.retain(|k, _| st.buckets.get(k).is_some_and(|b| b.config.probe_interval.is_some()));
    let mut due = Vec::new();
    for (key, b) in &st.buckets {
        if let Some(interval) = b.config.probe_interval {
            let at = *next.entry(key.clone()).or_insert(now + interval);
            if at <= now {
                due.push(key.clone());
            }
        }
    }
    due
}

/// Marks expired VMs, evicts those that have a replacement, returns the next expiry deadline.
fn sweep<P: Provider>(shared: &Arc<Shared<P>>, now: Instant) -> Option<Instant> {
    let mut st = shared.lock();
    if st.closing {
        return None;
    }
    let mut wake_at: Option<Instant> = None;
    let mut marked = false;
    let keys: Vec<ShapeKey> = st.buckets.keys().cloned().collect();
    for key in keys {
        let Some(b) = st.buckets.get_mut(&key) else { continue };
        let limits = [(b.config.max_age, EvictReason::MaxAge), (b.config.idle_ttl, EvictReason::IdleTtl)];
        for pos in 0..b.ready.len() {
            let Some(entry) = b.ready.get(pos).filter(|e| e.expired.is_none()) else { continue };
            let mut first: Option<(Instant, EvictReason)> = None;
            for (limit, reason) in limits {
                // A limit too large for the clock (e.g. `Duration::MAX`) never expires anything.
                if let Some(at) = limit.and_then(|limit| entry.created.checked_add(limit))
                    && first.is_none_or(|(f, _)| at < f)
                {
                    first = Some((at, reason));
                }
            }
            match first {
                Some((at, reason)) if at <= now => {
                    b.mark_expired(pos, reason);
                    marked = true;
                }
                Some((at, _)) => wake_at = Some(wake_at.map_or(at, |w| w.min(at))),
                None => {}
            }
        }
        // A VM that becomes ready later expires no earlier than this.
        let soonest = limits.iter().filter_map(|(l, _)| *l).min();
        if let Some(at) = soonest.and_then(|limit| now.checked_add(limit)) {
            wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
        }
        retire_expired(shared, &mut st, &key);
    }
    drop(st);
    if marked {
        shared.refill_wake.notify_one();
    }
    wake_at
}

/// Evicts expired VMs of `key` while enough fresh ones are ready to stand in for them.
pub(crate) fn retire_expired<P: Provider>(shared: &Shared<P>, st: &mut State<P>, key: &ShapeKey) {
    let now = Instant::now();
    let mut victims = Vec::new();
    if let Some(b) = st.buckets.get_mut(key) {
        let floor = b.low_water().min(b.target(now)).max(1);
        while let Some(pos) = b.ready.iter().position(|e| e.expired.is_some()) {
            let make_room = b.budget_blocked && b.waiters.is_empty();
            if b.fresh_ready() < floor && !make_room {
                break;
            }
            b.budget_blocked = false;
            if let Some(entry) = b.take_at(pos) {
                victims.push(entry);
            }
        }
        b.sync_gauges();
    }
    for entry in victims {
        let reason = entry.expired.unwrap_or(EvictReason::MaxAge);
        shared.evict(st, key, entry, reason);
    }
}

/// Evicts the ready VM `id` of `key`, if it is still ready.
pub(crate) fn evict_by_id<P: Provider>(shared: &Shared<P>, key: &ShapeKey, id: &str, reason: EvictReason) {
    let mut st = shared.lock();
    let Some(b) = st.buckets.get_mut(key) else { return };
    let Some(pos) = b.ready.iter().position(|e| e.vm.id() == id) else { return };
    let Some(entry) = b.take_at(pos) else { return };
    b.sync_gauges();
    tracing::info!(vm = id, shape = %key, %reason, "idle VM gone; replacing it");
    shared.evict(&mut st, key, entry, reason);
}

/// Probes every ready VM of `key`, one at a time.
async fn probe_bucket<P: Provider>(shared: &Arc<Shared<P>>, key: &ShapeKey) {
    let ids: Vec<String> = match shared.lock().buckets.get(key) {
        Some(b) => b.ready.iter().filter(|e| e.expired.is_none()).map(|e| e.vm.id().to_owned()).collect(),
        None => return,
    };
    for id in ids {
        let taken = {
            let mut st = shared.lock();
            if st.closing {
                return;
            }
            let Some(b) = st.buckets.get_mut(key) else { return };
            let pos = b.ready.iter().position(|e| e.vm.id() == id);
            match pos.and_then(|p| b.take_at(p)) {
                Some(entry) => {
                    b.probing += 1;
                    Some((entry, b.generation))
                }
                None => None,
            }
        };
        let Some((entry, generation)) = taken else { continue };
        let verdict =
            match tokio::time::timeout(shared.settings.probe_timeout, shared.provider.probe(&entry.vm)).await
            {
                Ok(v) => v,
                Err(_) => Err(crate::provider::Unhealthy::new(format!(
                    "probe did not answer within {:?}",
                    shared.settings.probe_timeout
                ))),
            };
        let mut st = shared.lock();
        if let Some(b) = st.buckets.get_mut(key).filter(|b| b.generation == generation) {
            b.probing -= 1;
        }
        match verdict {
            Ok(()) => shared.give_back(&mut st, key, generation, entry),
            Err(why) => {
                tracing::warn!(vm = %id, shape = %key, reason = %why, "idle VM failed its probe; replacing it");
                shared.evict(&mut st, key, entry, EvictReason::ProbeFailed);
                if let Some(b) = st.buckets.get(key) {
                    b.sync_gauges();
                }
            }
        }
    }
}
