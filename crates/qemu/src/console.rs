//! The guest's serial console: a background reader, a bounded in-memory log, and handles to it.
//!
//! QEMU connects its serial port to a Unix socket we listen on *before* it starts, so no boot output
//! is lost. One reader task appends everything to a ring of at most `capacity` bytes (older output is
//! dropped, memory stays bounded) and publishes progress on a `watch` channel, so any number of
//! waiting readers wake without polling, and each chunk on a `broadcast` channel for streaming.
//!
//! A [`Console`] handle has its own cursor: [`Console::read_until`] returns the output from the cursor
//! up to the end of the first match and moves the cursor past it. A fresh handle starts at the current
//! end of the output, so it sees what the guest prints after the handle was made.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;

use crate::error::ConsoleError;
use crate::ring::OutputRing;

/// How much of the output an error message quotes.
const TAIL_LINES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Progress {
    end: u64,
    closed: bool,
}

/// Console state shared by the reader task and every [`Console`] handle of one VM.
#[derive(Debug)]
pub(crate) struct ConsoleShared {
    ring: Mutex<OutputRing>,
    progress: watch::Sender<Progress>,
    chunks: broadcast::Sender<Arc<[u8]>>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    default_timeout: Duration,
}

impl ConsoleShared {
    /// Starts the reader task on `stream` and returns the shared state.
    pub(crate) fn start(stream: UnixStream, capacity: usize, default_timeout: Duration) -> Arc<Self> {
        let (read, write) = stream.into_split();
        let (chunks, _) = broadcast::channel(256);
        let shared = Arc::new(ConsoleShared {
            ring: Mutex::new(OutputRing::new(capacity)),
            progress: watch::Sender::new(Progress::default()),
            chunks,
            writer: tokio::sync::Mutex::new(write),
            default_timeout,
        });
        tokio::spawn(read_loop(read, Arc::downgrade(&shared)));
        shared
    }

    fn push(&self, bytes: &[u8]) {
        let end = {
            let mut ring = lock(&self.ring);
            ring.push(bytes);
            ring.end()
        };
        let _no_stream_subscriber_is_fine = self.chunks.send(Arc::from(bytes));
        self.progress.send_modify(|p| p.end = end);
    }

    fn close(&self) {
        self.progress.send_modify(|p| p.closed = true);
    }

    /// The last `lines` lines of everything kept, for error messages.
    pub(crate) fn tail(&self, lines: usize) -> String {
        let ring = lock(&self.ring);
        tail_lines(&ring.since(0), lines)
    }

    /// Bytes received from the guest since boot (kept or already dropped from the ring).
    pub(crate) fn bytes_received(&self) -> u64 {
        lock(&self.ring).end()
    }

    /// A handle whose cursor starts at `from` (0: the oldest byte kept).
    pub(crate) fn handle(self: &Arc<Self>, from: Option<u64>) -> Console {
        let cursor = from.unwrap_or_else(|| lock(&self.ring).end());
        Console { shared: self.clone(), cursor: Arc::new(Mutex::new(cursor)) }
    }
}

async fn read_loop(mut read: OwnedReadHalf, shared: std::sync::Weak<ConsoleShared>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let outcome = read.read(&mut buf).await;
        let Some(shared) = shared.upgrade() else { return };
        match outcome {
            Ok(0) => break shared.close(),
            Ok(n) => shared.push(&buf[..n]),
            Err(e) => {
                tracing::debug!(error = %e, "console read failed");
                break shared.close();
            }
        }
    }
}

/// A reader/writer of one VM's serial console. Cheap to clone (clones share the cursor).
///
/// ```no_run
/// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
/// let console = vm.console().await?;
/// console.send("echo hello\n").await?;
/// let out = console.read_until("hello").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Console {
    shared: Arc<ConsoleShared>,
    cursor: Arc<Mutex<u64>>,
}

impl Console {
    /// Writes `text` to the console (the guest shell reads it; end lines with `\n`).
    pub async fn send(&self, text: &str) -> Result<(), ConsoleError> {
        self.send_bytes(text.as_bytes()).await
    }

    /// Writes raw bytes to the console.
    pub async fn send_bytes(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        let mut writer = self.shared.writer.lock().await;
        writer.write_all(bytes).await?;
        writer.flush().await?;
        Ok(())
    }

    /// Waits until `pattern` appears after the cursor, with the provider's default deadline
    /// (`ProviderConfig::console_read_timeout`); returns the output up to the end of the match.
    pub async fn read_until(&self, pattern: &str) -> Result<String, ConsoleError> {
        self.read_until_timeout(pattern, self.shared.default_timeout).await
    }

    /// Like [`read_until`](Self::read_until) with an explicit deadline. On timeout the cursor does
    /// not move and the error quotes the last lines read.
    pub async fn read_until_timeout(&self, pattern: &str, timeout: Duration) -> Result<String, ConsoleError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.shared.progress.subscribe();
        loop {
            let closed = progress.borrow_and_update().closed;
            let (found, start) = {
                let ring = lock(&self.shared.ring);
                let mut cursor = lock(&self.cursor);
                let (start, found) = ring.find(*cursor, pattern.as_bytes());
                match found {
                    Some(match_end) => {
                        let text = ring.range(start, match_end);
                        *cursor = match_end;
                        (Some(text), start)
                    }
                    None => (None, start),
                }
            };
            if let Some(text) = found {
                return Ok(String::from_utf8_lossy(&text).into_owned());
            }
            // Copied only when an error quotes it: a flooding guest wakes this loop constantly.
            let tail = || tail_lines(&lock(&self.shared.ring).since(start), TAIL_LINES);
            if closed {
                return Err(ConsoleError::Closed { pattern: pattern.to_string(), tail: tail() });
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ConsoleError::Closed { pattern: pattern.to_string(), tail: tail() });
                }
                Err(_) => {
                    return Err(ConsoleError::Timeout {
                        pattern: pattern.to_string(),
                        after: timeout,
                        tail: tail(),
                    });
                }
            }
        }
    }

    /// Everything kept after the cursor, without moving it.
    pub fn peek(&self) -> String {
        let ring = lock(&self.shared.ring);
        let cursor = *lock(&self.cursor);
        String::from_utf8_lossy(&ring.since(cursor)).into_owned()
    }

    /// Output chunks as they arrive from now on (a slow consumer skips chunks it lagged behind on).
    ///
    /// ```no_run
    /// # async fn demo(console: firepit_qemu::Console) {
    /// use tokio_stream::StreamExt;
    /// let mut output = console.output();
    /// while let Some(chunk) = output.next().await {
    ///     print!("{}", String::from_utf8_lossy(&chunk));
    /// }
    /// # }
    /// ```
    pub fn output(&self) -> ConsoleOutput {
        ConsoleOutput { inner: BroadcastStream::new(self.shared.chunks.subscribe()) }
    }
}

/// A stream of console output chunks; see [`Console::output`].
#[derive(Debug)]
pub struct ConsoleOutput {
    inner: BroadcastStream<Arc<[u8]>>,
}

impl tokio_stream::Stream for ConsoleOutput {
    type Item = Arc<[u8]>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            match std::pin::Pin::new(&mut self.inner).poll_next(cx) {
                std::task::Poll::Ready(Some(Ok(chunk))) => return std::task::Poll::Ready(Some(chunk)),
                std::task::Poll::Ready(Some(Err(lagged))) => {
                    tracing::debug!(%lagged, "console output stream lagged; chunks skipped");
                }
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The ring and cursor stay consistent even if a holder panicked: each update is one call.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The last `lines` lines of `bytes`, lossily decoded, `\r` removed.
pub(crate) fn tail_lines(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes).replace('\r', "");
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;
