//! Where the agent's frames go: the caller waiting for a one-shot answer, or the queues of an open
//! stream. Pure bookkeeping, no I/O, so that the reader task never blocks on a slow consumer.
//!
//! The guest is not trusted to keep the protocol: a stream that receives more output than the host
//! credited, a chunk over [`MAX_CHUNK`], more credit than could ever be owed, or an endless run of
//! non-terminal events is *violated*: the reader fails it, tells the agent to cancel it, and its
//! queues stop growing. So the host holds at most one window per stream and channel, whatever the
//! guest sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use firepit_agent::{Channel, Failure, FailureKind, MAX_CHUNK, Response, STREAM_WINDOW};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most input credit the host accepts to hold for one stream (a guest granting more is lying).
const MAX_INPUT_CREDIT: usize = 4 * STREAM_WINDOW as usize;
/// Non-terminal, non-data events a stream may receive (`Opened` or `Started`, once).
const MAX_EVENTS: u32 = 2;

/// Output bytes handed to a stream's consumer and not yet credited back, per channel.
pub(crate) type Outstanding = Arc<[AtomicU64; 2]>;

/// Who waits for frames of one request id.
#[derive(Debug)]
pub(crate) enum Route {
    /// A one-shot request: the first frame answers it.
    Reply(oneshot::Sender<Response>),
    /// An open stream.
    Stream(StreamRoute),
}

/// The receiving ends a new stream's consumers get.
#[derive(Debug)]
pub(crate) struct StreamEnds {
    /// Output per channel (stdout, stderr).
    pub(crate) outputs: [mpsc::UnboundedReceiver<Vec<u8>>; 2],
    /// `Opened`, `Started` and the terminal response.
    pub(crate) events: mpsc::UnboundedReceiver<Response>,
    /// Input bytes the agent lets the host send.
    pub(crate) input_credit: Arc<Semaphore>,
    /// Output handed out and not yet credited back.
    pub(crate) outstanding: Outstanding,
}

/// The receiving end of an open stream inside the reader.
#[derive(Debug)]
pub(crate) struct StreamRoute {
    /// Output per channel; `None` once the channel ended or its consumer went away.
    outputs: [Option<mpsc::UnboundedSender<Vec<u8>>>; 2],
    events: mpsc::UnboundedSender<Response>,
    input_credit: Arc<Semaphore>,
    outstanding: Outstanding,
    events_seen: u32,
}

impl Drop for StreamRoute {
    fn drop(&mut self) {
        // Wakes a writer waiting for credit: the stream is over.
        self.input_credit.close();
    }
}

/// What routing one frame to a stream asks of the reader.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// The stream stays open.
    Open,
    /// The frame was the stream's terminal response: forget the route.
    Ended,
    /// Output nobody will read: credit it back to the agent at once.
    CreditBack(Channel, u32),
    /// The agent broke the protocol: fail the stream and cancel it in the guest.
    Violation(String),
}

impl StreamRoute {
    /// A route with fresh queues, and the ends its consumers hold.
    pub(crate) fn new() -> (Self, StreamEnds) {
        let (stdout_tx, stdout_rx) = mpsc::unbounded_channel();
        let (stderr_tx, stderr_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let input_credit = Arc::new(Semaphore::new(STREAM_WINDOW as usize));
        let outstanding: Outstanding = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let route = Self {
            outputs: [Some(stdout_tx), Some(stderr_tx)],
            events: events_tx,
            input_credit: input_credit.clone(),
            outstanding: outstanding.clone(),
            events_seen: 0,
        };
        let ends =
            StreamEnds { outputs: [stdout_rx, stderr_rx], events: events_rx, input_credit, outstanding };
        (route, ends)
    }

    /// Routes one response of this stream.
    pub(crate) fn deliver(&mut self, response: Response) -> Routed {
        match response {
            Response::Output(chunk) => {
                let (index, len) = (chunk.channel.index(), chunk.bytes.len());
                if len > MAX_CHUNK {
                    return Routed::Violation(format!("output chunk of {len} bytes exceeds {MAX_CHUNK}"));
                }
                let held = self.outstanding[index].fetch_add(len as u64, Ordering::SeqCst) + len as u64;
                if held > u64::from(STREAM_WINDOW) {
                    let channel = chunk.channel.as_str();
                    return Routed::Violation(format!("{held} bytes of {channel} sent beyond the credit"));
                }
                let delivered = match &self.outputs[index] {
                    Some(tx) if len > 0 => tx.send(chunk.bytes).is_ok(),
                    Some(_) => true,
                    None => false,
                };
                if chunk.eof || !delivered {
                    self.outputs[index] = None;
                }
                if delivered || len == 0 {
                    Routed::Open
                } else {
                    self.outstanding[index].fetch_sub(len as u64, Ordering::SeqCst);
                    Routed::CreditBack(chunk.channel, len as u32)
                }
            }
            Response::Credit(bytes) => {
                let bytes = bytes as usize;
                if self.input_credit.available_permits().saturating_add(bytes) > MAX_INPUT_CREDIT {
                    return Routed::Violation(format!("credit of {bytes} bytes beyond anything sent"));
                }
                self.input_credit.add_permits(bytes);
                Routed::Open
            }
            response if response.is_terminal() => {
                let _consumer_may_be_gone = self.events.send(response);
                Routed::Ended
            }
            response => {
                self.events_seen += 1;
                if self.events_seen > MAX_EVENTS {
                    return Routed::Violation(format!("unexpected extra event {response:?}"));
                }
                let _consumer_may_be_gone = self.events.send(response);
                Routed::Open
            }
        }
    }

    /// Ends the stream with a protocol failure (the caller then drops the route).
    pub(crate) fn fail(&self, message: &str) {
        let message = format!("the agent broke the stream protocol: {message}");
        let _consumer_may_be_gone =
            self.events.send(Response::Failed(Failure::new(FailureKind::Protocol, message)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_agent::OutputChunk;

    fn output(channel: Channel, len: usize, eof: bool) -> Response {
        Response::Output(OutputChunk { channel, bytes: vec![0; len], eof })
    }

    #[test]
    fn output_beyond_the_window_is_a_violation() {
        let (mut route, _ends) = StreamRoute::new();
        for _ in 0..(STREAM_WINDOW as usize / MAX_CHUNK) {
            assert_eq!(route.deliver(output(Channel::Stdout, MAX_CHUNK, false)), Routed::Open);
        }
        assert!(matches!(route.deliver(output(Channel::Stdout, 1, false)), Routed::Violation(_)));
    }

    #[test]
    fn credited_output_makes_room_and_channels_are_separate() {
        let (mut route, mut ends) = StreamRoute::new();
        for _ in 0..(STREAM_WINDOW as usize / MAX_CHUNK) {
            route.deliver(output(Channel::Stdout, MAX_CHUNK, false));
        }
        assert_eq!(route.deliver(output(Channel::Stderr, MAX_CHUNK, false)), Routed::Open);
        let chunk = ends.outputs[0].try_recv().unwrap();
        ends.outstanding[0].fetch_sub(chunk.len() as u64, Ordering::SeqCst);
        assert_eq!(route.deliver(output(Channel::Stdout, MAX_CHUNK, false)), Routed::Open);
    }

    #[test]
    fn output_for_a_dropped_reader_is_credited_back() {
        let (mut route, ends) = StreamRoute::new();
        drop(ends);
        assert_eq!(
            route.deliver(output(Channel::Stdout, 10, false)),
            Routed::CreditBack(Channel::Stdout, 10)
        );
        assert_eq!(
            route.deliver(output(Channel::Stdout, 10, false)),
            Routed::CreditBack(Channel::Stdout, 10)
        );
    }

    #[test]
    fn endless_events_and_absurd_credit_are_violations() {
        let (mut route, _ends) = StreamRoute::new();
        let started = Response::Started(firepit_agent::Started { pid: 1 });
        assert_eq!(route.deliver(started.clone()), Routed::Open);
        assert_eq!(route.deliver(started.clone()), Routed::Open);
        assert!(matches!(route.deliver(started), Routed::Violation(_)));
        assert!(matches!(route.deliver(Response::Credit(u32::MAX)), Routed::Violation(_)));
    }

    #[test]
    fn terminal_response_ends_the_stream_and_closes_input_credit() {
        let (mut route, mut ends) = StreamRoute::new();
        assert_eq!(route.deliver(Response::Ok), Routed::Ended);
        drop(route);
        assert_eq!(ends.events.try_recv().unwrap(), Response::Ok);
        assert!(ends.input_credit.is_closed());
    }
}
