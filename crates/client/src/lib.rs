//! The typed Rust client of the firepit daemon's HTTP API, over its Unix socket or TCP (with the
//! bearer token).
//!
//! What it is: one method per endpoint, taking and returning the `firepit-api` types, with every
//! non-2xx answer turned into [`ClientError::Api`] carrying the daemon's stable error code. The
//! CLI, the benchmarks, the soak and the daemon's tests all talk to the daemon through it; nothing
//! else in the workspace speaks raw HTTP to the daemon ([`Client::request`] exists for tests of
//! malformed requests).
//!
//! What it is not: a connection-level HTTP library. It is built on hyper's connection API
//! (`hyper::client::conn::http1`) because reqwest cannot dial a Unix socket. Connections are kept
//! alive and reused: an idle connection goes back to a small free list once its response has been
//! read, and the next request takes it instead of paying a new connect and handshake (a daemon
//! closes idle connections after a while; a closed one is dropped and a new one opened).
//!
//! ```no_run
//! use firepit_client::{Client, Endpoint};
//! # async fn demo() -> Result<(), firepit_client::ClientError> {
//! let client = Client::new(Endpoint::Unix(firepit_api::default_socket_path()));
//! let lease = client.acquire(&firepit_api::AcquireRequest { shape: "default".into(), wait_ms: 5000, ttl_ms: None, snapshot: None }, None).await?;
//! let out = client.exec(&lease.lease_id, &firepit_api::ExecBody::new(["uname", "-r"])).await?;
//! println!("{}", out.stdout);
//! client.release(&lease.lease_id).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod body;
mod endpoint;
mod error;
mod events;
mod exec_ws;
mod feed;
mod files;
mod leases;
mod local_dirs;
mod ports;
mod processes;
mod pty;
mod raw;
mod snapshots;
mod usage;

use std::sync::{Arc, Mutex};

use firepit_api::{
    AcquireRequest, ExecBody, ExecResponse, HealthResponse, LeaseResponse, PoolsResponse, RenewRequest,
    ShapeSpec,
};
use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use body::{ClientBody, Download};
pub use endpoint::{BadUrl, Endpoint};
pub use error::ClientError;
pub use events::{EventStream, decode_chunk};
pub use exec_ws::{ExecEvent, ExecReceiver, ExecSender, ExecSession, ExecWsOptions};
pub use feed::EventFeed;
pub use hyper::header::HeaderMap;
pub use hyper::{Method, StatusCode};
pub use pty::{PtyEvent, PtyOptions, PtyReceiver, PtySender, PtySession};
pub use raw::RawResponse;

/// Idle connections kept for reuse (more concurrent requests open more; the extra ones close).
const MAX_IDLE_CONNECTIONS: usize = 16;

/// A client for one daemon.
///
/// # Example
/// ```no_run
/// use firepit_client::{Client, Endpoint};
/// # async fn demo() -> Result<(), firepit_client::ClientError> {
/// let client = Client::new(Endpoint::Unix(firepit_api::default_socket_path()));
/// for shape in client.pools().await?.shapes {
///     println!("{}: {} ready", shape.name, shape.ready);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    idle: Arc<Mutex<Vec<SendRequest<ClientBody>>>>,
}

impl Client {
    /// A client for `endpoint` (connects on the first request).
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint, idle: Arc::default() }
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request with an optional body (bytes sent as JSON) and extra headers, and reads the
    /// whole response. For endpoints without a typed method and for tests of malformed requests.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host());
        if let Endpoint::Tcp { token: Some(token), .. } = &self.endpoint {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body::full(body.unwrap_or_default()))?;
        let mut sender = self.connection().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        self.give_back(sender);
        Ok(RawResponse { status: parts.status, headers: parts.headers, body })
    }

    /// Sends one request with a streamed body and returns the response as soon as its head
    /// arrived (the body unread); a non-2xx answer is read and turned into [`ClientError::Api`].
    /// `path` includes the query string.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: ClientBody,
        content_type: Option<&str>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host());
        if let Endpoint::Tcp { token: Some(token), .. } = &self.endpoint {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(kind) = content_type {
            builder = builder.header(CONTENT_TYPE, kind);
        }
        let request = builder.body(body)?;
        // The connection goes with the streamed response (it is not reused).
        let mut sender = self.connection().await?;
        let response = sender.send_request(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Err(RawResponse { status: parts.status, headers: parts.headers, body }.json::<()>().err().unwrap_or(
            ClientError::Decode { status: parts.status, message: "an error status with a JSON body".into() },
        ))
    }

    /// Sends a JSON request and expects an empty 2xx answer.
    pub(crate) async fn call_empty<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let body = body.map(to_json).transpose()?;
        let response = self.request(method, path, body, &[]).await?;
        if response.status.is_success() { Ok(()) } else { response.json::<()>() }
    }

    /// The host and credentials of WebSocket requests.
    pub(crate) fn websocket_parts(&self) -> (&str, Option<&str>) {
        match &self.endpoint {
            Endpoint::Unix(_) => ("localhost", None),
            Endpoint::Tcp { authority, token } => (authority, token.as_deref()),
        }
    }

    fn host(&self) -> &str {
        match &self.endpoint {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp { authority, .. } => authority,
        }
    }

    /// A new connection to the daemon's socket, for protocols hyper does not speak (WebSocket).
    pub(crate) async fn connect_raw(&self) -> Result<pty::Io, ClientError> {
        let connect_error = |source| ClientError::Connect { endpoint: self.endpoint.clone(), source };
        Ok(match &self.endpoint {
            Endpoint::Unix(path) => {
                Box::new(tokio::net::UnixStream::connect(path).await.map_err(connect_error)?)
            }
            Endpoint::Tcp { authority, .. } => {
                let stream =
                    tokio::net::TcpStream::connect(authority.as_str()).await.map_err(connect_error)?;
                stream.set_nodelay(true).map_err(connect_error)?;
                Box::new(stream)
            }
        })
    }

    /// An idle kept-alive connection that is still open, else a new one.
    async fn connection(&self) -> Result<SendRequest<ClientBody>, ClientError> {
        loop {
            let idle = lock(&self.idle).pop();
            let Some(mut sender) = idle else { break };
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let connect_error = |source| ClientError::Connect { endpoint: self.endpoint.clone(), source };
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(connect_error)?;
                handshake(stream).await
            }
            Endpoint::Tcp { authority, .. } => {
                let stream =
                    tokio::net::TcpStream::connect(authority.as_str()).await.map_err(connect_error)?;
                stream.set_nodelay(true).map_err(connect_error)?;
                handshake(stream).await
            }
        }
    }

    /// Keeps a connection whose exchange is complete for the next request.
    fn give_back(&self, sender: SendRequest<ClientBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(sender);
        }
    }

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let body = body.map(to_json).transpose()?;
        self.request(method, path, body, headers).await?.json()
    }

    /// `POST /v1/leases`.
    pub async fn acquire(
        &self,
        request: &AcquireRequest,
        idempotency_key: Option<&str>,
    ) -> Result<LeaseResponse, ClientError> {
        let headers: Vec<(&str, &str)> =
            idempotency_key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.call(Method::POST, "/v1/leases", Some(request), &headers).await
    }

    /// `POST /v1/leases/{id}/exec`.
    pub async fn exec(&self, lease_id: &str, body: &ExecBody) -> Result<ExecResponse, ClientError> {
        self.call(Method::POST, &format!("/v1/leases/{lease_id}/exec"), Some(body), &[]).await
    }

    /// `POST /v1/leases/{id}/renew`.
    pub async fn renew(&self, lease_id: &str, ttl_ms: Option<u64>) -> Result<LeaseResponse, ClientError> {
        self.call(Method::POST, &format!("/v1/leases/{lease_id}/renew"), Some(&RenewRequest { ttl_ms }), &[])
            .await
    }

    /// `DELETE /v1/leases/{id}`: ends the lease (`released`); its VM is destroyed before this
    /// answers.
    pub async fn release(&self, lease_id: &str) -> Result<(), ClientError> {
        self.end_lease(lease_id, &firepit_api::ReleaseQuery::default()).await
    }

    /// `DELETE /v1/leases/{id}?reason=&detail=`: ends the lease for `query.reason` (`killed`: an
    /// operator's kill, with `detail` shown as its `end_detail`).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::{ReleaseQuery, ReleaseReason};
    /// let kill = ReleaseQuery { reason: ReleaseReason::Killed, detail: Some("runaway job".into()) };
    /// client.end_lease("l-0123", &kill).await?;
    /// # Ok(()) }
    /// ```
    pub async fn end_lease(
        &self,
        lease_id: &str,
        query: &firepit_api::ReleaseQuery,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/leases/{}", files::segment(lease_id));
        let query = serde_urlencoded::to_string(query)
            .map_err(|e| ClientError::Decode { status: StatusCode::OK, message: e.to_string() })?;
        let path =
            if query == "reason=released" || query.is_empty() { path } else { format!("{path}?{query}") };
        let response = self.request(Method::DELETE, &path, None, &[]).await?;
        if response.status.is_success() { Ok(()) } else { response.json::<()>() }
    }

    /// `GET /v1/pools`.
    pub async fn pools(&self) -> Result<PoolsResponse, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/pools", None, &[]).await
    }

    /// `PUT /v1/shapes/{name}`: registers a shape at run time (it starts filling at once).
    pub async fn register_shape(&self, name: &str, body: &ShapeSpec) -> Result<(), ClientError> {
        let response =
            self.request(Method::PUT, &format!("/v1/shapes/{name}"), Some(to_json(body)?), &[]).await?;
        if response.status.is_success() { Ok(()) } else { response.json::<()>() }
    }

    /// `DELETE /v1/shapes/{name}`: unregisters a shape (leased VMs stay valid until released).
    pub async fn unregister_shape(&self, name: &str) -> Result<(), ClientError> {
        let response = self.request(Method::DELETE, &format!("/v1/shapes/{name}"), None, &[]).await?;
        if response.status.is_success() { Ok(()) } else { response.json::<()>() }
    }

    /// `GET /healthz`: `ok`, or an error while the daemon shuts down.
    pub async fn healthz(&self) -> Result<HealthResponse, ClientError> {
        self.call::<(), _>(Method::GET, "/healthz", None, &[]).await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.text("/metrics").await
    }

    /// `GET /v1/openapi.json`: the API's OpenAPI document.
    pub async fn openapi(&self) -> Result<String, ClientError> {
        self.text("/v1/openapi.json").await
    }

    async fn text(&self, path: &str) -> Result<String, ClientError> {
        let response = self.request(Method::GET, path, None, &[]).await?;
        if response.status.is_success() { Ok(response.text()) } else { response.json::<String>() }
    }
}

pub(crate) fn to_json<B: Serialize>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body)
        .map_err(|e| ClientError::Decode { status: StatusCode::OK, message: e.to_string() })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn handshake<S>(stream: S) -> Result<SendRequest<ClientBody>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "daemon connection closed with an error");
        }
    });
    Ok(sender)
}
