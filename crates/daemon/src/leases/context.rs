//! What every lease and the table share: the backend, the settings, the record store, the event
//! bus and the metrics. Below the lease and the table, so that a lease can record and announce
//! its own changes without knowing the table.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use firepit_api::{Event, EventKind};
use tokio_util::sync::CancellationToken;

use crate::backend::{BoxFuture, LeaseBackend, VmExit};
use crate::events::EventBus;
use crate::leases::store::LeaseStore;
use crate::metrics::DaemonMetrics;

/// How leases live and how long the daemon remembers them (`[leases]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// TTL of a lease whose request names none.
    pub default_ttl: Duration,
    /// Largest TTL.
    pub max_ttl: Duration,
    /// How long an ended lease stays visible (`GET /v1/leases/{id}`).
    pub ended_retention: Duration,
    /// Most ended leases remembered (the oldest go first).
    pub ended_max: usize,
    /// How long a lease may stay paused before it ends (`ttl_expired`).
    pub paused_retention: Duration,
    /// How often a running lease's VM is pinged (zero: never); three misses in a row end the
    /// lease (`health_check_failed`).
    pub health_check_interval: Duration,
    /// Where lease records are kept (`<state dir>/leases`); `None`: in memory only.
    pub records_dir: Option<PathBuf>,
    /// Where snapshots are kept (`<state dir>/snapshots`, see [`crate::snapshot_store`]); `None`:
    /// no snapshots (`501 unsupported`).
    pub snapshots_dir: Option<PathBuf>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(3600),
            ended_retention: Duration::from_secs(3600),
            ended_max: 1024,
            paused_retention: Duration::from_secs(7 * 24 * 3600),
            health_check_interval: Duration::from_secs(30),
            records_dir: None,
            snapshots_dir: None,
        }
    }
}

/// Starts watching a lease's newly running VM: the VM's exit future and the run it belongs to
/// (installed by the table, which ends the lease when the watch fires).
pub(crate) type StartWatch =
    Box<dyn Fn(Arc<crate::leases::Lease>, BoxFuture<'static, VmExit>, CancellationToken) + Send + Sync>;

/// What leases and the table share.
pub(crate) struct Shared {
    pub backend: Arc<dyn LeaseBackend>,
    pub settings: LeaseSettings,
    pub store: Option<LeaseStore>,
    pub snapshots: Option<crate::snapshot_store::SnapshotStore>,
    pub events: EventBus,
    pub metrics: DaemonMetrics,
    pub watch: OnceLock<StartWatch>,
}

impl Shared {
    /// Emits a lease event of `kind` about `lease`.
    pub fn announce(&self, kind: EventKind, lease: &crate::leases::Lease, fill: impl FnOnce(&mut Event)) {
        self.events.emit(kind, |event| {
            event.lease_id = Some(lease.id.clone());
            event.shape = Some(lease.shape.clone());
            event.metadata = lease.options.metadata.clone();
            fill(event);
        });
    }
}
