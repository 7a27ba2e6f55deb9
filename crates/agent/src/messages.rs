//! Requests the host sends and the responses the agent returns.

use serde::{Deserialize, Serialize};

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
    /// Configure the network interface; answered with [`Response::Network`].
    ConfigureNetwork(crate::NetworkConfig),
}

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
    /// Keep at most this many bytes of stdout and of stderr each (0 = 1 MiB).
    pub max_output_bytes: u64,
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
    /// Answer to [`Request::ConfigureNetwork`].
    Network(crate::NetworkApplied),
    /// The request failed or could not be decoded; the agent goes on serving.
    Error {
        /// What went wrong.
        message: String,
    },
}
