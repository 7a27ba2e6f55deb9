//! Process requests: attached streams ([`SpawnRequest`], [`PtyRequest`]) and background processes
//! ([`StartProcessRequest`] and the requests that address them by [`ProcessRef`]).
//!
//! An *attached* process belongs to its stream: its output flows under credit, it ends with
//! [`Response::Exited`](crate::Response::Exited), and cancelling the stream (or the host
//! connection ending) kills its process group. A *background* process belongs to the agent: it
//! lives on whatever happens to host connections, its output goes to bounded in-memory buffers that
//! any later connection reads by offset, and only a signal, its own end, or its timeout ends it.
//!
//! Every process runs in its own process group (a background process in its own session), and a
//! timeout kills the whole group with SIGKILL: whatever the command started dies with it. A timeout
//! is reported only once the killed process has been reaped.
//!
//! ```
//! use firepit_agent::{ProcessRef, StartProcessRequest};
//! let request = StartProcessRequest {
//!     argv: vec!["sleep".into(), "60".into()],
//!     tag: Some("sleeper".into()),
//!     ..Default::default()
//! };
//! assert_eq!(ProcessRef::Tag("sleeper".into()), ProcessRef::Tag(request.tag.unwrap()));
//! ```

use serde::{Deserialize, Serialize};

use crate::stream_messages::Channel;

/// Output kept per channel of a background process when the request says 0 (the last 2 MiB of
/// stdout and of stderr: 4 MiB per process).
pub const DEFAULT_PROCESS_OUTPUT_LIMIT: u64 = 2 * 1024 * 1024;

/// Largest output limit per channel a background process may ask for.
pub const MAX_PROCESS_OUTPUT_LIMIT: u64 = 64 * 1024 * 1024;

/// Most bytes one [`ProcessOutputRequest`] returns.
pub const MAX_OUTPUT_READ: u32 = 1024 * 1024;

/// Run a program attached to the stream: [`Response::Started`](crate::Response::Started), stdout and
/// stderr [`OutputChunk`](crate::OutputChunk)s (each channel ends with an `eof` chunk), then
/// [`Response::Exited`](crate::Response::Exited) once the program has exited *and* both pipes
/// closed (a grandchild that keeps them open keeps the stream open; cancel or a timeout ends it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`).
    pub cwd: Option<String>,
    /// Kill the process group after this many milliseconds (0: no timeout).
    pub timeout_ms: u64,
    /// Keep stdin open for the stream's [`InputChunk`](crate::InputChunk)s (otherwise `/dev/null`).
    pub stdin: bool,
    /// Run as this user: a name from the guest's `/etc/passwd`, a uid, or `uid:gid` (default: the
    /// agent's, root). The child gets the user's groups, `HOME`, `USER`, `LOGNAME`, `SHELL`, and
    /// starts in the user's home when `cwd` is not given.
    #[serde(default)]
    pub user: Option<String>,
}

/// Terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Default for WindowSize {
    fn default() -> Self {
        Self { rows: 24, cols: 80 }
    }
}

/// Run a program (default: a login shell) on a new pseudo-terminal, attached to the stream:
/// [`Response::Started`](crate::Response::Started), the terminal's output on
/// [`Channel::Stdout`], then [`Response::Exited`](crate::Response::Exited). Input chunks are typed
/// into the terminal; [`Request::Resize`](crate::Request::Resize) changes its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyRequest {
    /// Program and arguments (empty: `/bin/sh -l`).
    pub argv: Vec<String>,
    /// Extra environment variables (`TERM` defaults to `xterm-256color`).
    pub env: Vec<(String, String)>,
    /// Working directory (default `/root` if it exists, else `/`).
    pub cwd: Option<String>,
    /// Initial size.
    pub size: WindowSize,
    /// Run as this user: a name from the guest's `/etc/passwd`, a uid, or `uid:gid` (default: the
    /// agent's, root). The child gets the user's groups, `HOME`, `USER`, `LOGNAME`, `SHELL`, and
    /// starts in the user's home when `cwd` is not given.
    #[serde(default)]
    pub user: Option<String>,
}

/// An attached process has started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Its process id in the guest (also its process group id).
    pub pid: u32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, `None` when a signal killed it.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// It ran past its timeout and its process group was killed.
    pub timed_out: bool,
    /// Wall time from start to exit in the guest, milliseconds.
    pub duration_ms: u64,
    /// The guest kernel's OOM killer killed it or a process of its group while it ran.
    #[serde(default)]
    pub oom_killed: bool,
}

/// Start a background process; answered with [`Response::Process`](crate::Response::Process).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProcessRequest {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (default `/`).
    pub cwd: Option<String>,
    /// A name to find it by (unique among running processes).
    pub tag: Option<String>,
    /// Kill its process group after this many milliseconds (0: no timeout).
    pub timeout_ms: u64,
    /// Output kept per channel (0: [`DEFAULT_PROCESS_OUTPUT_LIMIT`]; at most
    /// [`MAX_PROCESS_OUTPUT_LIMIT`]); older output is dropped.
    pub output_limit_bytes: u64,
    /// Run as this user: a name from the guest's `/etc/passwd`, a uid, or `uid:gid` (default: the
    /// agent's, root). The child gets the user's groups, `HOME`, `USER`, `LOGNAME`, `SHELL`, and
    /// starts in the user's home when `cwd` is not given.
    #[serde(default)]
    pub user: Option<String>,
}

/// Names a background process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcessRef {
    /// The id the agent gave it.
    Id(u64),
    /// The tag it was started with (the newest process with that tag).
    Tag(String),
}

/// What the agent knows of a background process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The agent's id for it (never reused while the agent runs).
    pub id: u64,
    /// Its tag.
    pub tag: Option<String>,
    /// Its guest process id (and process group id).
    pub pid: u32,
    /// What it runs.
    pub argv: Vec<String>,
    /// When it started, guest milliseconds since the Unix epoch.
    pub started_unix_ms: i64,
    /// How it ended (`None` while it runs).
    pub exit: Option<ExitStatus>,
    /// Bytes it has written to stdout so far (the offset after its last byte).
    pub stdout_bytes: u64,
    /// Bytes it has written to stderr so far.
    pub stderr_bytes: u64,
}

/// Send a signal to a background process's whole process group; answered with
/// [`Response::Ok`](crate::Response::Ok).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalProcessRequest {
    /// Which process.
    pub process: ProcessRef,
    /// Signal number (15 = SIGTERM, 9 = SIGKILL).
    pub signal: i32,
}

/// Wait until a background process exits, at most `timeout_ms`; answered with
/// [`Response::Process`](crate::Response::Process) (its `exit` is `None` if it still runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitProcessRequest {
    /// Which process.
    pub process: ProcessRef,
    /// How long to wait (0: just look).
    pub timeout_ms: u64,
}

/// Read a background process's output from `offset`; answered with
/// [`Response::ProcessOutput`](crate::Response::ProcessOutput).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOutputRequest {
    /// Which process.
    pub process: ProcessRef,
    /// Which output.
    pub channel: Channel,
    /// Offset of the first byte wanted (bytes since the process started writing that channel).
    pub offset: u64,
    /// Most bytes to return (capped at [`MAX_OUTPUT_READ`]; 0 means the cap).
    pub max_bytes: u32,
    /// When nothing is there yet at `offset`, wait up to this long for output or the end.
    pub wait_ms: u64,
}

/// A slice of a background process's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOutput {
    /// Offset of `bytes[0]` (greater than the requested offset when output was dropped).
    pub offset: u64,
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Bytes between the requested offset and `offset` that were dropped (the buffer only keeps
    /// the newest output): the reader missed them.
    pub missed: u64,
    /// Where to read next (`offset + bytes.len()`).
    pub next_offset: u64,
    /// The channel is closed and everything up to `next_offset` has been returned: no more output.
    pub eof: bool,
}

impl SpawnRequest {
    /// Runs `argv` with no stdin, no extra environment, in `/`, without a timeout.
    ///
    /// ```
    /// let request = firepit_agent::SpawnRequest::new(["sh", "-c", "echo hi"]);
    /// assert_eq!(request.argv.len(), 3);
    /// assert!(!request.stdin);
    /// ```
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Self::default() }
    }
}

impl StartProcessRequest {
    /// Starts `argv` in the background, untagged, without a timeout, keeping the default output.
    ///
    /// ```
    /// let mut request = firepit_agent::StartProcessRequest::new(["sleep", "60"]);
    /// request.tag = Some("sleeper".into());
    /// assert_eq!(request.argv, ["sleep", "60"]);
    /// ```
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Self::default() }
    }
}

impl PtyRequest {
    /// A login shell (`/bin/sh -l`) on a terminal of `rows` × `cols`.
    ///
    /// ```
    /// let request = firepit_agent::PtyRequest::shell(24, 80);
    /// assert!(request.argv.is_empty());
    /// assert_eq!(request.size.cols, 80);
    /// ```
    pub fn shell(rows: u16, cols: u16) -> Self {
        Self { size: WindowSize { rows, cols }, ..Self::default() }
    }
}

impl From<u64> for ProcessRef {
    fn from(id: u64) -> Self {
        ProcessRef::Id(id)
    }
}

impl From<&str> for ProcessRef {
    fn from(tag: &str) -> Self {
        ProcessRef::Tag(tag.into())
    }
}

impl From<String> for ProcessRef {
    fn from(tag: String) -> Self {
        ProcessRef::Tag(tag)
    }
}
