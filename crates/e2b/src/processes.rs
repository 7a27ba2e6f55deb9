//! The processes envd runs in one sandbox, kept where envd keeps them: beside the sandbox, not in
//! the request that started them.
//!
//! Each process is a firepit background process (a command without stdin or terminal: it
//! survives a pause, see [`crate::background`]) or a firepit session attached to this endpoint
//! (`exec/ws` for pipes with a stdin, the PTY WebSocket for a terminal), and one driver task that
//! owns it: the task passes the guest's output
//! to whoever listens (the `Start` stream, any number of `Connect` streams) and the listeners'
//! input, signals and resizes to the guest. A client that disconnects only stops listening; the
//! process runs on until it exits, is signalled, or its timeout (the `Start` call's deadline)
//! kills its process group. Output while nobody listens is dropped, as envd drops it. The exits of
//! the last few ended processes are kept so that a late `Connect` learns how it ended.

use firepit_api::ErrorCode;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_api::{ExitStatusView, SignalSpec};
use firepit_client::{ExecEvent, ExecReceiver, ExecSender, PtyEvent, PtyReceiver, PtySender};
use tokio::sync::mpsc;

use crate::background::{Background, Followed, PauseGate};
use crate::connect::{Code, ConnectError};
use crate::proto::process::ProcessConfig;
use crate::proto::process::process_event::{EndEvent, data_event::Output};
use crate::sync::lock;

/// Ended processes remembered for a late `Connect`.
const KEEP_ENDED: usize = 64;

/// Events a listener buffers before the driver waits for it.
const LISTENER_BUFFER: usize = 256;

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Output.
    Data(Output),
    /// The process ended (the last event).
    End(EndEvent),
    /// The process's stream ended otherwise (the last event): its deadline passed, the sandbox
    /// went away.
    Failed(ConnectError),
}

/// What a listener asks of the process.
#[derive(Debug)]
enum Command {
    Input(Vec<u8>),
    CloseStdin,
    Signal(i32),
    Resize { rows: u16, cols: u16 },
}

/// The firepit session a process runs in.
pub enum Session {
    /// A command on pipes.
    Pipes(ExecSender, ExecReceiver),
    /// A command on a terminal.
    Terminal(PtySender, PtyReceiver),
    /// A firepit background process (no stdin; its timeout is firepit's).
    Background(Background),
}

/// A running process.
#[derive(Debug)]
pub struct Process {
    /// Its guest pid.
    pub pid: u32,
    /// Its tag.
    pub tag: Option<String>,
    /// What it runs.
    pub config: ProcessConfig,
    /// It reads input (a stdin kept open, or a terminal).
    pub takes_input: bool,
    listeners: Mutex<Vec<mpsc::Sender<Event>>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Process {
    /// A new listener: every event from now on.
    pub fn listen(&self) -> mpsc::Receiver<Event> {
        let (sender, receiver) = mpsc::channel(LISTENER_BUFFER);
        lock(&self.listeners).push(sender);
        receiver
    }

    fn command(&self, command: Command) -> Result<(), ConnectError> {
        self.commands
            .send(command)
            .map_err(|_| ConnectError::not_found(format!("process with pid {} has ended", self.pid)))
    }

    /// Writes `bytes` to its stdin or terminal.
    pub fn input(&self, bytes: Vec<u8>) -> Result<(), ConnectError> {
        if !self.takes_input {
            return Err(ConnectError::new(
                Code::FailedPrecondition,
                format!("process with pid {} was started without stdin: start it with stdin=True", self.pid),
            ));
        }
        self.command(Command::Input(bytes))
    }

    /// Closes its stdin.
    pub fn close_stdin(&self) -> Result<(), ConnectError> {
        self.command(Command::CloseStdin)
    }

    /// Sends `signal` to its process group.
    pub fn signal(&self, signal: i32) -> Result<(), ConnectError> {
        self.command(Command::Signal(signal))
    }

    /// Resizes its terminal.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ConnectError> {
        self.command(Command::Resize { rows, cols })
    }
}

/// The processes of one sandbox.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Holds the readers of its background processes while the sandbox pauses.
    pub pause_gate: PauseGate,
    running: Mutex<HashMap<u32, Arc<Process>>>,
    ended: Mutex<VecDeque<(u32, Option<String>, EndEvent)>>,
}

/// What a lookup found.
pub enum Found {
    /// A running process.
    Running(Arc<Process>),
    /// A process that has ended, and how.
    Ended(u32, EndEvent),
}

impl ProcessTable {
    /// Starts driving `session` (whose process has `pid`) and returns the process with one
    /// listener that hears everything from its start. `deadline` kills it (SIGKILL) and ends its
    /// listeners' streams with `deadline_exceeded`.
    pub fn adopt(
        self: &Arc<Self>,
        pid: u32,
        tag: Option<String>,
        config: ProcessConfig,
        session: Session,
        deadline: Option<Duration>,
    ) -> (Arc<Process>, mpsc::Receiver<Event>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let takes_input = !matches!(session, Session::Background(_));
        let process =
            Arc::new(Process { pid, tag, config, takes_input, listeners: Mutex::default(), commands });
        let first = process.listen();
        lock(&self.running).insert(pid, process.clone());
        let table = self.clone();
        let driven = process.clone();
        tokio::spawn(async move {
            let last = drive(&driven, session, command_rx, deadline, &table.pause_gate).await;
            table.finish(&driven, last).await;
        });
        (process, first)
    }

    async fn finish(&self, process: &Process, last: Event) {
        lock(&self.running).remove(&process.pid);
        if let Event::End(end) = &last {
            let mut ended = lock(&self.ended);
            ended.push_back((process.pid, process.tag.clone(), end.clone()));
            while ended.len() > KEEP_ENDED {
                ended.pop_front();
            }
        }
        let listeners = std::mem::take(&mut *lock(&process.listeners));
        for listener in listeners {
            let _listener_gone = listener.send(last.clone()).await;
        }
    }

    /// The process with `pid`, running or recently ended.
    pub fn by_pid(&self, pid: u32) -> Option<Found> {
        if let Some(process) = lock(&self.running).get(&pid) {
            return Some(Found::Running(process.clone()));
        }
        let ended = lock(&self.ended);
        ended.iter().rev().find(|(p, _, _)| *p == pid).map(|(p, _, end)| Found::Ended(*p, end.clone()))
    }

    /// The newest process tagged `tag`, running or recently ended.
    pub fn by_tag(&self, tag: &str) -> Option<Found> {
        if let Some(process) = lock(&self.running).values().find(|p| p.tag.as_deref() == Some(tag)) {
            return Some(Found::Running(process.clone()));
        }
        let ended = lock(&self.ended);
        ended
            .iter()
            .rev()
            .find(|(_, t, _)| t.as_deref() == Some(tag))
            .map(|(p, _, end)| Found::Ended(*p, end.clone()))
    }

    /// The running process `pid` or `tag` names (`not_found` otherwise).
    pub fn running(&self, found: Option<Found>, what: &str) -> Result<Arc<Process>, ConnectError> {
        match found {
            Some(Found::Running(process)) => Ok(process),
            _ => Err(ConnectError::not_found(format!("process {what} not found"))),
        }
    }

    /// Every running process, by pid.
    pub fn list(&self) -> Vec<Arc<Process>> {
        let mut all: Vec<_> = lock(&self.running).values().cloned().collect();
        all.sort_by_key(|p| p.pid);
        all
    }

    /// Whether a running process has `tag`.
    pub fn tag_in_use(&self, tag: &str) -> bool {
        lock(&self.running).values().any(|p| p.tag.as_deref() == Some(tag))
    }
}

/// Passes a background process's output and its signals until it ends; returns the last event.
async fn drive_background(
    process: &Process,
    background: &Background,
    gate: &PauseGate,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Event {
    let mut followed = background.follow(gate);
    loop {
        tokio::select! {
            event = followed.recv() => match event {
                Some(Followed::Output(output)) => broadcast(process, Event::Data(output)).await,
                Some(Followed::Exit(status)) => {
                    // Freed after the listeners hear the end, not before (a round trip to the guest).
                    let freed = background.clone();
                    tokio::spawn(async move { freed.forget().await });
                    return end(status, false);
                }
                Some(Followed::Gone(message)) => return gone(&message),
                None => return gone("the command's reader stopped"),
            },
            command = commands.recv() => {
                if let Some(Command::Signal(signal)) = command
                    && let Err(error) = background.signal(signal).await
                {
                    tracing::debug!(pid = process.pid, %error, "signalling a background process failed");
                }
            }
        }
    }
}

/// Passes events and commands until the session ends; returns the last event.
async fn drive(
    process: &Process,
    session: Session,
    mut commands: mpsc::UnboundedReceiver<Command>,
    deadline: Option<Duration>,
    gate: &PauseGate,
) -> Event {
    let timer = async {
        match deadline {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    let mut timed_out = false;
    match session {
        Session::Pipes(mut sender, mut receiver) => loop {
            tokio::select! {
                event = receiver.next_event() => match event {
                    Ok(Some(ExecEvent::Stdout(bytes))) => broadcast(process, Event::Data(Output::Stdout(bytes))).await,
                    Ok(Some(ExecEvent::Stderr(bytes))) => broadcast(process, Event::Data(Output::Stderr(bytes))).await,
                    Ok(Some(ExecEvent::Started { .. })) => {}
                    Ok(Some(ExecEvent::Exit(status))) => return end(status, timed_out),
                    Ok(Some(ExecEvent::Error { error, message })) => return session_error(&error, &message),
                    Ok(None) => return gone("the process's session closed before its exit"),
                    Err(error) => return gone(&error.to_string()),
                },
                command = commands.recv() => {
                    let Some(command) = command else { continue };
                    let done = match command {
                        Command::Input(bytes) => sender.send_stdin(&bytes).await,
                        Command::CloseStdin => sender.close_stdin().await,
                        Command::Signal(signal) => sender.signal(SignalSpec::Number(signal)).await,
                        Command::Resize { .. } => Ok(()),
                    };
                    if let Err(error) = done {
                        tracing::debug!(pid = process.pid, %error, "process input failed");
                    }
                }
                () = &mut timer, if !timed_out => {
                    timed_out = true;
                    let _exit_reports_it = sender.signal(SignalSpec::Number(9)).await;
                }
            }
        },
        Session::Terminal(mut sender, mut receiver) => loop {
            tokio::select! {
                event = receiver.next_event() => match event {
                    Ok(Some(PtyEvent::Output(bytes))) => broadcast(process, Event::Data(Output::Pty(bytes))).await,
                    Ok(Some(PtyEvent::Started { .. })) => {}
                    Ok(Some(PtyEvent::Exit(status))) => return end(status, timed_out),
                    Ok(Some(PtyEvent::Error { error, message })) => return session_error(&error, &message),
                    Ok(None) => return gone("the terminal's session closed before its exit"),
                    Err(error) => return gone(&error.to_string()),
                },
                command = commands.recv() => {
                    let Some(command) = command else { continue };
                    let done = match command {
                        Command::Input(bytes) => sender.send_input(&bytes).await,
                        Command::CloseStdin => Ok(()),
                        Command::Signal(signal) => sender.signal(SignalSpec::Number(signal)).await,
                        Command::Resize { rows, cols } => sender.resize(rows, cols).await,
                    };
                    if let Err(error) = done {
                        tracing::debug!(pid = process.pid, %error, "terminal input failed");
                    }
                }
                () = &mut timer, if !timed_out => {
                    timed_out = true;
                    // The terminal's signal goes to its foreground group; the shell's own group
                    // goes when the session closes below (the daemon kills an abandoned terminal).
                    let _exit_reports_it = sender.signal(SignalSpec::Number(9)).await;
                    let _closing = sender.close().await;
                }
            }
        },
        Session::Background(background) => drive_background(process, &background, gate, commands).await,
    }
}

async fn broadcast(process: &Process, event: Event) {
    let listeners: Vec<_> = lock(&process.listeners).clone();
    let mut gone = Vec::new();
    for (index, listener) in listeners.iter().enumerate() {
        if listener.send(event.clone()).await.is_err() {
            gone.push(index);
        }
    }
    if !gone.is_empty() {
        lock(&process.listeners).retain(|listener| !listener.is_closed());
    }
}

/// The session ended with firepit's `error` event: the lease ended (the sandbox was killed or
/// expired), or the daemon is stopping.
fn session_error(code: &ErrorCode, message: &str) -> Event {
    match code {
        ErrorCode::LeaseEnded | ErrorCode::LeaseNotFound | ErrorCode::VmUnreachable => gone(message),
        _ => Event::Failed(ConnectError::new(Code::Unavailable, message.to_owned())),
    }
}

/// The sandbox went away under the process.
fn gone(message: &str) -> Event {
    Event::Failed(ConnectError::gone(message.to_owned()))
}

/// The end of a process as envd reports it (Go's wording of exit statuses).
fn end(status: ExitStatusView, timed_out: bool) -> Event {
    if timed_out || status.timed_out {
        return Event::Failed(ConnectError::new(
            Code::DeadlineExceeded,
            "the command ran past its timeout and was killed",
        ));
    }
    Event::End(end_event(status))
}

/// envd's `EndEvent` for an exit status.
///
/// ```
/// use firepit_api::ExitStatusView;
/// let end = firepit_e2b::processes::end_event(ExitStatusView { exit_code: Some(2), ..Default::default() });
/// assert_eq!((end.exit_code, end.exited, end.status.as_str()), (2, true, "exit status 2"));
/// assert_eq!(end.error.as_deref(), Some("exit status 2"));
/// let killed = firepit_e2b::processes::end_event(ExitStatusView { signal: Some(9), ..Default::default() });
/// assert_eq!((killed.exit_code, killed.exited, killed.status.as_str()), (-1, false, "signal: killed"));
/// ```
pub fn end_event(status: ExitStatusView) -> EndEvent {
    let (exit_code, exited, text) = match (status.exit_code, status.signal) {
        (Some(code), _) => (code, true, format!("exit status {code}")),
        (None, Some(signal)) => (-1, false, format!("signal: {}", signal_name(signal))),
        (None, None) => (-1, false, "exit status unknown".to_owned()),
    };
    let error = (exit_code != 0).then(|| text.clone());
    EndEvent { exit_code, exited, status: text, error }
}

fn signal_name(signal: i32) -> String {
    match signal {
        1 => "hangup".into(),
        2 => "interrupt".into(),
        3 => "quit".into(),
        6 => "aborted".into(),
        9 => "killed".into(),
        11 => "segmentation fault".into(),
        13 => "broken pipe".into(),
        15 => "terminated".into(),
        other => format!("signal {other}"),
    }
}
