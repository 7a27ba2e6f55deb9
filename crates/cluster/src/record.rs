//! What is stored: a host's registration ([`HostRecord`]) and a lease's route ([`LeaseRoute`]),
//! both as JSON values so that `etcdctl get --prefix /firepit` is readable by a person.
//!
//! Records carry a format `version`; a reader skips (and logs) a record it cannot parse rather
//! than failing, so a fleet can be upgraded one host at a time.

use serde::{Deserialize, Serialize};

/// The record format written by this version.
pub const RECORD_VERSION: u32 = 1;

/// One daemon's registration: where it listens and what it can hand out right now.
///
/// ```
/// use firepit_cluster::{HostRecord, ShapeCapacity};
/// let record = HostRecord {
///     shapes: vec![ShapeCapacity { name: "small".into(), ready: 3, filling: 1, leased: 2, depth_high: 4 }],
///     ..HostRecord::new("node-a", "http://10.0.0.5:7070", "run-1")
/// };
/// assert_eq!(record.ready("small"), 3);
/// assert!(record.serves("small") && !record.serves("big"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The host's id (its key's last segment).
    pub host: String,
    /// The daemon's TCP API, `http://HOST:PORT` (token-protected).
    pub url: String,
    /// Random per daemon start: a route naming another run of the same host is a lost lease.
    pub run_id: String,
    /// No new leases (`firepit drain`, or SIGTERM in a cluster).
    pub draining: bool,
    /// Per shape: ready, filling, leased VMs.
    pub shapes: Vec<ShapeCapacity>,
    /// Leases the daemon holds (all shapes).
    pub leases: usize,
    /// CPUs of the host.
    pub cpus: u32,
    /// One-minute load average, rounded to 0.1.
    pub load1: f64,
    /// The host's available memory (`MemAvailable`), rounded down to 64 MiB.
    pub mem_available_mb: u64,
    /// The daemon's memory budget for VMs (`limits.memory_budget_mb`; 0: none).
    pub memory_budget_mb: u64,
    /// When the record was written (ms since the Unix epoch; not part of change detection).
    pub updated_unix_ms: u64,
}

/// One shape's capacity on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeCapacity {
    /// Shape name.
    pub name: String,
    /// VMs ready to hand out now.
    pub ready: usize,
    /// VMs being booted or restored.
    pub filling: usize,
    /// VMs leased.
    pub leased: usize,
    /// The pool's high water mark.
    pub depth_high: usize,
}

impl HostRecord {
    /// A record with no shapes and no load (fill in the rest with struct update syntax).
    pub fn new(host: &str, url: &str, run_id: &str) -> Self {
        Self {
            version: RECORD_VERSION,
            host: host.to_owned(),
            url: url.to_owned(),
            run_id: run_id.to_owned(),
            draining: false,
            shapes: Vec::new(),
            leases: 0,
            cpus: 1,
            load1: 0.0,
            mem_available_mb: 0,
            memory_budget_mb: 0,
            updated_unix_ms: 0,
        }
    }

    /// Ready VMs of `shape` (0 for a shape the host does not serve).
    pub fn ready(&self, shape: &str) -> usize {
        self.shapes.iter().find(|s| s.name == shape).map_or(0, |s| s.ready)
    }

    /// Whether the host has a pool of `shape`.
    pub fn serves(&self, shape: &str) -> bool {
        self.shapes.iter().any(|s| s.name == shape)
    }

    /// True when `other` says the same thing (the write time aside): no need to write again.
    pub fn same_as(&self, other: &HostRecord) -> bool {
        Self { updated_unix_ms: 0, ..self.clone() } == Self { updated_unix_ms: 0, ..other.clone() }
    }

    /// The record as stored.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises; `f64` NaN would become null, which
        // reads back as an error, and `load1` is rounded from a finite value.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored record (`None` for one this version cannot read).
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Where a lease placed through a gateway lives.
///
/// ```
/// let route = firepit_cluster::LeaseRoute {
///     lease_id: "l-1".into(), host: "node-a".into(), run_id: "r".into(), shape: "small".into(),
///     expires_at_unix_ms: 0, idempotency_key: None,
/// };
/// let back = firepit_cluster::LeaseRoute::from_json(&route.to_json()).unwrap();
/// assert_eq!(back, route);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRoute {
    /// The daemon's lease id.
    pub lease_id: String,
    /// The host holding it.
    pub host: String,
    /// The host's run when the lease was placed.
    pub run_id: String,
    /// The lease's shape.
    pub shape: String,
    /// When the lease expires, as last seen by a gateway (acquire or renew through it).
    pub expires_at_unix_ms: u64,
    /// The acquire's Idempotency-Key, if it had one (deleted with the route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl LeaseRoute {
    /// The route as stored.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored route (`None` when unreadable).
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_time_alone_is_no_change() {
        let a = HostRecord { updated_unix_ms: 1, ..HostRecord::new("h", "http://h:1", "r") };
        let b = HostRecord { updated_unix_ms: 2, ..a.clone() };
        assert!(a.same_as(&b));
        assert!(!a.same_as(&HostRecord { draining: true, ..b }));
    }

    #[test]
    fn unreadable_records_are_none() {
        assert!(HostRecord::from_json(b"{\"version\":1}").is_none());
        assert!(LeaseRoute::from_json(b"not json").is_none());
    }
}
