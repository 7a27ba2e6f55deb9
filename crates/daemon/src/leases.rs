//! Leases: which client holds which VM, until when, and the tasks that reclaim expired ones.
//!
//! A lease wraps the backend's `Box<dyn LeasedVm>` in an `Arc`, so an exec in flight keeps the VM
//! alive while a release or an expiry removes the lease from the table; the VM is dropped (released
//! to the backend: destroy + refill) when the last holder lets go. Each lease has one expiry task
//! that sleeps until its deadline, wakes early on renew, and ends on release (its cancellation
//! token is a child of the table's, so shutdown stops all of them).
//!
//! The TTL starts when the backend hands the VM out, not when the request arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info, info_span};

use firepit_api::{EndReason, LeaseListQuery, LeaseView};

use crate::backend::{AcquireError, EgressPolicy, LeaseBackend, LeasedVm};
pub use crate::lease_views::unix_ms;
use crate::lease_views::{EndedLeases, LeaseFacts, matches};
use crate::metrics::DaemonMetrics;
use firepit_shape::NarrowingError;

/// One VM held by a client.
pub struct Lease {
    /// The lease id (`l-` and 16 hex digits).
    pub id: String,
    /// The shape the VM belongs to.
    pub shape: String,
    /// The VM; dropped (released) with the last `Arc<Lease>`.
    pub vm: Box<dyn LeasedVm>,
    /// One span per lease: exec, renew, release and expiry log inside it.
    pub span: Span,
    /// When the VM was handed out.
    pub created: SystemTime,
    idempotency_key: Option<String>,
    deadline: Mutex<Deadline>,
    renewed: Notify,
    cancel: CancellationToken,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    wall: SystemTime,
}

impl Lease {
    /// When the lease expires (wall clock, for clients).
    pub fn expires_at(&self) -> SystemTime {
        lock(&self.deadline).wall
    }

    fn deadline(&self) -> Instant {
        lock(&self.deadline).at
    }

    /// The lease's identity and times, from which its API views are made.
    pub fn facts(&self) -> LeaseFacts<'_> {
        LeaseFacts {
            id: &self.id,
            vm_id: self.vm.vm_id(),
            shape: &self.shape,
            created: self.created,
            expires: self.expires_at(),
        }
    }

    /// Fired when the lease ends (released, expired, shutdown): streams on the lease (transfers,
    /// attached processes, terminals) watch it and stop, so they end with their lease.
    pub fn ended(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// The API's view of a lease, as acquire and renew return it.
pub fn lease_response(lease: &Lease) -> firepit_api::LeaseResponse {
    let expires = lease.expires_at();
    firepit_api::LeaseResponse {
        lease_id: lease.id.clone(),
        vm_id: lease.vm.vm_id().to_owned(),
        shape: lease.shape.clone(),
        expires_at: humantime::format_rfc3339_millis(expires).to_string(),
        expires_at_unix_ms: unix_ms(expires),
    }
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The backend could not hand a VM out.
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    /// No such lease (never existed, released or expired).
    #[error("no lease `{0}` (released, expired or never acquired)")]
    NotFound(String),
    /// The TTL asked for is out of range.
    #[error("ttl_ms = {asked_ms}: must be 1..={max_ms}")]
    BadTtl {
        /// What the client asked for.
        asked_ms: u64,
        /// The configured maximum.
        max_ms: u64,
    },
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
}

/// What an acquire asks for.
#[derive(Debug, Clone)]
pub struct AcquireParams {
    /// Shape name.
    pub shape: String,
    /// How long to wait for a ready VM.
    pub wait: Duration,
    /// Lease TTL (`None`: the configured default).
    pub ttl: Option<Duration>,
    /// Client-chosen key making retries return the same lease.
    pub idempotency_key: Option<String>,
    /// Narrows the shape's egress policy for this lease (checked against it before acquiring).
    pub egress: Option<EgressPolicy>,
}

/// All live leases.
pub struct LeaseTable {
    leases: Mutex<HashMap<String, Arc<Lease>>>,
    ended: EndedLeases,
    idempotency: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<String>>>>>,
    default_ttl: Duration,
    max_ttl: Duration,
    cancel: CancellationToken,
    metrics: DaemonMetrics,
    draining: AtomicBool,
    /// Notified whenever a lease ends (drain waits for the table to empty).
    any_ended: Notify,
}

impl LeaseTable {
    /// An empty table; `cancel` stops every expiry task (on shutdown).
    pub fn new(
        default_ttl: Duration,
        max_ttl: Duration,
        metrics: DaemonMetrics,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            leases: Mutex::default(),
            ended: EndedLeases::default(),
            idempotency: Mutex::default(),
            default_ttl,
            max_ttl,
            cancel,
            metrics,
            draining: AtomicBool::new(false),
            any_ended: Notify::new(),
        }
    }

    /// Refuses new leases ([`LeaseError::Draining`]) or accepts them again; existing leases are
    /// not touched.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
        if draining {
            info!(leases = self.len(), "draining: no new leases");
        } else {
            info!("drain undone: accepting leases");
        }
    }

    /// Whether new leases are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once no lease is held (at once when none is).
    pub async fn wait_empty(&self) {
        loop {
            let ended = self.any_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.is_empty() {
                return;
            }
            ended.await;
        }
    }

    fn check_ttl(&self, ttl: Option<Duration>) -> Result<Duration, LeaseError> {
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() || ttl > self.max_ttl {
            return Err(LeaseError::BadTtl {
                asked_ms: ttl.as_millis() as u64,
                max_ms: self.max_ttl.as_millis() as u64,
            });
        }
        Ok(ttl)
    }

    /// Acquires a VM and records the lease; returns it and whether it is a replay of an earlier
    /// request with the same idempotency key.
    pub async fn acquire(
        self: &Arc<Self>,
        backend: &dyn LeaseBackend,
        params: AcquireParams,
    ) -> Result<(Arc<Lease>, bool), LeaseError> {
        let ttl = self.check_ttl(params.ttl)?;
        let Some(key) = params.idempotency_key.clone() else {
            return Ok((self.acquire_new(backend, &params, ttl).await?, false));
        };
        let slot_handle = lock(&self.idempotency).entry(key.clone()).or_default().clone();
        // Held across the backend call: a concurrent retry with the same key waits for the first.
        let mut slot = slot_handle.lock().await;
        if let Some(id) = slot.as_ref()
            && let Some(lease) = self.get(id)
        {
            if lease.shape != params.shape {
                return Err(LeaseError::IdempotencyConflict { key, shape: lease.shape.clone() });
            }
            return Ok((lease, true));
        }
        let result = self.acquire_new(backend, &params, ttl).await;
        match &result {
            Ok(lease) => {
                *slot = Some(lease.id.clone());
                // A failed first attempt may have removed the entry while we waited: put it back.
                lock(&self.idempotency).insert(key, slot_handle.clone());
            }
            Err(_) => {
                lock(&self.idempotency).remove(&key);
            }
        }
        Ok((result?, false))
    }

    async fn acquire_new(
        self: &Arc<Self>,
        backend: &dyn LeaseBackend,
        params: &AcquireParams,
        ttl: Duration,
    ) -> Result<Arc<Lease>, LeaseError> {
        if self.cancel.is_cancelled() {
            return Err(LeaseError::ShuttingDown);
        }
        if self.is_draining() {
            self.metrics.acquire_outcome(&params.shape, "draining");
            return Err(LeaseError::Draining);
        }
        // Refused before a VM is taken: a bad request costs the pool nothing.
        let narrow = match (&params.egress, backend.network(&params.shape)) {
            (Some(policy), Some(network)) => {
                if let Err(error) = network.check_narrowing(&params.shape, policy) {
                    self.metrics.acquire_outcome(&params.shape, "egress_refused");
                    return Err(error.into());
                }
                network.is_enabled().then(|| policy.clone())
            }
            // An unknown shape: the backend says so below.
            _ => None,
        };
        let started = Instant::now();
        let vm = match backend.acquire(&params.shape, params.wait).await {
            Ok(vm) => vm,
            Err(error) => {
                let what = match &error {
                    AcquireError::UnknownShape(_) => "unknown_shape",
                    AcquireError::Exhausted { .. } => "exhausted",
                    AcquireError::ShuttingDown => "shutting_down",
                    AcquireError::Backend(_) => "error",
                };
                self.metrics.acquire_outcome(&params.shape, what);
                return Err(error.into());
            }
        };
        if let Some(policy) = narrow
            && let Err(error) = vm.narrow_egress(policy)
        {
            // Dropping the VM releases it to the backend (destroyed, refilled): nothing is lost.
            drop(vm);
            self.metrics.acquire_outcome(&params.shape, "error");
            return Err(LeaseError::NarrowFailed(error.to_string()));
        }
        let handed_out = Instant::now();
        self.metrics.acquire_outcome(&params.shape, "ok");
        self.metrics
            .acquire_seconds
            .get_or_create(&crate::metrics::ShapeLabel { shape: params.shape.clone() })
            .observe(handed_out.duration_since(started).as_secs_f64());
        let id = format!("l-{:016x}", rand::random::<u64>());
        let span =
            info_span!(parent: None, "lease", lease_id = %id, vm_id = %vm.vm_id(), shape = %params.shape);
        let lease = Arc::new(Lease {
            id: id.clone(),
            shape: params.shape.clone(),
            vm,
            span: span.clone(),
            created: SystemTime::now(),
            idempotency_key: params.idempotency_key.clone(),
            deadline: Mutex::new(Deadline { at: handed_out + ttl, wall: SystemTime::now() + ttl }),
            renewed: Notify::new(),
            cancel: self.cancel.child_token(),
        });
        lock(&self.leases).insert(id, lease.clone());
        self.metrics.lease_started(&lease.shape);
        let wait_ms = handed_out.duration_since(started).as_secs_f64() * 1000.0;
        span.in_scope(|| info!(ttl_ms = ttl.as_millis() as u64, wait_ms, "lease acquired"));
        let table = Arc::downgrade(self);
        let watched = lease.clone();
        tokio::spawn(async move { expire_when_due(table, watched).await }.instrument(span));
        Ok(lease)
    }

    /// The live lease with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Lease>> {
        lock(&self.leases).get(id).cloned()
    }

    /// Extends a lease to `now + ttl` (`None`: the default TTL).
    pub fn renew(&self, id: &str, ttl: Option<Duration>) -> Result<Arc<Lease>, LeaseError> {
        let ttl = self.check_ttl(ttl)?;
        let lease = self.get(id).ok_or_else(|| LeaseError::NotFound(id.to_owned()))?;
        *lock(&lease.deadline) = Deadline { at: Instant::now() + ttl, wall: SystemTime::now() + ttl };
        lease.renewed.notify_one();
        lease.span.in_scope(|| info!(ttl_ms = ttl.as_millis() as u64, "lease renewed"));
        Ok(lease)
    }

    /// Ends a lease: the VM is released once no exec holds it any more.
    pub fn release(&self, id: &str) -> Result<(), LeaseError> {
        self.end(id, EndReason::Released).map(drop).ok_or_else(|| LeaseError::NotFound(id.to_owned()))
    }

    fn end(&self, id: &str, reason: EndReason) -> Option<Arc<Lease>> {
        let lease = lock(&self.leases).remove(id)?;
        if let Some(key) = &lease.idempotency_key {
            lock(&self.idempotency).remove(key);
        }
        lease.cancel.cancel();
        self.ended.record(lease.facts().ended(reason, SystemTime::now()));
        // The metric's `outcome` label keeps its earlier values.
        let how = match reason {
            EndReason::TtlExpired => "expired",
            EndReason::HostShutdown => "shutdown",
            other => other.as_str(),
        };
        self.metrics.lease_ended(&lease.shape, how);
        lease.span.in_scope(|| info!(how, "lease ended"));
        self.any_ended.notify_waiters();
        Some(lease)
    }

    /// The lease with this id as the API shows it: live, or ended and still remembered.
    pub fn view(&self, id: &str) -> Option<LeaseView> {
        match self.get(id) {
            Some(lease) => Some(lease.facts().running()),
            None => self.ended.get(id),
        }
    }

    /// The leases that match `query`: live ones oldest first, then remembered ended ones newest
    /// first.
    pub fn views(&self, query: &LeaseListQuery) -> Vec<LeaseView> {
        let mut live: Vec<Arc<Lease>> = lock(&self.leases).values().cloned().collect();
        live.sort_by_key(|lease| lease.created);
        let mut views: Vec<LeaseView> =
            live.iter().map(|lease| lease.facts().running()).filter(|view| matches(view, query)).collect();
        views.extend(self.ended.matching(query));
        views
    }

    /// Ends every lease (shutdown); returns how many there were.
    pub fn release_all(&self) -> usize {
        let ids: Vec<String> = lock(&self.leases).keys().cloned().collect();
        ids.iter().filter(|id| self.end(id, EndReason::HostShutdown).is_some()).count()
    }

    /// The daemon's metric families.
    pub fn metrics(&self) -> &DaemonMetrics {
        &self.metrics
    }

    /// Number of live leases.
    pub fn len(&self) -> usize {
        lock(&self.leases).len()
    }

    /// True when no lease is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sleeps until the lease's deadline (re-reading it after each renew) and then ends it.
async fn expire_when_due(table: std::sync::Weak<LeaseTable>, lease: Arc<Lease>) {
    loop {
        let deadline = lease.deadline();
        tokio::select! {
            () = lease.cancel.cancelled() => return,
            () = lease.renewed.notified() => continue,
            () = tokio::time::sleep_until(deadline) => {
                if lease.deadline() > Instant::now() {
                    continue;
                }
                if let Some(table) = table.upgrade() {
                    table.end(&lease.id, EndReason::TtlExpired);
                }
                return;
            }
        }
    }
}

/// Locks a std mutex, recovering from poisoning: every critical section here leaves the map
/// consistent, so a panic elsewhere must not take the daemon down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "leases_tests.rs"]
mod tests;
