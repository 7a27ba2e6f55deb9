//! `GET /v1/leases/{id}/pty`: an interactive terminal over a WebSocket.
//!
//! The terminal is started before the upgrade, so a bad request or a program that cannot run is
//! an ordinary HTTP error. Then: binary messages are terminal bytes both ways; the client's text
//! messages are [`PtyControl`] (resize, signal); the server's text messages are `started` (first),
//! then `exit` with the status (or `error`) right before it closes the socket. The terminal is
//! attached to the socket: a client that disconnects kills it; so does the lease ending or the
//! daemon stopping (after an `error` message).
//!
//! Query: `rows`, `cols` (default 24×80), `cwd`, `user` (a name, uid or `uid:gid`), `arg` (repeated: the program and its arguments;
//! none: a login shell), `env` (repeated `NAME=VALUE`).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use firepit_agent::{PtyRequest, WindowSize};
use firepit_api::{PtyControl, StreamEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::exec_stream::{error_event, exit_view};
use super::processes::signal_number;
use super::sandbox_error::{shutting_down, start_error};
use super::streaming::{CHUNK, on_vm};
use crate::leases::Lease;
use crate::sandbox::{Attached, Control, Input};

/// Open an interactive terminal (WebSocket).
#[utoipa::path(
    get, path = "/v1/leases/{id}/pty", tag = "leases",
    params(
        ("id" = String, Path, description = "Lease id"),
        ("rows" = Option<u16>, Query, description = "Terminal rows (default 24)"),
        ("cols" = Option<u16>, Query, description = "Terminal columns (default 80)"),
        ("cwd" = Option<String>, Query, description = "Working directory (default /root if it exists, or the user's home)"),
        ("user" = Option<String>, Query, description = "Run as this user: a name, a uid or uid:gid (default root)"),
        ("arg" = Option<Vec<String>>, Query, description = "Program and arguments, repeated in order (default: a login shell)"),
        ("env" = Option<Vec<String>>, Query, description = "NAME=VALUE, repeated"),
    ),
    responses(
        (status = 101, description = "WebSocket: binary = terminal bytes both ways; text = `PtyControl` from the client, `started` / `exit` / `error` events (`StreamEvent`) from the server"),
        (status = 400, description = "Bad query", body = super::ErrorBody),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 422, description = "The program cannot be started", body = super::ErrorBody),
    )
)]
pub async fn open_pty(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let request = pty_request(params)?;
    let (lease, attached) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { vm.sandbox().pty(request).await.map_err(start_error) })
    })
    .await?;
    let stopping = state.stopping();
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, attached, lease, stopping)))
}

fn pty_request(params: Vec<(String, String)>) -> Result<PtyRequest, ApiError> {
    let mut request = PtyRequest::default();
    let size = |name: &str, value: &str| {
        value.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(format!("{name} = {value:?}: must be a number of cells, 1..=65535"))
        })
    };
    for (name, value) in params {
        match name.as_str() {
            "rows" => request.size.rows = size("rows", &value)?,
            "cols" => request.size.cols = size("cols", &value)?,
            "cwd" => request.cwd = Some(value),
            "user" => request.user = Some(value),
            "arg" => request.argv.push(value),
            "env" => {
                let (key, val) = value.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| {
                    ApiError::new(ErrorCode::BadEnv, format!("env {value:?}: expected NAME=VALUE"))
                })?;
                request.env.push((key.to_owned(), val.to_owned()));
            }
            other => return Err(ApiError::bad_request(format!("unknown query parameter `{other}`"))),
        }
    }
    if request.argv.iter().chain(request.env.iter().flat_map(|(k, v)| [k, v])).any(|s| s.contains('\0')) {
        return Err(ApiError::new(ErrorCode::BadArgv, "arguments must not contain NUL bytes"));
    }
    super::args::check_cwd(request.cwd.as_deref())?;
    if request.user.iter().any(|s| s.contains('\0')) {
        return Err(ApiError::bad_request("user must not contain NUL bytes"));
    }
    Ok(request)
}

/// Carries the terminal both ways until it exits, the client leaves, or the lease or daemon ends.
///
/// Two halves run side by side: `input` (client → terminal) and `output` (terminal → client,
/// then the last message and the close frame). The session ends when `output` ends; when the
/// client closes first, `input` tells `output`, which answers the close and drops the terminal
/// (killing it). Either way the connection is dropped only after the close handshake (bounded).
async fn bridge(socket: WebSocket, attached: Attached, lease: Arc<Lease>, stopping: CancellationToken) {
    let Attached { pid, mut stdout, stdin, control, exit, .. } = attached;
    let (mut sink, mut incoming) = socket.split();
    let (client_left, mut client_gone) = tokio::sync::oneshot::channel::<()>();
    let stopped = lease.stopped();
    let input = async move {
        super::ws_input::carry(&mut incoming, stdin, TerminalControls(control)).await;
        let _output_may_be_done = client_left.send(());
    };
    let output = async move {
        let send =
            |event: &StreamEvent| Message::Text(serde_json::to_string(event).unwrap_or_default().into());
        if sink.send(send(&StreamEvent::Started { pid })).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; CHUNK];
        let last = loop {
            let read = tokio::select! {
                _ = &mut client_gone => {
                    // Answer the client's close; dropping `exit` then kills the terminal.
                    let _client_may_be_gone = sink.send(Message::Close(None)).await;
                    return;
                }
                () = stopped.cancelled() => break error_event(lease.interruption().into()),
                () = stopping.cancelled() => break error_event(shutting_down()),
                read = stdout.read(&mut buf) => read,
            };
            match read {
                Ok(0) => {
                    break tokio::select! {
                        status = exit => match status {
                            Ok(status) => StreamEvent::Exit(exit_view(status)),
                            Err(error) => error_event(error.into()),
                        },
                        () = stopped.cancelled() => error_event(lease.interruption().into()),
                    };
                }
                Ok(n) => {
                    // A client that stopped reading blocks this send: the lease's end must not wait.
                    let sent = tokio::select! {
                        sent = sink.send(Message::Binary(buf[..n].to_vec().into())) => sent.is_ok(),
                        () = stopped.cancelled() => break error_event(lease.interruption().into()),
                        () = stopping.cancelled() => break error_event(shutting_down()),
                    };
                    if !sent {
                        return;
                    }
                }
                Err(error) => {
                    break error_event(crate::sandbox::SandboxError::Unreachable(error.into()).into());
                }
            }
        };
        let code = if matches!(last, StreamEvent::Exit(_)) { close_code::NORMAL } else { close_code::ERROR };
        super::ws_halves::send_last(&mut sink, send(&last), code).await;
    };
    super::ws_halves::run(input, output).await;
}

/// A terminal's controls: a signal is urgent, a resize keeps its place among the input.
struct TerminalControls(Arc<dyn Control>);

impl super::ws_input::Controls for TerminalControls {
    fn urgent(&self, text: &str) -> bool {
        matches!(serde_json::from_str::<PtyControl>(text), Ok(PtyControl::Signal { .. }))
    }

    fn apply(&mut self, text: &str, _stdin: &mut Option<Box<dyn Input>>) {
        apply_control(text, self.0.as_ref());
    }
}

fn apply_control(text: &str, control: &dyn Control) {
    let result = match serde_json::from_str::<PtyControl>(text) {
        Ok(PtyControl::Resize { rows, cols }) if rows > 0 && cols > 0 => {
            control.resize(WindowSize { rows, cols })
        }
        Ok(PtyControl::Signal { signal }) => match signal_number(&signal) {
            Ok(signal) => control.signal(signal),
            Err(error) => return tracing::debug!(message = %error.message, "PTY control ignored"),
        },
        Ok(PtyControl::Resize { .. }) => return tracing::debug!("PTY resize to 0 cells ignored"),
        Err(error) => return tracing::debug!(%error, "PTY control message ignored"),
    };
    if let Err(error) = result {
        tracing::debug!(%error, "PTY control failed");
    }
}
