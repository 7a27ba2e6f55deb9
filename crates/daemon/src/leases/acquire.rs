//! Acquiring a lease: checks (TTL, metadata, options, egress) before a VM is taken, the backend's
//! hand-out, idempotency keys (a retry with the same key gets the same lease), and the new lease's
//! record, announcement and tasks.
//!
//! The TTL starts when the backend hands the VM out, not when the request arrived.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use firepit_api::{EventKind, OnExpiry};
use tokio::time::Instant;
use tracing::info;

use crate::backend::{AcquireError, EgressPolicy, LeasedVm};
use crate::leases::clock::Clock;
use crate::leases::error::LeaseError;
use crate::leases::lease::{Lease, LeaseOptions};
use crate::leases::state::{Slot, lock};
use crate::leases::table::LeaseTable;

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
    /// Metadata, `auto_resume`, `on_expiry`.
    pub options: LeaseOptions,
    /// Start the VM from this snapshot instead of taking a warm one of `shape` (which is then
    /// empty or the snapshot's).
    pub snapshot: Option<String>,
}

impl LeaseTable {
    /// Acquires a VM and records the lease; returns it and whether it is a replay of an earlier
    /// request with the same idempotency key.
    pub async fn acquire(self: &Arc<Self>, params: AcquireParams) -> Result<(Arc<Lease>, bool), LeaseError> {
        let ttl = self.check_ttl(params.ttl)?;
        firepit_api::check_metadata(&params.options.metadata).map_err(LeaseError::BadMetadata)?;
        if params.options.on_expiry == OnExpiry::Pause && !self.shared.backend.can_pause() {
            return Err(LeaseError::Unsupported(
                "on_expiry = pause: this daemon's backend cannot pause VMs; use on_expiry = destroy".into(),
            ));
        }
        let Some(key) = params.idempotency_key.clone() else {
            return Ok((self.acquire_new(&params, ttl).await?, false));
        };
        let slot_handle = lock(&self.idempotency).entry(key.clone()).or_default().clone();
        // Held across the backend call: a concurrent retry with the same key waits for the first.
        let mut slot = slot_handle.lock().await;
        if let Some(id) = slot.as_ref()
            && let Some(lease) = self.get(id)
        {
            if !params.shape.is_empty() && lease.shape != params.shape {
                return Err(LeaseError::IdempotencyConflict { key, shape: lease.shape.clone() });
            }
            return Ok((lease, true));
        }
        let result = self.acquire_new(&params, ttl).await;
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
        params: &AcquireParams,
        ttl: Duration,
    ) -> Result<Arc<Lease>, LeaseError> {
        let metrics = &self.shared.metrics;
        let backend = self.shared.backend.as_ref();
        if self.cancel.is_cancelled() {
            return Err(LeaseError::ShuttingDown);
        }
        if self.is_draining() {
            metrics.acquire_outcome(&params.shape, "draining");
            return Err(LeaseError::Draining);
        }
        if let Some(snapshot) = &params.snapshot {
            let started = Instant::now();
            let (shape, vm) = self.vm_of_snapshot(snapshot, params).await?;
            metrics.acquire_outcome(&shape, "ok");
            let lease =
                self.start_lease(shape, vm, ttl, params.options.clone(), params.idempotency_key.clone());
            let wait_ms = started.elapsed().as_secs_f64() * 1000.0;
            lease.span.in_scope(|| info!(%snapshot, wait_ms, "lease started from a snapshot"));
            return Ok(lease);
        }
        // Refused before a VM is taken: a bad request costs the pool nothing.
        let narrow = match (&params.egress, backend.network(&params.shape)) {
            (Some(policy), Some(network)) => {
                if let Err(error) = network.check_narrowing(&params.shape, policy) {
                    metrics.acquire_outcome(&params.shape, "egress_refused");
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
                metrics.acquire_outcome(&params.shape, what);
                return Err(error.into());
            }
        };
        if let Some(policy) = narrow
            && let Err(error) = vm.narrow_egress(policy)
        {
            // Dropping the VM releases it to the backend (destroyed, refilled): nothing is lost.
            drop(vm);
            metrics.acquire_outcome(&params.shape, "error");
            return Err(LeaseError::NarrowFailed(error.to_string()));
        }
        let handed_out = Instant::now();
        metrics.acquire_outcome(&params.shape, "ok");
        metrics
            .acquire_seconds
            .get_or_create(&crate::metrics::ShapeLabel { shape: params.shape.clone() })
            .observe(handed_out.duration_since(started).as_secs_f64());
        let lease = self.start_lease(
            params.shape.clone(),
            vm,
            ttl,
            params.options.clone(),
            params.idempotency_key.clone(),
        );
        let wait_ms = handed_out.duration_since(started).as_secs_f64() * 1000.0;
        lease.span.in_scope(|| info!(ttl_ms = ttl.as_millis() as u64, wait_ms, "lease acquired"));
        Ok(lease)
    }

    /// A new lease of `vm` (just handed out, started from a snapshot or forked): put in the table,
    /// its TTL running from now, recorded and announced (`lease.created`).
    pub(crate) fn start_lease(
        self: &Arc<Self>,
        shape: String,
        vm: Box<dyn LeasedVm>,
        ttl: Duration,
        options: LeaseOptions,
        idempotency_key: Option<String>,
    ) -> Arc<Lease> {
        let id = format!("l-{:016x}", rand::random::<u64>());
        let vm_id = vm.vm_id().to_owned();
        let exited = vm.exited();
        let lease = Arc::new(Lease::new(
            id,
            shape,
            vm_id,
            SystemTime::now(),
            options,
            idempotency_key,
            Slot::Running(vm),
            Clock::running(ttl),
            self.shared.clone(),
        ));
        self.insert(lease.clone(), Some(exited));
        self.shared.metrics.lease_started(&lease.shape);
        lease.persist();
        self.shared.announce(EventKind::LeaseCreated, &lease, |_| {});
        lease
    }

    /// A new VM started from snapshot `id`, and its shape.
    async fn vm_of_snapshot(
        &self,
        id: &str,
        params: &AcquireParams,
    ) -> Result<(String, Box<dyn LeasedVm>), LeaseError> {
        let store = self.snapshot_store()?;
        let info = store.get(id).ok_or_else(|| LeaseError::SnapshotNotFound(id.to_owned()))?;
        if !params.shape.is_empty() && params.shape != info.shape {
            return Err(LeaseError::BadRequest(format!(
                "snapshot `{id}` is of shape `{}`, not `{}`: leave `shape` out",
                info.shape, params.shape
            )));
        }
        if params.egress.is_some() {
            return Err(LeaseError::BadRequest(
                "`egress` cannot be narrowed at an acquire from a snapshot (yet): the lease keeps the snapshot's policy"
                    .into(),
            ));
        }
        let vm = self.shared.backend.start_snapshot(&store.vm_dir(id)).await.map_err(|error| {
            self.shared.metrics.acquire_outcome(&info.shape, "error");
            LeaseError::Acquire(error)
        })?;
        Ok((info.shape, vm))
    }
}
