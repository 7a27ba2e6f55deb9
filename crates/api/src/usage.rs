//! What a lease's VM uses, sampled every few seconds by the daemon: `GET /v1/leases/{id}/metrics`
//! (the lease's samples, oldest first) and `GET /v1/usage` (the latest sample of every running
//! lease, for `firepit top`).
//!
//! A sample mixes what the host measures (CPU time of the VM's cgroup, QEMU's resident memory, the
//! disk overlay on the host, network bytes) with what the guest's agent says (memory in use, its
//! `/` file system). A part that could not be read is `null`: the fake backend has no QEMU, a
//! paused lease's guest is not asked, an agent that did not answer in time gives no guest part.
//!
//! ```
//! let json = r#"{"at":"2026-12-07T10:00:05.000Z","at_unix_ms":1796637605000,"cpus":2,"cpu_percent":12.5,
//!     "memory_used_bytes":1000,"memory_total_bytes":4000,"memory_cache_bytes":10,"host_rss_bytes":5000,
//!     "host_pss_bytes":null,"disk_used_bytes":7,"disk_total_bytes":70,"disk_overlay_bytes":null,
//!     "net_rx_bytes":0,"net_tx_bytes":0,"oom_kills":0}"#;
//! let sample: firepit_api::UsageSample = serde_json::from_str(json).unwrap();
//! assert_eq!(sample.cpu_percent, Some(12.5));
//! assert_eq!(sample.memory_percent(), Some(25.0));
//! ```

use serde::{Deserialize, Serialize};

/// One sample of a lease's usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSample {
    /// When it was taken (RFC 3339, UTC).
    pub at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The VM's vCPUs.
    pub cpus: u32,
    /// CPU used since the previous sample, in percent of all its vCPUs (100: every vCPU busy the
    /// whole time); QEMU's whole process, so device emulation counts too. `null` in the first
    /// sample and without a CPU source.
    pub cpu_percent: Option<f64>,
    /// Guest memory in use (total minus available), bytes.
    pub memory_used_bytes: Option<u64>,
    /// Guest memory in all (what its kernel manages: a little less than the shape's RAM), bytes.
    pub memory_total_bytes: Option<u64>,
    /// Guest page cache, bytes (part of "used" only when it cannot be reclaimed, e.g. tmpfs).
    pub memory_cache_bytes: Option<u64>,
    /// Resident memory of the VM's QEMU process on the host, bytes.
    pub host_rss_bytes: Option<u64>,
    /// Its proportional set size (shared pages split among the VMs sharing them), bytes. Costly to
    /// read, so measured in one sample out of twelve (once a minute); `null` in the others.
    pub host_pss_bytes: Option<u64>,
    /// Size of the guest's `/` in use, bytes.
    pub disk_used_bytes: Option<u64>,
    /// Size of the guest's `/`, bytes.
    pub disk_total_bytes: Option<u64>,
    /// What the VM's disk overlay occupies on the host, bytes (`null`: no disk).
    pub disk_overlay_bytes: Option<u64>,
    /// Bytes the guest received over its network since the VM started (`null`: no network).
    pub net_rx_bytes: Option<u64>,
    /// Bytes the guest sent over its network since the VM started.
    pub net_tx_bytes: Option<u64>,
    /// Processes the guest kernel's OOM killer killed during the lease, so far.
    pub oom_kills: u64,
}

impl UsageSample {
    /// Guest memory in use in percent of its total.
    pub fn memory_percent(&self) -> Option<f64> {
        match (self.memory_used_bytes, self.memory_total_bytes) {
            (Some(used), Some(total)) if total > 0 => Some(used as f64 * 100.0 / total as f64),
            _ => None,
        }
    }
}

/// `GET /v1/leases/{id}/metrics`: the samples kept for a lease, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseMetrics {
    /// The lease.
    pub lease_id: String,
    /// Its shape.
    pub shape: String,
    /// Time between two samples, ms.
    pub interval_ms: u64,
    /// Most samples kept per lease (the oldest go first).
    pub capacity: usize,
    /// Whether the lease has ended (its samples stay readable for a while).
    pub ended: bool,
    /// The samples, oldest first (only those after `since_unix_ms` when asked).
    pub samples: Vec<UsageSample>,
}

/// The query of `GET /v1/leases/{id}/metrics`.
///
/// ```
/// let query: firepit_api::MetricsQuery = serde_json::from_str(r#"{"since_unix_ms":5}"#).unwrap();
/// assert_eq!(query.since_unix_ms, Some(5));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Only samples taken after this time (ms since the Unix epoch): what a poller has not seen.
    /// `since` is accepted too.
    #[serde(default, alias = "since", skip_serializing_if = "Option::is_none")]
    pub since_unix_ms: Option<u64>,
}

/// One running lease and its latest sample, in [`UsageList`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseUsage {
    /// The lease.
    pub lease_id: String,
    /// Its shape.
    pub shape: String,
    /// Its latest sample (`null` until the first is taken, a moment after the lease starts).
    pub latest: Option<UsageSample>,
}

/// `GET /v1/usage`: every running lease with its latest sample, oldest lease first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageList {
    /// Time between two samples of a lease, ms.
    pub interval_ms: u64,
    /// The running leases.
    pub leases: Vec<LeaseUsage>,
}
