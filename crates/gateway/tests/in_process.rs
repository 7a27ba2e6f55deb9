//! A small cluster in one process: a real etcd (one member on 127.0.0.1), daemons on the fake
//! backend (each with its TCP listener and `[cluster]` registration), gateways in tasks. What the
//! CI version of issue 22's scenario checks without VMs; `crates/cli/tests/vm_cluster.rs` runs it
//! with real `firepit serve` processes, real VMs and `kill -9`.

use std::net::SocketAddr;
use std::time::Duration;

use firepit_api::AcquireRequest;
use firepit_client::{Client, Endpoint};
use firepit_cluster::{AdvertiseConfig, Keys, LocalEtcd};
use firepit_daemon::auth::BearerToken;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::{TOKEN, TestDaemon};
use firepit_gateway::{Gateway, GatewayConfig};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A daemon registered under `name`.
pub struct Host {
    pub name: String,
    pub daemon: TestDaemon,
}

/// Starts a fake-backend daemon with shape `small` of `depth` VMs, registered in `etcd`.
pub async fn start_host(etcd: &LocalEtcd, prefix: &str, name: &str, depth: usize) -> Host {
    start_host_with(etcd, prefix, name, FakeBackend::with_shape("small", depth)).await
}

/// Starts a daemon on `backend`, registered in `etcd`.
pub async fn start_host_with(etcd: &LocalEtcd, prefix: &str, name: &str, backend: FakeBackend) -> Host {
    let addr = free_addr();
    let cluster = AdvertiseConfig {
        keys: Keys::new(prefix),
        ttl: Duration::from_secs(3),
        min_update_interval: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
        ..AdvertiseConfig::new(etcd.endpoints(), name, &format!("http://{addr}"))
    };
    let daemon = TestDaemon::start_with(backend, |o| {
        o.tcp = Some((addr, BearerToken::new(TOKEN, "test").unwrap()));
        o.cluster = Some(cluster);
    })
    .await;
    Host { name: name.to_owned(), daemon }
}

/// A gateway serving in a task; dropped, it stops.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// The E2B endpoint's address, when it has one.
    pub e2b: Option<SocketAddr>,
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    pub async fn start(etcd: &LocalEtcd, prefix: &str) -> Self {
        Self::start_with(etcd, prefix, false).await
    }

    /// A gateway with the dashboard under `/ui` when `ui`.
    pub async fn start_with(etcd: &LocalEtcd, prefix: &str, ui: bool) -> Self {
        Self::start_configured(etcd, prefix, |config| config.ui = ui).await
    }

    /// A gateway with its config changed by `change`.
    pub async fn start_configured(
        etcd: &LocalEtcd,
        prefix: &str,
        change: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let token = BearerToken::new(TOKEN, "test").unwrap();
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            etcd: etcd.endpoints(),
            prefix: prefix.to_owned(),
            token: token.clone(),
            daemon_token: token,
            http: firepit_http::HttpLimits::default(),
            ui: false,
            e2b: None,
        };
        change(&mut config);
        let gateway = Gateway::bind(config).await.unwrap();
        let addr = gateway.local_addr();
        let e2b = gateway.e2b_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(gateway.run(async move {
            let _ = stopped.await;
        }));
        Self { addr, e2b, _stop: stop, task }
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::Tcp { authority: self.addr.to_string(), token: Some(TOKEN.into()) })
    }

    /// Kills the gateway (its task and every connection it served).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A cluster of two: hosts `a` and `b` (shape `small` of `depth`) and a gateway that sees both.
/// (Fields drop in this order: the gateway first, etcd last. Bind every field when destructuring:
/// one left to `..` is dropped at once.)
pub struct TwoHosts {
    pub gateway: TestGateway,
    pub b: Host,
    pub a: Host,
    pub etcd: LocalEtcd,
}

/// [`TwoHosts`] under `prefix`, the gateway's config changed by `change`.
pub async fn two_hosts(prefix: &str, depth: usize, change: impl FnOnce(&mut GatewayConfig)) -> TwoHosts {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let a = start_host(&etcd, prefix, "a", depth).await;
    let b = start_host(&etcd, prefix, "b", depth).await;
    let gateway = TestGateway::start_configured(&etcd, prefix, change).await;
    hosts_seen(&gateway, 2).await;
    TwoHosts { gateway, b, a, etcd }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// An acquire of shape `small` (from JSON, so that fields the API adds keep their defaults).
pub fn small(wait_ms: u64) -> AcquireRequest {
    serde_json::from_value(serde_json::json!({"shape": "small", "wait_ms": wait_ms})).unwrap()
}

/// Polls `check` until it holds; panics with `what` after `within`. Returns the time it took.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Waits until the gateway sees `n` hosts.
pub async fn hosts_seen(gateway: &TestGateway, n: usize) {
    let client = gateway.client();
    eventually(Duration::from_secs(10), &format!("{n} hosts seen by the gateway"), || {
        let client = client.clone();
        async move { hosts_of(&client).await.len() == n }
    })
    .await;
}

/// The host a gateway names for a lease (empty when it names none).
pub async fn host_of(client: &Client, lease_id: &str) -> String {
    let path = format!("/v1/leases/{lease_id}");
    let response = client.request(firepit_client::Method::GET, &path, None, &[]).await.unwrap();
    let view: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    if response.status == 200 {
        assert_eq!(view["id"], lease_id, "{view}");
    }
    view["host"].as_str().unwrap_or_default().to_owned()
}

/// The hosts a gateway lists under `GET /v1/pools`.
pub async fn hosts_of(client: &Client) -> Vec<firepit_api::HostStatusView> {
    let Ok(response) = client.request(firepit_client::Method::GET, "/v1/pools", None, &[]).await else {
        return Vec::new();
    };
    serde_json::from_slice::<firepit_api::ClusterHosts>(&response.body).map(|h| h.hosts).unwrap_or_default()
}

/// One HTTP/1.1 exchange on a new connection: status, head and body (as sent: a chunked body
/// keeps its chunk lines).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.as_ref();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

#[path = "in_process/dashboard.rs"]
mod dashboard;
#[path = "in_process/e2b.rs"]
mod e2b;
#[path = "in_process/events.rs"]
mod events;
#[path = "in_process/faults.rs"]
mod faults;
#[path = "in_process/routing.rs"]
mod routing;
#[path = "in_process/snapshots.rs"]
mod snapshots;
