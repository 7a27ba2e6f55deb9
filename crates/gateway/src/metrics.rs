//! The gateway's Prometheus metrics (`GET /metrics` on the gateway).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `host` and `outcome` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostOutcome {
    /// Host id.
    pub host: String,
    /// What happened.
    pub outcome: &'static str,
}

/// An `outcome` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// What happened.
    pub outcome: String,
}

/// Every metric family of the gateway.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Acquires by outcome (`ok`, `exhausted`, `no_host`, `cluster_unavailable`, `error`).
    pub acquires: Family<Outcome, Counter>,
    /// Placement attempts per host (`placed`, `busy` (503), `unreachable`, `refused`).
    pub attempts: Family<HostOutcome, Counter>,
    /// Time to place an acquire (all attempts).
    pub acquire_seconds: Histogram,
    /// Lease requests by outcome (`forwarded`, `host_lost`, `host_unreachable`, `not_found`,
    /// `cluster_unavailable`).
    pub lease_requests: Family<Outcome, Counter>,
    /// Registered hosts.
    pub hosts: Gauge,
    /// 1 while etcd answers.
    pub etcd_up: Gauge,
    /// Routes cached in memory.
    pub routes_cached: Gauge,
}

impl GatewayMetrics {
    /// The families, registered in `registry` under `firepit_gateway_`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            acquires: Family::default(),
            attempts: Family::default(),
            acquire_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            lease_requests: Family::default(),
            hosts: Gauge::default(),
            etcd_up: Gauge::default(),
            routes_cached: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("firepit_gateway");
        r.register("acquires", "Acquires through the gateway, by outcome", metrics.acquires.clone());
        r.register("placement_attempts", "Acquire attempts per host, by outcome", metrics.attempts.clone());
        r.register("acquire_seconds", "Time to place an acquire", metrics.acquire_seconds.clone());
        r.register("lease_requests", "Requests on leases, by outcome", metrics.lease_requests.clone());
        r.register("hosts", "Registered hosts", metrics.hosts.clone());
        r.register("etcd_up", "1 while etcd answers", metrics.etcd_up.clone());
        r.register("routes_cached", "Lease routes cached in memory", metrics.routes_cached.clone());
        metrics
    }

    /// Counts an acquire.
    pub fn acquire(&self, outcome: &str) {
        self.acquires.get_or_create(&Outcome { outcome: outcome.to_owned() }).inc();
    }

    /// Counts a placement attempt.
    pub fn attempt(&self, host: &str, outcome: &'static str) {
        self.attempts.get_or_create(&HostOutcome { host: host.to_owned(), outcome }).inc();
    }

    /// Counts a lease request.
    pub fn lease_request(&self, outcome: &str) {
        self.lease_requests.get_or_create(&Outcome { outcome: outcome.to_owned() }).inc();
    }
}
