//! Interactive terminals in the guest ([`Guest::pty`]): a shell (or any program) on a
//! pseudo-terminal, its output streamed, input typed into it, resizable, with an exit status.
//!
//! Like an attached process, the session lives as long as its [`PtySession`]: dropping the handle
//! before the program exited kills it. Ctrl-C is the byte `0x03` written as input (the terminal
//! turns it into SIGINT for the foreground job), exactly as from a keyboard.

use firepit_agent::{ExitStatus, PtyRequest, Request, WindowSize};

use crate::error::GuestError;
use crate::guest::Guest;
use crate::process::{Attached, ProcessControl};
use crate::streams::{GuestInput, GuestOutput};

/// A program on a guest pseudo-terminal (see the module docs).
///
/// ```no_run
/// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
/// use firepit_agent::{PtyRequest, WindowSize};
/// let mut session = guest.pty(PtyRequest::shell(24, 80)).await?;
/// session.resize(WindowSize { rows: 40, cols: 120 })?;
/// session.write(b"stty size; exit 3\n").await?;
/// let mut screen = Vec::new();
/// while let Some(chunk) = session.read().await? {
///     screen.extend(chunk);
/// }
/// assert_eq!(session.wait().await?.exit_code, Some(3));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PtySession {
    attached: Attached,
    input: Option<GuestInput>,
    output: Option<GuestOutput>,
}

impl PtySession {
    /// The program's process id in the guest (it leads the terminal's session).
    pub fn pid(&self) -> u32 {
        self.attached.pid
    }

    /// Types `bytes` into the terminal (waits while the guest has not consumed earlier input).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), GuestError> {
        match self.input.as_mut() {
            Some(input) => input.write_all(bytes).await,
            None => Err(GuestError::Closed),
        }
    }

    /// The next chunk of terminal output, `None` once the program exited and its output ended.
    pub async fn read(&mut self) -> Result<Option<Vec<u8>>, GuestError> {
        match self.output.as_mut() {
            Some(output) => output.next_chunk().await,
            None => Ok(None),
        }
    }

    /// Resizes the terminal (the program gets SIGWINCH).
    pub fn resize(&self, size: WindowSize) -> Result<(), GuestError> {
        self.control().resize(size)
    }

    /// Sends `signal` to the terminal's foreground process group.
    pub fn signal(&self, signal: i32) -> Result<(), GuestError> {
        self.control().signal(signal)
    }

    /// A handle that resizes or signals the session while this one is busy.
    pub fn control(&self) -> ProcessControl {
        self.attached.control()
    }

    /// The input, to write from another task (a terminal bridge); [`write`](Self::write) fails
    /// after this.
    pub fn take_input(&mut self) -> Option<GuestInput> {
        self.input.take()
    }

    /// The output, to read from another task; [`read`](Self::read) returns `None` after this.
    pub fn take_output(&mut self) -> Option<GuestOutput> {
        self.output.take()
    }

    /// Waits for the program to exit. Output not read by then is discarded.
    pub async fn wait(&mut self) -> Result<ExitStatus, GuestError> {
        self.output = None;
        self.attached.wait().await
    }
}

impl Guest {
    /// Starts `request` (a login shell if its `argv` is empty) on a new pseudo-terminal; the
    /// image's environment and working directory apply as they do to `exec`.
    pub async fn pty(&self, mut request: PtyRequest) -> Result<PtySession, GuestError> {
        self.exec_defaults.fill(&mut request.env, &mut request.cwd);
        let (attached, data) = Attached::start(self, Request::Pty(request)).await?;
        Ok(PtySession {
            attached,
            input: Some(GuestInput::new(data.input)),
            output: Some(GuestOutput::new(data.stdout, None)),
        })
    }
}
