//! A real daemon over the fake backend, on a temp Unix socket (and optionally TCP), for tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use firepit::daemon::auth::BearerToken;
use firepit::daemon::client::{Client, Endpoint, RawResponse};
use firepit::daemon::fake::FakeBackend;
use firepit::daemon::server::{Daemon, ServeOptions, StopReport};
use firepit::daemon::shutdown::{self, ShutdownController};
use hyper::Method;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct TestDaemon {
    pub backend: FakeBackend,
    pub socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    pub controller: ShutdownController,
    pub handle: JoinHandle<StopReport>,
    pub dir: tempfile::TempDir,
}

pub fn options(dir: &tempfile::TempDir) -> ServeOptions {
    ServeOptions {
        socket: dir.path().join("run").join("firepit.sock"),
        tcp: None,
        shutdown_budget: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        default_ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(600),
    }
}

impl TestDaemon {
    /// A daemon with shape `small` of 2 VMs.
    pub async fn start() -> Self {
        Self::start_with(FakeBackend::with_shape("small", 2), |_| {}).await
    }

    pub async fn start_with(backend: FakeBackend, tweak: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(&dir);
        tweak(&mut options);
        let socket = options.socket.clone();
        let daemon = Daemon::bind(Arc::new(backend.clone()), options).await.unwrap();
        let tcp = daemon.tcp_addr();
        let (controller, signal) = shutdown::channel();
        let handle = tokio::spawn(daemon.run(signal));
        Self { backend, socket, tcp, controller, handle, dir }
    }

    /// With a TCP listener on 127.0.0.1 (any port) requiring [`TOKEN`].
    pub async fn start_tcp() -> Self {
        Self::start_with(FakeBackend::with_shape("small", 2), |o| {
            o.tcp = Some(("127.0.0.1:0".parse().unwrap(), BearerToken::new(TOKEN, "test").unwrap()));
        })
        .await
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    pub fn tcp_client(&self, token: Option<&str>) -> Client {
        let addr = self.tcp.expect("started with TCP");
        Client::new(Endpoint::Tcp { authority: addr.to_string(), token: token.map(str::to_owned) })
    }

    pub async fn raw(&self, method: Method, path: &str, body: &str) -> RawResponse {
        let body = if body.is_empty() { None } else { Some(body.as_bytes().to_vec()) };
        self.client().request(method, path, body, &[]).await.unwrap()
    }

    /// Asserts `/healthz` still answers 200.
    pub async fn assert_healthy(&self) {
        let response = self.raw(Method::GET, "/healthz", "").await;
        assert_eq!(response.status, 200, "{}", response.text());
    }

    pub async fn stop(self) -> StopReport {
        self.controller.graceful();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("daemon stops in time")
            .unwrap()
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
