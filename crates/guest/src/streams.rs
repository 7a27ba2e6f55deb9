//! The host's ends of an agent stream, and the two public types built on them: [`GuestOutput`]
//! (bytes coming out of the guest: a file, an archive, a process's stdout or stderr, a terminal)
//! and [`GuestInput`] (bytes going in: stdin, terminal input).
//!
//! Flow control is what keeps host memory bounded: output is credited back to the agent as the
//! consumer *takes* it, so a consumer that stops reading stops the guest's producer after one
//! window ([`STREAM_WINDOW`]); input waits for the agent's credit before it is sent. A stream's
//! owner (the [`Events`] end) cancels the stream in the guest when dropped before the stream ended.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use firepit_agent::{Channel, Credit, InputChunk, MAX_CHUNK, Request, Response};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{Semaphore, mpsc};

use crate::agent::Connection;
use crate::agent_routes::Outstanding;
use crate::error::{GuestError, failure_error};
use crate::guest::Guest;

/// Sends frames for one open stream.
#[derive(Debug)]
pub(crate) struct StreamLink {
    id: u64,
    conn: Arc<Connection>,
    kind: &'static str,
}

impl StreamLink {
    /// Queues a frame for this stream.
    pub(crate) fn send(&self, request: Request) -> Result<(), GuestError> {
        self.conn.send(self.id, request)
    }
}

/// The events of a stream (`Opened`, `Started`, the terminal response); cancels the stream in the
/// guest if dropped before the end.
#[derive(Debug)]
pub(crate) struct Events {
    rx: mpsc::UnboundedReceiver<Response>,
    link: Arc<StreamLink>,
    ended: bool,
}

impl Events {
    /// The next event; guest failures and a lost connection are errors (and end the stream).
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response, GuestError>> {
        if self.ended {
            return Poll::Ready(Err(GuestError::Closed));
        }
        let event = ready!(self.rx.poll_recv(cx));
        let Some(response) = event else {
            self.ended = true;
            return Poll::Ready(Err(GuestError::Closed));
        };
        self.ended = response.is_terminal();
        Poll::Ready(failure_error(self.link.kind, response))
    }

    /// [`poll_next`](Self::poll_next) as a future.
    pub(crate) async fn next(&mut self) -> Result<Response, GuestError> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The stream's link, for control frames (`Signal`, `Resize`).
    pub(crate) fn link(&self) -> Arc<StreamLink> {
        self.link.clone()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if !self.ended {
            let _connection_may_be_gone = self.link.send(Request::Cancel);
            self.link.conn.forget(self.link.id);
        }
    }
}

/// One output channel's queue; each chunk taken is credited back to the agent.
#[derive(Debug)]
pub(crate) struct OutputQueue {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    link: Arc<StreamLink>,
    channel: Channel,
    outstanding: Outstanding,
}

impl OutputQueue {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let chunk = ready!(self.rx.poll_recv(cx));
        if let Some(chunk) = &chunk {
            let bytes = chunk.len() as u32;
            self.outstanding[self.channel.index()].fetch_sub(u64::from(bytes), Ordering::SeqCst);
            let _stream_may_have_ended =
                self.link.send(Request::Credit(Credit { channel: self.channel, bytes }));
        }
        Poll::Ready(chunk)
    }
}

/// Sends input into a stream within the agent's credit.
#[derive(Debug)]
pub(crate) struct InputSink {
    link: Arc<StreamLink>,
    credit: Arc<Semaphore>,
    /// Fail a write that waits longer than this for credit (`None`: wait as long as it takes).
    stall_timeout: Option<Duration>,
}

impl InputSink {
    /// Sends `data` (in chunks of at most [`MAX_CHUNK`]), waiting for credit as needed.
    pub(crate) async fn write(&self, data: &[u8]) -> Result<(), GuestError> {
        for piece in data.chunks(MAX_CHUNK) {
            let acquire = self.credit.acquire_many(piece.len() as u32);
            let permit = match self.stall_timeout {
                Some(after) => tokio::time::timeout(after, acquire)
                    .await
                    .map_err(|_| GuestError::Timeout { request: self.link.kind, after })?,
                None => acquire.await,
            };
            permit.map_err(|_| GuestError::Closed)?.forget();
            self.link.send(Request::Input(InputChunk { bytes: piece.to_vec(), eof: false }))?;
        }
        Ok(())
    }

    /// Sends end-of-file.
    pub(crate) fn close(&self) -> Result<(), GuestError> {
        self.link.send(Request::Input(InputChunk { bytes: Vec::new(), eof: true }))
    }
}

/// An open stream's parts, to be split among the public handles.
#[derive(Debug)]
pub(crate) struct AgentStream {
    pub(crate) events: Events,
    pub(crate) stdout: OutputQueue,
    pub(crate) stderr: OutputQueue,
    pub(crate) input: InputSink,
}

/// Opens a stream with `request` on `guest`'s agent. Input writes fail after `stall_timeout`
/// without credit (`None`: no limit).
pub(crate) async fn open(
    guest: &Guest,
    request: Request,
    stall_timeout: Option<Duration>,
) -> Result<AgentStream, GuestError> {
    guest.ready().await?;
    let kind = request.kind();
    let (id, conn, ends) = guest.agent.open_stream(request).await?;
    let link = Arc::new(StreamLink { id, conn, kind });
    let [stdout, stderr] = ends.outputs;
    let queue =
        |rx, channel| OutputQueue { rx, link: link.clone(), channel, outstanding: ends.outstanding.clone() };
    Ok(AgentStream {
        stdout: queue(stdout, Channel::Stdout),
        stderr: queue(stderr, Channel::Stderr),
        input: InputSink { link: link.clone(), credit: ends.input_credit, stall_timeout },
        events: Events { rx: ends.events, link, ended: false },
    })
}

/// Bytes coming out of the guest: a process's stdout or stderr, a terminal's output, a file or an
/// archive. Read it as an [`AsyncRead`] or chunk by chunk with [`next_chunk`](Self::next_chunk).
///
/// At most one window of output ([`STREAM_WINDOW`](firepit_agent::STREAM_WINDOW), 256 KiB) waits
/// here unread: a reader that stops reading pauses the guest's producer. Dropping it discards the
/// rest of that output (the producer is not paused any more).
///
/// ```no_run
/// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
/// use tokio::io::AsyncReadExt;
/// let mut process = guest.spawn(firepit_agent::SpawnRequest::new(["ls", "/"])).await?;
/// let mut stdout = process.take_stdout().expect("stdout is taken once");
/// let mut listing = String::new();
/// stdout.read_to_string(&mut listing).await.map_err(|e| firepit_guest::GuestError::HostIo { what: "reading stdout".into(), source: e })?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GuestOutput {
    queue: OutputQueue,
    /// For a transfer, the stream's events: its end is checked (`Done` or the failure) at the end
    /// of the output.
    events: Option<Events>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl GuestOutput {
    pub(crate) fn new(queue: OutputQueue, events: Option<Events>) -> Self {
        Self { queue, events, current: Vec::new(), pos: 0, ended: false }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, GuestError>> {
        if self.pos < self.current.len() {
            let rest = self.current.split_off(self.pos);
            (self.current, self.pos) = (Vec::new(), 0);
            return Poll::Ready(Ok(Some(rest)));
        }
        while !self.ended {
            if let Some(chunk) = ready!(self.queue.poll_chunk(cx)) {
                return Poll::Ready(Ok(Some(chunk)));
            }
            // The channel ended: a transfer is complete only with its `Done`.
            match self.events.as_mut() {
                None => self.ended = true,
                Some(events) => match ready!(events.poll_next(cx)) {
                    Ok(response) if response.is_terminal() => self.ended = true,
                    Ok(_) => {}
                    Err(error) => {
                        self.ended = true;
                        return Poll::Ready(Err(error));
                    }
                },
            }
        }
        Poll::Ready(Ok(None))
    }

    /// The next chunk of output (at most 64 KiB), `None` at its end. A transfer that failed
    /// part-way (the file vanished, the connection broke) is an error here, never a short read.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, GuestError> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

impl AsyncRead for GuestOutput {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.current.len() {
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => (this.current, this.pos) = (chunk, 0),
                Ok(None) => return Poll::Ready(Ok(())),
                Err(error) => return Poll::Ready(Err(io::Error::other(error))),
            }
        }
        let n = buf.remaining().min(this.current.len() - this.pos);
        buf.put_slice(&this.current[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Bytes going into the guest: a process's stdin or a terminal's input. Writes wait for the
/// agent's credit, so a process that does not read its stdin makes writers wait instead of making
/// anyone buffer. Dropping it (or [`close`](Self::close)) sends end-of-file.
///
/// ```no_run
/// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
/// let mut request = firepit_agent::SpawnRequest::new(["wc", "-c"]);
/// request.stdin = true;
/// let mut process = guest.spawn(request).await?;
/// let mut stdin = process.take_stdin().expect("asked for stdin");
/// stdin.write_all(b"hello").await?;
/// stdin.close()?;
/// let output = process.output().await?;
/// assert_eq!(output.stdout_lossy().trim(), "5");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GuestInput {
    sink: InputSink,
    closed: bool,
}

impl GuestInput {
    pub(crate) fn new(sink: InputSink) -> Self {
        Self { sink, closed: false }
    }

    /// Writes all of `data`, waiting for credit as the guest consumes it.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), GuestError> {
        if self.closed {
            return Err(GuestError::Closed);
        }
        self.sink.write(data).await
    }

    /// Sends end-of-file (the process reads EOF once it has read what came before).
    pub fn close(&mut self) -> Result<(), GuestError> {
        if !std::mem::replace(&mut self.closed, true) {
            self.sink.close()?;
        }
        Ok(())
    }
}

impl Drop for GuestInput {
    fn drop(&mut self) {
        let _stream_may_have_ended = self.close();
    }
}
