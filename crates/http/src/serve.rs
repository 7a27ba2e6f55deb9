//! The accept loop and one task per connection (see the crate docs for what they bound).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::body::{BoxError, IdleTimeout};
use crate::clients::{ClientKey, ClientPermit, Clients};
use crate::limits::HttpLimits;

/// A listener [`serve`] accepts connections from.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and whose it is.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, ClientKey)>> + Send;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, ClientKey)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Responses go out in pieces (head, then body frames): without TCP_NODELAY, Nagle's
        // algorithm would hold each small piece until the previous one was acknowledged.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        Ok((stream, ClientKey::Ip(peer.ip())))
    }
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, ClientKey)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, ClientKey::Local))
    }
}

/// Serves `router` on `listener` under `limits` until `stop` resolves; then stops accepting, lets
/// every connection finish its requests in flight (idle ones close at once) and returns once all
/// have closed. Upgraded connections (WebSockets) belong to their handlers and are not waited for.
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let clients = Clients::new(limits.max_connections_per_client);
    let builder = Arc::new(builder(&limits));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (io, client) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = clients.admit(client) else {
            tracing::warn!(?client, max = limits.max_connections_per_client, "too many connections: refused");
            connections.spawn(refuse(io, limits.max_connections_per_client));
            continue;
        };
        let io = Counted { inner: io, _permit: permit };
        let connection = serve_connection(io, router.clone(), builder.clone(), limits, stopping.clone());
        connections.spawn(connection);
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// hyper's connection builder for `limits`: HTTP/1.1 (with upgrades) and HTTP/2 by prior knowledge.
fn builder(limits: &HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    if let Some(max) = limits.max_head_bytes {
        http1.max_buf_size(max);
    }
    builder.http2().timer(TokioTimer::new());
    builder
}

/// One connection: its requests go through the router with bodies timed; it is closed once it
/// has had no request in flight for the head timeout, or gracefully when the server stops.
async fn serve_connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: HttpLimits,
    stopping: CancellationToken,
) {
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let guard = activity.begin();
            let request = request.map(|body| Body::new(IdleTimeout::new(body, limits.body_idle_timeout)));
            async move {
                let response = match router.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(InFlight { body, _guard: guard })))
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        // Listen for changes before reading the state, so that none is missed in between.
        let changed = activity.0.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let idle_deadline = activity.idle_deadline(limits.header_read_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = &mut changed => {}
            () = tokio::time::sleep_until(idle_deadline.unwrap_or_else(far_future)), if !closing && idle_deadline.is_some() => {
                if activity.idle_deadline(limits.header_read_timeout).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing an idle connection");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// Answers a connection over the per-client bound with `429 too_many_connections` and closes it.
async fn refuse<I: AsyncRead + AsyncWrite + Unpin>(mut io: I, max: usize) {
    let code = firepit_api::ErrorCode::TooManyConnections;
    let body = serde_json::json!({
        "error": code.as_str(),
        "message": format!("this client has {max} connections open, the most allowed: close some or reuse them"),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await?;
        // Read what the client sent meanwhile, so that closing does not reset the connection
        // before it has read the answer.
        let mut sink = [0u8; 4096];
        while io.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _client_may_be_gone = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

/// A connection's stream, holding its client's permit as long as it is open (through an upgrade).
struct Counted<I> {
    inner: I,
    _permit: ClientPermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests in flight on one connection (from the handler's call to the end of its response
/// body) and since when none is.
#[derive(Clone)]
struct Activity(Arc<ActivityState>);

struct ActivityState {
    in_flight: AtomicUsize,
    idle_since: std::sync::Mutex<Instant>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(ActivityState {
            in_flight: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(Instant::now()),
            changed: Notify::new(),
        }))
    }

    fn begin(&self) -> ActivityGuard {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
        ActivityGuard(self.clone())
    }

    /// When the connection will have been idle for `timeout`; `None` while a request is in flight.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.0.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = *self.0.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(since + timeout)
    }
}

/// One request in flight; its end (the response body dropped) may make the connection idle.
struct ActivityGuard(Activity);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let state = &self.0.0;
        if state.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *state.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        }
        state.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct InFlight {
    body: Body,
    _guard: ActivityGuard,
}

impl http_body::Body for InFlight {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
