//! Attached guest processes ([`Guest::spawn`]): output streamed as it is produced, stdin written
//! as the process reads it, the exit status at the end.
//!
//! The process lives as long as its [`GuestProcess`] handle: dropping the handle before the process
//! exited kills its whole process group (so does losing the agent connection). A process that must
//! outlive its caller is a background process ([`Guest::start_process`]). A timeout kills the whole
//! group, and the exit is reported only once the process has been reaped: a `timed_out` status
//! never describes a process that still runs.

use std::sync::Arc;
use std::time::Duration;

use firepit_agent::{ExitStatus, Request, Response, SpawnRequest, WindowSize};

use crate::error::GuestError;
use crate::exec::ExecOutput;
use crate::guest::Guest;
use crate::streams::{
    self, AgentStream, Events, GuestInput, GuestOutput, InputSink, OutputQueue, StreamLink,
};

/// Signals (and, for a terminal, resizes) a running attached process from anywhere, while its
/// handle is busy waiting. Obtained from [`GuestProcess::control`] or [`PtySession::control`](crate::PtySession::control).
#[derive(Debug, Clone)]
pub struct ProcessControl {
    link: Arc<StreamLink>,
}

impl ProcessControl {
    /// Sends `signal` to the process's group (a terminal's foreground group for a PTY session).
    pub fn signal(&self, signal: i32) -> Result<(), GuestError> {
        self.link.send(Request::Signal(signal))
    }

    /// Kills the process's group (SIGKILL).
    pub fn kill(&self) -> Result<(), GuestError> {
        self.signal(libc::SIGKILL)
    }

    /// Resizes the terminal (PTY sessions only; ignored for a process on pipes).
    pub fn resize(&self, size: WindowSize) -> Result<(), GuestError> {
        self.link.send(Request::Resize(size))
    }
}

/// Parts common to attached processes and terminal sessions.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) pid: u32,
    pub(crate) events: Events,
    pub(crate) exit: Option<ExitStatus>,
}

impl Attached {
    /// Opens the stream and waits (at most the agent timeout) for `Started`; returns the handle's
    /// part and the stream's data ends.
    pub(crate) async fn start(guest: &Guest, request: Request) -> Result<(Self, StreamData), GuestError> {
        let kind = request.kind();
        let timeout = guest.timeouts.request;
        let AgentStream { mut events, stdout, stderr, input } = streams::open(guest, request, None).await?;
        let started = match tokio::time::timeout(timeout, events.next()).await {
            Ok(Ok(Response::Started(started))) => started,
            Ok(Ok(other)) => return Err(GuestError::unexpected(kind, other)),
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(GuestError::Timeout { request: kind, after: timeout }),
        };
        Ok((Self { pid: started.pid, events, exit: None }, StreamData { stdout, stderr, input }))
    }

    pub(crate) fn control(&self) -> ProcessControl {
        ProcessControl { link: self.events.link() }
    }

    pub(crate) async fn wait(&mut self) -> Result<ExitStatus, GuestError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        loop {
            match self.events.next().await? {
                Response::Exited(exit) => {
                    self.exit = Some(exit);
                    return Ok(exit);
                }
                Response::Started(_) => {}
                other => return Err(GuestError::unexpected("wait", other)),
            }
        }
    }
}

/// The data ends of an attached process's stream.
#[derive(Debug)]
pub(crate) struct StreamData {
    pub(crate) stdout: OutputQueue,
    pub(crate) stderr: OutputQueue,
    pub(crate) input: InputSink,
}

/// A process running in the guest, attached to this handle (see the module docs).
///
/// ```no_run
/// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
/// let mut process = guest.spawn(firepit_agent::SpawnRequest::new(["sh", "-c", "echo one; sleep 2; echo two"])).await?;
/// let mut stdout = process.take_stdout().expect("not taken yet");
/// while let Some(chunk) = stdout.next_chunk().await? {
///     print!("{}", String::from_utf8_lossy(&chunk)); // "one" arrives 2 s before "two"
/// }
/// let status = process.wait().await?;
/// assert_eq!(status.exit_code, Some(0));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GuestProcess {
    attached: Attached,
    stdin: Option<GuestInput>,
    stdout: Option<GuestOutput>,
    stderr: Option<GuestOutput>,
}

impl GuestProcess {
    /// Its process id in the guest (also its process group id).
    pub fn pid(&self) -> u32 {
        self.attached.pid
    }

    /// Its stdin, if the request asked for it (`SpawnRequest::stdin`); once.
    pub fn take_stdin(&mut self) -> Option<GuestInput> {
        self.stdin.take()
    }

    /// Its standard output; once. Output not taken by the time of [`wait`](Self::wait) is discarded.
    pub fn take_stdout(&mut self) -> Option<GuestOutput> {
        self.stdout.take()
    }

    /// Its standard error; once. Output not taken by the time of [`wait`](Self::wait) is discarded.
    pub fn take_stderr(&mut self) -> Option<GuestOutput> {
        self.stderr.take()
    }

    /// A handle that signals the process while this one waits.
    pub fn control(&self) -> ProcessControl {
        self.attached.control()
    }

    /// Sends `signal` to the process's group.
    pub fn signal(&self, signal: i32) -> Result<(), GuestError> {
        self.control().signal(signal)
    }

    /// Waits for the process to exit and its output to end. Output not taken is discarded (so it
    /// cannot block the process); the stdin not taken is closed.
    pub async fn wait(&mut self) -> Result<ExitStatus, GuestError> {
        (self.stdout, self.stderr, self.stdin) = (None, None, None);
        self.attached.wait().await
    }

    /// Collects all of stdout and stderr (untaken ones) and waits for the exit: an
    /// [`ExecOutput`] without the 1 MiB cap of `exec`, so mind the size.
    pub async fn output(mut self) -> Result<ExecOutput, GuestError> {
        async fn collect(output: Option<GuestOutput>) -> Result<Vec<u8>, GuestError> {
            let mut bytes = Vec::new();
            if let Some(mut output) = output {
                while let Some(chunk) = output.next_chunk().await? {
                    bytes.extend(chunk);
                }
            }
            Ok(bytes)
        }
        self.stdin = None;
        let (stdout, stderr) = tokio::try_join!(collect(self.stdout.take()), collect(self.stderr.take()))?;
        let exit = self.attached.wait().await?;
        Ok(ExecOutput {
            exit_code: exit.exit_code,
            signal: exit.signal,
            stdout,
            stderr,
            truncated: false,
            timed_out: exit.timed_out,
            duration: Duration::from_millis(exit.duration_ms),
            oom_killed: exit.oom_killed,
        })
    }
}

impl Guest {
    /// Starts `request` in the guest attached to the returned handle: stdout and stderr arrive as
    /// they are written, stdin (if asked for) is written as the process reads it. Fails if the
    /// program cannot be started (the error names it).
    /// The image's environment and working directory apply as they do to `exec`.
    pub async fn spawn(&self, mut request: SpawnRequest) -> Result<GuestProcess, GuestError> {
        self.exec_defaults.fill(&mut request.env, &mut request.cwd);
        let wants_stdin = request.stdin;
        let (attached, stream) = Attached::start(self, Request::Spawn(request)).await?;
        Ok(GuestProcess {
            attached,
            stdin: wants_stdin.then(|| GuestInput::new(stream.input)),
            stdout: Some(GuestOutput::new(stream.stdout, None)),
            stderr: Some(GuestOutput::new(stream.stderr, None)),
        })
    }
}
