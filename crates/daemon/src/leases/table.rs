//! All leases by id: the live ones (running or paused), the remembered ended ones, and the
//! operations on them by id (renew, release, pause, resume, end, list). Acquiring is
//! [`crate::leases::acquire`].
//!
//! Ending a lease ([`LeaseTable::end`]) goes through the lease itself (`Lease::finish`: the VM is
//! destroyed at once), then the table remembers the ended view and forgets the live lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use firepit_api::{EndReason, LeaseListQuery, LeaseState, LeaseView, ReleaseReason};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::backend::LeaseBackend;
use crate::events::EventBus;
use crate::leases::clock::Due;
use crate::leases::context::{LeaseSettings, Shared};
use crate::leases::error::LeaseError;
use crate::leases::lease::Lease;
use crate::leases::state::{TransitionError, lock};
use crate::leases::store::{LeaseStore, StoreError};
use crate::leases::views::{EndedLeases, unix_ms};
use crate::leases::watch::{self, EndLease};
use crate::metrics::DaemonMetrics;

/// All leases.
pub struct LeaseTable {
    pub(crate) leases: Mutex<HashMap<String, Arc<Lease>>>,
    ended: EndedLeases,
    pub(crate) idempotency: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<String>>>>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) shared: Arc<Shared>,
    draining: AtomicBool,
    /// Notified whenever a lease ends (drain waits for the table to empty).
    any_ended: Notify,
}

impl LeaseTable {
    /// A table over `backend`; with `settings.records_dir`, its records are read back first (see
    /// [`crate::leases::store`]). `cancel` stops every task of the table (on shutdown).
    pub fn new(
        backend: Arc<dyn LeaseBackend>,
        settings: LeaseSettings,
        events: EventBus,
        metrics: DaemonMetrics,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let (store, records) = match &settings.records_dir {
            Some(dir) => {
                let (store, records) = LeaseStore::open(dir)?;
                (Some(store), records)
            }
            None => (None, Vec::new()),
        };
        let snapshots = match &settings.snapshots_dir {
            Some(dir) => Some(
                crate::snapshot_store::SnapshotStore::open(dir)
                    .map_err(|e| StoreError::new("opening the snapshots directory", dir.clone(), e.source))?,
            ),
            None => None,
        };
        let ended = EndedLeases::new(settings.ended_retention, settings.ended_max);
        let watch = std::sync::OnceLock::new();
        let shared = Arc::new(Shared { backend, settings, store, snapshots, events, metrics, watch });
        let table = Arc::new(Self {
            leases: Mutex::default(),
            ended,
            idempotency: Mutex::default(),
            cancel,
            shared,
            draining: AtomicBool::new(false),
            any_ended: Notify::new(),
        });
        let weak = Arc::downgrade(&table);
        let interval = table.shared.settings.health_check_interval;
        let _first = table.shared.watch.set(Box::new(move |lease, exited, run| {
            watch::start(lease, exited, run, interval, ender(weak.clone()));
        }));
        table.restore(records);
        tokio::spawn(sweep_ended(Arc::downgrade(&table), table.cancel.clone()));
        Ok(table)
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

    /// Resolves once no lease runs (at once when none does). Paused leases hold no VM and stay.
    pub async fn wait_empty(&self) {
        loop {
            let ended = self.any_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            ended.await;
        }
    }

    pub(crate) fn check_ttl(&self, ttl: Option<Duration>) -> Result<Duration, LeaseError> {
        let settings = &self.shared.settings;
        let ttl = ttl.unwrap_or(settings.default_ttl);
        if ttl.is_zero() || ttl > settings.max_ttl {
            return Err(LeaseError::BadTtl {
                asked_ms: ttl.as_millis() as u64,
                max_ms: settings.max_ttl.as_millis() as u64,
            });
        }
        Ok(ttl)
    }

    /// Starts the tasks of a newly live lease (its clock; for a running one, the watch of its VM)
    /// and puts it in the table.
    pub(crate) fn insert(
        self: &Arc<Self>,
        lease: Arc<Lease>,
        exited: Option<crate::backend::BoxFuture<'static, crate::backend::VmExit>>,
    ) {
        lock(&self.leases).insert(lease.id.clone(), lease.clone());
        let table = Arc::downgrade(self);
        let cancel = self.cancel.clone();
        let clock = {
            let lease = lease.clone();
            async move {
                let expire = |due| {
                    let (table, lease) = (table.clone(), lease.clone());
                    async move {
                        if let Some(table) = table.upgrade() {
                            table.expire(lease, due).await;
                        }
                    }
                };
                lease.clock.watch(lease.ended(), expire).await;
            }
        };
        tokio::spawn(
            async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = clock => {}
                }
            }
            .instrument(lease.span.clone()),
        );
        if let (Some(exited), Some(start)) = (exited, self.shared.watch.get()) {
            start(lease.clone(), exited, lease.stopped());
        }
    }

    /// The live (running or paused) lease with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Lease>> {
        lock(&self.leases).get(id).cloned()
    }

    /// The live lease with this id, or why there is none: [`LeaseError::Ended`] while the daemon
    /// remembers its end, else [`LeaseError::NotFound`].
    pub fn lease(&self, id: &str) -> Result<Arc<Lease>, LeaseError> {
        if let Some(lease) = self.get(id) {
            return Ok(lease);
        }
        match self.ended.get(id) {
            Some(view) => Err(LeaseError::Ended(crate::leases::Interrupted::Ended {
                id: view.id,
                reason: view.end_reason.unwrap_or(EndReason::Released).as_str(),
                detail: view.end_detail,
            })),
            None => Err(LeaseError::NotFound(id.to_owned())),
        }
    }

    /// Sets a lease's TTL to `ttl` from now (`None`: the default TTL); a paused lease gets it at
    /// resume.
    pub fn renew(&self, id: &str, ttl: Option<Duration>) -> Result<Arc<Lease>, LeaseError> {
        let ttl = self.check_ttl(ttl)?;
        let lease = self.lease(id)?;
        if let Some((reason, detail)) = lease.end_reason() {
            return Err(LeaseError::Ended(crate::leases::Interrupted::Ended {
                id: id.to_owned(),
                reason: reason.as_str(),
                detail,
            }));
        }
        lease.clock.renew(ttl);
        lease.persist();
        lease.span.in_scope(|| info!(ttl_ms = ttl.as_millis() as u64, "lease renewed"));
        Ok(lease)
    }

    /// Ends a lease at a client's request (`released`) or an operator's (`killed`); returns once
    /// its VM is destroyed.
    pub async fn release(
        &self,
        id: &str,
        reason: ReleaseReason,
        detail: Option<String>,
    ) -> Result<(), LeaseError> {
        let reason = match reason {
            ReleaseReason::Released => EndReason::Released,
            ReleaseReason::Killed => EndReason::Killed,
        };
        let lease = self.lease(id)?;
        if self.end_lease(&lease, reason, detail).await {
            Ok(())
        } else {
            Err(LeaseError::NotFound(id.to_owned()))
        }
    }

    /// Ends the lease `id` for `reason` (see `Lease::finish`); `false` when no live lease has
    /// that id (or it ended meanwhile).
    pub async fn end(&self, id: &str, reason: EndReason, detail: Option<String>) -> bool {
        match self.get(id) {
            Some(lease) => self.end_lease(&lease, reason, detail).await,
            None => false,
        }
    }

    pub(crate) async fn end_lease(
        &self,
        lease: &Arc<Lease>,
        reason: EndReason,
        detail: Option<String>,
    ) -> bool {
        if !lease.finish(reason, detail).await {
            return false;
        }
        for forgotten in self.ended.record(lease.view()) {
            self.forget_record(&forgotten);
        }
        lock(&self.leases).remove(&lease.id);
        if let Some(key) = &lease.idempotency_key {
            lock(&self.idempotency).remove(key);
        }
        self.any_ended.notify_waiters();
        true
    }

    fn forget_record(&self, id: &str) {
        if let Some(store) = &self.shared.store {
            store.remove(id);
        }
    }

    /// What a lease's clock running out does: end it, or pause it (`on_expiry = pause`).
    async fn expire(&self, lease: Arc<Lease>, due: Due) {
        match (due, lease.options.on_expiry) {
            (Due::Ttl, firepit_api::OnExpiry::Pause) => {
                if let Err(error @ TransitionError::Failed { .. }) =
                    lease.pause(Some(EndReason::TtlExpired)).await
                {
                    let detail = format!("its TTL ran out and on_expiry = pause, but the {error}");
                    self.end_lease(&lease, EndReason::TtlExpired, Some(detail)).await;
                }
            }
            (Due::Ttl, firepit_api::OnExpiry::Destroy) => {
                self.end_lease(&lease, EndReason::TtlExpired, None).await;
            }
            (Due::PausedRetention, _) => {
                let secs = self.shared.settings.paused_retention.as_secs();
                let detail = format!("paused for longer than leases.paused_retention_secs ({secs} s)");
                self.end_lease(&lease, EndReason::TtlExpired, Some(detail)).await;
            }
        }
    }

    /// Pauses the lease `id` (see [`Lease::pause`]); answers its view.
    pub async fn pause(&self, id: &str) -> Result<LeaseView, LeaseError> {
        let lease = self.lease(id)?;
        if lease.state() == LeaseState::Running && !self.shared.backend.can_pause() {
            return Err(LeaseError::Unsupported("this daemon's backend cannot pause VMs".into()));
        }
        lease.pause(None).await.map_err(transition_error)?;
        Ok(lease.view())
    }

    /// Resumes the lease `id` (see [`Lease::resume`]); answers its view.
    pub async fn resume(&self, id: &str) -> Result<LeaseView, LeaseError> {
        let lease = self.lease(id)?;
        lease.resume().await.map_err(transition_error)?;
        Ok(lease.view())
    }

    /// The lease with this id as the API shows it: live, or ended and still remembered.
    pub fn view(&self, id: &str) -> Option<LeaseView> {
        match self.get(id) {
            Some(lease) => Some(lease.view()),
            None => self.ended.get(id),
        }
    }

    /// The leases that match `query`: live ones oldest first, then remembered ended ones newest
    /// first, at most `query.limit`.
    pub fn views(&self, query: &LeaseListQuery) -> Vec<LeaseView> {
        let limit = query.limit.unwrap_or(firepit_api::LEASE_LIST_MAX);
        let mut live: Vec<Arc<Lease>> = lock(&self.leases).values().cloned().collect();
        live.sort_by_key(|lease| lease.created);
        let mut views: Vec<LeaseView> =
            live.iter().map(|lease| lease.view()).filter(|view| query.matches(view)).take(limit).collect();
        if views.len() < limit {
            views.extend(self.ended.matching(query, limit - views.len()));
        }
        views
    }

    /// Ends every running lease (`host_shutdown`: their VMs are destroyed now); paused leases stay
    /// paused, on disk, for the next start. Returns how many ended; every record is written when
    /// it returns.
    pub async fn release_all(&self) -> usize {
        let running: Vec<Arc<Lease>> = lock(&self.leases)
            .values()
            .filter(|lease| lease.state() != LeaseState::Paused)
            .cloned()
            .collect();
        let ends = running.iter().map(|lease| self.end_lease(lease, EndReason::HostShutdown, None));
        let ended = futures_util::future::join_all(ends).await.into_iter().filter(|ended| *ended).count();
        if let Some(store) = &self.shared.store {
            store.flush().await;
        }
        ended
    }

    /// Reads back what a previous run recorded (see [`crate::leases::store`]).
    fn restore(self: &Arc<Self>, records: Vec<crate::leases::store::LeaseRecord>) {
        let now = unix_ms(SystemTime::now());
        let mut kept = Vec::new();
        for record in records {
            let view = record.view;
            match view.state {
                LeaseState::Ended => {
                    for forgotten in self.ended.record(view) {
                        self.forget_record(&forgotten);
                    }
                }
                LeaseState::Running => {
                    self.remember_restart(crate::leases::store::ended_by_restart(view, now))
                }
                LeaseState::Paused => {
                    let adopted = record
                        .saved
                        .as_ref()
                        .ok_or_else(|| "its record holds no saved state".into())
                        .and_then(|saved| self.shared.backend.adopt_paused(saved));
                    match adopted {
                        Ok(paused) => {
                            kept.push(paused.saved());
                            let lease = Arc::new(Lease::adopted(&view, paused, self.shared.clone()));
                            self.insert(lease.clone(), None);
                            self.shared.metrics.lease_started(&lease.shape);
                            lease.persist();
                            lease.span.in_scope(|| info!("paused lease of the previous run adopted"));
                        }
                        Err(error) => {
                            warn!(lease_id = %view.id, %error, "a paused lease of the previous run cannot be adopted; it ends");
                            let mut ended = crate::leases::store::ended_by_restart(view, now);
                            ended.end_detail = Some(format!("its saved state could not be adopted: {error}"));
                            self.remember_restart(ended);
                        }
                    }
                }
            }
        }
        // Before any lease can pause again: what is left is no paused lease's.
        self.shared.backend.remove_unkept_paused(&kept);
    }

    fn remember_restart(&self, view: LeaseView) {
        self.shared.events.emit(firepit_api::EventKind::LeaseEnded, |event| {
            event.lease_id = Some(view.id.clone());
            event.shape = Some(view.shape.clone());
            event.metadata = view.metadata.clone();
            event.reason = view.end_reason;
            event.detail = view.end_detail.clone();
        });
        if let Some(store) = &self.shared.store {
            store.save(&crate::leases::store::LeaseRecord { version: 1, view: view.clone(), saved: None });
        }
        for forgotten in self.ended.record(view) {
            self.forget_record(&forgotten);
        }
    }

    /// The daemon's metric families.
    pub fn metrics(&self) -> &DaemonMetrics {
        &self.shared.metrics
    }

    /// The event bus leases announce their changes on.
    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    /// The backend the leases' VMs come from.
    pub fn backend(&self) -> &Arc<dyn LeaseBackend> {
        &self.shared.backend
    }

    /// Number of live (running or paused) leases.
    pub fn len(&self) -> usize {
        lock(&self.leases).len()
    }

    /// Number of running leases (each holds a VM).
    pub fn running(&self) -> usize {
        lock(&self.leases).values().filter(|lease| lease.state() == LeaseState::Running).count()
    }

    /// True when no lease is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn transition_error(error: TransitionError) -> LeaseError {
    match error {
        TransitionError::Ended(interrupted) => LeaseError::Ended(interrupted),
        TransitionError::Failed { error: ref cause, what } => {
            match crate::saved::SaveError::no_room(cause.as_ref()) {
                Some(message) => LeaseError::InsufficientStorage(format!("{what} failed: {message}")),
                None => LeaseError::TransitionFailed(error.to_string()),
            }
        }
    }
}

/// The table's `end`, as the watch of a VM calls it.
fn ender(table: Weak<LeaseTable>) -> EndLease {
    Arc::new(move |lease, reason, detail| {
        let table = table.clone();
        Box::pin(async move {
            if let Some(table) = table.upgrade() {
                table.end_lease(&lease, reason, detail).await;
            }
        })
    })
}

/// Forgets ended leases past their retention, once a minute, until the table is gone.
async fn sweep_ended(table: Weak<LeaseTable>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let Some(table) = table.upgrade() else { return };
        for forgotten in table.ended.expire() {
            table.forget_record(&forgotten);
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
