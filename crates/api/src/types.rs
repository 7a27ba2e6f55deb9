//! Request and response bodies of the `/v1` API (they also define the OpenAPI schemas).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::shapes::ShapeStatusView;

/// `POST /v1/leases`.
///
/// ```
/// // A lease started from a snapshot names no shape (the snapshot's is used).
/// let request = firepit_api::AcquireRequest { snapshot: Some("s-1".into()), ..Default::default() };
/// assert_eq!(serde_json::to_string(&request).unwrap(), r#"{"shape":"","wait_ms":0,"ttl_ms":null,"snapshot":"s-1"}"#);
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    /// Shape to lease a VM of (may be empty with `snapshot`).
    #[serde(default)]
    pub shape: String,
    /// How long to wait for a ready VM, in ms (0: answer 503 at once when none is ready).
    #[serde(default)]
    pub wait_ms: u64,
    /// Lease lifetime in ms, counted from the moment the VM is handed out (default: the daemon's
    /// `leases.default_ttl_secs`).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Start the lease's VM from this snapshot (`POST /v1/leases/{id}/snapshots`) instead of
    /// taking a warm VM of `shape`: its files, memory and processes as they were, with an
    /// identity of its own. Unknown: `404 snapshot_not_found`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// A lease, as returned by acquire and renew.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseResponse {
    /// Lease id, used in `/v1/leases/{id}/...`.
    pub lease_id: String,
    /// The leased VM's id.
    pub vm_id: String,
    /// The VM's shape.
    pub shape: String,
    /// Expiry time (RFC 3339, UTC); renew before it.
    pub expires_at: String,
    /// Expiry time as milliseconds since the Unix epoch.
    pub expires_at_unix_ms: u64,
}

/// `POST /v1/leases/{id}/renew` (the body may be empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// New lifetime from now, in ms (default: the daemon's default TTL).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// How bytes are carried in a JSON string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The string is the bytes as UTF-8 text.
    #[default]
    Utf8,
    /// The string is standard base64 (with padding).
    Base64,
}

/// What to run in the guest: a program, its arguments, extra environment and working directory.
/// Every body that starts a program ([`ExecBody`], [`SpawnBody`](crate::SpawnBody),
/// [`StartProcessBody`](crate::StartProcessBody)) carries these fields at its top level
/// (`#[serde(flatten)]`), so `{"argv": ["true"]}` is a whole body.
///
/// ```
/// let program = firepit_api::Program::new(["sh", "-c", "echo $A"]).env("A", "1").cwd("/tmp");
/// let body = firepit_api::ExecBody { timeout_ms: 500, ..firepit_api::ExecBody::from(program) };
/// let json = serde_json::to_value(&body).unwrap();
/// assert_eq!(json["argv"][0], "sh");
/// assert_eq!(json["env"]["A"], "1");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Program {
    /// Program and arguments (`argv[0]` is looked up in the guest's `PATH`); at least one element.
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory in the guest (default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
}

impl Program {
    /// `argv` with no extra environment, in `/`.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self { argv: argv.into_iter().map(Into::into).collect(), env: BTreeMap::new(), cwd: None }
    }

    /// The same program with `name=value` in its environment.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// The same program run in `dir`.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// Bytes for a program's stdin, which is closed after them: `stdin`, encoded as `stdin_encoding`
/// says. Flattened into [`ExecBody`] and [`SpawnBody`](crate::SpawnBody) like [`Program`].
///
/// ```
/// let input = firepit_api::Stdin::text("hello\n");
/// assert_eq!(serde_json::to_string(&input).unwrap(), r#"{"stdin":"hello\n","stdin_encoding":"utf8"}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stdin {
    /// The bytes (default none: stdin is closed at once).
    #[serde(default)]
    pub stdin: String,
    /// Encoding of `stdin`.
    #[serde(default)]
    pub stdin_encoding: Encoding,
}

impl Stdin {
    /// UTF-8 text.
    pub fn text(text: impl Into<String>) -> Self {
        Self { stdin: text.into(), stdin_encoding: Encoding::Utf8 }
    }

    /// Bytes already encoded as standard base64.
    pub fn base64(encoded: impl Into<String>) -> Self {
        Self { stdin: encoded.into(), stdin_encoding: Encoding::Base64 }
    }
}

/// `POST /v1/leases/{id}/exec`: run a command and answer with its whole output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// What to run (`argv`, `env`, `cwd`).
    #[serde(flatten)]
    pub program: Program,
    /// Its stdin (`stdin`, `stdin_encoding`).
    #[serde(flatten)]
    pub input: Stdin,
    /// Kill the program after this many ms (0: the agent's default, 60 s).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Keep at most this many bytes of stdout and of stderr each (0: 1 MiB; at most
    /// 8,323,072: 8 MiB less 64 KiB, what one answer of the guest agent carries).
    #[serde(default)]
    pub max_output_bytes: u64,
}

impl ExecBody {
    /// An exec of `argv` with every other field at its default, as a JSON body that names only
    /// `argv` would get: no extra environment, `/`, empty stdin, the agent's timeout, 1 MiB of
    /// output. Set other fields with struct update syntax.
    ///
    /// ```
    /// use firepit_api::ExecBody;
    /// let body = ExecBody { timeout_ms: 500, ..ExecBody::new(["uname", "-r"]) };
    /// assert_eq!(body.program.argv, ["uname", "-r"]);
    /// assert!(body.program.env.is_empty() && body.input.stdin.is_empty() && body.max_output_bytes == 0);
    /// ```
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Program::new(argv).into()
    }
}

impl From<Program> for ExecBody {
    fn from(program: Program) -> Self {
        Self { program, input: Stdin::default(), timeout_ms: 0, max_output_bytes: 0 }
    }
}

/// The same command run to completion instead of streamed: its output kept up to the default
/// 1 MiB, and a `timeout_ms` of 0 meaning the agent's default (60 s) instead of none.
impl From<crate::SpawnBody> for ExecBody {
    fn from(spawn: crate::SpawnBody) -> Self {
        let crate::SpawnBody { program, input, timeout_ms } = spawn;
        Self { program, input, timeout_ms, max_output_bytes: 0 }
    }
}

/// Outcome of an exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResponse {
    /// Exit code; `null` when the program was killed by a signal.
    pub exit_code: Option<i32>,
    /// Signal that killed the program, if any.
    pub signal: Option<i32>,
    /// Standard output, encoded as `encoding` says.
    pub stdout: String,
    /// Standard error, encoded as `encoding` says.
    pub stderr: String,
    /// `utf8` when both outputs are valid UTF-8, else `base64` (for both).
    pub encoding: Encoding,
    /// True when an output was cut at `max_output_bytes`.
    pub truncated: bool,
    /// True when the program was killed at `timeout_ms`.
    pub timed_out: bool,
    /// Run time in the guest, in ms.
    pub duration_ms: u64,
    /// True when the guest kernel's OOM killer killed the program or a process of its group (the
    /// VM goes on; an event `process.oom_killed` names the process).
    #[serde(default)]
    pub oom_killed: bool,
}

/// `GET /v1/pools`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolsResponse {
    /// One entry per shape.
    pub shapes: Vec<ShapeStatusView>,
    /// Leases currently held by clients.
    pub leases: usize,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// The host's CPUs and memory (a daemon's; a gateway's pools have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::HostView>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `ok`, or `shutting_down` (with status 503).
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::{ExecBody, Program, Stdin};
    use crate::{SpawnBody, StartProcessBody};

    #[test]
    fn a_program_sits_at_the_top_of_each_body_and_unknown_fields_are_still_refused() {
        let exec: ExecBody =
            serde_json::from_str(r#"{"argv":["cat"],"cwd":"/tmp","env":{"A":"1"},"max_output_bytes":5}"#)
                .unwrap();
        assert_eq!(exec.program, Program::new(["cat"]).env("A", "1").cwd("/tmp"));
        assert_eq!(exec.max_output_bytes, 5);
        let json = serde_json::to_value(&exec).unwrap();
        assert_eq!(json["argv"][0], "cat");
        assert_eq!(serde_json::from_value::<ExecBody>(json).unwrap(), exec);
        assert!(serde_json::from_str::<ExecBody>(r#"{"argv":["true"],"argvv":[]}"#).is_err());
        assert!(serde_json::from_str::<ExecBody>(r#"{"env":{}}"#).is_err(), "argv is required");
        // Each body keeps its own fields: no output cap on a stream, no stdin for a background process.
        assert!(serde_json::from_str::<SpawnBody>(r#"{"argv":["true"],"max_output_bytes":1}"#).is_err());
        assert!(serde_json::from_str::<StartProcessBody>(r#"{"argv":["true"],"stdin":"x"}"#).is_err());
        let started: StartProcessBody = serde_json::from_str(r#"{"argv":["sleep","9"],"tag":"s"}"#).unwrap();
        assert_eq!((started.program.argv.len(), started.tag.as_deref()), (2, Some("s")));
    }

    #[test]
    fn a_streamed_exec_run_to_completion_keeps_its_command() {
        let spawn = SpawnBody { input: Stdin::base64("aGk="), timeout_ms: 7, ..SpawnBody::new(["cat"]) };
        let exec = ExecBody::from(spawn.clone());
        assert_eq!((exec.program, exec.input), (spawn.program, spawn.input));
        assert_eq!((exec.timeout_ms, exec.max_output_bytes), (7, 0));
    }
}
