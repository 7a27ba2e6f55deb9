//! The connection to the agent: one channel at a time, opened by a [`Connector`] when a request
//! needs it and again after it broke.
//!
//! For a QEMU VM the channel is a Unix socket whose *server* is QEMU (`server=on,wait=off`): we
//! connect, which makes reconnecting trivial (connect again) and costs nothing on the guest side:
//! the agent sees end-of-file while no host is connected and keeps polling its port. Bytes we send
//! before the agent opens its port wait in the socket (QEMU reads nothing while the guest side is
//! closed), so an early request is not lost.
//!
//! Every connection starts with [`Request::Hello`] and a random nonce; the reader discards bytes
//! until the agent's matching answer, so frames an earlier connection left in the channel (or half
//! a frame cut by a disconnect) never reach a caller. The agent ends its previous session there:
//! streams of the earlier connection are cancelled; background processes live on.
//!
//! Requests are multiplexed on one connection by id (ids start at a random value, so a new client
//! never reuses the ids of an earlier one): a reader task routes each response to the caller
//! waiting for that id or to the queues of an open stream ([`agent_routes`](crate::agent_routes)),
//! so a long exec does not block a ping. One writer task sends every frame in order. A broken
//! connection (EOF, an oversized frame) fails its pending requests and streams and is replaced by a
//! fresh one on the next request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_agent::{FrameDecoder, FrameError, Request, RequestFrame, Response, ResponseFrame, encode_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::agent_routes::{Route, Routed, StreamEnds, StreamRoute};
use crate::channel::{ByteChannel, Connector};
use crate::error::GuestError;

type Routes = Arc<Mutex<Option<HashMap<u64, Route>>>>;

/// One connection to the agent: a writer task fed by a queue, a reader task routing responses.
#[derive(Debug)]
pub(crate) struct Connection {
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    routes: Routes,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Connection {
    fn is_broken(&self) -> bool {
        lock(&self.routes).is_none()
    }

    /// Queues one frame for the writer.
    pub(crate) fn send(&self, id: u64, request: Request) -> Result<(), GuestError> {
        let bytes = encode_frame(&RequestFrame { id, request })?;
        self.outgoing.send(bytes).map_err(|_| GuestError::Closed)
    }

    /// Forgets the route of `id` (a caller that stopped waiting).
    pub(crate) fn forget(&self, id: u64) {
        if let Some(map) = lock(&self.routes).as_mut() {
            map.remove(&id);
        }
    }

    /// Closes the connection: pending requests and streams fail with `Closed`.
    fn close(&self) {
        lock(&self.routes).take();
        self.reader.abort();
        self.writer.abort();
    }
}

/// A client of one agent.
#[derive(Debug)]
pub(crate) struct AgentClient {
    connector: Box<dyn Connector>,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    next_id: AtomicU64,
}

impl AgentClient {
    /// A client of the agent `connector` reaches (connects lazily).
    pub(crate) fn new(connector: impl Connector) -> Self {
        // A random start (below 2^62, so it never wraps) keeps a new client clear of an old one's ids.
        let first = rand::random::<u64>() >> 2;
        Self {
            connector: Box::new(connector),
            connection: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(first),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<Arc<Connection>, GuestError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref().filter(|conn| !conn.is_broken()) {
            return Ok(conn.clone());
        }
        let ByteChannel { read, write } = self.connector.connect().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => GuestError::Closed,
            _ => GuestError::Io(e),
        })?;
        let (hello_id, nonce) = (self.next_id(), rand::random::<u64>());
        let expected = encode_frame(&ResponseFrame { id: hello_id, response: Response::Hello(nonce) })?;
        let (outgoing, queue) = mpsc::unbounded_channel();
        outgoing
            .send(encode_frame(&RequestFrame { id: hello_id, request: Request::Hello(nonce) })?)
            .map_err(|_| GuestError::Closed)?;
        let routes: Routes = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_loop(read, routes.clone(), outgoing.clone(), expected));
        let writer = tokio::spawn(write_loop(write, queue, routes.clone()));
        let conn = Arc::new(Connection { outgoing, routes, reader, writer });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Closes the current connection (the next request opens a new one). Pending requests and open
    /// streams fail with [`GuestError::Closed`]; the agent cancels that session's streams.
    pub(crate) async fn disconnect(&self) {
        if let Some(conn) = self.connection.lock().await.take() {
            conn.close();
        }
    }

    /// Sends `request`, waits at most `timeout` for its response.
    pub(crate) async fn request(&self, request: Request, timeout: Duration) -> Result<Response, GuestError> {
        let kind = request.kind();
        let id = self.next_id();
        let attempt = async {
            let conn = self.connection().await?;
            let (tx, rx) = oneshot::channel();
            match lock(&conn.routes).as_mut() {
                Some(map) => map.insert(id, Route::Reply(tx)),
                None => return Err(GuestError::Closed),
            };
            conn.send(id, request)?;
            rx.await.map_err(|_| GuestError::Closed)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(conn) = self.connection.lock().await.as_ref() {
                    conn.forget(id);
                }
                Err(GuestError::Timeout { request: kind, after: timeout })
            }
        }
    }

    /// Opens a stream with `request`; returns its id, the connection and its receiving ends.
    pub(crate) async fn open_stream(
        &self,
        request: Request,
    ) -> Result<(u64, Arc<Connection>, StreamEnds), GuestError> {
        let id = self.next_id();
        let conn = self.connection().await?;
        let (route, ends) = StreamRoute::new();
        match lock(&conn.routes).as_mut() {
            Some(map) => map.insert(id, Route::Stream(route)),
            None => return Err(GuestError::Closed),
        };
        conn.send(id, request)?;
        Ok((id, conn, ends))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The route map stays consistent: every operation on it is a single insert/remove/take.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn write_loop(
    mut write: Box<dyn AsyncWrite + Send + Unpin>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    routes: Routes,
) {
    while let Some(bytes) = queue.recv().await {
        // Flushed at once: a channel that buffers must not hold a request back.
        let sent = async {
            write.write_all(&bytes).await?;
            write.flush().await
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "agent channel write failed");
            break;
        }
    }
    lock(&routes).take();
}

/// Skips bytes until `expected` (the agent's answer to our hello) has gone by; returns what follows
/// it, or `None` while it has not been seen. `seen` keeps only a pattern's length of bytes.
fn skip_to_hello(seen: &mut Vec<u8>, bytes: &[u8], expected: &[u8]) -> Option<Vec<u8>> {
    seen.extend_from_slice(bytes);
    if let Some(at) = seen.windows(expected.len()).position(|window| window == expected) {
        let rest = seen.split_off(at + expected.len());
        seen.clear();
        return Some(rest);
    }
    let keep = seen.len().min(expected.len().saturating_sub(1));
    seen.drain(..seen.len() - keep);
    None
}

async fn read_loop(
    mut read: Box<dyn AsyncRead + Send + Unpin>,
    routes: Routes,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    expected_hello: Vec<u8>,
) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut syncing = Some(Vec::new());
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "agent channel read failed");
                break;
            }
        };
        match syncing.as_mut() {
            Some(seen) => match skip_to_hello(seen, &buf[..n], &expected_hello) {
                Some(rest) => {
                    syncing = None;
                    decoder.push(&rest);
                }
                None => continue,
            },
            None => decoder.push(&buf[..n]),
        }
        let drained = drain_responses(&mut decoder);
        for frame in drained.frames {
            route(&routes, &outgoing, frame);
        }
        if drained.malformed > 0 {
            tracing::warn!(frames = drained.malformed, "malformed agent frames skipped");
        }
        if let Some(e) = drained.unusable {
            tracing::warn!(error = %e, "agent stream unusable; reconnecting");
            break;
        }
    }
    // Dropping the routes fails every pending request and stream with `Closed`; the next request
    // reconnects.
    lock(&routes).take();
}

/// Hands one frame to whoever waits for its id.
fn route(routes: &Routes, outgoing: &mpsc::UnboundedSender<Vec<u8>>, frame: ResponseFrame) {
    let send = |request: Request| {
        if let Ok(bytes) = encode_frame(&RequestFrame { id: frame.id, request }) {
            let _connection_closing = outgoing.send(bytes);
        }
    };
    let mut guard = lock(routes);
    let Some(map) = guard.as_mut() else { return };
    match map.get_mut(&frame.id) {
        None => tracing::debug!(id = frame.id, "agent response for no waiting request"),
        Some(Route::Reply(_)) => {
            if let Some(Route::Reply(waiter)) = map.remove(&frame.id) {
                let _caller_may_have_timed_out = waiter.send(frame.response);
            }
        }
        Some(Route::Stream(stream)) => match stream.deliver(frame.response) {
            Routed::Open => {}
            Routed::Ended => {
                map.remove(&frame.id);
            }
            Routed::CreditBack(channel, bytes) => {
                send(Request::Credit(firepit_agent::Credit { channel, bytes }))
            }
            Routed::Violation(message) => {
                tracing::warn!(id = frame.id, %message, "agent broke the stream protocol; stream cancelled");
                stream.fail(&message);
                map.remove(&frame.id);
                send(Request::Cancel);
            }
        },
    }
}

/// The complete frames popped from a decoder by [`drain_responses`].
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Well-formed responses, in stream order.
    pub frames: Vec<ResponseFrame>,
    /// Frames whose body did not decode (skipped; the stream stays in sync).
    pub malformed: usize,
    /// Set when a length prefix exceeded the limit: the stream cannot be trusted any more.
    pub unusable: Option<FrameError>,
}

/// Pops every complete response frame out of `decoder` (pure: the guest's bytes in, typed results
/// out). Stops at an oversized length prefix, which makes the connection unusable.
pub(crate) fn drain_responses(decoder: &mut FrameDecoder) -> Drained {
    let mut drained = Drained::default();
    loop {
        match decoder.next_frame::<ResponseFrame>() {
            Ok(Some(frame)) => drained.frames.push(frame),
            Ok(None) => return drained,
            Err(FrameError::Malformed(_)) => drained.malformed += 1,
            Err(e @ FrameError::TooLarge { .. }) => {
                decoder.clear();
                drained.unusable = Some(e);
                return drained;
            }
        }
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
