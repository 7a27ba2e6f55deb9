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
//! # ui = true                             # the web dashboard under /ui on the TCP listener
//! [limits]
//! memory_budget_mb = 4096
//! parallel_fills = 2
//! # max_forwards_per_lease = 64
//! [http]
//! # header_read_timeout_secs = 30
//! # body_idle_timeout_secs = 30
//! # max_connections_per_client = 256
//! [leases]
//! default_ttl_secs = 300
//! max_ttl_secs = 3600
//! # ended_retention_secs = 3600          # how long GET /v1/leases/{id} still knows an ended lease
//! # paused_dir = "/var/lib/firepit/paused" # paused VMs, on a disk (default: <state_dir>/paused if set)
//! # snapshots_dir = "/var/lib/firepit/snapshots" # snapshots of leases (default: <state_dir>/snapshots if set)
//! [events]
//! # history = 4096                        # events kept for clients that resume (Last-Event-ID)
//! # [[events.webhooks]]
//! # url = "http://127.0.0.1:9000/firepit"
//! # secret_file = "/etc/firepit/webhook.secret"
//! # events = ["lease.ended", "shape.fill_failed"]
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

pub use crate::events_config::{EventsConfig, WebhookSection};
pub use crate::lease_config::LeaseConfig;

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
    /// What the HTTP listeners allow a client (timeouts, connections).
    #[serde(default)]
    pub http: HttpConfig,
    /// Lease lifetimes.
    #[serde(default)]
    pub leases: LeaseConfig,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Where `fill = "snapshot"` shapes keep their templates.
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    /// The E2B-compatible endpoint (`[e2b]`; off when absent). The daemon only carries it: the
    /// `firepit serve` command starts the endpoint (crate `firepit-e2b`) beside the daemon.
    #[serde(default)]
    pub e2b: Option<E2bSection>,
    /// Register in an etcd cluster so that gateways place leases here (see [`ClusterConfig`]).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// `[cgroups]`: each VM's QEMU in a cgroup of its own, with CPU, memory and process limits
    /// (`enabled`, `parent`, `memory_overhead_mb`, `pids_max`; see
    /// [`firepit_qemu::CgroupConfig`]). Default: on, under `firepit` below the daemon's own
    /// cgroup; a host without usable cgroups runs VMs without them.
    #[serde(default)]
    pub cgroups: firepit_qemu::CgroupConfig,
    /// The event history of `GET /v1/events` and the webhooks (`[[events.webhooks]]`).
    #[serde(default)]
    pub events: EventsConfig,
    /// `[usage]`: how often each lease's usage is sampled and how much is kept (see
    /// [`UsageConfig`]).
    #[serde(default)]
    pub usage: UsageConfig,
    /// The shapes to keep warm (at least one): `[[shape]]` tables, each a
    /// [`ShapeSpec`] (the same description `PUT /v1/shapes/{name}` takes).
    #[serde(default, rename = "shape")]
    pub shapes: Vec<ShapeSpec>,
}

/// `[e2b]`: E2B's SDKs served on one TCP listener, each sandbox a lease of the shape its template
/// names. Clients send the daemon's bearer token (`[listen]`'s `token_file` / `token_env`) as
/// their `X-API-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E2bSection {
    /// The TCP address (`host:port`) of the endpoint, e.g. `127.0.0.1:3000`.
    pub listen: SocketAddr,
    /// The domain of `{port}-{sandbox}.{domain}` host names (default `e2b.local`).
    #[serde(default)]
    pub domain: Option<String>,
    /// Who commands run as when the client names no user (default `user`, as in E2B's base
    /// template).
    #[serde(default)]
    pub default_user: Option<String>,
}

/// `[listen]`: the API's sockets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// Serve the web dashboard under `/ui` on the TCP listener (login with the token).
    #[serde(default = "default_true")]
    pub ui: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self { socket: None, tcp: None, token_file: None, token_env: None, ui: true }
    }
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
    /// Port forwards one lease may have open at once; one more is `429 limit_reached`.
    #[serde(default = "default_max_forwards_per_lease")]
    pub max_forwards_per_lease: usize,
}

/// `[http]`: what the API's listeners (and the E2B endpoint's) allow a client. Past a timeout the
/// connection is closed (a stalled request body is answered `408 body_timeout` first); past the
/// connection bound a new connection is answered `429 too_many_connections` and closed.
///
/// ```toml
/// [http]
/// header_read_timeout_secs = 30     # a request's head, and an idle kept-alive connection
/// body_idle_timeout_secs = 30       # a request body that sends nothing while it is awaited
/// max_connections_per_client = 256  # per peer address on TCP, per listener on the Unix socket
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds a request's head may take to arrive, counted from the connection's start or the
    /// previous response (so also how long an idle kept-alive connection stays open), 1..=3600.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may send nothing while the daemon waits for it, 1..=3600. Streams
    /// (uploads the guest takes slowly, exec output, downloads, terminals) are not bound by it.
    #[serde(default = "default_body_idle_timeout_secs")]
    pub body_idle_timeout_secs: u64,
    /// Connections one client may have open at once (a WebSocket counts until it closes),
    /// 1..=65536.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
}

impl HttpConfig {
    /// The limits the listeners apply.
    pub fn limits(&self) -> firepit_http::HttpLimits {
        firepit_http::HttpLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs),
            max_connections_per_client: self.max_connections_per_client,
            max_head_bytes: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: default_header_read_timeout_secs(),
            body_idle_timeout_secs: default_body_idle_timeout_secs(),
            max_connections_per_client: default_max_connections_per_client(),
        }
    }
}

fn default_header_read_timeout_secs() -> u64 {
    firepit_http::HttpLimits::DEFAULT_HEADER_READ_TIMEOUT.as_secs()
}
fn default_body_idle_timeout_secs() -> u64 {
    firepit_http::HttpLimits::DEFAULT_BODY_IDLE_TIMEOUT.as_secs()
}
fn default_max_connections_per_client() -> usize {
    firepit_http::HttpLimits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT
}
fn default_max_forwards_per_lease() -> usize {
    64
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

/// `[cluster]`: this daemon is one host of a cluster. It keeps a record (its URL, shapes and
/// ready / leased counts, load) in etcd under a lease that expires `ttl_secs` after the daemon
/// dies; `firepit gateway`s place leases by those records. A stop (SIGTERM) drains first: no new
/// leases, existing ones run to their end, then the daemon stops (a second SIGTERM stops at once).
///
/// ```toml
/// [listen]
/// tcp = "0.0.0.0:7070"
/// token_file = "/etc/firepit/token"
/// [cluster]
/// etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]
/// advertise = "http://10.0.0.5:7070"   # how gateways reach listen.tcp
/// # host = "node-a"                     # default: the machine's hostname
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:port`), one or more members of one cluster.
    pub etcd: Vec<String>,
    /// The daemon's TCP API as gateways reach it, `http://HOST:PORT` (needs `listen.tcp`; the
    /// gateways present the same bearer token). `${NAME}` is replaced by the environment variable
    /// `NAME` (`"http://${POD_IP}:7070"` in a DaemonSet).
    pub advertise: String,
    /// This host's id in the cluster (letters, digits, `.`, `_`, `-`; `${NAME}` as in
    /// `advertise`). Default: the hostname.
    #[serde(default)]
    pub host: Option<String>,
    /// Prefix of every key firepit writes in etcd. Default: `/firepit`.
    #[serde(default = "default_cluster_prefix")]
    pub prefix: String,
    /// Seconds the record outlives a dead daemon (the etcd lease's TTL), 2..=300. Default: 10.
    #[serde(default = "default_cluster_ttl_secs")]
    pub ttl_secs: u64,
}

impl ClusterConfig {
    /// The host id: `host`, else the machine's hostname.
    pub fn host_id(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            name.trim().to_owned()
        })
    }
}

fn default_cluster_prefix() -> String {
    "/firepit".into()
}
fn default_cluster_ttl_secs() -> u64 {
    10
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self { template_dir: None, keep_templates: true }
    }
}

/// `[usage]`: how often each lease's usage is sampled (see `crate::usage`) and how many samples
/// are kept.
///
/// ```toml
/// [usage]
/// interval_ms = 5000    # one sample per lease every 5 s
/// samples_kept = 360    # per lease: the last 30 minutes at 5 s
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    /// Time between two samples of a lease, ms (100..=600000).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Samples kept per lease, the oldest dropped first (1..=100000). Each is about 200 bytes.
    #[serde(default = "default_samples_kept")]
    pub samples_kept: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { interval_ms: default_interval_ms(), samples_kept: default_samples_kept() }
    }
}

fn default_interval_ms() -> u64 {
    5000
}
fn default_samples_kept() -> usize {
    360
}

impl UsageConfig {
    /// Time between two samples.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
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
            max_forwards_per_lease: default_max_forwards_per_lease(),
        }
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
fn default_shutdown_budget_secs() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
