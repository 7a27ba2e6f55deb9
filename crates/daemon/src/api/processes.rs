//! Background processes: start, list, get (optionally waiting for the exit), signal, remove, and
//! read output from an offset, once or followed as NDJSON.
//!
//! `{process}` in a path is the process's id (digits) or its tag (anything else; tags made only
//! of digits are refused at start for that reason).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use firepit_agent::{Channel, MAX_PROCESS_OUTPUT_LIMIT, ProcessInfo, ProcessOutputRequest, ProcessRef};
use firepit_api::{
    NDJSON, OutputChannel, OutputChunk, OutputQuery, ProcessList, ProcessOutputView, ProcessQuery,
    ProcessView, SignalBody, SignalSpec, StartProcessBody, StreamEvent,
};
use tokio_util::sync::CancellationToken;

use super::args;
use super::chunks::{encode, line};
use super::error::{ApiError, ApiJson, ErrorCode};
use super::exec_stream::{error_event, exit_view};
use super::sandbox_error::{shutting_down, start_error};
use super::streaming::on_vm;
use super::{AppState, MAX_WAIT};
use crate::leases::Lease;

/// Longest `wait_ms` of one output read.
const MAX_OUTPUT_WAIT_MS: u64 = 60_000;
/// Bytes per read while following output.
const FOLLOW_READ: u32 = 256 * 1024;
/// How long one read waits for output while following (then it asks again).
const FOLLOW_POLL_MS: u64 = 10_000;

/// Start a background process.
#[utoipa::path(
    post, path = "/v1/leases/{id}/processes", tag = "processes",
    params(("id" = String, Path, description = "Lease id")),
    request_body = StartProcessBody,
    responses(
        (status = 201, description = "Started", body = ProcessView),
        (status = 400, description = "Bad argv, env, tag or timeout", body = super::ErrorBody),
        (status = 409, description = "A running process has that tag (`already_exists`)", body = super::ErrorBody),
        (status = 422, description = "The program cannot be started", body = super::ErrorBody),
        (status = 429, description = "Too many background processes run (`limit_reached`)", body = super::ErrorBody),
    )
)]
pub async fn start_process(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartProcessBody>,
) -> Result<(StatusCode, axum::Json<ProcessView>), ApiError> {
    let args::CheckedProgram { argv, env, cwd } = args::check_program(body.program)?;
    args::check_timeout(body.timeout_ms)?;
    if body.output_limit_bytes > MAX_PROCESS_OUTPUT_LIMIT {
        return Err(ApiError::bad_request(format!(
            "output_limit_bytes = {}: must be at most {MAX_PROCESS_OUTPUT_LIMIT} (64 MiB)",
            body.output_limit_bytes
        )));
    }
    if let Some(tag) = &body.tag
        && (tag.is_empty() || tag.bytes().all(|b| b.is_ascii_digit()) || tag.contains('/'))
    {
        return Err(ApiError::new(
            ErrorCode::BadTag,
            format!("tag {tag:?}: must be non-empty, not all digits (those are ids) and without `/`"),
        ));
    }
    if body.user.as_deref().is_some_and(|user| user.is_empty() || user.contains('\0')) {
        return Err(ApiError::bad_request("user must be a non-empty name, uid or uid:gid without NUL bytes"));
    }
    let request = firepit_agent::StartProcessRequest {
        argv,
        env,
        cwd,
        tag: body.tag,
        timeout_ms: body.timeout_ms,
        output_limit_bytes: body.output_limit_bytes,
        user: body.user,
    };
    let info = on_vm(&state, &id, move |vm| {
        Box::pin(async move { vm.sandbox().start_process(request).await.map_err(start_error) })
    })
    .await?
    .1;
    Ok((StatusCode::CREATED, axum::Json(process_view(info))))
}

/// List the background processes (running, and recently exited), oldest first.
#[utoipa::path(
    get, path = "/v1/leases/{id}/processes", tag = "processes",
    params(("id" = String, Path, description = "Lease id")),
    responses((status = 200, description = "The processes", body = ProcessList), (status = 404, description = "No such lease", body = super::ErrorBody))
)]
pub async fn list_processes(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ProcessList>, ApiError> {
    let processes =
        on_vm(&state, &id, move |vm| Box::pin(async move { Ok(vm.sandbox().processes().await?) })).await?.1;
    Ok(axum::Json(ProcessList { processes: processes.into_iter().map(process_view).collect() }))
}

/// A background process's state; with `wait_ms`, after waiting that long for it to exit.
#[utoipa::path(
    get, path = "/v1/leases/{id}/processes/{process}", tag = "processes",
    params(("id" = String, Path, description = "Lease id"), ("process" = String, Path, description = "Process id or tag"), ProcessQuery),
    responses((status = 200, description = "Its state (`exit` is null while it runs)", body = ProcessView), (status = 404, description = "No such lease or process", body = super::ErrorBody))
)]
pub async fn get_process(
    State(state): State<AppState>,
    Path((id, process)): Path<(String, String)>,
    Query(query): Query<ProcessQuery>,
) -> Result<axum::Json<ProcessView>, ApiError> {
    let wait = Duration::from_millis(query.wait_ms);
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "wait_ms = {}: must be at most {}",
            query.wait_ms,
            MAX_WAIT.as_millis()
        )));
    }
    let info = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().wait_process(process_ref(&process), wait).await?) })
    })
    .await?
    .1;
    Ok(axum::Json(process_view(info)))
}

/// Forget an exited background process and free its output.
#[utoipa::path(
    delete, path = "/v1/leases/{id}/processes/{process}", tag = "processes",
    params(("id" = String, Path, description = "Lease id"), ("process" = String, Path, description = "Process id or tag")),
    responses((status = 204, description = "Removed"), (status = 400, description = "It still runs (`invalid_input`): signal it first", body = super::ErrorBody))
)]
pub async fn remove_process(
    State(state): State<AppState>,
    Path((id, process)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().remove_process(process_ref(&process)).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a signal to a background process's whole process group.
#[utoipa::path(
    post, path = "/v1/leases/{id}/processes/{process}/signal", tag = "processes",
    params(("id" = String, Path, description = "Lease id"), ("process" = String, Path, description = "Process id or tag")),
    request_body = SignalBody,
    responses((status = 204, description = "Sent"), (status = 400, description = "Unknown signal", body = super::ErrorBody), (status = 404, description = "No such lease or process", body = super::ErrorBody))
)]
pub async fn signal_process(
    State(state): State<AppState>,
    Path((id, process)): Path<(String, String)>,
    ApiJson(body): ApiJson<SignalBody>,
) -> Result<StatusCode, ApiError> {
    let signal = signal_number(&body.signal)?;
    on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().signal_process(process_ref(&process), signal).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read a background process's output from an offset; with `follow=true`, stream it as NDJSON.
#[utoipa::path(
    get, path = "/v1/leases/{id}/processes/{process}/output", tag = "processes",
    params(("id" = String, Path, description = "Lease id"), ("process" = String, Path, description = "Process id or tag"), OutputQuery),
    responses(
        (status = 200, description = "A slice of output (or, with `follow`, NDJSON: `stdout`/`stderr` chunks with offsets, `eof`, then `exit` once it exited)", body = ProcessOutputView),
        (status = 404, description = "No such lease or process", body = super::ErrorBody),
    )
)]
pub async fn read_process_output(
    State(state): State<AppState>,
    Path((id, process)): Path<(String, String)>,
    Query(query): Query<OutputQuery>,
) -> Result<Response, ApiError> {
    if query.wait_ms > MAX_OUTPUT_WAIT_MS {
        return Err(ApiError::bad_request(format!(
            "wait_ms = {}: must be at most {MAX_OUTPUT_WAIT_MS}",
            query.wait_ms
        )));
    }
    let process = process_ref(&process);
    let channel = match query.channel {
        OutputChannel::Stdout => Channel::Stdout,
        OutputChannel::Stderr => Channel::Stderr,
    };
    if query.follow {
        // Fails here (404) rather than in the stream when the process does not exist.
        let asked = process.clone();
        let (lease, _) = on_vm(&state, &id, move |vm| {
            Box::pin(async move { Ok(vm.sandbox().wait_process(asked, Duration::ZERO).await?) })
        })
        .await?;
        let follow = Follow {
            lease,
            process,
            channel,
            offset: query.offset,
            stopping: state.stopping(),
            phase: Phase::Reading,
        };
        let events = futures_util::stream::unfold(follow, |mut follow| async move {
            let event = follow.next_event().await?;
            Some((Ok::<Bytes, std::convert::Infallible>(line(&event)), follow))
        });
        let mut response = Body::from_stream(events).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        return Ok(response);
    }
    let request = ProcessOutputRequest {
        process,
        channel,
        offset: query.offset,
        max_bytes: query.max_bytes,
        wait_ms: query.wait_ms,
    };
    let out = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().process_output(request).await?) })
    })
    .await?
    .1;
    let (data, encoding) = encode(out.bytes);
    Ok(axum::Json(ProcessOutputView {
        offset: out.offset,
        data,
        encoding,
        missed: out.missed,
        next_offset: out.next_offset,
        eof: out.eof,
    })
    .into_response())
}

enum Phase {
    Reading,
    Eof(u64),
    Exit,
    Done,
}

/// A followed output: long-polls the guest from `offset` until the channel ends.
struct Follow {
    lease: Arc<Lease>,
    process: ProcessRef,
    channel: Channel,
    offset: u64,
    stopping: CancellationToken,
    phase: Phase,
}

impl Follow {
    async fn next_event(&mut self) -> Option<StreamEvent> {
        match self.phase {
            Phase::Done => None,
            Phase::Eof(next_offset) => {
                self.phase = Phase::Exit;
                Some(StreamEvent::Eof { next_offset })
            }
            Phase::Exit => {
                self.phase = Phase::Done;
                let process = self.process.clone();
                let info = self
                    .lease
                    .on_vm(move |vm| {
                        Box::pin(async move { vm.sandbox().wait_process(process, Duration::ZERO).await })
                    })
                    .await;
                match info {
                    Ok(Ok(info)) => info.exit.map(|status| StreamEvent::Exit(exit_view(status))),
                    Ok(Err(error)) => Some(error_event(error.into())),
                    Err(interrupted) => Some(error_event(interrupted.into())),
                }
            }
            Phase::Reading => {
                let event = self.read().await;
                if matches!(event, StreamEvent::Error { .. }) {
                    self.phase = Phase::Done;
                }
                Some(event)
            }
        }
    }

    async fn read(&mut self) -> StreamEvent {
        loop {
            let request = ProcessOutputRequest {
                process: self.process.clone(),
                channel: self.channel,
                offset: self.offset,
                max_bytes: FOLLOW_READ,
                wait_ms: FOLLOW_POLL_MS,
            };
            let read = tokio::select! {
                () = self.stopping.cancelled() => return error_event(shutting_down()),
                read = self.lease.on_vm(move |vm| Box::pin(async move { vm.sandbox().process_output(request).await })) => read,
            };
            let out = match read {
                Ok(Ok(out)) => out,
                Ok(Err(error)) => return error_event(error.into()),
                Err(interrupted) => return error_event(interrupted.into()),
            };
            self.offset = out.next_offset;
            if out.eof {
                self.phase = Phase::Eof(out.next_offset);
            }
            if !out.bytes.is_empty() {
                let (data, encoding) = encode(out.bytes);
                let chunk =
                    OutputChunk { data, encoding, offset: Some(out.offset), missed: Some(out.missed) };
                return match self.channel {
                    Channel::Stdout => StreamEvent::Stdout(chunk),
                    Channel::Stderr => StreamEvent::Stderr(chunk),
                };
            }
            if out.eof {
                self.phase = Phase::Exit;
                return StreamEvent::Eof { next_offset: out.next_offset };
            }
        }
    }
}

/// An id (all digits) or a tag.
fn process_ref(text: &str) -> ProcessRef {
    match text.parse::<u64>() {
        Ok(id) if text.bytes().all(|b| b.is_ascii_digit()) => ProcessRef::Id(id),
        _ => ProcessRef::Tag(text.to_owned()),
    }
}

/// A signal's number, from a number or a name (`TERM`, `SIGTERM`).
pub fn signal_number(signal: &SignalSpec) -> Result<i32, ApiError> {
    let bad = |what: String| ApiError::new(ErrorCode::BadSignal, what);
    match signal {
        SignalSpec::Number(n) if (1..=64).contains(n) => Ok(*n),
        SignalSpec::Number(n) => Err(bad(format!("signal {n}: must be 1..=64"))),
        SignalSpec::Name(name) => {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            let number = match bare {
                "HUP" => libc::SIGHUP,
                "INT" => libc::SIGINT,
                "QUIT" => libc::SIGQUIT,
                "KILL" => libc::SIGKILL,
                "USR1" => libc::SIGUSR1,
                "USR2" => libc::SIGUSR2,
                "TERM" => libc::SIGTERM,
                "CONT" => libc::SIGCONT,
                "STOP" => libc::SIGSTOP,
                "TSTP" => libc::SIGTSTP,
                "WINCH" => libc::SIGWINCH,
                _ => {
                    return Err(bad(format!(
                        "signal {name:?}: use a number or HUP, INT, QUIT, KILL, USR1, USR2, TERM, CONT, STOP, TSTP, WINCH"
                    )));
                }
            };
            Ok(number)
        }
    }
}

/// The API's view of a background process.
fn process_view(info: ProcessInfo) -> ProcessView {
    ProcessView {
        id: info.id,
        tag: info.tag,
        pid: info.pid,
        argv: info.argv,
        started_unix_ms: info.started_unix_ms,
        exit: info.exit.map(exit_view),
        stdout_bytes: info.stdout_bytes,
        stderr_bytes: info.stderr_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_ids_anything_else_a_tag() {
        assert_eq!(process_ref("12"), ProcessRef::Id(12));
        assert_eq!(process_ref("web"), ProcessRef::Tag("web".into()));
        assert_eq!(process_ref("+12"), ProcessRef::Tag("+12".into()));
    }

    #[test]
    fn signals_by_number_or_name() {
        assert_eq!(signal_number(&SignalSpec::Name("TERM".into())).unwrap(), libc::SIGTERM);
        assert_eq!(signal_number(&SignalSpec::Name("sigkill".into())).unwrap(), libc::SIGKILL);
        assert_eq!(signal_number(&SignalSpec::Number(2)).unwrap(), 2);
        assert_eq!(signal_number(&SignalSpec::Number(0)).unwrap_err().code, ErrorCode::BadSignal);
        assert_eq!(signal_number(&SignalSpec::Name("NOPE".into())).unwrap_err().code, ErrorCode::BadSignal);
    }
}
