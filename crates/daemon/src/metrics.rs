//! The daemon's own Prometheus series (leases, acquire latency, exec), next to the backend's.
//!
//! Everything lives in one `prometheus_client` registry: the daemon registers its families here and
//! the backend registers its own through [`crate::backend::LeaseBackend::register_metrics`], so
//! `GET /metrics` is a single, consistent exposition. Every series carries the `shape` label.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-shape series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShapeLabel {
    /// Shape name.
    pub shape: String,
}

/// Labels of series split by an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Shape name.
    pub shape: String,
    /// What happened (`released`, `expired`, `exhausted`, `ok`, ...).
    pub outcome: String,
}

/// The daemon's metric families (cheap to clone: handles to shared atomics).
#[derive(Debug, Clone)]
pub struct DaemonMetrics {
    /// Leases currently held by clients.
    pub leases_active: Family<ShapeLabel, Gauge>,
    /// Acquire requests by outcome (`ok`, `exhausted`, `unknown_shape`, `error`).
    pub acquires: Family<OutcomeLabels, Counter>,
    /// Leases ended, by how (`released`, `expired`, `shutdown`).
    pub leases_ended: Family<OutcomeLabels, Counter>,
    /// Seconds from an acquire request to the VM being handed out.
    pub acquire_seconds: Family<ShapeLabel, Histogram>,
    /// Exec requests by outcome (`ok`, `error`).
    pub execs: Family<OutcomeLabels, Counter>,
}

impl DaemonMetrics {
    /// Creates the families and registers them under the `firepit_daemon` prefix.
    ///
    /// # Example
    /// ```
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// let metrics = firepit_daemon::metrics::DaemonMetrics::register(&mut registry);
    /// metrics.lease_started("small");
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("firepit_daemon_leases_active{shape=\"small\"} 1"));
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            leases_active: Family::default(),
            acquires: Family::default(),
            leases_ended: Family::default(),
            acquire_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0])
            }),
            execs: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("firepit_daemon");
        registry.register("leases_active", "Leases currently held by clients", metrics.leases_active.clone());
        registry.register("acquires", "Acquire requests by outcome", metrics.acquires.clone());
        registry.register(
            "leases_ended",
            "Leases ended: released, expired or shutdown",
            metrics.leases_ended.clone(),
        );
        registry.register(
            "acquire_seconds",
            "Time from an acquire request to the VM being handed out",
            metrics.acquire_seconds.clone(),
        );
        registry.register("execs", "Exec requests by outcome", metrics.execs.clone());
        metrics
    }

    /// Counts a lease handed out.
    pub fn lease_started(&self, shape: &str) {
        self.leases_active.get_or_create(&ShapeLabel { shape: shape.to_owned() }).inc();
    }

    /// Counts a lease ended, `how` being `released`, `expired` or `shutdown`.
    pub fn lease_ended(&self, shape: &str, how: &str) {
        self.leases_active.get_or_create(&ShapeLabel { shape: shape.to_owned() }).dec();
        self.leases_ended.get_or_create(&outcome(shape, how)).inc();
    }

    /// Counts an acquire request's outcome.
    pub fn acquire_outcome(&self, shape: &str, what: &str) {
        self.acquires.get_or_create(&outcome(shape, what)).inc();
    }

    /// Counts an exec request's outcome.
    pub fn exec_outcome(&self, shape: &str, what: &str) {
        self.execs.get_or_create(&outcome(shape, what)).inc();
    }
}

fn outcome(shape: &str, what: &str) -> OutcomeLabels {
    OutcomeLabels { shape: shape.to_owned(), outcome: what.to_owned() }
}

/// Where a [`ShapeCounters`] collector reads its counts from: `(shape, count)` pairs.
pub type CountSource = Box<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

/// One counter family with a `shape` label whose values a backend keeps itself (a provider's
/// per-shape counts), read at each scrape: nothing is copied in between. Register it with
/// `Registry::register_collector`.
///
/// # Example
/// ```
/// use firepit_daemon::metrics::ShapeCounters;
/// let mut registry = prometheus_client::registry::Registry::default();
/// let source = Box::new(|| vec![("small".to_owned(), 2)]);
/// registry.register_collector(Box::new(ShapeCounters::new("firepit_vm_warm_up_failures", "Failed warm-ups", source)));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"firepit_vm_warm_up_failures_total{shape="small"} 2"#), "{text}");
/// ```
pub struct ShapeCounters {
    name: &'static str,
    help: &'static str,
    source: CountSource,
}

impl ShapeCounters {
    /// The family `name` (without `_total`) described by `help`, its values from `source`.
    pub fn new(name: &'static str, help: &'static str, source: CountSource) -> Self {
        Self { name, help, source }
    }
}

impl fmt::Debug for ShapeCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShapeCounters").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Collector for ShapeCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = (self.source)();
        let counter_type = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(self.name, self.help, None, counter_type)?;
        for (shape, count) in counts {
            ConstCounter::new(count).encode(family.encode_family(&ShapeLabel { shape })?)?;
        }
        Ok(())
    }
}
