//! Looking leases up: `GET /v1/leases` and `GET /v1/leases/{id}`.
//!
//! A lease is listed while it runs and for a while after it ended (the daemon keeps the most
//! recent ended leases, with why they ended), so a client that lost its lease id, or a dashboard,
//! can find out what happened to it.

use serde::{Deserialize, Serialize};

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Its VM runs; every lease call works.
    Running,
    /// Its VM is paused (issue 19's pause/resume; no daemon reports it yet).
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
    /// Its VM's QEMU exited on its own (the detail says how).
    VmExited,
    /// Its VM stopped answering the health check.
    HealthCheckFailed,
    /// The daemon stopped (SIGTERM / SIGINT) while it ran.
    HostShutdown,
    /// The daemon died while it ran and the next start reaped it.
    DaemonRestart,
    /// Its host left the cluster.
    HostLost,
    /// An operator ended it.
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
///     "ended_at":"2026-11-24T10:01:00.000Z","ended_at_unix_ms":1795600060000,"end_reason":"released"}"#;
/// let view: firepit_api::LeaseView = serde_json::from_str(json).unwrap();
/// assert_eq!(view.end_reason, Some(firepit_api::EndReason::Released));
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
    /// When the lease expires unless renewed (for an ended lease: when it would have).
    pub expires_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub expires_at_unix_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// The same, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_unix_ms: Option<u64>,
    /// Why it ended (set once `state` is `ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
}

/// `GET /v1/leases`: running leases first (oldest first), then recently ended ones (most recent
/// first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseList {
    /// The leases that match the query.
    pub leases: Vec<LeaseView>,
}

/// The query of `GET /v1/leases` (every filter optional; all of them must match).
///
/// ```
/// let query: firepit_api::LeaseListQuery = serde_json::from_str(r#"{"state":"running"}"#).unwrap();
/// assert_eq!(query.state, Some(firepit_api::LeaseState::Running));
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
}
