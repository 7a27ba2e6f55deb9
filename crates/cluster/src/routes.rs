//! The lease → host map: where a lease placed through a gateway lives, stored in etcd (so any
//! gateway can route any lease and a restarted gateway loses nothing) and cached in memory (so
//! routing needs no etcd round trip after the first request, and keeps working while etcd is down).
//!
//! A route is written once, when the placing gateway got the daemon's `201`, before the client
//! sees the lease; it is deleted when the lease is released through a gateway, and swept by the
//! host otherwise (see `advertiser`). [`RouteMap::lookup`] also decides whether a lease is lost:
//! its host's record expired, or the host runs again under another run id (a restart ended it).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tracing::warn;

use crate::directory::Directory;
use crate::error::ClusterError;
use crate::record::{HostRecord, LeaseRoute};

/// Routes kept in memory before the cache is halved (about 200 bytes each).
pub const MAX_CACHED_ROUTES: usize = 200_000;

/// Where a lease is, as far as the cluster knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Its host is registered with the run that holds it: forward there.
    Live {
        /// The route.
        route: LeaseRoute,
        /// The host's current record.
        host: HostRecord,
    },
    /// Its host is gone: the record expired (`restarted: false`) or the host came back as a new
    /// run (`restarted: true`). The lease ended with it.
    HostLost {
        /// The route.
        route: LeaseRoute,
        /// Whether the host is back under a new run.
        restarted: bool,
    },
    /// No route: never placed through a gateway, or released.
    Unknown,
}

/// The lease → host map (see the module docs).
pub struct RouteMap {
    directory: Directory,
    cache: Mutex<HashMap<String, LeaseRoute>>,
}

impl RouteMap {
    /// A map over `directory`'s etcd and hosts.
    pub fn new(directory: Directory) -> Self {
        Self { directory, cache: Mutex::default() }
    }

    /// Where `lease_id` is (cache first, then etcd).
    pub async fn lookup(&self, lease_id: &str) -> Result<Lookup, ClusterError> {
        let cached = lock(&self.cache).get(lease_id).cloned();
        let route = match cached {
            Some(route) => route,
            None => match self.directory.etcd().route(lease_id).await? {
                Some(route) => {
                    self.cache(route.clone());
                    route
                }
                None => return Ok(Lookup::Unknown),
            },
        };
        match self.directory.host(&route.host) {
            Some(host) if host.run_id == route.run_id => Ok(Lookup::Live { route, host }),
            Some(_) => Ok(Lookup::HostLost { route, restarted: true }),
            None if self.directory.is_synced() => Ok(Lookup::HostLost { route, restarted: false }),
            None => Err(ClusterError::NotSynced),
        }
    }

    /// Stores a new route in etcd, then in the cache.
    pub async fn remember(&self, route: LeaseRoute) -> Result<(), ClusterError> {
        self.directory.etcd().put_route(&route).await?;
        self.cache(route);
        Ok(())
    }

    /// The route of the lease an earlier acquire with `key` got, if it is still routed.
    pub async fn by_idempotency_key(&self, key: &str) -> Result<Option<LeaseRoute>, ClusterError> {
        let Some(lease_id) = self.directory.etcd().idempotent_lease(key).await? else { return Ok(None) };
        match self.lookup(&lease_id).await? {
            Lookup::Live { route, .. } | Lookup::HostLost { route, .. } => Ok(Some(route)),
            Lookup::Unknown => Ok(None),
        }
    }

    /// Records a renewal's new expiry (kept for the sweeps of lost hosts; logged on failure).
    pub async fn renewed(&self, lease_id: &str, expires_at_unix_ms: u64) {
        let route = lock(&self.cache).get_mut(lease_id).map(|route| {
            route.expires_at_unix_ms = expires_at_unix_ms;
            route.clone()
        });
        if let Some(route) = route
            && let Err(error) = self.directory.etcd().put_route(&route).await
        {
            warn!(lease_id, %error, "cannot record the renewed expiry in etcd");
        }
    }

    /// Forgets a route everywhere (the lease was released, or its host says it does not exist).
    /// An etcd failure is logged: the host's sweep removes the route later.
    pub async fn forget(&self, route: &LeaseRoute) {
        self.forget_cached(&route.lease_id);
        if let Err(error) = self.directory.etcd().delete_route(route).await {
            warn!(lease_id = %route.lease_id, %error, "cannot delete the route from etcd; the host's sweep will");
        }
    }

    /// Forgets a route in this gateway's cache only.
    pub fn forget_cached(&self, lease_id: &str) {
        lock(&self.cache).remove(lease_id);
    }

    /// Routes cached in memory.
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }

    fn cache(&self, route: LeaseRoute) {
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED_ROUTES {
            // Rare (a huge fleet); dropping half costs one etcd read per evicted lease later.
            let keep: Vec<String> = cache.keys().take(MAX_CACHED_ROUTES / 2).cloned().collect();
            cache.retain(|k, _| keep.contains(k));
        }
        cache.insert(route.lease_id.clone(), route);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
