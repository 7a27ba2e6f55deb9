//! Bodies of the cluster endpoints: a daemon's drain, and what a gateway adds to the API
//! (`hosts` in `GET /v1/pools`, the host of a lease, its health).

use serde::{Deserialize, Serialize};

use crate::shapes::ShapeStatusView;

/// `POST /v1/drain` and `DELETE /v1/drain` on a daemon.
///
/// ```
/// let view: firepit_api::DrainResponse = serde_json::from_str(r#"{"draining":true,"leases":3}"#).unwrap();
/// assert!(view.draining && view.leases == 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrainResponse {
    /// True while the daemon refuses new leases (existing ones run to their end).
    pub draining: bool,
    /// Leases still held.
    pub leases: usize,
}

/// One host as a gateway sees it (`hosts` in a gateway's `GET /v1/pools`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatusView {
    /// The host's id.
    pub host: String,
    /// Its daemon's URL.
    pub url: String,
    /// No new leases go there.
    pub draining: bool,
    /// Whether the daemon answered `GET /v1/pools` just now (else `shapes` are its last advertised
    /// counts and `error` says why).
    pub reachable: bool,
    /// Why it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Leases it holds.
    pub leases: usize,
    /// Its one-minute load average and CPUs, as advertised.
    pub load1: f64,
    /// CPUs of the host.
    pub cpus: u32,
    /// Its shapes.
    pub shapes: Vec<ShapeStatusView>,
}

/// The `hosts` a gateway adds to `GET /v1/pools` (empty from a daemon).
///
/// ```
/// let hosts: firepit_api::ClusterHosts = serde_json::from_str(r#"{"shapes":[],"leases":0,"uptime_secs":1}"#).unwrap();
/// assert!(hosts.hosts.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterHosts {
    /// One entry per registered host.
    #[serde(default)]
    pub hosts: Vec<HostStatusView>,
}
