//! The daemon's side: keep this host's [`HostRecord`] in etcd under an etcd lease, and keep the
//! lease → host map free of leases this host no longer holds.
//!
//! [`Advertiser::start`] spawns one task that, per session with etcd: grants an etcd lease of
//! `ttl` (10 s), writes the record under it, keeps it alive every `ttl / 3`, reads the daemon's
//! capacity every `poll_interval` and writes the record again when it changed (at most once per
//! `min_update_interval`; when only the load or free memory drifted, once per
//! `load_update_interval`), and sweeps routes every `sweep_interval`. When etcd fails, the session
//! ends and a new one starts after a pause; meanwhile the old record lives until its lease
//! expires, so a short etcd hiccup is invisible to gateways. When this process dies, nobody keeps
//! the lease alive: the record is gone within `ttl` and gateways stop placing here.
//!
//! The sweep (`sweep.rs`) deletes routes of this host's current run whose lease the daemon no longer holds
//! (released or expired directly on the daemon), routes of an earlier run (a restart ended them)
//! once their expiry has passed, and, every tenth sweep, the expired routes of hosts that are
//! gone (so a host that never comes back leaves nothing behind). A route of a lost lease is kept
//! until its expiry so that clients get `410 host_lost` rather than `404` meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::error::ClusterError;
use crate::host_load;
use crate::keys::Keys;
use crate::record::{HostRecord, ShapeCapacity, now_unix_ms};
use crate::store::Etcd;
use crate::sweep;
use firepit_pool::error_chain;

/// What the daemon tells the advertiser about itself.
pub trait CapacitySource: Send + Sync + 'static {
    /// Per shape: ready, filling, leased VMs.
    fn shapes(&self) -> Vec<ShapeCapacity>;
    /// Leases held.
    fn leases(&self) -> usize;
    /// Whether the daemon holds the lease `lease_id`.
    fn holds_lease(&self, lease_id: &str) -> bool;
    /// Whether the daemon refuses new leases (the record says so at once).
    fn draining(&self) -> bool {
        false
    }
}

/// How a daemon registers.
#[derive(Debug, Clone)]
pub struct AdvertiseConfig {
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// The key layout.
    pub keys: Keys,
    /// This host's id.
    pub host: String,
    /// This daemon's TCP API as gateways reach it.
    pub url: String,
    /// The etcd lease's time to live: the record is gone this long after the daemon died.
    pub ttl: Duration,
    /// Shortest time between two writes of the record when its capacity changed (ready, leased
    /// counts, shapes).
    pub min_update_interval: Duration,
    /// Shortest time between two writes when only the host's load or free memory changed (they
    /// drift all the time; placement needs them roughly).
    pub load_update_interval: Duration,
    /// How often the capacity is read.
    pub poll_interval: Duration,
    /// How often routes are swept.
    pub sweep_interval: Duration,
    /// The daemon's memory budget (MiB, 0: none), advertised as is.
    pub memory_budget_mb: u64,
}

impl AdvertiseConfig {
    /// The defaults: TTL 10 s, a write at most every second for capacity changes and every 15 s
    /// for load changes, capacity read every 250 ms, routes swept every 30 s.
    pub fn new(endpoints: Vec<String>, host: &str, url: &str) -> Self {
        Self {
            endpoints,
            keys: Keys::default(),
            host: host.to_owned(),
            url: url.to_owned(),
            ttl: Duration::from_secs(10),
            min_update_interval: Duration::from_secs(1),
            load_update_interval: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
            sweep_interval: Duration::from_secs(30),
            memory_budget_mb: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Control {
    draining: bool,
    stopping: bool,
}

#[derive(Debug, Default)]
struct Stats {
    writes: AtomicU64,
    registered: AtomicBool,
}

/// The registration task of one daemon (see the module docs).
///
/// ```no_run
/// # async fn demo(source: std::sync::Arc<dyn firepit_cluster::CapacitySource>) {
/// use firepit_cluster::{AdvertiseConfig, Advertiser};
/// let config = AdvertiseConfig::new(vec!["http://127.0.0.1:2379".into()], "node-a", "http://10.0.0.5:7070");
/// let advertiser = Advertiser::start(config, source);
/// advertiser.set_draining(true); // gateways stop placing here at the next write
/// advertiser.stop().await;        // the record is deleted at once
/// # }
/// ```
pub struct Advertiser {
    control: watch::Sender<Control>,
    stats: Arc<Stats>,
    run_id: String,
    task: JoinHandle<()>,
}

impl Advertiser {
    /// Starts registering (connects lazily: etcd may be down; it registers once etcd answers).
    pub fn start(config: AdvertiseConfig, source: Arc<dyn CapacitySource>) -> Self {
        let (control, control_rx) = watch::channel(Control::default());
        let stats = Arc::new(Stats::default());
        let run_id = format!("{:016x}", rand::random::<u64>());
        let session = Session { config, source, run_id: run_id.clone(), stats: stats.clone() };
        let task = tokio::spawn(session.run(control_rx));
        Self { control, stats, run_id, task }
    }

    /// This run's id (in the record and in every route placed on it).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Drains (no new leases through gateways) or stops draining; written at once.
    pub fn set_draining(&self, draining: bool) {
        self.control.send_modify(|c| c.draining = draining);
    }

    /// Whether the host is draining.
    pub fn is_draining(&self) -> bool {
        self.control.borrow().draining
    }

    /// Record writes so far (for the cluster bench: the etcd write rate a host causes).
    pub fn record_writes(&self) -> u64 {
        self.stats.writes.load(Ordering::Relaxed)
    }

    /// Whether the record is in etcd (as of the last write or keep-alive).
    pub fn is_registered(&self) -> bool {
        self.stats.registered.load(Ordering::Relaxed)
    }

    /// Deletes the record (revokes the etcd lease) and ends the task, within a few seconds even
    /// when etcd is down (the record then expires on its own).
    pub async fn stop(mut self) {
        self.control.send_modify(|c| c.stopping = true);
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }

    /// Ends the task without deleting the record: it expires after the TTL, as when the process
    /// is killed. Dropping the advertiser does the same.
    pub fn abandon(self) {
        drop(self);
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        // Nobody keeps the etcd lease alive any more: the record expires after the TTL.
        self.task.abort();
    }
}

struct Session {
    config: AdvertiseConfig,
    source: Arc<dyn CapacitySource>,
    run_id: String,
    stats: Arc<Stats>,
}

/// How a session ended.
enum End {
    Stopped,
    Failed(ClusterError),
}

impl Session {
    async fn run(self, mut control: watch::Receiver<Control>) {
        let etcd = match Etcd::connect(&self.config.endpoints, self.config.keys.clone()).await {
            Ok(etcd) => etcd,
            Err(error) => {
                warn!(%error, "cluster registration disabled");
                return;
            }
        };
        let mut pause = Duration::from_millis(500);
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.session(&etcd, &mut control).await {
                End::Stopped => return,
                End::Failed(error) => {
                    self.stats.registered.store(false, Ordering::Relaxed);
                    if failing_since.is_none() {
                        warn!(error = %error_chain(&error), "cluster registration interrupted; retrying");
                        failing_since = Some(Instant::now());
                    } else {
                        debug!(%error, "cluster registration still failing");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = control.wait_for(|c| c.stopping) => return,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
            if let Some(since) = failing_since.take_if(|_| self.stats.registered.load(Ordering::Relaxed)) {
                info!(after_ms = since.elapsed().as_millis() as u64, "cluster registration restored");
                pause = Duration::from_millis(500);
            }
        }
    }

    fn record(&self, control: Control) -> HostRecord {
        let shapes = self.source.shapes();
        HostRecord {
            draining: control.draining || self.source.draining(),
            shapes,
            leases: self.source.leases(),
            cpus: host_load::cpus(),
            load1: host_load::load1(),
            mem_available_mb: host_load::mem_available_mb(),
            memory_budget_mb: self.config.memory_budget_mb,
            updated_unix_ms: now_unix_ms(),
            ..HostRecord::new(&self.config.host, &self.config.url, &self.run_id)
        }
    }

    /// Whether `next` should be written now, `since` the last write of `last`: a drain at once,
    /// capacity changes after `min_update_interval`, load drift after `load_update_interval`.
    fn due(&self, last: &HostRecord, next: &HostRecord, since: Duration) -> bool {
        let capacity_changed =
            next.draining != last.draining || next.shapes != last.shapes || next.leases != last.leases;
        match capacity_changed {
            true => next.draining != last.draining || since >= self.config.min_update_interval,
            false => since >= self.config.load_update_interval,
        }
    }

    async fn write(&self, etcd: &Etcd, record: &HostRecord, lease: i64) -> Result<(), ClusterError> {
        etcd.put_record(record, lease).await?;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.registered.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn session(&self, etcd: &Etcd, control: &mut watch::Receiver<Control>) -> End {
        match self.serve_session(etcd, control).await {
            Ok(()) => End::Stopped,
            Err(error) => End::Failed(error),
        }
    }

    async fn serve_session(
        &self,
        etcd: &Etcd,
        control: &mut watch::Receiver<Control>,
    ) -> Result<(), ClusterError> {
        let ttl = self.config.ttl;
        let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(10);
        let grant =
            etcd.retry("granting the host's etcd lease", |mut c| async move {
                c.lease_grant(ttl_secs, None).await
            })
            .await?;
        let lease = grant.id();
        let mut client = etcd.client();
        let (mut keeper, mut acks) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| etcd.unavailable("keeping the host's lease alive", e))?;
        let mut last = self.record(*control.borrow());
        self.write(etcd, &last, lease).await?;
        let mut last_write = Instant::now();
        let mut last_ack = Instant::now();
        info!(host = %self.config.host, url = %self.config.url, lease, "registered in the cluster");
        let mut keep_alive = tokio::time::interval(ttl / 3);
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let start = Instant::now() + self.config.sweep_interval;
        let mut sweep = tokio::time::interval_at(start, self.config.sweep_interval);
        let mut sweeps = 0u64;
        loop {
            tokio::select! {
                changed = control.changed() => {
                    let now = *control.borrow_and_update();
                    if changed.is_err() || now.stopping {
                        return self.deregister(etcd, lease).await;
                    }
                    last = self.record(now);
                    self.write(etcd, &last, lease).await?;
                    last_write = Instant::now();
                }
                _ = keep_alive.tick() => {
                    if last_ack.elapsed() > ttl {
                        return Err(etcd.unavailable("keeping the host's lease alive", etcd_client::Error::LeaseKeepAliveError("no acknowledgement within the TTL".into())));
                    }
                    keeper.keep_alive().await.map_err(|e| etcd.unavailable("keeping the host's lease alive", e))?;
                }
                ack = acks.message() => match ack {
                    Ok(Some(ack)) if ack.ttl() > 0 => last_ack = Instant::now(),
                    Ok(Some(_)) => return Err(etcd.unavailable("keeping the host's lease alive", etcd_client::Error::LeaseKeepAliveError("the lease expired".into()))),
                    Ok(None) => return Err(etcd.unavailable("keeping the host's lease alive", etcd_client::Error::LeaseKeepAliveError("the stream ended".into()))),
                    Err(e) => return Err(etcd.unavailable("keeping the host's lease alive", e)),
                },
                _ = poll.tick() => {
                    let next = self.record(*control.borrow());
                    if !next.same_as(&last) && self.due(&last, &next, last_write.elapsed()) {
                        self.write(etcd, &next, lease).await?;
                        last = next;
                        last_write = Instant::now();
                    }
                }
                _ = sweep.tick() => {
                    sweeps += 1;
                    let holds = |id: &str| self.source.holds_lease(id);
                    let swept = sweep::sweep(etcd, &self.config.host, &self.run_id, &holds, sweeps.is_multiple_of(10)).await;
                    if let Err(error) = swept {
                        debug!(%error, "route sweep failed; next time");
                    }
                }
            }
        }
    }

    async fn deregister(&self, etcd: &Etcd, lease: i64) -> Result<(), ClusterError> {
        let mut client = etcd.client();
        match tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await {
            Ok(Ok(_)) => info!(host = %self.config.host, "left the cluster"),
            Ok(Err(error)) => warn!(%error, "cannot delete the host record; it expires within the TTL"),
            Err(_) => warn!("etcd did not answer; the host record expires within the TTL"),
        }
        self.stats.registered.store(false, Ordering::Relaxed);
        Ok(())
    }
}
