//! Counters, gauges and the wait-time histogram, per shape.
//!
//! One source of truth: the `prometheus-client` families. [`Pool::register_metrics`] registers
//! clones of them into the caller's registry; [`Pool::metrics`] reads them back into a plain
//! [`MetricsSnapshot`]. Each bucket caches its own label's metric handles so the hot path never
//! hashes a label.
//!
//! [`Pool::register_metrics`]: crate::Pool::register_metrics
//! [`Pool::metrics`]: crate::Pool::metrics

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::shape::ShapeKey;

/// Why a VM left the pool without being handed out.
///
/// ```
/// use firepit_pool::EvictReason;
/// assert_eq!(EvictReason::MaxAge.to_string(), "max_age");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvictReason {
    /// Older than `max_age`.
    MaxAge,
    /// Idle longer than `idle_ttl`.
    IdleTtl,
    /// The VM died on its own (`PoolVm::exited` resolved).
    Exited,
    /// The background liveness probe failed.
    ProbeFailed,
    /// The health check before hand-out failed.
    Unhealthy,
    /// Its shape was unregistered.
    Unregistered,
    /// The pool shut down.
    Shutdown,
}

impl EvictReason {
    /// All reasons, in label order.
    pub const ALL: [EvictReason; 7] = [
        EvictReason::MaxAge,
        EvictReason::IdleTtl,
        EvictReason::Exited,
        EvictReason::ProbeFailed,
        EvictReason::Unhealthy,
        EvictReason::Unregistered,
        EvictReason::Shutdown,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::MaxAge => "max_age",
            EvictReason::IdleTtl => "idle_ttl",
            EvictReason::Exited => "exited",
            EvictReason::ProbeFailed => "probe_failed",
            EvictReason::Unhealthy => "unhealthy",
            EvictReason::Unregistered => "unregistered",
            EvictReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShapeLabel {
    shape: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FillLabels {
    shape: String,
    fill_strategy: String,
}

/// The `fill_strategy` label of VMs whose [`PoolVm::fill_kind`](crate::provider::PoolVm::fill_kind) is `None`.
pub const UNSPECIFIED_FILL: &str = "unspecified";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictLabels {
    shape: String,
    reason: EvictReasonLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum EvictReasonLabel {
    max_age,
    idle_ttl,
    exited,
    probe_failed,
    unhealthy,
    unregistered,
    shutdown,
}

impl From<EvictReason> for EvictReasonLabel {
    fn from(r: EvictReason) -> Self {
        match r {
            EvictReason::MaxAge => Self::max_age,
            EvictReason::IdleTtl => Self::idle_ttl,
            EvictReason::Exited => Self::exited,
            EvictReason::ProbeFailed => Self::probe_failed,
            EvictReason::Unhealthy => Self::unhealthy,
            EvictReason::Unregistered => Self::unregistered,
            EvictReason::Shutdown => Self::shutdown,
        }
    }
}

type HistogramCtor = fn() -> Histogram;

fn wait_histogram() -> Histogram {
    // 1 µs .. ~4.5 min in ×4 steps.
    Histogram::new(exponential_buckets(1e-6, 4.0, 15))
}

/// The pool-wide metric families.
pub(crate) struct Metrics {
    created: Family<ShapeLabel, Counter>,
    filled: Family<FillLabels, Counter>,
    acquired: Family<ShapeLabel, Counter>,
    released: Family<ShapeLabel, Counter>,
    evicted: Family<EvictLabels, Counter>,
    validation_failures: Family<ShapeLabel, Counter>,
    fill_failures: Family<ShapeLabel, Counter>,
    refill_runs: Family<ShapeLabel, Counter>,
    ready: Family<ShapeLabel, Gauge>,
    filling: Family<ShapeLabel, Gauge>,
    leased: Family<ShapeLabel, Gauge>,
    wait: Family<ShapeLabel, Histogram, HistogramCtor>,
}

/// One shape's metric handles, cached in its bucket.
#[derive(Clone)]
pub(crate) struct ShapeMetricHandles {
    pub created: Counter,
    /// Successful fills by `fill_strategy` label (few values per shape: a short list beats a map).
    pub filled: FillCounters,
    pub acquired: Counter,
    pub released: Counter,
    pub evicted: [Counter; 7],
    pub validation_failures: Counter,
    pub fill_failures: Counter,
    pub refill_runs: Counter,
    pub ready: Gauge,
    pub filling: Gauge,
    pub leased: Gauge,
    pub wait: Histogram,
    /// Count and sum (ns) of the waits, for the snapshot (the histogram does not expose them).
    pub wait_count: Arc<AtomicU64>,
    pub wait_sum_ns: Arc<AtomicU64>,
}

/// One shape's `vms_filled` counters, created on first use of each `fill_strategy` value.
#[derive(Clone)]
pub(crate) struct FillCounters {
    family: Family<FillLabels, Counter>,
    shape: String,
    by_kind: Arc<Mutex<Vec<(&'static str, Counter)>>>,
}

impl FillCounters {
    /// Counts one successful fill of a VM made the `kind` way.
    pub fn count(&self, kind: Option<&'static str>) {
        let kind = kind.unwrap_or(UNSPECIFIED_FILL);
        let mut by_kind = self.by_kind.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, counter)) = by_kind.iter().find(|(k, _)| *k == kind) {
            counter.inc();
            return;
        }
        let labels = FillLabels { shape: self.shape.clone(), fill_strategy: kind.to_owned() };
        let counter = self.family.get_or_create_owned(&labels);
        counter.inc();
        by_kind.push((kind, counter));
    }

    fn read(&self) -> Vec<(&'static str, u64)> {
        let by_kind = self.by_kind.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut counts: Vec<_> = by_kind.iter().map(|(k, c)| (*k, c.get())).collect();
        counts.sort_unstable();
        counts
    }
}

impl ShapeMetricHandles {
    pub fn observe_wait(&self, wait: std::time::Duration) {
        self.wait.observe(wait.as_secs_f64());
        self.wait_count.fetch_add(1, Ordering::Relaxed);
        self.wait_sum_ns.fetch_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn evicted(&self, reason: EvictReason) -> &Counter {
        &self.evicted[reason.index()]
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            created: Family::default(),
            filled: Family::default(),
            acquired: Family::default(),
            released: Family::default(),
            evicted: Family::default(),
            validation_failures: Family::default(),
            fill_failures: Family::default(),
            refill_runs: Family::default(),
            ready: Family::default(),
            filling: Family::default(),
            leased: Family::default(),
            wait: Family::new_with_constructor(wait_histogram as HistogramCtor),
        }
    }

    pub fn handles(&self, shape: &ShapeKey) -> ShapeMetricHandles {
        let label = ShapeLabel { shape: shape.to_string() };
        let evicted = EvictReason::ALL.map(|reason| {
            self.evicted
                .get_or_create_owned(&EvictLabels { shape: label.shape.clone(), reason: reason.into() })
        });
        ShapeMetricHandles {
            created: self.created.get_or_create_owned(&label),
            filled: FillCounters {
                family: self.filled.clone(),
                shape: label.shape.clone(),
                by_kind: Arc::default(),
            },
            acquired: self.acquired.get_or_create_owned(&label),
            released: self.released.get_or_create_owned(&label),
            evicted,
            validation_failures: self.validation_failures.get_or_create_owned(&label),
            fill_failures: self.fill_failures.get_or_create_owned(&label),
            refill_runs: self.refill_runs.get_or_create_owned(&label),
            ready: self.ready.get_or_create_owned(&label),
            filling: self.filling.get_or_create_owned(&label),
            leased: self.leased.get_or_create_owned(&label),
            wait: self.wait.get_or_create_owned(&label),
            wait_count: Arc::default(),
            wait_sum_ns: Arc::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("firepit_pool");
        r.register("vms_created", "VMs created by the provider", self.created.clone());
        r.register(
            "vms_filled",
            "VMs the refiller added to the pool, by how the provider made them (label fill_strategy)",
            self.filled.clone(),
        );
        r.register("vms_acquired", "VMs handed out", self.acquired.clone());
        r.register("vms_released", "Leases ended (VM destroyed)", self.released.clone());
        r.register("vms_evicted", "VMs removed without being handed out, by reason", self.evicted.clone());
        r.register(
            "validation_failures",
            "VMs that failed the health check before hand-out",
            self.validation_failures.clone(),
        );
        r.register("fill_failures", "Failed provider creates", self.fill_failures.clone());
        r.register("refill_runs", "Refill passes that started fills", self.refill_runs.clone());
        r.register("vms_ready", "Ready VMs", self.ready.clone());
        r.register("vms_filling", "VMs being created", self.filling.clone());
        r.register("vms_leased", "VMs handed out and not yet released", self.leased.clone());
        r.register("reserve_wait_seconds", "Time from reserve() to VM in hand", self.wait.clone());
    }
}

/// Plain counters of one shape, read from the metric families.
///
/// ```
/// use firepit_pool::ShapeMetrics;
/// let m = ShapeMetrics::default();
/// assert_eq!(m.evicted_total(), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShapeMetrics {
    /// The shape (`None` only in `Default`).
    pub shape: Option<ShapeKey>,
    /// VMs created.
    pub created: u64,
    /// VMs added to the pool, by `fill_strategy` label value (see
    /// [`PoolVm::fill_kind`](crate::provider::PoolVm::fill_kind)), sorted by label.
    pub filled: Vec<(&'static str, u64)>,
    /// VMs handed out.
    pub acquired: u64,
    /// Leases ended.
    pub released: u64,
    /// Evictions by reason (reasons with a zero count included).
    pub evicted: Vec<(EvictReason, u64)>,
    /// Health-check failures before hand-out.
    pub validation_failures: u64,
    /// Failed creates.
    pub fill_failures: u64,
    /// Refill passes that started fills.
    pub refill_runs: u64,
    /// Ready VMs now.
    pub ready: i64,
    /// VMs being created now.
    pub filling: i64,
    /// VMs leased now.
    pub leased: i64,
    /// Number of waits recorded in the wait histogram.
    pub waits: u64,
    /// Sum of the waits, in seconds.
    pub wait_seconds_sum: f64,
}

impl ShapeMetrics {
    /// Evictions for every reason.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.iter().map(|(_, n)| n).sum()
    }

    /// Fills counted under one `fill_strategy` label value.
    pub fn filled(&self, fill_strategy: &str) -> u64 {
        self.filled.iter().filter(|(k, _)| *k == fill_strategy).map(|(_, n)| n).sum()
    }

    /// Evictions for one reason.
    pub fn evicted(&self, reason: EvictReason) -> u64 {
        self.evicted.iter().filter(|(r, _)| *r == reason).map(|(_, n)| n).sum()
    }

    pub(crate) fn read(shape: &ShapeKey, h: &ShapeMetricHandles) -> Self {
        Self {
            shape: Some(shape.clone()),
            created: h.created.get(),
            filled: h.filled.read(),
            acquired: h.acquired.get(),
            released: h.released.get(),
            evicted: EvictReason::ALL.iter().map(|r| (*r, h.evicted(*r).get())).collect(),
            validation_failures: h.validation_failures.get(),
            fill_failures: h.fill_failures.get(),
            refill_runs: h.refill_runs.get(),
            ready: h.ready.get(),
            filling: h.filling.get(),
            leased: h.leased.get(),
            waits: h.wait_count.load(Ordering::Relaxed),
            wait_seconds_sum: h.wait_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Metrics of every registered shape.
///
/// ```
/// use firepit_pool::MetricsSnapshot;
/// let snap = MetricsSnapshot::default();
/// assert!(snap.shapes.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// One entry per registered shape.
    pub shapes: Vec<ShapeMetrics>,
}

impl MetricsSnapshot {
    /// The metrics of `shape`, if registered.
    pub fn shape(&self, shape: &ShapeKey) -> Option<&ShapeMetrics> {
        self.shapes.iter().find(|m| m.shape.as_ref() == Some(shape))
    }
}
