//! What every handler shares: the cluster view (hosts, routes), the client to the daemons, the
//! metrics.

use std::sync::Arc;
use std::time::Instant;

use firepit_cluster::{Directory, RouteMap};
use prometheus_client::registry::Registry;

use crate::metrics::GatewayMetrics;
use crate::upstream::Upstream;

/// The handlers' state (cheap to clone).
#[derive(Clone)]
pub struct GatewayState {
    inner: Arc<Inner>,
}

struct Inner {
    directory: Directory,
    routes: RouteMap,
    upstream: Upstream,
    metrics: GatewayMetrics,
    registry: Registry,
    started: Instant,
}

impl GatewayState {
    /// The state over a started directory.
    pub fn new(directory: Directory, upstream: Upstream) -> Self {
        let mut registry = Registry::default();
        let metrics = GatewayMetrics::register(&mut registry);
        let routes = RouteMap::new(directory.clone());
        Self {
            inner: Arc::new(Inner {
                directory,
                routes,
                upstream,
                metrics,
                registry,
                started: Instant::now(),
            }),
        }
    }

    /// The hosts and etcd's health.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// The lease → host map.
    pub fn routes(&self) -> &RouteMap {
        &self.inner.routes
    }

    /// The client to the daemons.
    pub fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }

    /// The metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Seconds since the gateway started.
    pub fn uptime_secs(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }
}
