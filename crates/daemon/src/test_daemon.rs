//! A real daemon (router, leases, listeners) over the [`FakeBackend`], on a temporary Unix socket
//! and optionally TCP: what the daemon's and the CLI's tests talk to when they need no VM.
//! Behind the `testing` feature. It panics on set-up failures: it is test support.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::BearerToken;
use crate::fake::FakeBackend;
use crate::server::{Daemon, ServeOptions, StopReport};
use crate::shutdown::{self, ShutdownController};
use firepit_client::Method;
use firepit_client::{Client, Endpoint, RawResponse};
use tokio::task::JoinHandle;

/// The bearer token of [`TestDaemon::start_tcp`].
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A daemon serving a [`FakeBackend`] in this process.
pub struct TestDaemon {
    /// The backend it serves (a clone: counts and knobs are shared).
    pub backend: FakeBackend,
    /// Its Unix socket.
    pub socket: PathBuf,
    /// Its TCP address, when started with TCP.
    pub tcp: Option<SocketAddr>,
    /// Stops it.
    pub controller: ShutdownController,
    /// The serving task; resolves when it stopped.
    pub handle: JoinHandle<StopReport>,
    /// The temporary directory holding the socket (removed on drop).
    pub dir: tempfile::TempDir,
    /// Its event bus (emit on it to test or measure what readers get).
    pub events: crate::events::EventBus,
}

/// Serve options on a socket inside `dir`, with small limits for tests.
pub fn options(dir: &tempfile::TempDir) -> ServeOptions {
    ServeOptions {
        socket: dir.path().join("run").join("firepit.sock"),
        tcp: None,
        shutdown_budget: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        leases: crate::leases::LeaseSettings {
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(600),
            records_dir: Some(dir.path().join("state").join("leases")),
            snapshots_dir: Some(dir.path().join("state").join("snapshots")),
            ..crate::leases::LeaseSettings::default()
        },
        events: crate::events::EventSettings::default(),
        max_forwards_per_lease: 8,
        http: firepit_http::HttpLimits::default(),
        ui: true,
        cluster: None,
        usage: crate::config::UsageConfig::default(),
    }
}

impl TestDaemon {
    /// A daemon with shape `small` of 2 VMs.
    pub async fn start() -> Self {
        Self::start_with(FakeBackend::with_shape("small", 2), |_| {}).await
    }

    /// A daemon over `backend`, with `tweak` applied to the serve options.
    pub async fn start_with(backend: FakeBackend, tweak: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = tempfile::tempdir().expect("test daemon set-up");
        let mut options = options(&dir);
        tweak(&mut options);
        let socket = options.socket.clone();
        let daemon = Daemon::bind(Arc::new(backend.clone()), options).await.expect("test daemon set-up");
        let tcp = daemon.tcp_addr();
        let events = daemon.events();
        let (controller, signal) = shutdown::channel();
        let handle = tokio::spawn(daemon.run(signal));
        Self { backend, socket, tcp, controller, handle, dir, events }
    }

    /// With a TCP listener on 127.0.0.1 (any port) requiring [`TOKEN`].
    pub async fn start_tcp() -> Self {
        Self::start_with(FakeBackend::with_shape("small", 2), |o| {
            o.tcp = Some((
                "127.0.0.1:0".parse().expect("test daemon set-up"),
                BearerToken::new(TOKEN, "test").expect("test daemon set-up"),
            ));
        })
        .await
    }

    /// A client of the Unix socket.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    /// A client of the TCP listener with `token`.
    pub fn tcp_client(&self, token: Option<&str>) -> Client {
        let addr = self.tcp.expect("started with TCP");
        Client::new(Endpoint::Tcp { authority: addr.to_string(), token: token.map(str::to_owned) })
    }

    /// Sends a raw request (a non-empty `body` goes as JSON) and returns the raw answer.
    pub async fn raw(&self, method: Method, path: &str, body: &str) -> RawResponse {
        let body = if body.is_empty() { None } else { Some(body.as_bytes().to_vec()) };
        self.client().request(method, path, body, &[]).await.expect("test daemon set-up")
    }

    /// Asserts `/healthz` still answers 200.
    pub async fn assert_healthy(&self) {
        let response = self.raw(Method::GET, "/healthz", "").await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// Stops gracefully and returns what the stop did.
    pub async fn stop(self) -> StopReport {
        self.controller.graceful();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("daemon stops in time")
            .expect("test daemon set-up")
    }
}

/// The JSON `error` code of an error response.
pub fn error_code(response: &RawResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", response.text()));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
    body["error"].as_str().unwrap_or_default().to_owned()
}
