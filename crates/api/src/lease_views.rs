//! Looking leases up: `GET /v1/leases` and `GET /v1/leases/{id}`.
//!
//! A lease is listed while it runs and for a while after it ended (the daemon keeps the most
//! recent ended leases, with why they ended), so a client that lost its lease id, or a dashboard,
//! can find out what happened to it.

use serde::{Deserialize, Serialize};

use crate::lease_options::{Metadata, OnExpiry};

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Its VM runs; every lease call works.
    Running,
    /// Its VM is stopped with its state saved on the host (no CPU, no RAM); its TTL clock stands
    /// still. Calls on it answer `lease_paused` unless it was acquired with `auto_resume`.
    Paused,
    /// Released, expired or lost: its VM is gone; `end_reason` says why.
    Ended,
}

impl LeaseState {
    /// The state as the API writes it (`running`, `paused`, `ended`).
    ///
    /// ```
    /// assert_eq!(firepit_api::LeaseState::Ended.as_str(), "ended");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// A client released it (`DELETE /v1/leases/{id}`).
    Released,
    /// Its TTL ran out before a renew.
    TtlExpired,
    /// Its VM's QEMU exited on its own; `end_detail` says how (exit status, the guest's panic
    /// line when its console showed one).
    VmExited,
    /// Its VM stopped answering the health check.
    HealthCheckFailed,
    /// The daemon stopped (SIGTERM / SIGINT) while it ran.
    HostShutdown,
    /// The daemon died while it ran and the next start reaped it.
    DaemonRestart,
    /// Its host left the cluster.
    HostLost,
    /// An operator ended it (`DELETE /v1/leases/{id}?reason=killed`); `end_detail` says why.
    Killed,
}

impl EndReason {
    /// The reason as the API writes it (`released`, `ttl_expired`, ...).
    ///
    /// ```
    /// assert_eq!(firepit_api::EndReason::TtlExpired.as_str(), "ttl_expired");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::TtlExpired => "ttl_expired",
            Self::VmExited => "vm_exited",
            Self::HealthCheckFailed => "health_check_failed",
            Self::HostShutdown => "host_shutdown",
            Self::DaemonRestart => "daemon_restart",
            Self::HostLost => "host_lost",
            Self::Killed => "killed",
        }
    }
}

/// A lease as `GET /v1/leases/{id}` shows it.
///
/// ```
/// let json = r#"{"id":"l-1","vm_id":"vm-1","shape":"default","state":"ended",
///     "created_at":"2026-11-24T10:00:00.000Z","created_at_unix_ms":1795600000000,
///     "expires_at":"2026-11-24T10:05:00.000Z","expires_at_unix_ms":1795600300000,
///     "ended_at":"2026-11-24T10:01:00.000Z","ended_at_unix_ms":1795600060000,"end_reason":"released",
///     "metadata":{"owner":"ci"}}"#;
/// let view: firepit_api::LeaseView = serde_json::from_str(json).unwrap();
/// assert_eq!(view.end_reason, Some(firepit_api::EndReason::Released));
/// assert_eq!(view.metadata["owner"], "ci");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseView {
    /// The lease id.
    pub id: String,
    /// Its VM's id.
    pub vm_id: String,
    /// The VM's shape.
    pub shape: String,
    /// Running, paused or ended.
    pub state: LeaseState,
    /// When the VM was handed out (RFC 3339, UTC).
    pub created_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// When the lease expires unless renewed (for an ended lease: when it would have; for a paused
    /// one: when it would have, had it not been paused: see `ttl_remaining_ms`).
    pub expires_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub expires_at_unix_ms: u64,
    /// The labels given at acquire.
    #[serde(default)]
    pub metadata: Metadata,
    /// Whether a call on the lease while it is paused resumes it first (else: `lease_paused`).
    #[serde(default)]
    pub auto_resume: bool,
    /// What its TTL running out does.
    #[serde(default)]
    pub on_expiry: OnExpiry,
    /// When it was paused (set while `state` is `paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// The same, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at_unix_ms: Option<u64>,
    /// While paused: the TTL left, which starts counting again at resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_remaining_ms: Option<u64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// The same, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_unix_ms: Option<u64>,
    /// Why it ended (set once `state` is `ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// More about the end, when there is more to say (a QEMU exit status and panic line, an
    /// operator's words, a failed pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_detail: Option<String>,
    /// The process id of the VM on its host (QEMU's), while it runs and the backend knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The VM's cgroup on its host, while it runs and the backend puts VMs in cgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// `GET /v1/leases`: running and paused leases first (oldest first), then recently ended ones
/// (most recent first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseList {
    /// The leases that match the query.
    pub leases: Vec<LeaseView>,
}

/// Most leases one `GET /v1/leases` returns.
pub const LEASE_LIST_MAX: usize = 10_000;

/// The query of `GET /v1/leases` (every filter optional; all of them must match).
///
/// On the wire: `state=running`, `shape=small`, `limit=20` and any number of
/// `metadata.NAME=VALUE` (each must match). [`LeaseListQuery::from_pairs`] reads it,
/// [`LeaseListQuery::to_pairs`] writes it.
///
/// ```
/// use firepit_api::{LeaseListQuery, LeaseState};
/// let pairs = [("state", "running"), ("metadata.owner", "ci"), ("limit", "5")];
/// let query = LeaseListQuery::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
/// assert_eq!(query.state, Some(LeaseState::Running));
/// assert_eq!(query.metadata["owner"], "ci");
/// assert_eq!(query.limit, Some(5));
/// assert_eq!(LeaseListQuery::from_pairs(query.to_pairs()).unwrap(), query);
/// assert!(LeaseListQuery::from_pairs([("colour".into(), "red".into())]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct LeaseListQuery {
    /// Only leases in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LeaseState>,
    /// Only leases of this shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// At most this many (1..=10000; default: all, up to 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only leases carrying every one of these labels (`metadata.NAME=VALUE` in the query).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    #[cfg_attr(feature = "openapi", param(ignore))]
    pub metadata: Metadata,
}

impl LeaseListQuery {
    /// Reads a query string's pairs; the error names the parameter and what it must be.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let mut query = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "state" => {
                    let state = match value.as_str() {
                        "running" => LeaseState::Running,
                        "paused" => LeaseState::Paused,
                        "ended" => LeaseState::Ended,
                        other => return Err(format!("state = {other:?}: must be running, paused or ended")),
                    };
                    query.state = Some(state);
                }
                "shape" => query.shape = Some(value),
                "limit" => {
                    let limit = value.parse::<usize>().ok().filter(|n| (1..=LEASE_LIST_MAX).contains(n));
                    query.limit = Some(
                        limit.ok_or_else(|| format!("limit = {value:?}: must be 1..={LEASE_LIST_MAX}"))?,
                    );
                }
                other => match other.strip_prefix("metadata.") {
                    Some(key) if !key.is_empty() => {
                        query.metadata.insert(key.to_owned(), value);
                    }
                    _ => {
                        return Err(format!(
                            "unknown query parameter `{other}`: use state, shape, limit or metadata.NAME"
                        ));
                    }
                },
            }
        }
        Ok(query)
    }

    /// The query's pairs, as [`from_pairs`](Self::from_pairs) reads them.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(state) = self.state {
            pairs.push(("state".to_owned(), state.as_str().to_owned()));
        }
        if let Some(shape) = &self.shape {
            pairs.push(("shape".to_owned(), shape.clone()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit".to_owned(), limit.to_string()));
        }
        for (key, value) in &self.metadata {
            pairs.push((format!("metadata.{key}"), value.clone()));
        }
        pairs
    }

    /// Whether `view` passes every filter (the limit aside).
    ///
    /// ```
    /// # use firepit_api::{LeaseListQuery, LeaseState};
    /// let query = LeaseListQuery { state: Some(LeaseState::Ended), ..LeaseListQuery::default() };
    /// # let json = r#"{"id":"l-1","vm_id":"v","shape":"s","state":"running","created_at":"","created_at_unix_ms":0,"expires_at":"","expires_at_unix_ms":0}"#;
    /// # let view: firepit_api::LeaseView = serde_json::from_str(json).unwrap();
    /// assert!(!query.matches(&view));
    /// ```
    pub fn matches(&self, view: &LeaseView) -> bool {
        self.state.is_none_or(|state| state == view.state)
            && self.shape.as_deref().is_none_or(|shape| shape == view.shape)
            && self.metadata.iter().all(|(key, value)| view.metadata.get(key) == Some(value))
    }
}
