//! A command on pipes over a WebSocket (`GET /v1/leases/{id}/exec/ws`): stdin fed while it runs,
//! stdout and stderr read apart, signals and end-of-file sent at any time.
//!
//! Like a terminal, the command is attached to the session: dropping it (or the daemon seeing the
//! connection close) kills the command's process group. [`ExecSession::split`] gives a sender and
//! a receiver for two tasks.

use firepit_api::{ATTACH_STDERR, ATTACH_STDOUT, AttachControl, ExitStatusView, SignalSpec, StreamEvent};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::files::lease_path;
use crate::pty::{Socket, broken};
use crate::{Client, ClientError};

/// What to run and how.
///
/// ```
/// let options = firepit_client::ExecWsOptions { stdin: true, ..firepit_client::ExecWsOptions::new(["cat"]) };
/// assert_eq!(options.argv, ["cat"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecWsOptions {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`, or the user's home).
    pub cwd: Option<String>,
    /// Run as this user: a name, a uid or `uid:gid` (default root).
    pub user: Option<String>,
    /// Keep stdin open for [`ExecSender::send_stdin`] (otherwise it is `/dev/null`).
    pub stdin: bool,
    /// Kill the process group after this many ms (0: never).
    pub timeout_ms: u64,
}

impl ExecWsOptions {
    /// Runs `argv` with every other option at its default.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Self::default() }
    }
}

/// What the command sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// The command started.
    Started {
        /// Its guest process id (and process group id).
        pid: u32,
    },
    /// Bytes it wrote to stdout.
    Stdout(Vec<u8>),
    /// Bytes it wrote to stderr.
    Stderr(Vec<u8>),
    /// It exited (the last event).
    Exit(ExitStatusView),
    /// The session ended otherwise (the lease ended, the daemon is stopping; the last event).
    Error {
        /// Machine-readable code.
        error: firepit_api::ErrorCode,
        /// Human-readable message.
        message: String,
    },
}

/// An attached command (see the module docs).
///
/// ```no_run
/// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
/// use firepit_client::{ExecEvent, ExecWsOptions};
/// let options = ExecWsOptions { stdin: true, ..ExecWsOptions::new(["cat"]) };
/// let mut session = client.exec_ws("l-0123", &options).await?;
/// session.send_stdin(b"hello").await?;
/// session.close_stdin().await?;
/// while let Some(event) = session.next_event().await? {
///     if let ExecEvent::Stdout(bytes) = event {
///         print!("{}", String::from_utf8_lossy(&bytes));
///     }
/// }
/// # Ok(()) }
/// ```
pub struct ExecSession {
    sender: ExecSender,
    receiver: ExecReceiver,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecSession")
    }
}

/// The sending half of an [`ExecSession`].
pub struct ExecSender {
    sink: SplitSink<Socket, Message>,
}

/// The receiving half of an [`ExecSession`].
pub struct ExecReceiver {
    stream: SplitStream<Socket>,
    done: bool,
}

impl ExecSender {
    /// Writes `bytes` to the command's stdin (it must have been started with `stdin`).
    pub async fn send_stdin(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sink.send(Message::Binary(bytes.to_vec().into())).await.map_err(broken)
    }

    /// Closes the command's stdin.
    pub async fn close_stdin(&mut self) -> Result<(), ClientError> {
        self.control(&AttachControl::CloseStdin).await
    }

    /// Sends a signal to the command's process group.
    pub async fn signal(&mut self, signal: SignalSpec) -> Result<(), ClientError> {
        self.control(&AttachControl::Signal { signal }).await
    }

    async fn control(&mut self, control: &AttachControl) -> Result<(), ClientError> {
        let text = serde_json::to_string(control).map_err(|e| ClientError::Stream(e.to_string()))?;
        self.sink.send(Message::Text(text.into())).await.map_err(broken)
    }

    /// Closes the session (the daemon kills the command if it still runs).
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sink.close().await.map_err(broken)
    }
}

impl ExecReceiver {
    /// The next event; `None` after the last one.
    pub async fn next_event(&mut self) -> Result<Option<ExecEvent>, ClientError> {
        while !self.done {
            let Some(message) = self.stream.next().await else { break };
            match message.map_err(broken)? {
                Message::Binary(bytes) => match bytes.split_first() {
                    Some((&ATTACH_STDOUT, data)) => return Ok(Some(ExecEvent::Stdout(data.to_vec()))),
                    Some((&ATTACH_STDERR, data)) => return Ok(Some(ExecEvent::Stderr(data.to_vec()))),
                    _ => return Err(ClientError::Stream("an output message without a known channel".into())),
                },
                Message::Text(text) => {
                    let event: StreamEvent = serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::Stream(format!("unexpected message {text:?}: {e}")))?;
                    let event = match event {
                        StreamEvent::Started { pid } => ExecEvent::Started { pid },
                        StreamEvent::Exit(status) => ExecEvent::Exit(status),
                        StreamEvent::Error { error, message } => ExecEvent::Error { error, message },
                        _ => continue,
                    };
                    self.done = matches!(event, ExecEvent::Exit(_) | ExecEvent::Error { .. });
                    return Ok(Some(event));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        self.done = true;
        Ok(None)
    }
}

impl ExecSession {
    /// The sender and the receiver, for two tasks.
    pub fn split(self) -> (ExecSender, ExecReceiver) {
        (self.sender, self.receiver)
    }

    /// See [`ExecSender::send_stdin`].
    pub async fn send_stdin(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sender.send_stdin(bytes).await
    }

    /// See [`ExecSender::close_stdin`].
    pub async fn close_stdin(&mut self) -> Result<(), ClientError> {
        self.sender.close_stdin().await
    }

    /// See [`ExecSender::signal`].
    pub async fn signal(&mut self, signal: SignalSpec) -> Result<(), ClientError> {
        self.sender.signal(signal).await
    }

    /// See [`ExecReceiver::next_event`].
    pub async fn next_event(&mut self) -> Result<Option<ExecEvent>, ClientError> {
        self.receiver.next_event().await
    }
}

impl Client {
    /// `GET /v1/leases/{id}/exec/ws`: starts `options.argv` on pipes, attached to the returned
    /// session. A program that cannot start is a [`ClientError::Api`] (`exec_refused`).
    pub async fn exec_ws(&self, lease_id: &str, options: &ExecWsOptions) -> Result<ExecSession, ClientError> {
        let mut query: Vec<(&str, String)> = options.argv.iter().map(|a| ("arg", a.clone())).collect();
        query.extend(options.env.iter().map(|(k, v)| ("env", format!("{k}={v}"))));
        query.extend(options.cwd.iter().map(|c| ("cwd", c.clone())));
        query.extend(options.user.iter().map(|u| ("user", u.clone())));
        if options.stdin {
            query.push(("stdin", "true".into()));
        }
        if options.timeout_ms > 0 {
            query.push(("timeout_ms", options.timeout_ms.to_string()));
        }
        let socket = self.websocket(&lease_path(lease_id, "exec/ws", &query)?).await?;
        let (sink, stream) = socket.split();
        Ok(ExecSession { sender: ExecSender { sink }, receiver: ExecReceiver { stream, done: false } })
    }
}
