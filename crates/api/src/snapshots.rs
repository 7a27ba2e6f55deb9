//! Snapshots and forks of a running lease: `POST /v1/leases/{id}/snapshots` saves a lease's VM
//! (memory, devices, disk) as a [`SnapshotInfo`] from which new leases start
//! (`POST /v1/leases {"snapshot": ID}`); `POST /v1/leases/{id}/fork` ([`ForkRequest`]) copies a
//! running lease into new leases at once, each succeeding or failing on its own
//! ([`ForkResponse`]).

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::types::LeaseResponse;

/// Most forks one `POST /v1/leases/{id}/fork` may ask for.
pub const FORK_MAX: u32 = 16;

/// A snapshot of a lease's VM (`POST /v1/leases/{id}/snapshots`, `GET /v1/snapshots/{id}`).
///
/// ```
/// let info: firepit_api::SnapshotInfo = serde_json::from_str(r#"{"snapshot_id":"s-1",
///     "source_lease_id":"l-1","shape":"small","created_at":"2026-11-25T09:46:40.000Z",
///     "created_at_unix_ms":1795600000000,"size_bytes":1048576}"#).unwrap();
/// assert_eq!(info.size_bytes >> 20, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotInfo {
    /// The snapshot's id (`s-` and 16 hex digits): acquire from it with `{"snapshot": ID}`.
    pub snapshot_id: String,
    /// The lease it was taken of (which may have ended since).
    pub source_lease_id: String,
    /// The shape of that lease's VM: leases started from the snapshot are of it.
    pub shape: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// Bytes it takes on the host's disk (memory the guest touched, device state, disk layers).
    pub size_bytes: u64,
}

/// `GET /v1/snapshots`: every snapshot, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotList {
    /// The snapshots.
    pub snapshots: Vec<SnapshotInfo>,
}

/// `POST /v1/leases/{id}/fork`.
///
/// ```
/// let request: firepit_api::ForkRequest = serde_json::from_str(r#"{"count":4}"#).unwrap();
/// assert_eq!((request.count, request.ttl_ms), (4, None));
/// assert!(serde_json::from_str::<firepit_api::ForkRequest>(r#"{"count":4,"cnt":1}"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// How many forks: 1 to 16 (else `400 bad_request`).
    pub count: u32,
    /// Each fork's TTL in ms (default: the daemon's `leases.default_ttl_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// One fork's outcome: its new lease, or why it failed (exactly one is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForkOutcome {
    /// The new lease: a normal lease (renew it, release it; it shows in `GET /v1/leases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseResponse>,
    /// Why this fork failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl ForkOutcome {
    /// The outcome as a `Result`.
    ///
    /// ```
    /// use firepit_api::{ErrorBody, ErrorCode, ForkOutcome};
    /// let failed = ForkOutcome { lease: None, error: Some(ErrorBody { error: ErrorCode::BackendError, message: "no".into() }) };
    /// assert_eq!(failed.result().unwrap_err().error, ErrorCode::BackendError);
    /// ```
    pub fn result(&self) -> Result<&LeaseResponse, ErrorBody> {
        match (&self.lease, &self.error) {
            (Some(lease), _) => Ok(lease),
            (None, Some(error)) => Err(error.clone()),
            (None, None) => Err(ErrorBody {
                error: crate::ErrorCode::InternalError,
                message: "a fork's outcome names neither a lease nor an error".into(),
            }),
        }
    }
}

/// `POST /v1/leases/{id}/fork`: one outcome per fork asked for, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForkResponse {
    /// The forks.
    pub forks: Vec<ForkOutcome>,
}
