//! Background processes: started, listed, signalled, waited for and read by offset, owned by the
//! guest agent rather than by any host connection or handle.
//!
//! They survive the host disconnecting and reconnecting (and this [`Guest`] value's requests
//! coming from different tasks or clients); their output is kept in bounded buffers (the newest
//! [`DEFAULT_PROCESS_OUTPUT_LIMIT`](firepit_agent::DEFAULT_PROCESS_OUTPUT_LIMIT) per channel by
//! default), read from an offset so a client that comes back continues where it stopped; a read
//! whose offset was already dropped says how much was `missed`. An exited process stays listed (with
//! its output) until 64 newer ones have exited or it is removed. A timeout, if given, kills the
//! whole process group; there is no default timeout: a process's life is not its client's.

use std::time::Duration;

use firepit_agent::{
    ProcessInfo, ProcessOutput, ProcessOutputRequest, ProcessRef, Request, Response, SignalProcessRequest,
    StartProcessRequest, WaitProcessRequest,
};

use crate::error::GuestError;
use crate::guest::Guest;

impl Guest {
    /// Starts a background process; returns what the agent knows of it (its `id`). The image's
    /// environment and working directory apply as they do to `exec`.
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// use firepit_agent::{Channel, ProcessOutputRequest, StartProcessRequest};
    /// let mut request = StartProcessRequest::new(["sh", "-c", "while true; do date; sleep 1; done"]);
    /// request.tag = Some("clock".into());
    /// let process = guest.start_process(request).await?;
    /// // Later, from any task or after reconnecting:
    /// let read = ProcessOutputRequest {
    ///     process: "clock".into(),
    ///     channel: Channel::Stdout,
    ///     offset: 0,
    ///     max_bytes: 0,
    ///     wait_ms: 2000,
    /// };
    /// let output = guest.process_output(read).await?;
    /// println!("{} bytes, next read from {}", output.bytes.len(), output.next_offset);
    /// guest.signal_process(process.id, libc::SIGTERM).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_process(&self, mut request: StartProcessRequest) -> Result<ProcessInfo, GuestError> {
        self.exec_defaults.fill(&mut request.env, &mut request.cwd);
        self.process_request(Request::StartProcess(request), Duration::ZERO).await
    }

    /// Every background process the agent keeps (running, and recently exited), oldest first.
    pub async fn processes(&self) -> Result<Vec<ProcessInfo>, GuestError> {
        match self.request(Request::ListProcesses, self.timeouts.request).await? {
            Response::Processes(list) => Ok(list),
            other => Err(GuestError::unexpected("list-processes", other)),
        }
    }

    /// Sends `signal` to the whole process group of a background process (by id or tag).
    pub async fn signal_process(
        &self,
        process: impl Into<ProcessRef>,
        signal: i32,
    ) -> Result<(), GuestError> {
        let request = SignalProcessRequest { process: process.into(), signal };
        match self.request(Request::SignalProcess(request), self.timeouts.request).await? {
            Response::Ok => Ok(()),
            other => Err(GuestError::unexpected("signal-process", other)),
        }
    }

    /// Waits at most `timeout` for a background process to exit; returns its state either way
    /// (`exit` is `None` if it still runs).
    pub async fn wait_process(
        &self,
        process: impl Into<ProcessRef>,
        timeout: Duration,
    ) -> Result<ProcessInfo, GuestError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = WaitProcessRequest { process: process.into(), timeout_ms };
        self.process_request(Request::WaitProcess(request), timeout).await
    }

    /// Reads a background process's output from an offset (waiting up to `wait_ms` for some if
    /// there is none yet); `next_offset` is where to continue, `missed` counts dropped bytes.
    pub async fn process_output(&self, request: ProcessOutputRequest) -> Result<ProcessOutput, GuestError> {
        let wait = Duration::from_millis(request.wait_ms);
        let deadline = self.timeouts.request.saturating_add(wait);
        match self.request(Request::ProcessOutput(request), deadline).await? {
            Response::ProcessOutput(output) => Ok(output),
            other => Err(GuestError::unexpected("process-output", other)),
        }
    }

    /// Forgets an exited background process and frees its output (a running one is refused).
    pub async fn remove_process(&self, process: impl Into<ProcessRef>) -> Result<(), GuestError> {
        match self.request(Request::RemoveProcess(process.into()), self.timeouts.request).await? {
            Response::Ok => Ok(()),
            other => Err(GuestError::unexpected("remove-process", other)),
        }
    }

    async fn process_request(&self, request: Request, extra: Duration) -> Result<ProcessInfo, GuestError> {
        let kind = request.kind();
        let deadline = self.timeouts.request.saturating_add(extra);
        match self.request(request, deadline).await? {
            Response::Process(info) => Ok(info),
            other => Err(GuestError::unexpected(kind, other)),
        }
    }
}
