//! `GET /v1/leases/{id}/exec/ws`: a command on pipes over a WebSocket, for a client that feeds the
//! command's stdin while it runs and reads stdout and stderr apart (framing:
//! `firepit_api::AttachControl` and the guide).
//!
//! The command is started before the upgrade, so a bad request or a program that cannot run is an
//! ordinary HTTP error. It is attached to the socket like a terminal: a client that disconnects
//! kills its process group, and so does the lease ending or the daemon stopping (after an `error`
//! message). Output nobody reads pauses the command after one window, as everywhere else.
//!
//! Query: `arg` (repeated: the program and its arguments), `env` (repeated `NAME=VALUE`), `cwd`,
//! `user`, `stdin` (`true` keeps stdin open for the client's binary messages; default `/dev/null`),
//! `timeout_ms` (the process group is killed after it; 0: none).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use firepit_agent::SpawnRequest;
use firepit_api::{ATTACH_STDERR, ATTACH_STDOUT, AttachControl, StreamEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::args;
use super::error::{ApiError, ErrorCode};
use super::exec_stream::{error_event, exit_view};
use super::processes::signal_number;
use super::sandbox_error::{shutting_down, start_error};
use super::streaming::{CHUNK, on_vm};
use crate::leases::Lease;
use crate::sandbox::{Attached, ByteStream, Control, Input, SandboxError};

/// Run a command on pipes, its stdin, stdout and stderr over a WebSocket.
#[utoipa::path(
    get, path = "/v1/leases/{id}/exec/ws", tag = "leases",
    params(
        ("id" = String, Path, description = "Lease id"),
        ("arg" = Vec<String>, Query, description = "Program and arguments, repeated in order"),
        ("env" = Option<Vec<String>>, Query, description = "NAME=VALUE, repeated"),
        ("cwd" = Option<String>, Query, description = "Working directory (default `/`, or the user's home)"),
        ("user" = Option<String>, Query, description = "Run as this user: a name, a uid or uid:gid (default root)"),
        ("stdin" = Option<bool>, Query, description = "Keep stdin open for the client's binary messages (default false)"),
        ("timeout_ms" = Option<u64>, Query, description = "Kill the process group after this many ms (0: never)"),
    ),
    responses(
        (status = 101, description = "WebSocket: server binary = channel byte (1 stdout, 2 stderr) + bytes; client binary = stdin; text = `AttachControl` from the client, `started` / `exit` / `error` events (`StreamEvent`) from the server"),
        (status = 400, description = "Bad query", body = super::ErrorBody),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 422, description = "The program cannot be started", body = super::ErrorBody),
    )
)]
pub async fn exec_ws(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let request = spawn_request(params)?;
    let (lease, attached) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { vm.sandbox().spawn(request).await.map_err(start_error) })
    })
    .await?;
    let stopping = state.stopping();
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, attached, lease, stopping)))
}

fn spawn_request(params: Vec<(String, String)>) -> Result<SpawnRequest, ApiError> {
    let mut request = SpawnRequest::default();
    let mut env = std::collections::BTreeMap::new();
    for (name, value) in params {
        match name.as_str() {
            "arg" => request.argv.push(value),
            "cwd" => request.cwd = Some(value),
            "user" => request.user = Some(value),
            "env" => {
                let (key, val) = value.split_once('=').ok_or_else(|| {
                    ApiError::new(ErrorCode::BadEnv, format!("env {value:?}: expected NAME=VALUE"))
                })?;
                env.insert(key.to_owned(), val.to_owned());
            }
            "stdin" => request.stdin = flag("stdin", &value)?,
            "timeout_ms" => {
                request.timeout_ms = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("timeout_ms = {value:?}: must be a number of milliseconds"))
                })?;
            }
            other => return Err(ApiError::bad_request(format!("unknown query parameter `{other}`"))),
        }
    }
    args::check_argv(&request.argv)?;
    request.env = args::check_env(env)?;
    args::check_timeout(request.timeout_ms)?;
    args::check_cwd(request.cwd.as_deref())?;
    if request.user.iter().any(|s| s.contains('\0')) {
        return Err(ApiError::bad_request("user must not contain NUL bytes"));
    }
    Ok(request)
}

fn flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request(format!("{name} = {other:?}: must be true or false"))),
    }
}

/// One output pipe and the channel byte its messages carry.
struct Pipe {
    stream: Option<ByteStream>,
    channel: u8,
}

impl Pipe {
    /// The next message (channel byte + bytes), `Ok(None)` once the pipe ended.
    async fn next(&mut self, buf: &mut [u8]) -> std::io::Result<Option<Vec<u8>>> {
        let Some(stream) = self.stream.as_mut() else { return Ok(None) };
        let n = stream.read(buf).await?;
        if n == 0 {
            self.stream = None;
            return Ok(None);
        }
        let mut message = Vec::with_capacity(n + 1);
        message.push(self.channel);
        message.extend_from_slice(&buf[..n]);
        Ok(Some(message))
    }
}

/// Carries the command both ways until it exits, the client leaves, or the lease or daemon ends
/// (the same halves and close handshake as the terminal's bridge).
async fn bridge(socket: WebSocket, attached: Attached, lease: Arc<Lease>, stopping: CancellationToken) {
    let Attached { pid, stdout, stderr, stdin, control, exit } = attached;
    let (mut sink, mut incoming) = socket.split();
    let (client_left, mut client_gone) = tokio::sync::oneshot::channel::<()>();
    let stopped = lease.stopped();
    let input = async move {
        super::ws_input::carry(&mut incoming, stdin, ExecControls(control)).await;
        let _output_may_be_done = client_left.send(());
    };
    let output = async move {
        let send =
            |event: &StreamEvent| Message::Text(serde_json::to_string(event).unwrap_or_default().into());
        if sink.send(send(&StreamEvent::Started { pid })).await.is_err() {
            return;
        }
        let mut out = Pipe { stream: Some(stdout), channel: ATTACH_STDOUT };
        let mut err = Pipe { stream: stderr, channel: ATTACH_STDERR };
        let (mut out_buf, mut err_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let last = loop {
            if out.stream.is_none() && err.stream.is_none() {
                break tokio::select! {
                    status = exit => match status {
                        Ok(status) => StreamEvent::Exit(exit_view(status)),
                        Err(error) => error_event(error.into()),
                    },
                    () = stopped.cancelled() => error_event(lease.interruption().into()),
                };
            }
            let read = tokio::select! {
                _ = &mut client_gone => {
                    // Answer the client's close; dropping `exit` then kills the command.
                    let _client_may_be_gone = sink.send(Message::Close(None)).await;
                    return;
                }
                () = stopped.cancelled() => break error_event(lease.interruption().into()),
                () = stopping.cancelled() => break error_event(shutting_down()),
                read = out.next(&mut out_buf), if out.stream.is_some() => read,
                read = err.next(&mut err_buf), if err.stream.is_some() => read,
            };
            match read {
                Ok(Some(message)) => {
                    // A client that stopped reading blocks this send: the lease's end must not wait.
                    let sent = tokio::select! {
                        sent = sink.send(Message::Binary(message.into())) => sent.is_ok(),
                        () = stopped.cancelled() => break error_event(lease.interruption().into()),
                        () = stopping.cancelled() => break error_event(shutting_down()),
                    };
                    if !sent {
                        return;
                    }
                }
                Ok(None) => {}
                Err(error) => break error_event(SandboxError::Unreachable(error.into()).into()),
            }
        };
        let code = if matches!(last, StreamEvent::Exit(_)) { close_code::NORMAL } else { close_code::ERROR };
        super::ws_halves::send_last(&mut sink, send(&last), code).await;
    };
    super::ws_halves::run(input, output).await;
}

/// An exec's controls: a signal is urgent, `close_stdin` comes after the input sent before it.
struct ExecControls(Arc<dyn Control>);

impl super::ws_input::Controls for ExecControls {
    fn urgent(&self, text: &str) -> bool {
        matches!(serde_json::from_str::<AttachControl>(text), Ok(AttachControl::Signal { .. }))
    }

    fn apply(&mut self, text: &str, stdin: &mut Option<Box<dyn Input>>) {
        apply_control(text, self.0.as_ref(), stdin);
    }
}

fn apply_control(text: &str, control: &dyn Control, stdin: &mut Option<Box<dyn Input>>) {
    let result = match serde_json::from_str::<AttachControl>(text) {
        Ok(AttachControl::Signal { signal }) => match signal_number(&signal) {
            Ok(signal) => control.signal(signal),
            Err(error) => return tracing::debug!(message = %error.message, "exec control ignored"),
        },
        Ok(AttachControl::CloseStdin) => match stdin.take() {
            Some(mut input) => input.close(),
            None => Ok(()),
        },
        Err(error) => return tracing::debug!(%error, "exec control message ignored"),
    };
    if let Err(error) = result {
        tracing::debug!(%error, "exec control failed");
    }
}
