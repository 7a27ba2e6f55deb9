//! The end of a WebSocket session with an attached process (terminal, exec on pipes): two halves
//! run side by side, `input` (client → process) and `output` (process → client, then the last
//! message and the close frame). The session ends when `output` ends; if the client has not
//! closed its side by then, it gets [`CLOSE_HANDSHAKE`] to answer our close frame before the
//! connection is dropped (a client that finds the connection gone while answering may lose the
//! last messages).
//!
//! A client that stops reading must not hold a session up: the output half selects every send
//! against the lease stopping, and the last message and close frame ([`send_last`]) wait at most
//! [`CLOSE_HANDSHAKE`]. So a session whose lease ended is over within seconds, and its
//! connection dropped, even while its client reads nothing.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt};

/// How long the client gets to answer the server's close frame.
pub const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Runs both halves until `output` ends, then waits (bounded) for `input` to see the close.
pub async fn run(input: impl Future<Output = ()>, output: impl Future<Output = ()>) {
    tokio::pin!(input, output);
    let mut input_done = false;
    loop {
        tokio::select! {
            () = &mut input, if !input_done => input_done = true,
            () = &mut output => break,
        }
    }
    if !input_done {
        let _client_may_not_answer = tokio::time::timeout(CLOSE_HANDSHAKE, &mut input).await;
    }
}

/// Sends the session's last message and a close frame with `code`, waiting at most
/// [`CLOSE_HANDSHAKE`] for a client that does not read.
pub async fn send_last<S>(sink: &mut S, last: Message, code: u16)
where
    S: Sink<Message> + Unpin,
{
    let frame = CloseFrame { code, reason: "".into() };
    let sent = async {
        let _client_may_be_gone = sink.send(last).await;
        let _client_may_be_gone = sink.send(Message::Close(Some(frame))).await;
    };
    if tokio::time::timeout(CLOSE_HANDSHAKE, sent).await.is_err() {
        tracing::debug!("the client read nothing of the session's end; dropping the connection");
    }
}
