//! [`Etcd`]: the few etcd operations firepit needs, each bounded in time and retried on
//! transient errors (a member restarting, a leader election), over one `etcd-client` connection.
//!
//! The connection is lazy: [`Etcd::connect`] succeeds while etcd is down, so a daemon or gateway
//! can start before etcd does and catch up once it is reachable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use tokio::time::Instant;

use crate::error::ClusterError;
use crate::keys::Keys;
use crate::record::{HostRecord, LeaseRoute};

/// Time one etcd request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Time an operation keeps retrying a failed request (a leader election takes about a second).
pub const RETRY_BUDGET: Duration = Duration::from_secs(4);

/// Time a health probe ([`Etcd::probe`]) may take.
pub const PROBE_BUDGET: Duration = Duration::from_secs(2);
/// Reads a health probe makes at most.
const PROBE_ATTEMPTS: usize = 12;

/// A connection to an etcd cluster and the key layout used on it.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    keys: Keys,
    endpoints: Arc<str>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Etcd({} under {})", self.endpoints, self.keys.prefix())
    }
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`http://host:port` each) using `keys`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), firepit_cluster::ClusterError> {
    /// let etcd = firepit_cluster::Etcd::connect(&["http://127.0.0.1:2379".into()], firepit_cluster::Keys::default()).await?;
    /// let (hosts, _revision) = etcd.hosts().await?;
    /// println!("{} hosts", hosts.len());
    /// # Ok(()) }
    /// ```
    pub async fn connect(endpoints: &[String], keys: Keys) -> Result<Self, ClusterError> {
        let bad = |source| ClusterError::BadEndpoints { endpoints: endpoints.to_vec(), source };
        if endpoints.is_empty() || endpoints.iter().any(|e| !e.starts_with("http://")) {
            return Err(bad(None));
        }
        let options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(1))
            // HTTP/2 pings: a member that died without closing its connections is noticed in
            // seconds, also by long-lived streams (watches, lease keep-alives).
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options)).await.map_err(|e| bad(Some(e)))?;
        Ok(Self { client, keys, endpoints: endpoints.join(",").into() })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The raw client, for streams (watches, lease keep-alives).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The endpoints, comma-separated (for messages).
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Runs `op` until it succeeds or [`RETRY_BUDGET`] is spent (then the last error).
    pub async fn retry<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T, ClusterError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = tokio::time::timeout(REQUEST_TIMEOUT, op(self.client.clone())).await;
            let error = match attempt {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => etcd_client::Error::Internal(format!("no answer within {REQUEST_TIMEOUT:?}")),
            };
            if Instant::now() + pause >= deadline {
                return Err(self.unavailable(what, error));
            }
            tracing::debug!(what, %error, "etcd request failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(800));
        }
    }

    /// The error for a failed `what`.
    pub fn unavailable(&self, what: &'static str, source: etcd_client::Error) -> ClusterError {
        ClusterError::Unavailable { endpoints: self.endpoints.to_string(), what, source }
    }

    /// Is etcd answering right now? Quick reads until one answers, for at most `PROBE_BUDGET`:
    /// the client spreads requests over the endpoints and still sends some to a member that is
    /// down (its connection fails at once), so one failed read says little about the cluster.
    pub async fn probe(&self) -> Result<(), ClusterError> {
        let key = self.keys.hosts_prefix();
        let deadline = Instant::now() + PROBE_BUDGET;
        let mut last = None;
        for attempt in 0..PROBE_ATTEMPTS {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20).min(left)).await;
            }
            let options = GetOptions::new().with_prefix().with_count_only();
            let mut client = self.client.clone();
            let limit = left.min(Duration::from_secs(1));
            match tokio::time::timeout(limit, client.get(key.clone(), Some(options))).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some(etcd_client::Error::Internal(format!("no answer within {limit:?}"))),
            }
        }
        let error = last.unwrap_or_else(|| etcd_client::Error::Internal("no attempt made".into()));
        Err(self.unavailable("a health probe", error))
    }

    /// Every readable host record, and the revision they were read at (watch from the next one).
    pub async fn hosts(&self) -> Result<(Vec<HostRecord>, i64), ClusterError> {
        let prefix = self.keys.hosts_prefix();
        let response = self
            .retry("reading the host records", |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let records = response.kvs().iter().filter_map(|kv| read_record(kv.key(), kv.value())).collect();
        Ok((records, revision))
    }

    /// The route of `lease_id`, if a gateway placed it.
    pub async fn route(&self, lease_id: &str) -> Result<Option<LeaseRoute>, ClusterError> {
        let key = self.keys.lease(lease_id);
        let response = self
            .retry("reading a lease's route", |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(response.kvs().first().and_then(|kv| LeaseRoute::from_json(kv.value())))
    }

    /// Stores a route (and its index entry, and its idempotency key) in one transaction.
    pub async fn put_route(&self, route: &LeaseRoute) -> Result<(), ClusterError> {
        let value = route.to_json();
        let mut ops = vec![
            TxnOp::put(self.keys.lease(&route.lease_id), value.clone(), None),
            TxnOp::put(self.keys.host_lease(&route.host, &route.lease_id), value, None),
        ];
        if let Some(key) = &route.idempotency_key {
            ops.push(TxnOp::put(self.keys.idempotency(key), route.lease_id.clone(), None));
        }
        self.retry("storing a lease's route", |mut c| {
            let txn = Txn::new().and_then(ops.clone());
            async move { c.txn(txn).await }
        })
        .await
        .map(drop)
    }

    /// Removes a route, its index entry and its idempotency key.
    pub async fn delete_route(&self, route: &LeaseRoute) -> Result<(), ClusterError> {
        let mut ops = vec![
            TxnOp::delete(self.keys.lease(&route.lease_id), None),
            TxnOp::delete(self.keys.host_lease(&route.host, &route.lease_id), None),
        ];
        if let Some(key) = &route.idempotency_key {
            ops.push(TxnOp::delete(self.keys.idempotency(key), None));
        }
        self.retry("removing a lease's route", |mut c| {
            let txn = Txn::new().and_then(ops.clone());
            async move { c.txn(txn).await }
        })
        .await
        .map(drop)
    }

    /// The lease an earlier acquire with this Idempotency-Key got, if any.
    pub async fn idempotent_lease(&self, key: &str) -> Result<Option<String>, ClusterError> {
        let key = self.keys.idempotency(key);
        let response = self
            .retry("reading an idempotency key", |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Every route in `host`'s index.
    pub async fn host_routes(&self, host: &str) -> Result<Vec<LeaseRoute>, ClusterError> {
        let prefix = self.keys.host_leases_prefix(host);
        let response = self
            .retry("listing a host's routes", |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(response.kvs().iter().filter_map(|kv| LeaseRoute::from_json(kv.value())).collect())
    }

    /// Every host that ever registered (and was not cleaned up since).
    pub async fn known_hosts(&self) -> Result<Vec<String>, ClusterError> {
        let prefix = self.keys.known_hosts_prefix();
        let response = self
            .retry("listing the known hosts", |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix.clone(), Some(GetOptions::new().with_prefix().with_keys_only())).await }
            })
            .await?;
        let known = response
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(prefix.as_str()).map(str::to_owned))
            .collect();
        Ok(known)
    }

    /// Forgets a host that is gone and has no routes left.
    pub async fn forget_host(&self, host: &str) -> Result<(), ClusterError> {
        let key = self.keys.known_host(host);
        self.retry("removing a known host", |mut c| {
            let key = key.clone();
            async move { c.delete(key, None::<DeleteOptions>).await }
        })
        .await
        .map(drop)
    }

    /// Writes `record` under the etcd lease `lease` (and the host's known-host marker).
    pub async fn put_record(&self, record: &HostRecord, lease: i64) -> Result<(), ClusterError> {
        let ops = vec![
            TxnOp::put(
                self.keys.host(&record.host),
                record.to_json(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(self.keys.known_host(&record.host), Vec::new(), None),
        ];
        self.retry("writing the host record", |mut c| {
            let txn = Txn::new().and_then(ops.clone());
            async move { c.txn(txn).await }
        })
        .await
        .map(drop)
    }
}

/// A host record read from `key`, if it is one this version can read (logged otherwise).
pub fn read_record(key: &[u8], value: &[u8]) -> Option<HostRecord> {
    let record = HostRecord::from_json(value);
    if record.is_none() {
        tracing::warn!(key = %String::from_utf8_lossy(key), "skipping a host record this version cannot read");
    }
    record
}
