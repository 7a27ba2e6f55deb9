//! The daemon's configuration file (TOML), parsed and validated once at start-up.
//!
//! Every table rejects unknown keys, so a typo is an error rather than a silently ignored setting.
//! [`Config::load`] returns either a fully valid [`Config`] or a [`ConfigError`] that names the key,
//! the value and what is allowed: the daemon never starts half-configured.
//!
//! ```toml
//! # state_dir = "/run/firepit/state"      # default: <runtime dir>/state
//! [listen]
//! # socket = "/run/firepit/firepit.sock"  # default: <runtime dir>/firepit.sock, mode 0600
//! # tcp = "127.0.0.1:7070"                # optional; then token_file or token_env is required
//! # token_file = "/etc/firepit/token"
//! [limits]
//! memory_budget_mb = 4096
//! parallel_fills = 2
//! [leases]
//! default_ttl_secs = 300
//! max_ttl_secs = 3600
//! [[shape]]
//! name = "small"
//! image = "/var/lib/firepit/image"
//! cpus = 1
//! memory_mb = 256
//! depth = { low = 2, high = 4 }
//! fill = "cold"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use firepit_api::{default_runtime_dir, default_socket_path};

use firepit_shape::ShapeSpec;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for ownership records (which VM processes this daemon owns). Default:
    /// `<runtime dir>/state`. Two daemons must not share one.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Run every QEMU process as this unprivileged user: a name such as `nobody`, or `uid[:gid]`.
    /// Needs the daemon to run as root. Default: QEMU runs as the daemon's user.
    #[serde(default)]
    pub qemu_user: Option<String>,
    /// The QEMU binary: a path, or a name looked up in `PATH`. Default: `qemu-system-x86_64`.
    #[serde(default)]
    pub qemu_binary: Option<PathBuf>,
    /// Where the API listens.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Lease lifetimes.
    #[serde(default)]
    pub leases: LeaseConfig,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Where `fill = "snapshot"` shapes keep their templates.
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    /// `[cgroups]`: each VM's QEMU in a cgroup of its own, with CPU, memory and process limits
    /// (`enabled`, `parent`, `memory_overhead_mb`, `pids_max`; see
    /// [`firepit_qemu::CgroupConfig`]). Default: on, under `firepit` below the daemon's own
    /// cgroup; a host without usable cgroups runs VMs without them.
    #[serde(default)]
    pub cgroups: firepit_qemu::CgroupConfig,
    /// The shapes to keep warm (at least one): `[[shape]]` tables, each a
    /// [`ShapeSpec`] (the same description `PUT /v1/shapes/{name}` takes).
    #[serde(default, rename = "shape")]
    pub shapes: Vec<ShapeSpec>,
}

/// `[listen]`: the API's sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Unix socket path (created with mode 0600). Default: `<runtime dir>/firepit.sock`, where the
    /// runtime dir is `$XDG_RUNTIME_DIR/firepit`, else `/run/firepit` for root, else
    /// `<tmp>/firepit-<uid>` (mode 0700).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Optional TCP address (`host:port`). TCP requires a bearer token (`token_file` or
    /// `token_env`).
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
    /// File holding the bearer token for TCP clients (surrounding whitespace is ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding the bearer token for TCP clients.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `[limits]`: resources the pools may use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Upper bound on guest memory of all ready and leased VMs, in MiB (0: no bound).
    #[serde(default)]
    pub memory_budget_mb: u64,
    /// VMs booted or restored at the same time, across shapes.
    #[serde(default = "default_parallel_fills")]
    pub parallel_fills: usize,
    /// Largest accepted JSON request body, in bytes (file and archive uploads stream and are not
    /// bound by it).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

/// `[leases]`: how long a client may keep a VM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// TTL of a lease whose request names none, in seconds.
    #[serde(default = "default_ttl_secs")]
    pub default_ttl_secs: u64,
    /// Largest TTL a client may ask for (at acquire or renew), in seconds.
    #[serde(default = "default_max_ttl_secs")]
    pub max_ttl_secs: u64,
}

/// `[shutdown]`: what SIGTERM / SIGINT may take.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Time in-flight requests get to finish before they are cancelled, in seconds.
    #[serde(default = "default_shutdown_budget_secs")]
    pub budget_secs: u64,
}

/// `[snapshots]`: templates of `fill = "snapshot"` shapes (guest RAM file, device state, manifest).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Template directory; keep it on tmpfs (clones map the RAM file). Default:
    /// `/dev/shm/firepit-<uid>-templates`.
    #[serde(default)]
    pub template_dir: Option<PathBuf>,
    /// Keep templates when the daemon stops, so the next start reuses them instead of booting a
    /// template again (they are checked first: same image, QEMU version and command line). Remove
    /// them with `firepit image clean-templates`. Unregistering a shape always removes its template.
    #[serde(default = "default_true")]
    pub keep_templates: bool,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self { template_dir: None, keep_templates: true }
    }
}

/// Why the configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown / mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A `[[shape]]` table is out of range: the shape's own error, with the same message the
    /// library and `PUT /v1/shapes` give for the same shape (it names the shape, the field, the
    /// value and what is allowed).
    #[error(transparent)]
    InvalidShape(#[from] firepit_shape::InvalidShape),
    /// A value is out of range.
    #[error("`{key}` = {value}: {allowed}")]
    Invalid {
        /// Dotted key, e.g. `limits.parallel_fills`.
        key: String,
        /// The offending value as written.
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), value: value.to_string(), allowed: allowed.into() }
    }
}

impl Config {
    /// The directory holding the default socket and state dir.
    pub fn runtime_dir(&self) -> PathBuf {
        default_runtime_dir()
    }

    /// The Unix socket the API listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.listen.socket.clone().unwrap_or_else(default_socket_path)
    }

    /// The ownership-record directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| default_runtime_dir().join("state"))
    }

    /// Default lease TTL.
    pub fn default_ttl(&self) -> Duration {
        Duration::from_secs(self.leases.default_ttl_secs)
    }

    /// Largest lease TTL.
    pub fn max_ttl(&self) -> Duration {
        Duration::from_secs(self.leases.max_ttl_secs)
    }

    /// Shutdown budget for in-flight requests.
    pub fn shutdown_budget(&self) -> Duration {
        Duration::from_secs(self.shutdown.budget_secs)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_budget_mb: 0,
            parallel_fills: default_parallel_fills(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self { default_ttl_secs: default_ttl_secs(), max_ttl_secs: default_max_ttl_secs() }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { budget_secs: default_shutdown_budget_secs() }
    }
}

fn default_parallel_fills() -> usize {
    2
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_ttl_secs() -> u64 {
    300
}
fn default_max_ttl_secs() -> u64 {
    3600
}
fn default_shutdown_budget_secs() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
