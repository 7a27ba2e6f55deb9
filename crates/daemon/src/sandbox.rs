//! What a leased VM offers besides `exec`: files, archives, attached and background processes,
//! terminals. The HTTP layer's door to them, as [`backend::LeaseBackend`](crate::backend) is to
//! the pools: a small object-safe trait ([`Sandbox`]) over backend-agnostic types (the guest
//! agent's request and answer structs, byte streams as [`AsyncRead`]).
//!
//! Every transfer streams: uploads are read from a [`ByteStream`] as the guest takes them, and
//! downloads and process output are [`ByteStream`]s the caller reads at its own pace, so nothing
//! here buffers a whole file. Attached processes and terminals ([`Attached`]) live as long as
//! their handle: dropping it before the exit kills the process group.
//!
//! The QEMU implementation is `qemu_sandbox.rs` (over `firepit_qemu::QemuVm`); the fake backend's
//! is `fake_sandbox.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use firepit_agent::{
    DirListing, ExitStatus, FailureKind, FileStat, MkdirRequest, ProcessInfo, ProcessOutput,
    ProcessOutputRequest, ProcessRef, PtyRequest, SpawnRequest, StartProcessRequest, WindowSize,
};
use tokio::io::AsyncRead;

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

/// How [`Sandbox::write_file`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits (default 0o644 for a new file, unchanged for an existing one).
    pub mode: Option<u32>,
    /// Create missing parent directories.
    pub create_parents: bool,
    /// Append instead of truncating.
    pub append: bool,
}

/// Writes into a running process's stdin or terminal, as fast as the guest consumes it.
pub trait Input: Send {
    /// Writes all of `bytes` (waits while the guest has not consumed earlier input).
    fn write<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Sends end-of-file.
    fn close(&mut self) -> Result<(), SandboxError>;
}

/// Signals or resizes a running attached process while its output is being read.
pub trait Control: Send + Sync {
    /// Sends `signal` to its process group (a terminal's foreground group).
    fn signal(&self, signal: i32) -> Result<(), SandboxError>;
    /// Resizes its terminal (ignored for a process on pipes).
    fn resize(&self, size: WindowSize) -> Result<(), SandboxError>;
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
    /// This backend cannot do that.
    #[error("this backend does not support {0}")]
    Unsupported(&'static str),
}

/// The sandbox operations of one leased VM (see the module docs). Paths are absolute guest paths.
pub trait Sandbox: Send + Sync {
    /// Writes `data` to the file `path`; returns the bytes written.
    fn write_file<'a>(
        &'a self,
        path: &'a str,
        options: WriteOptions,
        data: ByteStream,
    ) -> BoxFuture<'a, Result<u64, SandboxError>>;

    /// Reads at most `limit` bytes of the file `path` from `offset`.
    fn read_file<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        limit: Option<u64>,
    ) -> BoxFuture<'a, Result<Download, SandboxError>>;

    /// Metadata of `path` (a symbolic link's target when `follow`).
    fn stat<'a>(&'a self, path: &'a str, follow: bool) -> BoxFuture<'a, Result<FileStat, SandboxError>>;

    /// The entries of the directory `path`.
    fn list_dir<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<DirListing, SandboxError>>;

    /// Creates a directory.
    fn mkdir(&self, request: MkdirRequest) -> BoxFuture<'_, Result<(), SandboxError>>;

    /// Removes a file, link or directory (`recursive`: with its contents).
    fn remove<'a>(&'a self, path: &'a str, recursive: bool) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Sets permission bits.
    fn chmod<'a>(&'a self, path: &'a str, mode: u32) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Sets owner and/or group.
    fn chown<'a>(
        &'a self,
        path: &'a str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Renames `from` to `to`.
    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Unpacks the tar archive `data` into the directory `dir`; returns the archive's size.
    fn upload_tar<'a>(&'a self, dir: &'a str, data: ByteStream) -> BoxFuture<'a, Result<u64, SandboxError>>;

    /// The directory `path` (its contents) or file as a tar archive.
    fn download_tar<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Download, SandboxError>>;

    /// Starts a process attached to the returned handle.
    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<Attached, SandboxError>>;

    /// Starts a program on a new pseudo-terminal (its output is `stdout`, `stderr` is `None`).
    fn pty(&self, request: PtyRequest) -> BoxFuture<'_, Result<Attached, SandboxError>>;

    /// Starts a background process.
    fn start_process(&self, request: StartProcessRequest)
    -> BoxFuture<'_, Result<ProcessInfo, SandboxError>>;

    /// Every background process the guest keeps, oldest first.
    fn processes(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SandboxError>>;

    /// Signals a background process's group.
    fn signal_process(&self, process: ProcessRef, signal: i32) -> BoxFuture<'_, Result<(), SandboxError>>;

    /// A background process's state after waiting at most `wait` for its exit.
    fn wait_process(
        &self,
        process: ProcessRef,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ProcessInfo, SandboxError>>;

    /// A background process's output from an offset.
    fn process_output(
        &self,
        request: ProcessOutputRequest,
    ) -> BoxFuture<'_, Result<ProcessOutput, SandboxError>>;

    /// Forgets an exited background process.
    fn remove_process(&self, process: ProcessRef) -> BoxFuture<'_, Result<(), SandboxError>>;
}
