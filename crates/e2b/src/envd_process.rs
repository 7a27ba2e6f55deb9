//! envd's `process.Process` service over the sandbox's [`ProcessTable`](crate::processes):
//! `Start` runs a command without stdin as a firepit background process (it survives a pause),
//! one with stdin or a terminal in a firepit session, and streams its events, `Connect` listens to a running one, the rest address a process by pid or tag.

use firepit_api::{ErrorCode, Program, StartProcessBody};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use bytes::BytesMut;
use firepit_client::{ExecEvent, ExecWsOptions, PtyEvent, PtyOptions};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::background::Background;
use crate::call::Call;
use crate::connect::{self, Code, ConnectError, Kind};
use crate::processes::{Event, Found, Process, Session};
use crate::proto::process::process_event::{DataEvent, Event as EventKind, KeepAlive, StartEvent};
use crate::proto::process::{
    CloseStdinRequest, CloseStdinResponse, ConnectRequest, ConnectResponse, ListRequest, ListResponse,
    ProcessConfig, ProcessEvent, ProcessInfo, ProcessSelector, SendInputRequest, SendInputResponse,
    SendSignalRequest, SendSignalResponse, Signal, StartRequest, StartResponse, StreamInputRequest,
    StreamInputResponse, UpdateRequest, UpdateResponse, process_input, process_selector,
    stream_input_request,
};
use crate::rpc::Rpc;

/// The keepalive interval when the client names none (`Keepalive-Ping-Interval`, seconds).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(50);

/// Serves one call of the process service.
pub async fn serve(call: Call, request: Request) -> Response {
    let rpc = match Rpc::parse(request) {
        Ok(rpc) => rpc,
        Err(response) => return *response,
    };
    let keepalive = keepalive(&rpc.headers);
    match rpc.method.as_str() {
        "Start" => {
            let deadline = match connect::timeout(&rpc.headers) {
                Ok(deadline) => deadline,
                Err(error) => return connect::stream_error(rpc.codec, error),
            };
            rpc.server_stream(|request: StartRequest| start(call, request, deadline, keepalive)).await
        }
        "Connect" => rpc.server_stream(|request: ConnectRequest| attach(call, request, keepalive)).await,
        "List" => rpc.unary(|_: ListRequest| async move { Ok(list(&call)) }).await,
        "SendInput" => rpc.unary(|request: SendInputRequest| async move { send_input(&call, request) }).await,
        "SendSignal" => {
            rpc.unary(|request: SendSignalRequest| async move { send_signal(&call, request) }).await
        }
        "CloseStdin" => {
            rpc.unary(|request: CloseStdinRequest| async move { close_stdin(&call, request) }).await
        }
        "Update" => rpc.unary(|request: UpdateRequest| async move { update(&call, request) }).await,
        "StreamInput" => stream_input(&call, rpc).await,
        _ => rpc.unknown_method(),
    }
}

fn keepalive(headers: &axum::http::HeaderMap) -> Duration {
    headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .filter(|secs| *secs > 0)
        .map_or(DEFAULT_KEEPALIVE, Duration::from_secs)
}

async fn start(
    call: Call,
    request: StartRequest,
    deadline: Option<Duration>,
    keepalive: Duration,
) -> Result<impl Stream<Item = Result<StartResponse, ConnectError>>, ConnectError> {
    let config = request.process.ok_or_else(|| ConnectError::invalid("process is required"))?;
    if config.cmd.is_empty() {
        return Err(ConnectError::invalid("process.cmd is empty"));
    }
    if let Some(tag) = &request.tag
        && call.sandbox.processes.tag_in_use(tag)
    {
        return Err(ConnectError::new(Code::AlreadyExists, format!("a process tagged {tag:?} is running")));
    }
    // The agent resolves the user's name itself (and starts in their home): the guest's user
    // table is read here only for a cwd relative to that home.
    let user_name = call.user_name(None);
    let cwd = match config.cwd.as_deref() {
        None | Some("") => None,
        Some(cwd) if cwd.starts_with('/') && !cwd.contains('\0') => Some(crate::paths::normalise(cwd)),
        Some(cwd) => {
            let home = call.user(None).await?.home;
            let resolved = crate::paths::resolve(cwd, &home);
            Some(resolved.ok_or_else(|| ConnectError::invalid("cwd has a NUL byte"))?)
        }
    };
    let mut env: Vec<(String, String)> = call.sandbox.env_vars.clone().into_iter().collect();
    env.retain(|(key, _)| !config.envs.contains_key(key));
    env.extend(config.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut argv = vec![config.cmd.clone()];
    argv.extend(config.args.iter().cloned());
    let client = &call.state.client;
    let keeps_stdin = request.stdin.unwrap_or(true);
    let (pid, session) = match request.pty.as_ref() {
        Some(pty) => {
            let size = pty.size.unwrap_or_default();
            let options = PtyOptions {
                argv,
                env,
                cwd,
                user: Some(user_name.clone()),
                rows: u16::try_from(size.rows).unwrap_or(u16::MAX).max(1),
                cols: u16::try_from(size.cols).unwrap_or(u16::MAX).max(1),
            };
            let session = client.pty(&call.sandbox.id, &options).await.map_err(start_error)?;
            let (sender, mut receiver) = session.split();
            let pid = match receiver.next_event().await.map_err(start_error)? {
                Some(PtyEvent::Started { pid }) => pid,
                other => {
                    return Err(ConnectError::internal(format!("the terminal did not start: {other:?}")));
                }
            };
            (pid, Session::Terminal(sender, receiver))
        }
        None if !keeps_stdin => {
            let body = StartProcessBody {
                program: Program { argv, env: env.into_iter().collect(), cwd },
                // The process's deadline is firepit's timeout: it runs on in the guest while
                // nobody reads it (a pause), and firepit kills its process group when it passes.
                timeout_ms: deadline.map_or(0, |after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
                user: Some(user_name.clone()),
                ..StartProcessBody::default()
            };
            let started = client.start_process(&call.sandbox.id, &body).await.map_err(start_error)?;
            let background =
                Background { client: client.clone(), lease: call.sandbox.id.clone(), id: started.id };
            (started.pid, Session::Background(background))
        }
        None => {
            let options = ExecWsOptions {
                argv,
                env,
                cwd,
                user: Some(user_name.clone()),
                stdin: true,
                // The process's own timeout is the call's deadline (the driver enforces it too).
                timeout_ms: 0,
            };
            let session = client.exec_ws(&call.sandbox.id, &options).await.map_err(start_error)?;
            let (sender, mut receiver) = session.split();
            let pid = match receiver.next_event().await.map_err(start_error)? {
                Some(ExecEvent::Started { pid }) => pid,
                other => return Err(ConnectError::internal(format!("the command did not start: {other:?}"))),
            };
            (pid, Session::Pipes(sender, receiver))
        }
    };
    let (_process, events) =
        call.sandbox.processes.adopt(pid, request.tag.clone(), config, session, deadline);
    Ok(events_stream(pid, events, keepalive)
        .map(|event| event.map(|event| StartResponse { event: Some(event) })))
}

fn start_error(error: firepit_client::ClientError) -> ConnectError {
    match error.code() {
        Some(ErrorCode::LeaseNotFound | ErrorCode::LeaseEnded) => {
            ConnectError::new(Code::Unavailable, format!("the sandbox was not found: {error}"))
        }
        Some(
            ErrorCode::ExecRefused
            | ErrorCode::InvalidInput
            | ErrorCode::NotFound
            | ErrorCode::BadArgv
            | ErrorCode::BadEnv,
        ) => ConnectError::invalid(error.to_string()),
        Some(ErrorCode::LimitReached) => ConnectError::new(Code::ResourceExhausted, error.to_string()),
        _ => ConnectError::new(Code::Unavailable, error.to_string()),
    }
}

async fn attach(
    call: Call,
    request: ConnectRequest,
    keepalive: Duration,
) -> Result<impl Stream<Item = Result<ConnectResponse, ConnectError>>, ConnectError> {
    let (found, what) = find(&call, request.process.as_ref())?;
    let (pid, events) = match found {
        Some(Found::Running(process)) => (process.pid, process.listen()),
        Some(Found::Ended(pid, end)) => {
            let (sender, receiver) = mpsc::channel(1);
            let _fits = sender.try_send(Event::End(end));
            (pid, receiver)
        }
        None => return Err(ConnectError::not_found(format!("process {what} not found"))),
    };
    Ok(events_stream(pid, events, keepalive)
        .map(|event| event.map(|event| ConnectResponse { event: Some(event) })))
}

/// `start` first, then the process's events with keepalives between them, until its end.
fn events_stream(
    pid: u32,
    events: mpsc::Receiver<Event>,
    keepalive: Duration,
) -> impl Stream<Item = Result<ProcessEvent, ConnectError>> {
    let start = ProcessEvent { event: Some(EventKind::Start(StartEvent { pid })) };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rest = futures_util::stream::unfold(Some((events, ticker)), |state| async move {
        let (mut events, mut ticker) = state?;
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Data(output)) => {
                    let event = ProcessEvent { event: Some(EventKind::Data(DataEvent { output: Some(output) })) };
                    Some((Ok(event), Some((events, ticker))))
                }
                Some(Event::End(end)) => Some((Ok(ProcessEvent { event: Some(EventKind::End(end)) }), None)),
                Some(Event::Failed(error)) => Some((Err(error), None)),
                None => None,
            },
            _ = ticker.tick() => {
                Some((Ok(ProcessEvent { event: Some(EventKind::Keepalive(KeepAlive {})) }), Some((events, ticker))))
            }
        }
    });
    futures_util::stream::once(async move { Ok(start) }).chain(rest)
}

fn find(call: &Call, selector: Option<&ProcessSelector>) -> Result<(Option<Found>, String), ConnectError> {
    match selector.and_then(|s| s.selector.as_ref()) {
        Some(process_selector::Selector::Pid(pid)) => {
            Ok((call.sandbox.processes.by_pid(*pid), format!("with pid {pid}")))
        }
        Some(process_selector::Selector::Tag(tag)) => {
            Ok((call.sandbox.processes.by_tag(tag), format!("with tag {tag:?}")))
        }
        None => Err(ConnectError::invalid("process selector (pid or tag) is required")),
    }
}

fn running(call: &Call, selector: Option<&ProcessSelector>) -> Result<Arc<Process>, ConnectError> {
    let (found, what) = find(call, selector)?;
    call.sandbox.processes.running(found, &what)
}

fn list(call: &Call) -> ListResponse {
    let processes = call
        .sandbox
        .processes
        .list()
        .into_iter()
        .map(|process| ProcessInfo {
            config: Some(ProcessConfig {
                cmd: process.config.cmd.clone(),
                args: process.config.args.clone(),
                envs: process.config.envs.clone().into_iter().collect::<HashMap<_, _>>(),
                cwd: process.config.cwd.clone(),
            }),
            pid: process.pid,
            tag: process.tag.clone(),
        })
        .collect();
    ListResponse { processes }
}

fn input_bytes(input: Option<crate::proto::process::ProcessInput>) -> Result<Vec<u8>, ConnectError> {
    match input.and_then(|input| input.input) {
        Some(process_input::Input::Stdin(bytes) | process_input::Input::Pty(bytes)) => Ok(bytes),
        None => Err(ConnectError::invalid("input (stdin or pty) is required")),
    }
}

fn send_input(call: &Call, request: SendInputRequest) -> Result<SendInputResponse, ConnectError> {
    let process = running(call, request.process.as_ref())?;
    process.input(input_bytes(request.input)?)?;
    Ok(SendInputResponse {})
}

fn send_signal(call: &Call, request: SendSignalRequest) -> Result<SendSignalResponse, ConnectError> {
    let process = running(call, request.process.as_ref())?;
    let signal = match Signal::try_from(request.signal) {
        Ok(Signal::Sigkill) => 9,
        Ok(Signal::Sigterm) => 15,
        _ => {
            return Err(ConnectError::invalid(format!(
                "signal {} is not SIGKILL or SIGTERM",
                request.signal
            )));
        }
    };
    process.signal(signal)?;
    Ok(SendSignalResponse {})
}

fn close_stdin(call: &Call, request: CloseStdinRequest) -> Result<CloseStdinResponse, ConnectError> {
    running(call, request.process.as_ref())?.close_stdin()?;
    Ok(CloseStdinResponse {})
}

fn update(call: &Call, request: UpdateRequest) -> Result<UpdateResponse, ConnectError> {
    let process = running(call, request.process.as_ref())?;
    if let Some(size) = request.pty.and_then(|pty| pty.size) {
        let rows = u16::try_from(size.rows).unwrap_or(u16::MAX).max(1);
        let cols = u16::try_from(size.cols).unwrap_or(u16::MAX).max(1);
        process.resize(rows, cols)?;
    }
    Ok(UpdateResponse {})
}

/// `StreamInput`, the one client-streaming method: a `start` naming the process, then `data`
/// chunks in order, answered once the client's stream ends.
async fn stream_input(call: &Call, rpc: Rpc) -> Response {
    if rpc.kind != Kind::Streaming {
        return ConnectError::invalid(
            "StreamInput is client-streaming: use application/connect+json or +proto",
        )
        .into_unary_response();
    }
    let codec = rpc.codec;
    let result = async {
        let mut body = rpc.body;
        let mut buffer = BytesMut::new();
        let mut process: Option<Arc<Process>> = None;
        loop {
            while let Some((flags, payload)) = connect::next_envelope(&mut buffer)? {
                if flags & 0x02 != 0 {
                    continue;
                }
                let message: StreamInputRequest = connect::decode(codec, &payload)?;
                match message.event {
                    Some(stream_input_request::Event::Start(start)) => {
                        process = Some(running(call, start.process.as_ref())?);
                    }
                    Some(stream_input_request::Event::Data(data)) => {
                        let target = process
                            .as_ref()
                            .ok_or_else(|| ConnectError::invalid("data before the start event"))?;
                        target.input(input_bytes(data.input)?)?;
                    }
                    Some(stream_input_request::Event::Keepalive(_)) | None => {}
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Err(ConnectError::new(Code::Canceled, error.to_string())),
                None if buffer.is_empty() => return Ok(StreamInputResponse {}),
                None => return Err(ConnectError::invalid("the input stream ended inside a message")),
            }
        }
    }
    .await;
    connect::stream_response(codec, futures_util::stream::iter([result]))
}
