//! The client → process half of a WebSocket session (a terminal, an exec on pipes): the client's
//! binary messages are written to the process's input, its text messages are controls.
//!
//! Writing waits for the guest (a shell reading a 5 MB paste under TCG takes a minute), and the
//! client may leave meanwhile. So messages keep being read while a write is pending: a close, an
//! error or the end of the connection ends the session at once (the pending write is dropped, and
//! with the session the process), and what arrives meanwhile waits in a queue of at most
//! [`MAX_QUEUED`] bytes (past that, reading pauses until the queue drains: the client's own
//! flow control). Controls keep their place among the input (a resize or a `close_stdin` comes
//! after the bytes sent before it) unless they are urgent (a signal: Ctrl-C must not wait behind
//! the paste it interrupts).

use std::collections::VecDeque;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::boxed::BoxFuture;
use crate::sandbox::{Input, SandboxError};

/// Bytes of input that may wait behind a pending write before reading pauses.
pub const MAX_QUEUED: usize = 1024 * 1024;

/// What the session does with a control message, in its place or at once.
pub trait Controls {
    /// Whether `text` must not wait behind queued input (a signal).
    fn urgent(&self, text: &str) -> bool;
    /// Applies `text` (it may close the input: `stdin` is the process's input, if still open).
    fn apply(&mut self, text: &str, stdin: &mut Option<Box<dyn Input>>);
}

enum Queued {
    Bytes(Bytes),
    Text(Utf8Bytes),
}

type Write = BoxFuture<'static, (Box<dyn Input>, Result<(), SandboxError>)>;

/// Carries the client's messages until it closes, errs or leaves (see the module docs); the
/// process's input is dropped (closed) on return.
pub async fn carry<S>(mut incoming: S, stdin: Option<Box<dyn Input>>, mut controls: impl Controls)
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let mut stdin = stdin;
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut queued = 0usize;
    let mut writing: Option<Write> = None;
    loop {
        while writing.is_none()
            && let Some(next) = queue.pop_front()
        {
            match next {
                Queued::Bytes(bytes) => {
                    queued -= bytes.len();
                    if let Some(mut input) = stdin.take() {
                        writing = Some(Box::pin(async move {
                            let result = input.write(&bytes).await;
                            (input, result)
                        }));
                    }
                }
                Queued::Text(text) => controls.apply(text.as_str(), &mut stdin),
            }
        }
        tokio::select! {
            (input, result) = pending_write(&mut writing), if writing.is_some() => {
                writing = None;
                match result {
                    Ok(()) => stdin = Some(input),
                    // The program is gone or closed its input; its exit comes on the output side.
                    Err(_) => drop_input(&mut queue, &mut queued),
                }
            }
            message = incoming.next(), if queued < MAX_QUEUED => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if stdin.is_some() || writing.is_some() {
                        queued += bytes.len();
                        queue.push_back(Queued::Bytes(bytes));
                    }
                }
                Some(Ok(Message::Text(text))) if controls.urgent(text.as_str()) => {
                    controls.apply(text.as_str(), &mut stdin);
                }
                Some(Ok(Message::Text(text))) => queue.push_back(Queued::Text(text)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
        }
    }
}

/// The pending write's end (never, without one).
async fn pending_write(writing: &mut Option<Write>) -> (Box<dyn Input>, Result<(), SandboxError>) {
    match writing.as_mut() {
        Some(write) => write.await,
        None => std::future::pending().await,
    }
}

/// The input is gone: queued bytes have nowhere to go (queued controls still apply).
fn drop_input(queue: &mut VecDeque<Queued>, queued: &mut usize) {
    queue.retain(|item| matches!(item, Queued::Text(_)));
    *queued = 0;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// An input that takes `delay` per write and records what it got.
    struct Slow {
        delay: Duration,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Input for Slow {
        fn write<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), SandboxError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                self.got.lock().unwrap().push(String::from_utf8_lossy(bytes).into_owned());
                Ok(())
            })
        }
        fn close(&mut self) -> Result<(), SandboxError> {
            self.got.lock().unwrap().push("<close>".into());
            Ok(())
        }
    }

    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Controls for Recorder {
        fn urgent(&self, text: &str) -> bool {
            text == "signal"
        }
        fn apply(&mut self, text: &str, stdin: &mut Option<Box<dyn Input>>) {
            self.0.lock().unwrap().push(format!("<{text}>"));
            if text == "close"
                && let Some(mut input) = stdin.take()
            {
                input.close().unwrap();
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_during_a_long_write_is_noticed_at_once() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (client, incoming) = tokio::sync::mpsc::unbounded_channel();
        let input = Slow { delay: Duration::from_secs(60), got: got.clone() };
        let session =
            tokio::spawn(carry(tokio_stream_of(incoming), Some(Box::new(input)), Recorder(got.clone())));
        client.send(Ok(Message::Binary(Bytes::from(vec![b'x'; 5_000_000])))).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.send(Ok(Message::Close(None))).unwrap();
        let started = tokio::time::Instant::now();
        session.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "noticed after {:?}", started.elapsed());
        assert!(got.lock().unwrap().is_empty(), "the write was abandoned");
    }

    #[tokio::test(start_paused = true)]
    async fn controls_keep_their_place_among_the_input_unless_urgent() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (client, incoming) = tokio::sync::mpsc::unbounded_channel();
        let input = Slow { delay: Duration::from_secs(1), got: got.clone() };
        let session =
            tokio::spawn(carry(tokio_stream_of(incoming), Some(Box::new(input)), Recorder(got.clone())));
        for message in [
            Message::Binary(Bytes::from_static(b"one")),
            Message::Text("resize".into()),
            Message::Binary(Bytes::from_static(b"two")),
            Message::Text("signal".into()),
            Message::Text("close".into()),
        ] {
            client.send(Ok(message)).unwrap();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(client);
        session.await.unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(got, ["<signal>", "one", "<resize>", "two", "<close>", "<close>"]);
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    ) -> impl Stream<Item = Result<Message, axum::Error>> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
