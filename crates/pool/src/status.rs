//! A plain picture of the pool, for humans, health endpoints and tests.

use std::time::Duration;

use crate::shape::ShapeKey;

/// The pool at one instant.
///
/// ```
/// use firepit_pool::Status;
/// let status = Status::default();
/// assert_eq!(status.ready(), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// One entry per registered shape, sorted by key.
    pub shapes: Vec<ShapeStatus>,
    /// Memory charged against the budget, MiB: every alive VM (ready, filling, leased, being
    /// destroyed) at its charge (the shape's `memory_mb`, or the provider's own figure such as a
    /// clone's PSS) plus [`Status::shared_memory_mb`].
    pub memory_used_mb: u64,
    /// Memory the provider holds once for many VMs (snapshot templates), MiB; part of
    /// `memory_used_mb`.
    pub shared_memory_mb: u64,
    /// The memory cap, if any.
    pub memory_budget_mb: Option<u64>,
    /// VMs alive in any state.
    pub alive: usize,
    /// `shutdown()` was called or the last handle dropped.
    pub shutting_down: bool,
}

impl Status {
    /// Ready VMs of all shapes.
    pub fn ready(&self) -> usize {
        self.shapes.iter().map(|s| s.ready).sum()
    }

    /// The status of `shape`, if registered.
    pub fn shape(&self, shape: &ShapeKey) -> Option<&ShapeStatus> {
        self.shapes.iter().find(|s| &s.key == shape)
    }
}

/// One shape's bucket.
///
/// ```
/// use firepit_pool::ShapeStatus;
/// fn healthy(s: &ShapeStatus) -> bool { !s.backing_off && s.ready >= s.low_water }
/// # let _ = healthy;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeStatus {
    /// The shape.
    pub key: ShapeKey,
    /// Ready VMs (including ones out for a liveness probe and expired ones awaiting replacement).
    pub ready: usize,
    /// VMs being created.
    pub filling: usize,
    /// VMs handed out (or under their hand-out health check) and not yet released.
    pub leased: usize,
    /// `reserve()` calls queued.
    pub waiting: usize,
    /// Configured low water.
    pub low_water: usize,
    /// Configured high water.
    pub high_water: usize,
    /// Depth the refiller aims for now (high water, or more with adaptive depth; capped by budget).
    pub target: usize,
    /// Failed creates since registration.
    pub fill_failures: u64,
    /// Failed creates since the last success.
    pub consecutive_failures: u32,
    /// The provider's last error, as text.
    pub last_error: Option<String>,
    /// Fills are paused after failures.
    pub backing_off: bool,
    /// How long until fills resume, if backing off.
    pub backoff_remaining: Option<Duration>,
    /// Average fill latency observed.
    pub fill_latency: Option<Duration>,
    /// How the last VM added to this shape was made ([`PoolVm::fill_kind`](crate::provider::PoolVm::fill_kind);
    /// `None` before the first fill or when the provider does not say). A provider that falls back
    /// from one way to another shows it here first.
    pub last_fill: Option<&'static str>,
}
