//! The end of a WebSocket session with an attached process (terminal, exec on pipes): two halves
//! run side by side, `input` (client → process) and `output` (process → client, then the last
//! message and the close frame). The session ends when `output` ends; if the client has not
//! closed its side by then, it gets [`CLOSE_HANDSHAKE`] to answer our close frame before the
//! connection is dropped (a client that finds the connection gone while answering may lose the
//! last messages).

use std::future::Future;
use std::time::Duration;

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
