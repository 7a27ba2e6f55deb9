//! The gateway's side: every registered host as this gateway last saw it, kept current by an etcd
//! watch, and whether etcd answers.
//!
//! [`Directory::start`] reads all host records, then watches their prefix from the next revision;
//! when the watch fails it reads them all again (the same "list, then watch" as Kubernetes'
//! informers). When etcd is unreachable the last known hosts stay: existing leases keep being
//! routed, and [`Directory::health`] says etcd is down so placements are refused. A host a
//! gateway could not reach is skipped for placement for a few seconds ([`Directory::note_unreachable`])
//! even before its record expires.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use crate::placement::{DEFAULT_K, HostState, placement_order};
use crate::record::HostRecord;
use crate::store::{Etcd, read_record};

/// How long a host that refused a connection is skipped by placement.
pub const SUSPECT_FOR: Duration = Duration::from_secs(5);
/// How often etcd is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Whether etcd answers, as the gateway last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdHealth {
    /// The last probe succeeded.
    pub reachable: bool,
    /// The host records were read at least once (so an absent host is really gone).
    pub synced: bool,
    /// The last error, while unreachable.
    pub error: Option<String>,
}

/// The hosts, their placement state and etcd's health (cheap to clone; clones share all).
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

struct Inner {
    etcd: Etcd,
    hosts: Mutex<BTreeMap<String, HostState>>,
    suspects: Mutex<HashMap<String, Instant>>,
    health: Mutex<EtcdHealth>,
    synced: AtomicBool,
    changed: Notify,
    k: usize,
}

impl Directory {
    /// Starts watching the hosts registered in `etcd` (returns at once; the first read happens in
    /// the background). The watch stops when the last clone is dropped.
    pub fn start(etcd: Etcd) -> Self {
        let inner = Arc::new(Inner {
            etcd,
            hosts: Mutex::default(),
            suspects: Mutex::default(),
            health: Mutex::new(EtcdHealth { reachable: false, synced: false, error: None }),
            synced: AtomicBool::new(false),
            changed: Notify::new(),
            k: DEFAULT_K,
        });
        let stop = CancellationToken::new();
        tokio::spawn(watch_hosts(inner.clone(), stop.clone()));
        tokio::spawn(probe(inner.clone(), stop.clone()));
        Self { inner, _stop: Arc::new(stop.drop_guard()) }
    }

    /// The etcd connection.
    pub fn etcd(&self) -> &Etcd {
        &self.inner.etcd
    }

    /// Every registered host's last record, by host id.
    pub fn hosts(&self) -> Vec<HostRecord> {
        lock(&self.inner.hosts).values().map(|h| h.record.clone()).collect()
    }

    /// One host's last record.
    pub fn host(&self, host: &str) -> Option<HostRecord> {
        lock(&self.inner.hosts).get(host).map(|h| h.record.clone())
    }

    /// Whether the host records were read at least once.
    pub fn is_synced(&self) -> bool {
        self.inner.synced.load(Ordering::SeqCst)
    }

    /// etcd's health.
    pub fn health(&self) -> EtcdHealth {
        lock(&self.inner.health).clone()
    }

    /// The hosts to try for an acquire of `shape`, best first ([`placement_order`]), without
    /// hosts that refused a connection in the last [`SUSPECT_FOR`].
    pub fn placement_order(&self, shape: Option<&str>) -> Vec<HostRecord> {
        let now = Instant::now();
        let suspects: Vec<String> = {
            let mut suspects = lock(&self.inner.suspects);
            suspects.retain(|_, until| *until > now);
            suspects.keys().cloned().collect()
        };
        let hosts = lock(&self.inner.hosts);
        let states: Vec<HostState> =
            hosts.values().filter(|h| !suspects.contains(&h.record.host)).cloned().collect();
        let order = placement_order(&states, shape, self.inner.k, &mut rand::rng());
        order.into_iter().filter_map(|h| hosts.get(h).map(|s| s.record.clone())).collect()
    }

    /// Counts a placement on `host` until its next record.
    pub fn note_placed(&self, host: &str, shape: &str) {
        if let Some(state) = lock(&self.inner.hosts).get_mut(host) {
            state.note_placed(shape);
        }
    }

    /// Skips `host` for placement for [`SUSPECT_FOR`] (it refused a connection).
    pub fn note_unreachable(&self, host: &str) {
        lock(&self.inner.suspects).insert(host.to_owned(), Instant::now() + SUSPECT_FOR);
    }

    /// Waits until the host set or a record changes (or `within` passes).
    pub async fn changed(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.inner.changed.notified()).await;
    }
}

async fn probe(inner: Arc<Inner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = inner.etcd.probe().await;
        let mut health = lock(&inner.health);
        match result {
            Ok(()) => {
                if !health.reachable && health.error.is_some() {
                    info!("etcd answers again; placements resume");
                }
                health.reachable = true;
                health.error = None;
            }
            Err(error) => {
                if health.reachable || health.error.is_none() {
                    warn!(%error, "etcd does not answer; existing leases are routed from the cache, new ones refused");
                }
                health.reachable = false;
                health.error = Some(firepit_pool::error_chain(&error));
            }
        }
        health.synced = inner.synced.load(Ordering::SeqCst);
    }
}

/// List, then watch from the next revision; on any failure, list again.
async fn watch_hosts(inner: Arc<Inner>, stop: CancellationToken) {
    let prefix = inner.etcd.keys().hosts_prefix();
    loop {
        let listed = tokio::select! {
            () = stop.cancelled() => return,
            listed = inner.etcd.hosts() => listed,
        };
        let revision = match listed {
            Ok((records, revision)) => {
                replace_all(&inner, records);
                revision
            }
            Err(error) => {
                debug!(%error, "cannot read the host records; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PROBE_INTERVAL) => continue,
                }
            }
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut client = inner.etcd.client();
        let mut stream = match client.watch(prefix.clone(), Some(options)).await {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%error, "cannot watch the host records; retrying");
                tokio::time::sleep(PROBE_INTERVAL).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = stream.message() => message,
            };
            match message {
                Ok(Some(response)) if response.canceled() => break,
                Ok(Some(response)) => apply(&inner, response.events()),
                Ok(None) => break,
                Err(error) => {
                    debug!(%error, "the host watch failed; reading the records again");
                    break;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn replace_all(inner: &Inner, records: Vec<HostRecord>) {
    {
        let mut hosts = lock(&inner.hosts);
        let mut next = BTreeMap::new();
        for record in records {
            let state = match hosts.remove(&record.host) {
                Some(old) if old.record == record => old,
                _ => HostState::new(record.clone()),
            };
            next.insert(record.host.clone(), state);
        }
        for gone in hosts.keys() {
            info!(host = %gone, "host left the cluster");
        }
        *hosts = next;
    }
    inner.synced.store(true, Ordering::SeqCst);
    inner.changed.notify_waiters();
}

fn apply(inner: &Inner, events: &[etcd_client::Event]) {
    let keys = inner.etcd.keys();
    let mut hosts = lock(&inner.hosts);
    for event in events {
        let Some(kv) = event.kv() else { continue };
        let Some(host) = keys.host_from_key(kv.key()) else { continue };
        match event.event_type() {
            EventType::Put => {
                let Some(record) = read_record(kv.key(), kv.value()) else { continue };
                if !hosts.contains_key(host) {
                    info!(host, url = %record.url, "host joined the cluster");
                }
                hosts.insert(host.to_owned(), HostState::new(record));
            }
            EventType::Delete => {
                if hosts.remove(host).is_some() {
                    info!(host, "host left the cluster");
                }
            }
        }
    }
    drop(hosts);
    inner.changed.notify_waiters();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
