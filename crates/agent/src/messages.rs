//! Requests the host sends and the responses the agent returns.
//!
//! The first three requests (`Ping`, `Exec`, `SetIdentity`) are one request, one response. The rest
//! came with streams (see the `stream_messages` module docs): the payload types live in
//! `fs_messages`, `process_messages` and `stream_messages`; the two enums here name them all.
//! New variants go at the end of each enum: postcard encodes a variant by its index.

use serde::{Deserialize, Serialize};

use crate::fs_messages::{
    ChmodRequest, ChownRequest, DirListing, Done, DownloadTarRequest, FileStat, ListDirRequest, MkdirRequest,
    ReadFileRequest, RemoveRequest, RenameRequest, StatRequest, UploadTarRequest, WriteFileRequest,
};
use crate::network_messages::{NetworkApplied, NetworkConfig};
use crate::process_messages::{
    ExitStatus, ProcessInfo, ProcessOutput, ProcessOutputRequest, ProcessRef, PtyRequest,
    SignalProcessRequest, SpawnRequest, StartProcessRequest, Started, WaitProcessRequest, WindowSize,
};
use crate::stream_messages::{Credit, Failure, InputChunk, OutputChunk};
use crate::usage_messages::{GuestUsage, UsageRequest};

/// A request with the id its response will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the host; echoed in the response so stale replies can be told apart.
    pub id: u64,
    /// What to do.
    pub request: Request,
}

/// A response to the request with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request answered (0 when the request could not be decoded).
    pub id: u64,
    /// The outcome.
    pub response: Response,
}

/// What the host can ask the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness and readiness check; answered with [`Response::Pong`].
    Ping,
    /// Run a program and collect its output; answered with [`Response::Exec`].
    Exec(ExecRequest),
    /// Give a restored clone its own identity; answered with [`Response::Identity`].
    SetIdentity(IdentityRequest),
    /// Starts a new host session: the agent cancels every stream of the previous one and answers
    /// [`Response::Hello`] with the same nonce. Every host connection sends it first and discards
    /// whatever arrives before that answer (stale frames of an earlier connection).
    Hello(u64),
    /// Input for the open stream with this frame's id (within the agent's credit).
    Input(InputChunk),
    /// The host consumed output of the open stream with this frame's id.
    Credit(Credit),
    /// The host abandons the open stream with this frame's id: a transfer stops, an attached
    /// process's group is killed. The stream ends with [`Response::Failed`] (`Cancelled`) or its
    /// normal end if that came first.
    Cancel,
    /// New terminal size for the open PTY stream with this frame's id.
    Resize(WindowSize),
    /// Send this signal to the process group of the attached process of the stream with this id.
    Signal(i32),
    /// Metadata of a path; answered with [`Response::Stat`].
    Stat(StatRequest),
    /// A directory's entries; answered with [`Response::Entries`].
    ListDir(ListDirRequest),
    /// Create a directory; answered with [`Response::Ok`].
    Mkdir(MkdirRequest),
    /// Remove a path; answered with [`Response::Ok`].
    Remove(RemoveRequest),
    /// Change permission bits; answered with [`Response::Ok`].
    Chmod(ChmodRequest),
    /// Change owner or group; answered with [`Response::Ok`].
    Chown(ChownRequest),
    /// Rename a path; answered with [`Response::Ok`].
    Rename(RenameRequest),
    /// Write a file from the stream's input (a stream).
    WriteFile(WriteFileRequest),
    /// Read a file as a stream.
    ReadFile(ReadFileRequest),
    /// Unpack a tar archive from the stream's input (a stream).
    UploadTar(UploadTarRequest),
    /// Pack a directory as a tar archive stream.
    DownloadTar(DownloadTarRequest),
    /// Run a program attached to the stream.
    Spawn(SpawnRequest),
    /// Run a program on a pseudo-terminal attached to the stream.
    Pty(PtyRequest),
    /// Start a background process; answered with [`Response::Process`].
    StartProcess(StartProcessRequest),
    /// Every background process the agent keeps; answered with [`Response::Processes`].
    ListProcesses,
    /// Signal a background process's group; answered with [`Response::Ok`].
    SignalProcess(SignalProcessRequest),
    /// Wait for a background process; answered with [`Response::Process`].
    WaitProcess(WaitProcessRequest),
    /// Read a background process's output; answered with [`Response::ProcessOutput`].
    ProcessOutput(ProcessOutputRequest),
    /// Forget an exited background process (its output is freed); answered with [`Response::Ok`].
    RemoveProcess(ProcessRef),
    /// Configure the network interface (MAC, address, route, DNS); answered with
    /// [`Response::Network`].
    ConfigureNetwork(NetworkConfig),
    /// The guest's memory, root file system and OOM kills; answered with [`Response::Usage`].
    Usage(UsageRequest),
}

impl Request {
    /// A short name, for errors and logs.
    ///
    /// ```
    /// assert_eq!(firepit_agent::Request::Ping.kind(), "ping");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Exec(_) => "exec",
            Request::SetIdentity(_) => "set-identity",
            Request::Hello(_) => "hello",
            Request::Input(_) => "input",
            Request::Credit(_) => "credit",
            Request::Cancel => "cancel",
            Request::Resize(_) => "resize",
            Request::Signal(_) => "signal",
            Request::Stat(_) => "stat",
            Request::ListDir(_) => "list-dir",
            Request::Mkdir(_) => "mkdir",
            Request::Remove(_) => "remove",
            Request::Chmod(_) => "chmod",
            Request::Chown(_) => "chown",
            Request::Rename(_) => "rename",
            Request::WriteFile(_) => "write-file",
            Request::ReadFile(_) => "read-file",
            Request::UploadTar(_) => "upload-tar",
            Request::DownloadTar(_) => "download-tar",
            Request::Spawn(_) => "spawn",
            Request::Pty(_) => "pty",
            Request::StartProcess(_) => "start-process",
            Request::ListProcesses => "list-processes",
            Request::SignalProcess(_) => "signal-process",
            Request::WaitProcess(_) => "wait-process",
            Request::ProcessOutput(_) => "process-output",
            Request::RemoveProcess(_) => "remove-process",
            Request::ConfigureNetwork(_) => "configure-network",
            Request::Usage(_) => "usage",
        }
    }

    /// Whether this frame addresses an already open stream (input, credit, cancel, resize, signal)
    /// rather than starting a request of its own.
    ///
    /// ```
    /// assert!(firepit_agent::Request::Cancel.is_stream_control());
    /// assert!(!firepit_agent::Request::Ping.is_stream_control());
    /// ```
    pub fn is_stream_control(&self) -> bool {
        matches!(
            self,
            Request::Input(_)
                | Request::Credit(_)
                | Request::Cancel
                | Request::Resize(_)
                | Request::Signal(_)
        )
    }
}

/// Most bytes of stdout, and of stderr, one [`ExecRequest`] returns (`max_output_bytes` above it
/// is cut to it): both must fit in one answer frame ([`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN),
/// 16 MiB), so 8 MiB less 64 KiB each. Larger output: stream it (`Request::Spawn`).
pub const MAX_EXEC_OUTPUT: u64 = 8 * 1024 * 1024 - 64 * 1024;

/// Run `argv` in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Extra environment variables (added to the agent's environment).
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`).
    pub cwd: Option<String>,
    /// Bytes written to the program's stdin, which is then closed.
    #[serde(with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// Kill the program after this many milliseconds (0 = the agent's default of 60 s).
    pub timeout_ms: u64,
    /// Keep at most this many bytes of stdout and of stderr each (0 = 1 MiB; at most
    /// [`MAX_EXEC_OUTPUT`]).
    pub max_output_bytes: u64,
    /// Run as this user: a numeric `uid` or `uid:gid` (default: the agent's, root). Set from an
    /// OCI image's `User` (resolved to numbers when the image is imported).
    #[serde(default)]
    pub user: Option<String>,
}

/// Outcome of an [`ExecRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Exit code, `None` when the program was killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Captured standard output (at most `max_output_bytes`).
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// Captured standard error (at most `max_output_bytes`).
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// True when stdout or stderr was cut at `max_output_bytes`.
    pub truncated: bool,
    /// True when the program was killed because it ran past `timeout_ms`.
    pub timed_out: bool,
    /// Wall time in the guest, in milliseconds.
    pub duration_ms: u64,
    /// True when the guest kernel's OOM killer killed the program or a process of its group
    /// while it ran (see `Request::Usage` for the kills themselves).
    #[serde(default)]
    pub oom_killed: bool,
}

/// Per-clone identity, applied after a snapshot restore before the VM is handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRequest {
    /// Host randomness credited to the guest kernel's entropy pool (RNDADDENTROPY) and mixed in.
    #[serde(with = "serde_bytes")]
    pub entropy: Vec<u8>,
    /// Host wall clock as nanoseconds since the Unix epoch; the guest sets its clock to it.
    pub unix_time_ns: Option<u128>,
    /// New hostname.
    pub hostname: Option<String>,
    /// New machine id (32 hex digits), written to /etc/machine-id.
    pub machine_id: Option<String>,
}

/// What [`IdentityRequest`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityApplied {
    /// Entropy bytes credited to the kernel.
    pub entropy_bytes: u32,
    /// Whether the clock was set.
    pub clock_set: bool,
    /// Whether the hostname was set.
    pub hostname_set: bool,
    /// Whether the machine id was written.
    pub machine_id_set: bool,
}

/// Answer to [`Request::Ping`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Agent version (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// Guest uptime in milliseconds (from /proc/uptime).
    pub uptime_ms: u64,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong(Pong),
    /// Answer to [`Request::Exec`].
    Exec(ExecResult),
    /// Answer to [`Request::SetIdentity`].
    Identity(IdentityApplied),
    /// The request failed or could not be decoded; the agent goes on serving.
    Error {
        /// What went wrong.
        message: String,
    },
    /// Answer to [`Request::Hello`] (same nonce): everything before it on the byte stream is stale.
    Hello(u64),
    /// Output of an open stream (within the host's credit).
    Output(OutputChunk),
    /// The agent consumed this many input bytes of an open stream: the host may send that many more.
    Credit(u32),
    /// A read stream opened this path (first frame of `ReadFile` and `DownloadTar`).
    Opened(FileStat),
    /// An attached process started (first frame of `Spawn` and `Pty`).
    Started(Started),
    /// An attached process ended (terminal).
    Exited(ExitStatus),
    /// A transfer completed (terminal).
    Done(Done),
    /// The request or stream failed (terminal).
    Failed(Failure),
    /// Answer to [`Request::Stat`].
    Stat(FileStat),
    /// Answer to [`Request::ListDir`].
    Entries(DirListing),
    /// A request without a result succeeded.
    Ok,
    /// One background process.
    Process(ProcessInfo),
    /// Every background process.
    Processes(Vec<ProcessInfo>),
    /// Answer to [`Request::ProcessOutput`].
    ProcessOutput(ProcessOutput),
    /// Answer to [`Request::ConfigureNetwork`].
    Network(NetworkApplied),
    /// Answer to [`Request::Usage`].
    Usage(GuestUsage),
}

impl Response {
    /// Whether this response ends its request: everything but output, credit and the first frames
    /// of a stream (`Opened`, `Started`).
    ///
    /// ```
    /// use firepit_agent::Response;
    /// assert!(Response::Ok.is_terminal());
    /// assert!(!Response::Credit(10).is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Response::Output(_) | Response::Credit(_) | Response::Opened(_) | Response::Started(_)
        )
    }
}
