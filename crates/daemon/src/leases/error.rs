//! Why a lease operation failed.

use firepit_shape::NarrowingError;

use crate::backend::AcquireError;
use crate::leases::state::Interrupted;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The backend could not hand a VM out.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// No such lease (never existed, or ended so long ago that it is forgotten).
    #[error("no lease `{0}` (released, expired or never acquired)")]
    NotFound(String),
    /// The lease ended; the daemon still remembers why.
    #[error("{0}")]
    Ended(Interrupted),
    /// The TTL asked for is out of range.
    #[error("ttl_ms = {asked_ms}: must be 1..={max_ms}")]
    BadTtl {
        /// What the client asked for.
        asked_ms: u64,
        /// The configured maximum.
        max_ms: u64,
    },
    /// The lease's metadata is over its limits.
    #[error("{0}")]
    BadMetadata(String),
    /// The idempotency key was used before for another shape.
    #[error("Idempotency-Key `{key}` was used for shape `{shape}`; use a new key for another request")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The shape of the first request.
        shape: String,
    },
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// The daemon is draining: existing leases run to their end, new ones go elsewhere.
    #[error("the daemon is draining (`firepit drain` or a stop in a cluster): acquire on another host")]
    Draining,
    /// The lease's egress request is not a narrowing of its shape's policy (no VM was taken).
    #[error(transparent)]
    Egress(#[from] NarrowingError),
    /// The VM could not be narrowed; it was released (destroyed, the pool refills).
    #[error("cannot narrow the VM's egress policy: {0}")]
    NarrowFailed(String),
    /// A pause or resume failed; the lease is as it was.
    #[error("{0}")]
    TransitionFailed(String),
    /// A call on the lease's VM did not run, or stopped: the lease is paused or ended.
    #[error("{0}")]
    Interrupted(Interrupted),
    /// No snapshot with that id.
    #[error("no snapshot `{0}` (deleted, or never made): GET /v1/snapshots lists them")]
    SnapshotNotFound(String),
    /// A registered shape's `image` is the snapshot: it cannot be deleted.
    #[error(
        "snapshot `{id}` is the image of shape `{shape}`: unregister the shape first (DELETE /v1/shapes/{shape})"
    )]
    SnapshotInUse {
        /// The snapshot.
        id: String,
        /// A shape whose image it is.
        shape: String,
    },
    /// Saving a VM's state (pause, snapshot, fork) needs more room than the host has; the lease
    /// runs on.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A snapshot or a fork failed; the lease runs on.
    #[error("{0}")]
    SaveFailed(String),
    /// The request is malformed in a way only the lease table can tell.
    #[error("{0}")]
    BadRequest(String),
    /// The backend cannot do what the lease asks for (e.g. `on_expiry = pause` without pausing).
    #[error("{0}")]
    Unsupported(String),
}
