//! What a leased VM offers besides `exec`: files, archives, attached and background processes,
//! terminals. The HTTP layer's door to them: [`Sandbox`], written once over the VM's
//! [`Guest`] (a QEMU VM's, or the fake backend's in-process agent), with
//! the daemon's error ([`SandboxError`]) and types the handlers hold across tasks (byte streams as
//! [`AsyncRead`], [`Input`] and [`Control`] as trait objects).
//!
//! Every transfer streams: uploads are read from a [`ByteStream`] as the guest takes them, and
//! downloads and process output are [`ByteStream`]s the caller reads at its own pace, so nothing
//! here buffers a whole file. Attached processes and terminals ([`Attached`]) live as long as
//! their handle: dropping it before the exit kills the process group.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use firepit_agent::{
    DirListing, ExitStatus, FailureKind, FileStat, MkdirRequest, ProcessInfo, ProcessOutput,
    ProcessOutputRequest, ProcessRef, PtyRequest, SpawnRequest, StartProcessRequest, WindowSize,
};
use firepit_guest::{Guest, GuestError, GuestFileReader, GuestInput, ProcessControl};
use tokio::io::AsyncRead;

pub use firepit_guest::WriteOptions;

use crate::boxed::{BoxError, BoxFuture};

/// Bytes flowing one way: an upload's body, a download, a process's output.
pub type ByteStream = Pin<Box<dyn AsyncRead + Send>>;

/// A guest file or archive being read.
pub struct Download {
    /// What was opened (for an archive, the directory's metadata).
    pub stat: FileStat,
    /// Its bytes; a transfer that fails part-way ends with an error, never a short read.
    pub data: ByteStream,
}

impl From<GuestFileReader> for Download {
    fn from(reader: GuestFileReader) -> Self {
        Self { stat: reader.stat().clone(), data: Box::pin(reader) }
    }
}

/// Writes into a running process's stdin or terminal, as fast as the guest consumes it.
pub trait Input: Send {
    /// Writes all of `bytes` (waits while the guest has not consumed earlier input).
    fn write<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Sends end-of-file.
    fn close(&mut self) -> Result<(), SandboxError>;
}

impl Input for GuestInput {
    fn write<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(self.write_all(bytes).await?) })
    }

    fn close(&mut self) -> Result<(), SandboxError> {
        Ok(GuestInput::close(self)?)
    }
}

/// Signals or resizes a running attached process while its output is being read.
pub trait Control: Send + Sync {
    /// Sends `signal` to its process group (a terminal's foreground group).
    fn signal(&self, signal: i32) -> Result<(), SandboxError>;
    /// Resizes its terminal (ignored for a process on pipes).
    fn resize(&self, size: WindowSize) -> Result<(), SandboxError>;
}

impl Control for ProcessControl {
    fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        Ok(ProcessControl::signal(self, signal)?)
    }

    fn resize(&self, size: WindowSize) -> Result<(), SandboxError> {
        Ok(ProcessControl::resize(self, size)?)
    }
}

/// A process attached to this handle: its outputs, its input, a control, and its exit.
/// Dropping it before the exit kills the process group.
pub struct Attached {
    /// Guest process id (also its process group id).
    pub pid: u32,
    /// Standard output (a terminal's output).
    pub stdout: ByteStream,
    /// Standard error (`None` for a terminal).
    pub stderr: Option<ByteStream>,
    /// Standard input or the terminal's input, if the process has one.
    pub stdin: Option<Box<dyn Input>>,
    /// Signals and resizes.
    pub control: Arc<dyn Control>,
    /// Resolves when the process has exited and its outputs ended (read them meanwhile: output
    /// nobody reads pauses the process).
    pub exit: BoxFuture<'static, Result<ExitStatus, SandboxError>>,
}

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The guest could not do it; `kind` says why (missing path, a directory, no permission...).
    #[error("{message}")]
    Guest {
        /// What kind of failure.
        kind: FailureKind,
        /// The guest's message (names the path or process).
        message: String,
    },
    /// The guest agent refused the request; the cause says why.
    #[error("the guest agent refused the request")]
    Refused(#[source] BoxError),
    /// The agent did not answer or the VM is gone; the cause says why.
    #[error("the VM did not answer")]
    Unreachable(#[source] BoxError),
    /// Reading the client's data (an upload's body) failed; the cause says why.
    #[error("reading the upload failed")]
    Body(#[source] BoxError),
}

impl From<GuestError> for SandboxError {
    fn from(error: GuestError) -> Self {
        match error {
            GuestError::Failed { kind, message, .. } => SandboxError::Guest { kind, message },
            error @ GuestError::Remote { .. } => SandboxError::Refused(error.into()),
            error @ GuestError::HostIo { .. } => SandboxError::Body(error.into()),
            other => SandboxError::Unreachable(other.into()),
        }
    }
}

/// The sandbox operations of one leased VM, over its guest (see the module docs). Paths are
/// absolute guest paths. Each operation's future borrows the guest, not this value.
#[derive(Debug, Clone, Copy)]
pub struct Sandbox<'a> {
    guest: &'a Guest,
}

impl<'a> Sandbox<'a> {
    /// The sandbox of `guest`.
    pub fn new(guest: &'a Guest) -> Self {
        Self { guest }
    }

    /// Writes `data` to the file `path`; returns the bytes written.
    pub async fn write_file(
        self,
        path: &str,
        options: WriteOptions,
        data: ByteStream,
    ) -> Result<u64, SandboxError> {
        Ok(self.guest.write_file_with(path, data, options).await?)
    }

    /// Reads at most `limit` bytes of the file `path` from `offset`.
    pub async fn read_file(
        self,
        path: &str,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<Download, SandboxError> {
        Ok(self.guest.read_file_range(path, offset, limit).await?.into())
    }

    /// Metadata of `path` (a symbolic link's target when `follow`).
    pub async fn stat(self, path: &str, follow: bool) -> Result<FileStat, SandboxError> {
        Ok(if follow { self.guest.stat(path).await? } else { self.guest.lstat(path).await? })
    }

    /// The entries of the directory `path`.
    pub async fn list_dir(self, path: &str) -> Result<DirListing, SandboxError> {
        Ok(self.guest.list_dir(path).await?)
    }

    /// Creates a directory.
    pub async fn mkdir(self, request: MkdirRequest) -> Result<(), SandboxError> {
        Ok(self.guest.mkdir_request(request).await?)
    }

    /// Removes a file, link or directory (`recursive`: with its contents).
    pub async fn remove(self, path: &str, recursive: bool) -> Result<(), SandboxError> {
        Ok(self.guest.remove(path, recursive).await?)
    }

    /// Sets permission bits.
    pub async fn chmod(self, path: &str, mode: u32) -> Result<(), SandboxError> {
        Ok(self.guest.chmod(path, mode).await?)
    }

    /// Sets owner and/or group.
    pub async fn chown(self, path: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), SandboxError> {
        Ok(self.guest.chown(path, uid, gid).await?)
    }

    /// Renames `from` to `to`.
    pub async fn rename(self, from: &str, to: &str) -> Result<(), SandboxError> {
        Ok(self.guest.rename(from, to).await?)
    }

    /// Unpacks the tar archive `data` into the directory `dir`; returns the archive's size.
    pub async fn upload_tar(self, dir: &str, data: ByteStream) -> Result<u64, SandboxError> {
        Ok(self.guest.upload_tar(dir, data).await?)
    }

    /// The directory `path` (its contents) or file as a tar archive.
    pub async fn download_tar(self, path: &str) -> Result<Download, SandboxError> {
        Ok(self.guest.download_tar(path).await?.into())
    }

    /// Starts a process attached to the returned handle.
    pub async fn spawn(self, request: SpawnRequest) -> Result<Attached, SandboxError> {
        let mut process = self.guest.spawn(request).await?;
        let (Some(stdout), Some(stderr)) = (process.take_stdout(), process.take_stderr()) else {
            return Err(SandboxError::Unreachable("a new process's outputs were taken".into()));
        };
        let stdin = process.take_stdin().map(|input| Box::new(input) as Box<dyn Input>);
        Ok(Attached {
            pid: process.pid(),
            stdout: Box::pin(stdout),
            stderr: Some(Box::pin(stderr)),
            stdin,
            control: Arc::new(process.control()),
            exit: Box::pin(async move { Ok(process.wait().await?) }),
        })
    }

    /// Starts a program on a new pseudo-terminal (its output is `stdout`, `stderr` is `None`).
    pub async fn pty(self, request: PtyRequest) -> Result<Attached, SandboxError> {
        let mut session = self.guest.pty(request).await?;
        let (Some(output), Some(input)) = (session.take_output(), session.take_input()) else {
            return Err(SandboxError::Unreachable("a new terminal's ends were taken".into()));
        };
        Ok(Attached {
            pid: session.pid(),
            stdout: Box::pin(output),
            stderr: None,
            stdin: Some(Box::new(input)),
            control: Arc::new(session.control()),
            exit: Box::pin(async move { Ok(session.wait().await?) }),
        })
    }

    /// Starts a background process.
    pub async fn start_process(self, request: StartProcessRequest) -> Result<ProcessInfo, SandboxError> {
        Ok(self.guest.start_process(request).await?)
    }

    /// Every background process the guest keeps, oldest first.
    pub async fn processes(self) -> Result<Vec<ProcessInfo>, SandboxError> {
        Ok(self.guest.processes().await?)
    }

    /// Signals a background process's group.
    pub async fn signal_process(self, process: ProcessRef, signal: i32) -> Result<(), SandboxError> {
        Ok(self.guest.signal_process(process, signal).await?)
    }

    /// A background process's state after waiting at most `wait` for its exit.
    pub async fn wait_process(
        self,
        process: ProcessRef,
        wait: Duration,
    ) -> Result<ProcessInfo, SandboxError> {
        Ok(self.guest.wait_process(process, wait).await?)
    }

    /// A background process's output from an offset.
    pub async fn process_output(self, request: ProcessOutputRequest) -> Result<ProcessOutput, SandboxError> {
        Ok(self.guest.process_output(request).await?)
    }

    /// Forgets an exited background process.
    pub async fn remove_process(self, process: ProcessRef) -> Result<(), SandboxError> {
        Ok(self.guest.remove_process(process).await?)
    }
}
