//! The agent's end of a stream: the credit it may spend, the input the host queued, and the control
//! events (signal, resize, cancel).
//!
//! The reader thread never blocks on a stream: it only locks a stream's state, updates it and wakes
//! the stream's handler thread. Handlers block on the stream's condition variable, never the
//! reader. Memory per stream is bounded by the protocol: at most [`STREAM_WINDOW`] bytes of queued
//! input (more is a protocol violation that fails the stream), and output is only produced against
//! credit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use firepit_agent::{
    Channel, Credit, Failure, FailureKind, InputChunk, OutputChunk, Response, STREAM_WINDOW, WindowSize,
};

use crate::writer::Sink;

/// Most streams open at once on one host session.
pub const MAX_STREAMS: usize = 1024;

/// A control event for a stream's handler.
#[derive(Debug)]
pub enum Control {
    /// The host asked for a terminal resize.
    Resize(WindowSize),
    /// The host asked for a signal.
    Signal(i32),
    /// Posted by the handler's own threads: the child was reaped (or waiting for it failed).
    Exited(std::io::Result<std::process::ExitStatus>),
    /// Posted by the handler's own threads: an output channel reached its end.
    OutputClosed,
}

/// What [`Stream::wait_event`] saw.
#[derive(Debug)]
pub enum Event {
    /// A control event.
    Control(Control),
    /// The host cancelled the stream (reported once).
    Cancelled,
    /// The deadline passed.
    Deadline,
}

/// What a stream's input queue holds: the host's bytes, and its resizes in their place among them
/// (a terminal must apply a resize before the input that followed it: a shell asked for
/// `stty size` right after a resize must see the new size).
#[derive(Debug)]
enum Queued {
    Bytes(Vec<u8>),
    Resize(WindowSize),
}

/// What [`Stream::next_input_event`] took from the input queue.
#[derive(Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// Bytes to write.
    Bytes(Vec<u8>),
    /// A resize the host sent after the bytes before it.
    Resize(WindowSize),
}

/// Why a handler must stop.
#[derive(Debug, Clone, Copy)]
pub struct Stopped;

#[derive(Default)]
struct State {
    credit: [u64; 2],
    input: VecDeque<Queued>,
    input_bytes: u64,
    input_eof: bool,
    cancelled: Option<Failure>,
    cancel_seen: bool,
    controls: VecDeque<Control>,
}

/// One open stream, shared by the reader (which feeds it) and its handler threads.
pub struct Stream {
    id: u64,
    sink: Sink,
    state: Mutex<State>,
    changed: Condvar,
}

impl Stream {
    fn new(id: u64, sink: Sink) -> Self {
        let window = u64::from(STREAM_WINDOW);
        let state = State { credit: [window, window], ..State::default() };
        Self { id, sink, state: Mutex::new(state), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, and the agent aborts on panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Reader side: queue host input; more than the window is a protocol violation.
    pub fn push_input(&self, chunk: InputChunk) {
        self.update(|state| {
            let len = chunk.bytes.len() as u64;
            if state.input_eof {
                state.cancelled.get_or_insert(Failure::new(FailureKind::Protocol, "input after end-of-file"));
            } else if state.input_bytes + len > u64::from(STREAM_WINDOW) {
                let message = format!("host sent {} input bytes beyond its credit", state.input_bytes + len);
                state.cancelled.get_or_insert(Failure::new(FailureKind::Protocol, message));
            } else {
                state.input_bytes += len;
                if !chunk.bytes.is_empty() {
                    state.input.push_back(Queued::Bytes(chunk.bytes));
                }
                state.input_eof = chunk.eof;
            }
        });
    }

    /// Reader side: the host resized the terminal. Queued after the input that came before it
    /// (consecutive resizes collapse into the last); after the input's end, a control event.
    pub fn push_resize(&self, size: WindowSize) {
        self.update(|state| {
            if state.input_eof {
                state.controls.push_back(Control::Resize(size));
            } else if let Some(Queued::Resize(last)) = state.input.back_mut() {
                *last = size;
            } else {
                state.input.push_back(Queued::Resize(size));
            }
        });
    }

    /// Reader side: the host consumed output.
    pub fn add_credit(&self, credit: Credit) {
        self.update(|state| {
            let slot = &mut state.credit[credit.channel.index()];
            *slot = slot.saturating_add(u64::from(credit.bytes));
        });
    }

    /// Reader side (or session end): stop the stream.
    pub fn cancel(&self, failure: Failure) {
        self.update(|state| {
            state.cancelled.get_or_insert(failure);
        });
    }

    /// Queues a control event (from the reader, or from the handler's own threads).
    pub fn post(&self, control: Control) {
        self.update(|state| state.controls.push_back(control));
    }

    /// Whether the stream was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled.is_some()
    }

    /// Why the stream was cancelled (a protocol violation or the host's cancel).
    pub fn cancel_reason(&self) -> Option<Failure> {
        self.lock().cancelled.clone()
    }

    /// Waits for credit on `channel`; returns how many bytes may be sent now.
    pub fn wait_credit(&self, channel: Channel) -> Result<usize, Stopped> {
        let mut state = self.lock();
        loop {
            if state.cancelled.is_some() {
                return Err(Stopped);
            }
            let credit = state.credit[channel.index()];
            if credit > 0 {
                return Ok(usize::try_from(credit).unwrap_or(usize::MAX));
            }
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Sends output (the caller got the credit from [`wait_credit`](Self::wait_credit)).
    pub fn send_output(&self, channel: Channel, bytes: Vec<u8>, eof: bool) {
        {
            let mut state = self.lock();
            let slot = &mut state.credit[channel.index()];
            *slot = slot.saturating_sub(bytes.len() as u64);
        }
        self.sink.send(self.id, Response::Output(OutputChunk { channel, bytes, eof }));
    }

    /// Waits for the next input chunk (resizes are skipped); `Ok(None)` at the host's
    /// end-of-file.
    pub fn next_input(&self) -> Result<Option<Vec<u8>>, Stopped> {
        loop {
            match self.next_input_event()? {
                Some(InputEvent::Bytes(bytes)) => return Ok(Some(bytes)),
                Some(InputEvent::Resize(_)) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Waits for the next input chunk or resize, in the order the host sent them; `Ok(None)` at
    /// the host's end-of-file.
    pub fn next_input_event(&self) -> Result<Option<InputEvent>, Stopped> {
        let mut state = self.lock();
        loop {
            if state.cancelled.is_some() {
                return Err(Stopped);
            }
            match state.input.pop_front() {
                Some(Queued::Bytes(bytes)) => return Ok(Some(InputEvent::Bytes(bytes))),
                Some(Queued::Resize(size)) => return Ok(Some(InputEvent::Resize(size))),
                None => {}
            }
            if state.input_eof {
                return Ok(None);
            }
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The handler consumed `bytes` of input: the host may send that many more.
    pub fn grant_input(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        {
            let mut state = self.lock();
            state.input_bytes = state.input_bytes.saturating_sub(bytes as u64);
        }
        self.sink.send(self.id, Response::Credit(u32::try_from(bytes).unwrap_or(u32::MAX)));
    }

    /// Waits for a control event, the cancel (once), or `deadline`.
    pub fn wait_event(&self, deadline: Option<Instant>) -> Event {
        let mut state = self.lock();
        loop {
            if let Some(control) = state.controls.pop_front() {
                return Event::Control(control);
            }
            if state.cancelled.is_some() && !state.cancel_seen {
                state.cancel_seen = true;
                return Event::Cancelled;
            }
            let now = Instant::now();
            state = match deadline {
                Some(deadline) if deadline <= now => return Event::Deadline,
                Some(deadline) => self
                    .changed
                    .wait_timeout(state, deadline - now)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|p| p.into_inner().0),
                None => self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }

    /// Sends a non-terminal response (`Opened`, `Started`).
    pub fn send(&self, response: Response) {
        self.sink.send(self.id, response);
    }
}

/// The streams of one host session.
#[derive(Clone, Default)]
pub struct Streams {
    map: Arc<Mutex<HashMap<u64, Arc<Stream>>>>,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Stream>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers stream `id`; refused when the id is in use or too many streams are open.
    pub fn open(&self, id: u64, sink: &Sink) -> Result<StreamHandle, Failure> {
        let mut map = self.lock();
        if map.contains_key(&id) {
            return Err(Failure::new(FailureKind::Protocol, format!("stream id {id} is already open")));
        }
        if map.len() >= MAX_STREAMS {
            return Err(Failure::new(FailureKind::LimitReached, format!("{MAX_STREAMS} streams are open")));
        }
        let stream = Arc::new(Stream::new(id, sink.clone()));
        map.insert(id, stream.clone());
        Ok(StreamHandle { stream, streams: self.clone() })
    }

    /// The open stream `id`, if any.
    pub fn get(&self, id: u64) -> Option<Arc<Stream>> {
        self.lock().get(&id).cloned()
    }

    /// Cancels and forgets every stream (the session ended).
    pub fn cancel_all(&self, why: &str) {
        for (_, stream) in self.lock().drain() {
            stream.cancel(Failure::new(FailureKind::Cancelled, why));
        }
    }
}

/// A handler's ownership of its stream: ends it with exactly one terminal response.
pub struct StreamHandle {
    stream: Arc<Stream>,
    streams: Streams,
}

impl std::ops::Deref for StreamHandle {
    type Target = Stream;
    fn deref(&self) -> &Stream {
        &self.stream
    }
}

impl StreamHandle {
    /// The shared stream (for the handler's helper threads).
    pub fn shared(&self) -> Arc<Stream> {
        self.stream.clone()
    }

    /// Ends the stream with its terminal response.
    pub fn finish(self, response: Response) {
        self.stream.sink.send(self.stream.id, response);
        // Drop deregisters.
    }

    /// Ends the stream with a failure: the cancel reason if it was cancelled, else `failure`.
    pub fn fail(self, failure: Failure) {
        let failure = self.stream.cancel_reason().unwrap_or(failure);
        self.finish(Response::Failed(failure));
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let mut map = self.streams.lock();
        if map.get(&self.stream.id).is_some_and(|s| Arc::ptr_eq(s, &self.stream)) {
            map.remove(&self.stream.id);
        }
        drop(map);
        // Wake helper threads still waiting on credit or input.
        self.stream.cancel(Failure::new(FailureKind::Cancelled, "stream ended"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::Writer;

    fn stream() -> Stream {
        let writer = Writer::spawn(std::io::sink());
        Stream::new(1, writer.new_session())
    }

    proptest::proptest! {
        /// Whatever a host sends and however the handler consumes, queued input never exceeds the
        /// window, and sending beyond the credit fails the stream instead of growing the queue.
        #[test]
        fn queued_input_never_exceeds_the_window(
            steps in proptest::collection::vec((0usize..200_000, proptest::bool::ANY), 1..64)
        ) {
            let stream = stream();
            for (len, consume) in steps {
                stream.push_input(InputChunk { bytes: vec![0; len], eof: false });
                let state = stream.lock();
                proptest::prop_assert!(state.input_bytes <= u64::from(STREAM_WINDOW));
                let queued: usize =
                    state.input.iter().map(|q| if let Queued::Bytes(b) = q { b.len() } else { 0 }).sum();
                proptest::prop_assert!(queued as u64 <= state.input_bytes);
                let failed = state.cancelled.is_some();
                drop(state);
                if failed {
                    proptest::prop_assert!(stream.next_input().is_err());
                    return Ok(());
                }
                if consume && let Ok(Some(chunk)) = stream.next_input() {
                    stream.grant_input(chunk.len());
                }
            }
        }
    }

    #[test]
    fn a_resize_comes_out_between_the_input_sent_before_and_after_it() {
        let stream = stream();
        let size = |rows| WindowSize { rows, cols: 80 };
        stream.push_input(InputChunk { bytes: b"before".to_vec(), eof: false });
        stream.push_resize(size(10));
        stream.push_resize(size(50));
        stream.push_input(InputChunk { bytes: b"stty size\n".to_vec(), eof: false });
        assert_eq!(stream.next_input_event().unwrap(), Some(InputEvent::Bytes(b"before".to_vec())));
        assert_eq!(stream.next_input_event().unwrap(), Some(InputEvent::Resize(size(50))));
        assert_eq!(stream.next_input_event().unwrap(), Some(InputEvent::Bytes(b"stty size\n".to_vec())));
        stream.push_resize(size(20));
        stream.push_input(InputChunk { bytes: b"x".to_vec(), eof: true });
        assert_eq!(stream.next_input().unwrap(), Some(b"x".to_vec()), "plain input skips resizes");
        stream.push_resize(size(30));
        assert!(matches!(stream.wait_event(None), Event::Control(Control::Resize(s)) if s == size(30)));
    }

    #[test]
    fn credit_is_spent_by_output_and_restored_by_the_host() {
        let stream = stream();
        assert_eq!(stream.wait_credit(Channel::Stdout).unwrap(), STREAM_WINDOW as usize);
        stream.send_output(Channel::Stdout, vec![0; STREAM_WINDOW as usize], false);
        stream.add_credit(Credit { channel: Channel::Stdout, bytes: 10 });
        assert_eq!(stream.wait_credit(Channel::Stdout).unwrap(), 10);
        assert_eq!(stream.wait_credit(Channel::Stderr).unwrap(), STREAM_WINDOW as usize);
        stream.cancel(Failure::new(FailureKind::Cancelled, "test"));
        assert!(stream.wait_credit(Channel::Stdout).is_err());
    }
}
