//! Request and response bodies of the `/v1` API (they also define the OpenAPI schemas).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::shapes::ShapeStatusView;

/// `POST /v1/leases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    /// Shape to lease a VM of.
    pub shape: String,
    /// How long to wait for a ready VM, in ms (0: answer 503 at once when none is ready).
    #[serde(default)]
    pub wait_ms: u64,
    /// Lease lifetime in ms, counted from the moment the VM is handed out (default: the daemon's
    /// `leases.default_ttl_secs`).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
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

/// `POST /v1/leases/{id}/exec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// Program and arguments (`argv[0]` is looked up in the guest's `PATH`); at least one element.
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory in the guest (default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Bytes for the program's stdin, encoded as `stdin_encoding` says.
    #[serde(default)]
    pub stdin: String,
    /// Encoding of `stdin`.
    #[serde(default)]
    pub stdin_encoding: Encoding,
    /// Kill the program after this many ms (0: the agent's default, 60 s).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Keep at most this many bytes of stdout and of stderr each (0: 1 MiB; at most 64 MiB).
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
    /// assert_eq!(body.argv, ["uname", "-r"]);
    /// assert!(body.env.is_empty() && body.stdin.is_empty() && body.max_output_bytes == 0);
    /// ```
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
            stdin: String::new(),
            stdin_encoding: Encoding::default(),
            timeout_ms: 0,
            max_output_bytes: 0,
        }
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
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `ok`, or `shutting_down` (with status 503).
    pub status: String,
}
