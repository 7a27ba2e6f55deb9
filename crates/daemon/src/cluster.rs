//! The daemon as one host of a cluster (`[cluster]` in its config): what it advertises and how it
//! stops. The registration itself (etcd lease, record, keep-alive, route sweep) is
//! `firepit-cluster`'s [`Advertiser`]; this module only tells it what the daemon holds.
//!
//! A stop in a cluster drains first: the first SIGTERM refuses new leases (the record says
//! `draining`, so gateways place elsewhere) and waits until every lease has ended (released or
//! expired), then the daemon stops as usual. A second SIGTERM stops at once.

use std::sync::Arc;
use std::time::Duration;

use firepit_cluster::{AdvertiseConfig, Advertiser, CapacitySource, Keys, ShapeCapacity};
use tracing::info;

use crate::backend::LeaseBackend;
use crate::config::Config;
use crate::leases::LeaseTable;
use crate::shutdown::{Phase, ShutdownSignal};

/// The registration settings a validated config asks for (`None` without `[cluster]`).
pub fn advertise_config(config: &Config) -> Option<AdvertiseConfig> {
    let cluster = config.cluster.as_ref()?;
    Some(AdvertiseConfig {
        keys: Keys::new(&cluster.prefix),
        ttl: Duration::from_secs(cluster.ttl_secs),
        memory_budget_mb: config.limits.memory_budget_mb,
        ..AdvertiseConfig::new(cluster.etcd.clone(), &cluster.host_id(), &cluster.advertise)
    })
}

/// What the daemon holds, as the advertiser reads it.
pub struct DaemonCapacity {
    backend: Arc<dyn LeaseBackend>,
    leases: Arc<LeaseTable>,
}

impl CapacitySource for DaemonCapacity {
    fn shapes(&self) -> Vec<ShapeCapacity> {
        self.backend
            .status()
            .into_iter()
            .map(|s| ShapeCapacity {
                name: s.name,
                ready: s.ready,
                filling: s.filling,
                leased: s.leased,
                depth_high: s.depth_high,
            })
            .collect()
    }

    fn leases(&self) -> usize {
        self.leases.len()
    }

    fn holds_lease(&self, lease_id: &str) -> bool {
        self.leases.get(lease_id).is_some()
    }

    fn draining(&self) -> bool {
        self.leases.is_draining()
    }
}

/// Starts registering the daemon (returns at once; etcd may be down).
pub fn register(
    config: AdvertiseConfig,
    backend: Arc<dyn LeaseBackend>,
    leases: Arc<LeaseTable>,
) -> Advertiser {
    info!(host = %config.host, advertise = %config.url, "joining the cluster");
    Advertiser::start(config, Arc::new(DaemonCapacity { backend, leases }))
}

/// Resolves when the daemon may stop: once `signal` asks for a stop, the table drains and this
/// waits until it is empty, or until the stop becomes immediate.
pub async fn drained_after_stop_request(leases: Arc<LeaseTable>, signal: ShutdownSignal) {
    signal.clone().reached(Phase::Graceful).await;
    leases.set_draining(true);
    let held = leases.len();
    if held > 0 {
        info!(
            leases = held,
            "stop requested: draining, waiting for the leases to end (stop again to end them now)"
        );
    }
    tokio::select! {
        () = leases.wait_empty() => {}
        () = signal.reached(Phase::Immediate) => {}
    }
}
