//! `POST /v1/leases/{id}/exec/stream`: a command whose output comes back as it is written, as
//! NDJSON events (framing: `firepit_api::StreamEvent`, and the guide).
//!
//! The response is a state machine polled by the connection: it reads stdout and stderr as the
//! client takes events (a client that stops reading pauses the command after one window), feeds
//! stdin from the request, and ends with the exit. The command is attached to the response: a
//! client that disconnects drops it, which kills the command's process group; so does the lease
//! ending or being paused (with an `error` event first: `lease_ended`, `lease_paused`). The
//! response holds the command's streams, never the VM: a lease that ends destroys its VM at once,
//! even while a client that stopped reading still holds this response.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use firepit_agent::ExitStatus;
use firepit_api::{ExitStatusView, NDJSON, SpawnBody, StreamEvent};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::args;
use super::chunks::{Utf8Carry, chunk, line};
use super::error::{ApiError, ApiJson};
use super::sandbox_error::start_error;
use super::streaming::{CHUNK, on_vm};
use crate::backend::BoxFuture;
use crate::leases::Lease;
use crate::sandbox::{Attached, ByteStream, SandboxError};

/// Run a command and stream its output as NDJSON events.
#[utoipa::path(
    post, path = "/v1/leases/{id}/exec/stream", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    request_body = SpawnBody,
    responses(
        (status = 200, description = "NDJSON, one event per line: `started`, `stdout`/`stderr` chunks as written, then `exit` (or `error`)", content_type = "application/x-ndjson", body = StreamEvent),
        (status = 400, description = "Bad argv, env, stdin or timeout", body = super::ErrorBody),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 422, description = "The program cannot be started", body = super::ErrorBody),
    )
)]
pub async fn exec_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SpawnBody>,
) -> Result<Response, ApiError> {
    let args::CheckedProgram { argv, env, cwd } = args::check_program(body.program)?;
    args::check_timeout(body.timeout_ms)?;
    let stdin = args::decode_stdin(body.input)?;
    let request = firepit_agent::SpawnRequest {
        argv,
        env,
        cwd,
        timeout_ms: body.timeout_ms,
        stdin: !stdin.is_empty(),
        user: None,
    };
    let (lease, attached) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { vm.sandbox().spawn(request).await.map_err(start_error) })
    })
    .await?;
    let run = Run::new(attached, stdin, lease);
    let events = futures_util::stream::unfold(run, |mut run| async move {
        let event = run.next_event().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(line(&event)), run))
    });
    let mut response = Body::from_stream(events).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(response)
}

/// One output of the command and the UTF-8 tail it carries.
struct Output {
    stream: Option<ByteStream>,
    carry: Utf8Carry,
    buf: Vec<u8>,
}

impl Output {
    fn new(stream: Option<ByteStream>) -> Self {
        Self { stream, carry: Utf8Carry::default(), buf: vec![0; CHUNK] }
    }

    /// The next bytes to send (`Ok(None)` once it ended and nothing is left).
    async fn next(&mut self) -> Result<Option<Vec<u8>>, std::io::Error> {
        while let Some(stream) = self.stream.as_mut() {
            let n = stream.read(&mut self.buf).await?;
            let bytes = if n == 0 {
                self.stream = None;
                self.carry.finish()
            } else {
                self.carry.push(&self.buf[..n])
            };
            if !bytes.is_empty() {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }
}

/// A running streamed exec.
struct Run {
    started: Option<u32>,
    stdout: Output,
    stderr: Output,
    stdin: Option<BoxFuture<'static, Result<(), SandboxError>>>,
    exit: Option<BoxFuture<'static, Result<ExitStatus, SandboxError>>>,
    /// Fires when the lease stops running (ended, paused).
    stopped: CancellationToken,
    /// The lease (not its VM): what to say when it stops.
    lease: Arc<Lease>,
}

impl Run {
    fn new(attached: Attached, stdin: Vec<u8>, lease: Arc<Lease>) -> Self {
        let Attached { pid, stdout, stderr, stdin: input, control: _, exit } = attached;
        let stdin = input.map(|mut input| -> BoxFuture<'static, Result<(), SandboxError>> {
            Box::pin(async move {
                input.write(&stdin).await?;
                input.close()
            })
        });
        Self {
            started: Some(pid),
            stdout: Output::new(Some(stdout)),
            stderr: Output::new(stderr),
            stdin,
            exit: Some(exit),
            stopped: lease.stopped(),
            lease,
        }
    }

    /// The next event; `None` after the last one.
    async fn next_event(&mut self) -> Option<StreamEvent> {
        if let Some(pid) = self.started.take() {
            return Some(StreamEvent::Started { pid });
        }
        self.exit.as_ref()?;
        let event = self.step().await;
        if matches!(event, StreamEvent::Exit(_) | StreamEvent::Error { .. }) {
            // The last event: the process is over (or killed with the handle, here).
            self.exit = None;
            self.stdin = None;
        }
        Some(event)
    }

    async fn step(&mut self) -> StreamEvent {
        let Self { stdout, stderr, stdin, exit, stopped, lease, .. } = self;
        loop {
            let outputs_done = stdout.stream.is_none() && stderr.stream.is_none();
            tokio::select! {
                () = stopped.cancelled() => return error_event(lease.interruption().into()),
                result = async { stdin.as_mut().expect("polled only while Some: the select! precondition").await }, if stdin.is_some() => {
                    *stdin = None;
                    if let Err(error) = result {
                        // The command may exit without reading its stdin: not a failure of the exec.
                        tracing::debug!(%error, "stdin not fully written");
                    }
                }
                read = stdout.next(), if stdout.stream.is_some() => match read {
                    Ok(Some(bytes)) => return StreamEvent::Stdout(chunk(bytes)),
                    Ok(None) => {}
                    Err(error) => return error_event(SandboxError::Unreachable(error.into()).into()),
                },
                read = stderr.next(), if stderr.stream.is_some() => match read {
                    Ok(Some(bytes)) => return StreamEvent::Stderr(chunk(bytes)),
                    Ok(None) => {}
                    Err(error) => return error_event(SandboxError::Unreachable(error.into()).into()),
                },
                status = async { exit.as_mut().expect("polled only while Some: the select! precondition").await }, if outputs_done => {
                    return match status {
                        Ok(status) => StreamEvent::Exit(exit_view(status)),
                        Err(error) => error_event(error.into()),
                    };
                }
            }
        }
    }
}

/// The API's view of an exit status.
pub fn exit_view(status: ExitStatus) -> ExitStatusView {
    ExitStatusView {
        exit_code: status.exit_code,
        signal: status.signal,
        timed_out: status.timed_out,
        duration_ms: status.duration_ms,
        oom_killed: status.oom_killed,
    }
}

/// An error as the last event of a stream.
pub fn error_event(error: ApiError) -> StreamEvent {
    StreamEvent::Error { error: error.code, message: error.message }
}
