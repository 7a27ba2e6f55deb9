//! Processes in a leased VM: streamed exec (`POST /v1/leases/{id}/exec/stream`) and background
//! processes (`/v1/leases/{id}/processes…`).
//!
//! A background process belongs to the guest, not to the request that started it: it survives
//! its client disconnecting, is listed, signalled, waited for, and its output is read by offset
//! (the guest keeps the newest 2 MiB per channel by default), until the lease ends.
//!
//! ```
//! use firepit_api::{SignalBody, SignalSpec};
//! let body: SignalBody = serde_json::from_str(r#"{"signal":"TERM"}"#).unwrap();
//! assert_eq!(body.signal, SignalSpec::Name("TERM".into()));
//! let body: SignalBody = serde_json::from_str(r#"{"signal":9}"#).unwrap();
//! assert_eq!(body.signal, SignalSpec::Number(9));
//! ```

use serde::{Deserialize, Serialize};

use crate::types::{Encoding, Program, Stdin};

/// `POST /v1/leases/{id}/exec/stream`: a command whose output is streamed back as it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SpawnBody {
    /// What to run (`argv`, `env`, `cwd`).
    #[serde(flatten)]
    pub program: Program,
    /// Its stdin (`stdin`, `stdin_encoding`).
    #[serde(flatten)]
    pub input: Stdin,
    /// Kill the program's whole process group after this many ms (0: no timeout).
    #[serde(default)]
    pub timeout_ms: u64,
}

impl SpawnBody {
    /// A streamed exec of `argv`: no extra environment, `/`, no stdin, no timeout.
    ///
    /// ```
    /// let body = firepit_api::SpawnBody { timeout_ms: 5000, ..firepit_api::SpawnBody::new(["sleep", "1"]) };
    /// assert_eq!(body.program.argv, ["sleep", "1"]);
    /// ```
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Program::new(argv).into()
    }
}

impl From<Program> for SpawnBody {
    fn from(program: Program) -> Self {
        Self { program, input: Stdin::default(), timeout_ms: 0 }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExitStatusView {
    /// Exit code; `null` when a signal killed the process.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// It ran past its timeout and its process group was killed.
    pub timed_out: bool,
    /// Wall time from start to exit in the guest, ms.
    pub duration_ms: u64,
    /// The guest kernel's OOM killer killed it or a process of its group.
    #[serde(default)]
    pub oom_killed: bool,
}

/// `POST /v1/leases/{id}/processes`: start a background process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartProcessBody {
    /// What to run (`argv`, `env`, `cwd`).
    #[serde(flatten)]
    pub program: Program,
    /// A name to address it by instead of its id (unique among running processes; not all digits).
    #[serde(default)]
    pub tag: Option<String>,
    /// Kill its process group after this many ms (0: never).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Output kept per channel (0: 2 MiB; at most 64 MiB); older output is dropped.
    #[serde(default)]
    pub output_limit_bytes: u64,
    /// Run as this user: a name from the guest's `/etc/passwd`, a uid or `uid:gid` (default
    /// root). The process gets the user's groups, `HOME`, `USER`, `LOGNAME` and `SHELL`, and
    /// starts in the user's home when `cwd` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl From<Program> for StartProcessBody {
    /// A background process running `program`: no tag, no timeout, the default output kept.
    ///
    /// ```
    /// use firepit_api::{Program, StartProcessBody};
    /// let body = StartProcessBody { tag: Some("web".into()), ..Program::new(["httpd", "-f"]).into() };
    /// assert_eq!(body.output_limit_bytes, 0);
    /// ```
    fn from(program: Program) -> Self {
        Self { program, ..Self::default() }
    }
}

/// A background process, as the guest knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessView {
    /// Its id (`/processes/{id}`), never reused within a VM.
    pub id: u64,
    /// Its tag (`/processes/{tag}` works too).
    pub tag: Option<String>,
    /// Its guest process id (also its process group id).
    pub pid: u32,
    /// What it runs.
    pub argv: Vec<String>,
    /// When it started, guest milliseconds since the Unix epoch.
    pub started_unix_ms: i64,
    /// How it ended; `null` while it runs.
    pub exit: Option<ExitStatusView>,
    /// Bytes written to stdout so far (the offset after its last byte).
    pub stdout_bytes: u64,
    /// Bytes written to stderr so far.
    pub stderr_bytes: u64,
}

/// `GET /v1/leases/{id}/processes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessList {
    /// Running and recently exited background processes, oldest first.
    pub processes: Vec<ProcessView>,
}

/// Query of `GET /v1/leases/{id}/processes/{process}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ProcessQuery {
    /// Wait up to this many ms for the process to exit before answering (0: answer at once).
    #[serde(default)]
    pub wait_ms: u64,
}

/// A signal, by number (`15`) or by name (`"TERM"`, `"SIGTERM"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SignalSpec {
    /// A signal number.
    Number(i32),
    /// A signal name, with or without `SIG`: HUP, INT, QUIT, KILL, USR1, USR2, TERM, CONT, STOP,
    /// TSTP, WINCH.
    Name(String),
}

/// `POST /v1/leases/{id}/processes/{process}/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// The signal, sent to the process's whole process group.
    pub signal: SignalSpec,
}

/// Which output of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputChannel {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

/// Query of `GET /v1/leases/{id}/processes/{process}/output`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    /// Which output (default `stdout`).
    #[serde(default)]
    pub channel: OutputChannel,
    /// Offset of the first byte wanted (bytes since the process started writing that channel).
    #[serde(default)]
    pub offset: u64,
    /// Most bytes to return (0: 1 MiB, also the maximum).
    #[serde(default)]
    pub max_bytes: u32,
    /// When nothing is there yet at `offset`, wait up to this many ms for output or the end
    /// (at most 60 000).
    #[serde(default)]
    pub wait_ms: u64,
    /// Stream the output from `offset` as NDJSON until the channel ends (see the guide).
    #[serde(default)]
    pub follow: bool,
}

/// A slice of a background process's output (`GET …/output` without `follow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessOutputView {
    /// Offset of the first byte of `data` (greater than the requested offset when output was dropped).
    pub offset: u64,
    /// The bytes, encoded as `encoding` says.
    pub data: String,
    /// `utf8` when the bytes are valid UTF-8, else `base64`.
    pub encoding: Encoding,
    /// Bytes between the requested offset and `offset` that the guest had already dropped.
    pub missed: u64,
    /// Where to read next.
    pub next_offset: u64,
    /// The channel is closed and everything up to `next_offset` has been returned.
    pub eof: bool,
}
