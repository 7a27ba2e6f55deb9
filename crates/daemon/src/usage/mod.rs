//! What each lease's VM uses, sampled every few seconds for the lease's life:
//! `GET /v1/leases/{id}/metrics`, `GET /v1/usage` (`firepit top`), and the guest's OOM kills as
//! events.
//!
//! # Why one task and a table scan
//! One task wakes every second, looks at the lease table and probes the leases whose sample is
//! due: a lease is sampled as soon as the task sees it (its first sample within a second of its
//! start), then every `interval`, and its history moves to a short memory of ended leases once
//! the table no longer lists it. Nothing in the lease lifecycle has to call in (no hook to forget
//! on some path), there is no timer per lease, and since leases start at different times their
//! samples spread over the interval by themselves. A probe holds its lease only while it runs, and
//! stops waiting for the guest when the lease ends.
//!
//! # What a probe costs
//! The host's side ([`LeasedVm::host_usage`](crate::backend::LeasedVm::host_usage)) is a few small file reads (cgroup counters,
//! `/proc/PID/statm`, a `stat` of the disk overlay) plus, one sample in twelve, QEMU's PSS
//! (`smaps_rollup`, ≈1 ms). The guest's side is one agent request answered inline by the agent
//! (`/proc/meminfo` and a `statfs`), only for running leases: a paused lease's guest is not woken
//! to be measured. Probes run at most [`PARALLEL_PROBES`] at a time, each guest request within
//! [`GUEST_TIMEOUT`]. `firepit bench usage` measures the whole (goal: 300 idle leases ≤ 1 % of a
//! core).
//!
//! # Layers
//! `history.rs` (the samples, rates and kills per lease; pure) and `oom_events.rs` (where a kill
//! is reported) below this file, which owns the task and answers the API.

mod history;
mod oom_events;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use firepit_api::{LeaseListQuery, LeaseMetrics, LeaseState, LeaseUsage, UsageList};
use firepit_qemu::UsageDepth;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::LeaseBackend;
use crate::config::UsageConfig;
use crate::leases::state::Slot;
use crate::leases::{Lease, LeaseTable};
pub use history::{ENDED_KEPT, History, PSS_EVERY, Probe};
pub use oom_events::{OomEvent, OomReporter, OomSink, to_event_bus};

/// How often the task looks for due samples (more often when the interval is shorter).
const TICK: Duration = Duration::from_secs(1);
/// Probes running at once.
pub const PARALLEL_PROBES: usize = 16;
/// How long a probe waits for the guest's answer.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The sampler: its task, the histories, the OOM reporter.
pub struct UsageSampler {
    leases: Weak<LeaseTable>,
    backend: Arc<dyn LeaseBackend>,
    config: UsageConfig,
    histories: Mutex<history::Histories>,
    oom: OomReporter,
    probe_seconds: Histogram,
}

impl UsageSampler {
    /// Starts sampling the leases of `leases` until `stop` fires; registers its metrics
    /// (`firepit_daemon_usage_probe_seconds`, `firepit_vm_oom_kills_total`) in `registry`.
    pub fn start(
        leases: &Arc<LeaseTable>,
        backend: Arc<dyn LeaseBackend>,
        config: UsageConfig,
        registry: &mut Registry,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let probe_seconds = Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5]);
        registry.sub_registry_with_prefix("firepit_daemon").register(
            "usage_probe_seconds",
            "Time one usage sample of a lease took (host files and the guest's answer)",
            probe_seconds.clone(),
        );
        let sampler = Arc::new(Self {
            leases: Arc::downgrade(leases),
            backend,
            config,
            histories: Mutex::default(),
            oom: OomReporter::register(registry),
            probe_seconds,
        });
        let task = sampler.clone();
        let tick = TICK.min(config.interval());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(tick) => {}
                }
                if !task.round().await {
                    return; // the daemon is gone
                }
            }
        });
        sampler
    }

    /// Sends every later OOM kill to `sink` too (the event stream's `process.oom_killed`).
    pub fn set_oom_sink(&self, sink: OomSink) {
        self.oom.set_sink(sink);
    }

    /// Its settings.
    pub fn config(&self) -> UsageConfig {
        self.config
    }

    /// The samples of lease `id` (live, or ended and still remembered), after `since_unix_ms`.
    pub fn lease_metrics(&self, id: &str, since_unix_ms: Option<u64>) -> Option<LeaseMetrics> {
        let histories = self.lock();
        let (history, ended) = histories.get(id)?;
        Some(LeaseMetrics {
            lease_id: id.to_owned(),
            shape: history.shape.clone(),
            interval_ms: self.config.interval_ms,
            capacity: history.capacity(),
            ended,
            samples: history.samples_since(since_unix_ms),
        })
    }

    /// Every live lease with its latest sample, oldest lease first.
    pub fn latest(&self) -> UsageList {
        let views = match self.leases.upgrade() {
            Some(table) => table.views(&LeaseListQuery::default()),
            None => Vec::new(),
        };
        let histories = self.lock();
        let leases = views
            .into_iter()
            .filter(|view| view.state != LeaseState::Ended)
            .map(|view| LeaseUsage {
                latest: histories.live.get(&view.id).and_then(History::latest).cloned(),
                lease_id: view.id,
                shape: view.shape,
            })
            .collect();
        UsageList { interval_ms: self.config.interval_ms, leases }
    }

    fn lock(&self) -> MutexGuard<'_, history::Histories> {
        self.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One look at the table: new leases get a history, ended ones are retired, due ones probed.
    /// False once the lease table is gone.
    pub async fn round(self: &Arc<Self>) -> bool {
        let Some(table) = self.leases.upgrade() else { return false };
        let views = table.views(&LeaseListQuery::default());
        let live: Vec<_> = views.iter().filter(|view| view.state != LeaseState::Ended).collect();
        let now = Instant::now();
        let interval = self.config.interval();
        let mut due = Vec::new();
        {
            let mut histories = self.lock();
            histories.retire_missing(&live.iter().map(|view| view.id.as_str()).collect::<HashSet<_>>());
            let mut cpus = None;
            for view in &live {
                if !histories.live.contains_key(&view.id) {
                    // Asked once per round, and only when a new lease needs it.
                    let shapes = cpus.get_or_insert_with(|| self.backend.status());
                    let vcpus = shapes.iter().find(|s| s.name == view.shape).map_or(1, |s| s.cpus);
                    let history = History::new(view.shape.clone(), vcpus, self.config.samples_kept, now);
                    histories.live.insert(view.id.clone(), history);
                }
                let Some(history) = histories.live.get_mut(&view.id) else { continue };
                if history.in_flight || history.next_due > now {
                    continue;
                }
                history.in_flight = true;
                // Keeps its phase; one that fell behind (a slow round) starts again from now.
                history.next_due = (history.next_due + interval).max(now + interval / 2);
                let ask_guest = view.state == LeaseState::Running;
                due.push((view.id.clone(), history.wants_pss(), history.oom_seq(), ask_guest));
            }
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL_PROBES));
        let mut probes = JoinSet::new();
        for (id, pss, oom_after, ask_guest) in due {
            let Some(lease) = table.get(&id) else {
                if let Some(history) = self.lock().live.get_mut(&id) {
                    history.in_flight = false;
                }
                continue;
            };
            let (sampler, limit) = (self.clone(), limit.clone());
            probes.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let depth = if pss { UsageDepth::WithPss } else { UsageDepth::Cheap };
                let probe = probe(&lease, depth, oom_after, ask_guest).await;
                sampler.record(&lease, probe);
            });
        }
        while probes.join_next().await.is_some() {}
        true
    }

    fn record(&self, lease: &Lease, probe: Probe) {
        let started = probe.instant;
        let mut histories = self.lock();
        let Some(history) = histories.live.get_mut(&lease.id) else { return };
        history.in_flight = false;
        let (_, kills) = history.record(probe);
        let shape = history.shape.clone();
        drop(histories);
        if let Some(started) = started {
            self.probe_seconds.observe(started.elapsed().as_secs_f64());
        }
        for kill in kills {
            let event = OomEvent { lease_id: lease.id.clone(), shape: shape.clone(), kill };
            self.oom.report(&event, &lease.span);
        }
    }
}

/// Reads what `lease` uses: the host's side, and the guest's when `ask_guest`. A lease whose VM
/// is not running (paused: only its saved state exists; ended) gives an empty probe: it is never
/// resumed to be measured. Gives up on the guest when the lease stops running or after
/// [`GUEST_TIMEOUT`].
pub async fn probe(lease: &Lease, depth: UsageDepth, oom_after: u64, ask_guest: bool) -> Probe {
    let instant = Instant::now();
    let at = SystemTime::now();
    let stopped = lease.stopped();
    let slot = lease.slot.read().await;
    let Slot::Running(vm) = &*slot else {
        return Probe { at: Some(at), instant: Some(instant), host: None, guest: None };
    };
    if stopped.is_cancelled() {
        return Probe { at: Some(at), instant: Some(instant), host: None, guest: None };
    }
    let host = vm.host_usage(depth);
    let guest = if ask_guest {
        tokio::select! {
            () = stopped.cancelled() => None,
            answer = vm.guest().usage(oom_after, GUEST_TIMEOUT) => match answer {
                Ok(usage) => Some(usage),
                Err(error) => {
                    lease.span.in_scope(|| tracing::debug!(%error, "no usage from the guest"));
                    None
                }
            },
        }
    } else {
        None
    };
    Probe { at: Some(at), instant: Some(instant), host, guest }
}
