//! Interactive terminals: `GET /v1/leases/{id}/pty` as a WebSocket, over the same Unix socket or
//! TCP connection as every other call.
//!
//! Binary messages are terminal bytes both ways; the session's control messages (resize, signal)
//! and the daemon's `started` / `exit` / `error` messages are JSON text. [`PtySession::split`]
//! gives a sender and a receiver that work from two tasks (keyboard in, screen out).

use firepit_api::{ErrorBody, ErrorCode, ExitStatusView, PtyControl, SignalSpec, StreamEvent};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::files::lease_path;
use crate::{Client, ClientError, StatusCode};

/// A byte stream to the daemon (Unix or TCP).
pub(crate) trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncIo for T {}
/// A boxed connection.
pub(crate) type Io = Box<dyn AsyncIo>;

type Socket = WebSocketStream<Io>;

/// What to run on the terminal and its size.
///
/// ```
/// let options = firepit_client::PtyOptions { rows: 40, cols: 120, ..Default::default() };
/// assert!(options.argv.is_empty()); // a login shell
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyOptions {
    /// Program and arguments (empty: a login shell).
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (default `/root` if it exists).
    pub cwd: Option<String>,
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Default for PtyOptions {
    fn default() -> Self {
        Self { argv: Vec::new(), env: Vec::new(), cwd: None, rows: 24, cols: 80 }
    }
}

/// What the terminal sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// The program started.
    Started {
        /// Its guest process id.
        pid: u32,
    },
    /// Terminal output.
    Output(Vec<u8>),
    /// The program exited (the last event).
    Exit(ExitStatusView),
    /// The session ended otherwise (the lease ended, the daemon is stopping; the last event).
    Error {
        /// Machine-readable code.
        error: ErrorCode,
        /// Human-readable message.
        message: String,
    },
}

/// An open terminal (see the module docs).
///
/// ```no_run
/// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
/// use firepit_client::{PtyEvent, PtyOptions};
/// let mut pty = client.pty("l-0123", &PtyOptions::default()).await?;
/// pty.resize(40, 120).await?;
/// pty.send_input(b"stty size; exit 3\n").await?;
/// while let Some(event) = pty.next_event().await? {
///     match event {
///         PtyEvent::Output(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
///         PtyEvent::Exit(status) => assert_eq!(status.exit_code, Some(3)),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct PtySession {
    sender: PtySender,
    receiver: PtyReceiver,
}

impl std::fmt::Debug for PtySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PtySession")
    }
}

/// The sending half of a [`PtySession`].
pub struct PtySender {
    sink: SplitSink<Socket, Message>,
}

/// The receiving half of a [`PtySession`].
pub struct PtyReceiver {
    stream: SplitStream<Socket>,
    done: bool,
}

fn broken(error: tungstenite::Error) -> ClientError {
    ClientError::Stream(error.to_string())
}

impl PtySender {
    /// Types `bytes` into the terminal (Ctrl-C is `0x03`, Ctrl-D `0x04`).
    pub async fn send_input(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sink.send(Message::Binary(bytes.to_vec().into())).await.map_err(broken)
    }

    /// Resizes the terminal.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.control(&PtyControl::Resize { rows, cols }).await
    }

    /// Sends a signal to the terminal's foreground process group.
    pub async fn signal(&mut self, signal: SignalSpec) -> Result<(), ClientError> {
        self.control(&PtyControl::Signal { signal }).await
    }

    async fn control(&mut self, control: &PtyControl) -> Result<(), ClientError> {
        let text = serde_json::to_string(control).map_err(|e| ClientError::Stream(e.to_string()))?;
        self.sink.send(Message::Text(text.into())).await.map_err(broken)
    }

    /// Closes the session (the daemon kills the program if it still runs).
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sink.close().await.map_err(broken)
    }
}

impl PtyReceiver {
    /// The next event; `None` after the last one.
    pub async fn next_event(&mut self) -> Result<Option<PtyEvent>, ClientError> {
        while !self.done {
            let Some(message) = self.stream.next().await else { break };
            match message.map_err(broken)? {
                Message::Binary(bytes) => return Ok(Some(PtyEvent::Output(bytes.to_vec()))),
                Message::Text(text) => {
                    let event: StreamEvent = serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::Stream(format!("unexpected message {text:?}: {e}")))?;
                    let event = match event {
                        StreamEvent::Started { pid } => PtyEvent::Started { pid },
                        StreamEvent::Exit(status) => PtyEvent::Exit(status),
                        StreamEvent::Error { error, message } => PtyEvent::Error { error, message },
                        _ => continue,
                    };
                    self.done = matches!(event, PtyEvent::Exit(_) | PtyEvent::Error { .. });
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

impl PtySession {
    /// The sender and the receiver, for two tasks.
    pub fn split(self) -> (PtySender, PtyReceiver) {
        (self.sender, self.receiver)
    }

    /// See [`PtySender::send_input`].
    pub async fn send_input(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.sender.send_input(bytes).await
    }

    /// See [`PtySender::resize`].
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.sender.resize(rows, cols).await
    }

    /// See [`PtySender::signal`].
    pub async fn signal(&mut self, signal: SignalSpec) -> Result<(), ClientError> {
        self.sender.signal(signal).await
    }

    /// See [`PtyReceiver::next_event`].
    pub async fn next_event(&mut self) -> Result<Option<PtyEvent>, ClientError> {
        self.receiver.next_event().await
    }

    /// See [`PtySender::close`].
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sender.close().await
    }
}

impl Client {
    /// `GET /v1/leases/{id}/pty`: opens a terminal running `options.argv` (a login shell if
    /// empty). A program that cannot start is an [`ClientError::Api`] (`exec_refused`).
    pub async fn pty(&self, lease_id: &str, options: &PtyOptions) -> Result<PtySession, ClientError> {
        let mut query: Vec<(&str, String)> =
            vec![("rows", options.rows.to_string()), ("cols", options.cols.to_string())];
        query.extend(options.argv.iter().map(|a| ("arg", a.clone())));
        query.extend(options.env.iter().map(|(k, v)| ("env", format!("{k}={v}"))));
        query.extend(options.cwd.iter().map(|c| ("cwd", c.clone())));
        let path = lease_path(lease_id, "pty", &query)?;
        let (host, token) = self.websocket_parts();
        let mut request = format!("ws://{host}{path}").into_client_request().map_err(broken)?;
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Stream("the bearer token is not a valid header value".into()))?;
            request.headers_mut().insert(hyper::header::AUTHORIZATION, value);
        }
        let io = self.connect_raw().await?;
        let socket = match tokio_tungstenite::client_async(request, io).await {
            Ok((socket, _response)) => socket,
            Err(tungstenite::Error::Http(response)) => return Err(refused(&response)),
            Err(error) => return Err(broken(error)),
        };
        let (sink, stream) = socket.split();
        Ok(PtySession { sender: PtySender { sink }, receiver: PtyReceiver { stream, done: false } })
    }
}

/// The daemon's answer to a refused upgrade, as an API error.
fn refused(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> ClientError {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = response.body().as_deref().unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api { status, error: e.error, message: e.message },
        Err(_) => ClientError::Decode { status, message: String::from_utf8_lossy(body).into_owned() },
    }
}
