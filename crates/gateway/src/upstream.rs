//! The gateway's HTTP client to the daemons: one pooled, kept-alive HTTP/1 client (hyper-util's)
//! for every host, that forwards a client's request as it is — bodies streamed both ways, so file
//! transfers, NDJSON exec streams and followed output pass chunk by chunk, and `Upgrade`
//! (the PTY WebSocket) spliced into a byte pipe — with the daemons' bearer token in place of the
//! client's.

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::debug;

/// How long connecting to a daemon may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The host's advertised URL is not `http://host:port`.
    #[error("bad host URL `{0}`")]
    BadUrl(String),
    /// Connecting or sending failed.
    #[error("{0}")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer's body could not be read.
    #[error("reading the answer failed: {0}")]
    Body(#[source] hyper::Error),
}

impl UpstreamError {
    /// True when the daemon could not be connected to (it is down, or the address is wrong): then
    /// nothing reached it and another host may be tried.
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Request(error) => error.is_connect(),
            Self::BadUrl(_) => true,
            Self::Timeout(_) | Self::Body(_) => false,
        }
    }
}

/// A whole answer of a daemon.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The `error` code of an error body, if it has one.
    pub fn error_code(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("error")?.as_str().map(str::to_owned)
    }

    /// The answer as a response to the client (status, content headers, body).
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        copy_end_to_end(&self.headers, response.headers_mut(), false);
        response
    }
}

/// The client to the daemons (cheap to clone).
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    authorization: HeaderValue,
    /// The daemons' token, for [`Upstream::daemon_client`].
    daemon_token: String,
}

impl Upstream {
    /// A client presenting `daemon_token` to every daemon.
    pub fn new(daemon_token: &firepit_token::BearerToken) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", daemon_token.secret()))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        authorization.set_sensitive(true);
        Self { client, authorization, daemon_token: daemon_token.secret().to_owned() }
    }

    /// firepit's typed client of the daemon at `base_url`, with the daemons' token: for what the
    /// gateway reads with the client's own readers (the event feed) rather than forwards.
    pub fn daemon_client(&self, base_url: &str) -> Result<firepit_client::Client, UpstreamError> {
        firepit_client::Endpoint::from_url(base_url, Some(self.daemon_token.clone()))
            .map(firepit_client::Client::new)
            .map_err(|_| UpstreamError::BadUrl(base_url.to_owned()))
    }

    /// Forwards a client's `request` to the daemon at `base_url` (`http://host:port`), path and
    /// query unchanged, and returns its answer as it streams. A `101 Switching Protocols` answer
    /// is spliced: both upgraded connections are copied into each other until one side closes.
    pub async fn forward(
        &self,
        base_url: &str,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let upgrade = is_upgrade(request.headers());
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut request));
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let (parts, body) = request.into_parts();
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = parts.method;
        *outgoing.uri_mut() = target(base_url, &path)?;
        copy_end_to_end(&parts.headers, outgoing.headers_mut(), upgrade);
        outgoing.headers_mut().insert(header::AUTHORIZATION, self.authorization.clone());
        let mut answer = self.client.request(outgoing).await.map_err(UpstreamError::Request)?;
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_side)) = (answer.status(), client_side) {
            let daemon_side = hyper::upgrade::on(&mut answer);
            tokio::spawn(async move {
                match (client_side.await, daemon_side.await) {
                    (Ok(client), Ok(daemon)) => {
                        let (mut client, mut daemon) = (TokioIo::new(client), TokioIo::new(daemon));
                        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut daemon).await {
                            debug!(%error, "upgraded connection ended with an error");
                        }
                    }
                    (Err(error), _) | (_, Err(error)) => debug!(%error, "upgrade failed"),
                }
            });
            let (parts, _) = answer.into_parts();
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (parts, body) = answer.into_parts();
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = parts.status;
        copy_end_to_end(&parts.headers, response.headers_mut(), false);
        Ok(response)
    }

    /// True when a fresh connection to the daemon at `base_url` is refused (or not made within
    /// [`CONNECT_TIMEOUT`]): it is down. Asked after a request failed half-way (a kept-alive
    /// connection reset, an answer cut off), to tell a daemon that died from one that is alive.
    pub async fn refuses(&self, base_url: &str) -> bool {
        let Ok(uri) = target(base_url, "/") else { return true };
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else { return true };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await,
            Ok(Ok(_))
        )
    }

    /// A request of the gateway's own to the daemon at `base_url`, its answer read whole;
    /// `timeout` bounds both.
    pub async fn call(
        &self,
        base_url: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Option<Duration>,
    ) -> Result<Answer, UpstreamError> {
        let json = body.is_some();
        let mut request = Request::new(body.map_or_else(Body::empty, Body::from));
        *request.method_mut() = method;
        *request.uri_mut() = target(base_url, path)?;
        let request_headers = request.headers_mut();
        request_headers.insert(header::AUTHORIZATION, self.authorization.clone());
        if json {
            request_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in headers {
            request_headers.insert(name.clone(), value.clone());
        }
        let exchange = async {
            let answer = self.client.request(request).await.map_err(UpstreamError::Request)?;
            let (parts, body) = answer.into_parts();
            let body = body.collect().await.map_err(UpstreamError::Body)?.to_bytes();
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        };
        match timeout {
            Some(limit) => {
                tokio::time::timeout(limit, exchange).await.map_err(|_| UpstreamError::Timeout(limit))?
            }
            None => exchange.await,
        }
    }
}

fn target(base_url: &str, path: &str) -> Result<Uri, UpstreamError> {
    format!("{}{path}", base_url.trim_end_matches('/'))
        .parse()
        .map_err(|_| UpstreamError::BadUrl(base_url.to_owned()))
}

/// Whether the request asks to switch protocols (a WebSocket).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones the
/// gateway sets itself.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// Copies the end-to-end headers (and, for an upgrade, `Connection` and `Upgrade` too); never the
/// client's `Authorization`.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, upgrade: bool) {
    for (name, value) in from {
        let keep_for_upgrade = upgrade && (name == header::CONNECTION || name == header::UPGRADE);
        if (HOP_BY_HOP.contains(name) && !keep_for_upgrade) || name == header::AUTHORIZATION {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_clients_token_stay_behind() {
        let mut from = HeaderMap::new();
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer client"));
        from.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        from.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        from.insert(header::HOST, HeaderValue::from_static("gw:7070"));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to, false);
        assert_eq!(to.len(), 1);
        assert!(to.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn an_upgrade_keeps_connection_and_upgrade() {
        let mut from = HeaderMap::new();
        from.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        from.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&from));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to, true);
        assert_eq!(to.len(), 2);
    }

    #[tokio::test]
    async fn a_closed_port_refuses_and_a_listening_one_does_not() {
        let upstream = Upstream::new(
            &firepit_token::BearerToken::new("a-test-token-of-enough-length-0123", "test").unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        assert!(!upstream.refuses(&url).await);
        drop(listener);
        assert!(upstream.refuses(&url).await);
        assert!(upstream.refuses("not a url").await);
    }

    #[test]
    fn urls_join_with_paths() {
        assert_eq!(target("http://h:1/", "/v1/pools?x=1").unwrap().to_string(), "http://h:1/v1/pools?x=1");
        assert!(target("not a url", "/x").is_err());
    }
}
