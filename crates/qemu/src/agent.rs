//! Host side of the guest agent channel (a virtio-serial port, see `firepit_agent`).
//!
//! QEMU is the socket *server* (`server=on,wait=off`), we connect. That makes reconnecting trivial
//! (connect again) and costs nothing on the guest side: the agent sees end-of-file while no host is
//! connected and keeps polling its port. Bytes we send before the agent opens its port wait in the
//! socket (QEMU reads nothing while the guest side is closed), so an early request is not lost.
//!
//! Requests are multiplexed on one connection by id: a reader task routes each response to the
//! caller waiting for that id, so a long exec does not block a ping. Every request has a deadline. A
//! broken connection (EOF, an oversized frame) fails its pending requests and is replaced by a fresh
//! one on the next request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_agent::{FrameDecoder, FrameError, Request, RequestFrame, Response, ResponseFrame, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use crate::error::AgentError;

type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Response>>>>>;

#[derive(Debug)]
struct Connection {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Waiters,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    fn is_broken(&self) -> bool {
        lock(&self.waiters).is_none()
    }
}

/// A client of one VM's agent.
#[derive(Debug)]
pub(crate) struct AgentClient {
    path: PathBuf,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    next_id: AtomicU64,
}

impl AgentClient {
    /// A client for the agent socket at `path` (connects lazily).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, connection: tokio::sync::Mutex::new(None), next_id: AtomicU64::new(1) }
    }

    async fn connection(&self) -> Result<Arc<Connection>, AgentError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref().filter(|conn| !conn.is_broken()) {
            return Ok(conn.clone());
        }
        let stream = UnixStream::connect(&self.path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => AgentError::Closed,
            _ => AgentError::Io(e),
        })?;
        let (read, write) = stream.into_split();
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_loop(read, waiters.clone()));
        let conn = Arc::new(Connection { writer: tokio::sync::Mutex::new(write), waiters, reader });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Sends `request`, waits at most `timeout` for its response.
    pub(crate) async fn request(&self, request: Request, timeout: Duration) -> Result<Response, AgentError> {
        let kind = request_kind(&request);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = encode_frame(&RequestFrame { id, request })?;
        let attempt = async {
            let conn = self.connection().await?;
            let (tx, rx) = oneshot::channel();
            match lock(&conn.waiters).as_mut() {
                Some(map) => map.insert(id, tx),
                None => return Err(AgentError::Closed),
            };
            let written = async {
                let mut writer = conn.writer.lock().await;
                writer.write_all(&bytes).await?;
                writer.flush().await
            }
            .await;
            if let Err(e) = written {
                lock(&conn.waiters).take();
                return Err(AgentError::Io(e));
            }
            let response = rx.await.map_err(|_| AgentError::Closed);
            Ok((conn, response))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok((_, response))) => response,
            Ok(Err(e)) => Err(e),
            Err(_) => {
                if let Some(conn) = self.connection.lock().await.as_ref()
                    && let Some(map) = lock(&conn.waiters).as_mut()
                {
                    map.remove(&id);
                }
                Err(AgentError::Timeout { request: kind, after: timeout })
            }
        }
    }
}

/// A short name of a request, for errors and logs.
pub(crate) fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Ping => "ping",
        Request::Exec(_) => "exec",
        Request::SetIdentity(_) => "set-identity",
        Request::ConfigureNetwork(_) => "configure-network",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The waiter map stays consistent: every operation on it is a single insert/remove/take.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn read_loop(mut read: OwnedReadHalf, waiters: Waiters) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    'outer: loop {
        match read.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) => {
                tracing::debug!(error = %e, "agent channel read failed");
                break;
            }
        }
        let drained = drain_responses(&mut decoder);
        for frame in drained.frames {
            let waiter = lock(&waiters).as_mut().and_then(|map| map.remove(&frame.id));
            match waiter {
                Some(waiter) => {
                    let _caller_may_have_timed_out = waiter.send(frame.response);
                }
                None => tracing::debug!(id = frame.id, "agent response for no waiting request"),
            }
        }
        if drained.malformed > 0 {
            tracing::warn!(frames = drained.malformed, "malformed agent frames skipped");
        }
        if let Some(e) = drained.unusable {
            tracing::warn!(error = %e, "agent stream unusable; reconnecting");
            break 'outer;
        }
    }
    // Dropping the senders fails every pending request with `Closed`; the next request reconnects.
    lock(&waiters).take();
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
