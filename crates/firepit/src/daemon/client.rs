//! A small HTTP client for the daemon's API, over its Unix socket or TCP: used by the CLI
//! (`firepit status`, `lease`, `run`) and the tests.
//!
//! Built on hyper's connection-level client (`hyper::client::conn::http1`) with one connection per
//! request: reqwest cannot dial a Unix socket, and the CLI makes a handful of requests, so a
//! connection pool would buy nothing.

use std::path::PathBuf;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::ErrorBody;
use super::api::types::{AcquireRequest, ExecBody, ExecResponse, LeaseResponse, PoolsResponse, RenewRequest};

/// Where the daemon listens.
#[derive(Clone)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `host:port` over TCP, with the bearer token.
    Tcp {
        /// `host:port`.
        authority: String,
        /// Bearer token (never printed: `Debug` redacts it).
        token: Option<String>,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp { authority, .. } => write!(f, "http://{authority}"),
        }
    }
}

impl Endpoint {
    /// An endpoint from an `http://host:port` URL (https is not supported).
    pub fn from_url(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
        Ok(Self::Tcp { authority: authority.to_owned(), token })
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port`.
    #[error("bad daemon URL `{0}`: use http://host:port")]
    BadUrl(String),
    /// The daemon could not be reached.
    #[error("cannot connect to the daemon at {endpoint:?}: {source} (is `firepit serve` running?)")]
    Connect {
        /// Where we tried.
        endpoint: Endpoint,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error talking to the daemon: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The daemon answered with an error.
    #[error("the daemon answered {status}: {message} ({error})")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// Machine-readable code.
        error: String,
        /// Human-readable message.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer from the daemon ({status}): {message}")]
    Decode {
        /// HTTP status.
        status: StatusCode,
        /// What could not be decoded.
        message: String,
    },
}

/// A raw response: status, headers, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl RawResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Decodes a 2xx JSON body, or turns an error body into [`ClientError::Api`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        if !self.status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&self.body) {
                Ok(e) => ClientError::Api { status: self.status, error: e.error, message: e.message },
                Err(_) => ClientError::Decode { status: self.status, message: self.text() },
            });
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Decode { status: self.status, message: e.to_string() })
    }
}

/// A client for one daemon.
///
/// # Example
/// ```no_run
/// use firepit::daemon::client::{Client, Endpoint};
/// # async fn demo() -> Result<(), firepit::daemon::client::ClientError> {
/// let client = Client::new(Endpoint::Unix(firepit::daemon::config::default_socket_path()));
/// for shape in client.pools().await?.shapes {
///     println!("{}: {} ready", shape.name, shape.ready);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
}

impl Client {
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }

    /// Sends one request with an optional body (bytes sent as JSON) and extra headers.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let connect_error = |source| ClientError::Connect { endpoint: self.endpoint.clone(), source };
        let (mut sender, host) = match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(connect_error)?;
                (handshake(stream).await?, "localhost".to_owned())
            }
            Endpoint::Tcp { authority, .. } => {
                let stream =
                    tokio::net::TcpStream::connect(authority.as_str()).await.map_err(connect_error)?;
                (handshake(stream).await?, authority.clone())
            }
        };
        let mut builder = Request::builder().method(method).uri(path).header(HOST, host);
        if let Endpoint::Tcp { token: Some(token), .. } = &self.endpoint {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(RawResponse { status, headers, body })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Decode { status: StatusCode::OK, message: e.to_string() })?;
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

    /// `DELETE /v1/leases/{id}`.
    pub async fn release(&self, lease_id: &str) -> Result<(), ClientError> {
        let response = self.request(Method::DELETE, &format!("/v1/leases/{lease_id}"), None, &[]).await?;
        if response.status.is_success() { Ok(()) } else { response.json::<()>() }
    }

    /// `GET /v1/pools`.
    pub async fn pools(&self) -> Result<PoolsResponse, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/pools", None, &[]).await
    }
}

async fn handshake<S>(stream: S) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
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
