//! firepit's E2B-compatible endpoint: E2B's own SDKs (Python and JavaScript, unmodified) run
//! against a self-hosted firepit by changing where they connect.
//!
//! # What it is
//! A translation layer. Outside it speaks E2B: the REST API of E2B's control plane (create, get,
//! list, kill, timeouts; [`control`]) and, for every sandbox, the services of envd, the daemon E2B
//! runs inside each sandbox (Connect RPC `process.Process` and `filesystem.Filesystem` in JSON and
//! binary protobuf, `/files`, `/health`; [`envd`]). Inside it speaks firepit's own HTTP API
//! through `firepit-client`: a sandbox is a lease, a template is a shape, a command is an attached
//! process, a file is a file. It knows nothing of the daemon's internals, so the same endpoint can
//! stand in front of one daemon or, later, a cluster gateway.
//!
//! # How a request flows
//! One TCP listener ([`server`]). A request that names a sandbox (`E2b-Sandbox-Id` header, or
//! `Host: {port}-{id}.{domain}`) is envd's: port 49983 is served here, any other port is proxied
//! to the guest through a firepit port forward ([`proxy`]). Everything else is the REST API,
//! behind the API key. envd's processes live in a per-sandbox table ([`processes`]) that owns
//! their firepit sessions, so they outlive the requests that started them, as envd's do.
//!
//! # Why a hop through firepit's API
//! Speaking firepit's HTTP API (over the daemon's own Unix socket) instead of calling the daemon's
//! internals costs one local round trip per call, and buys an endpoint that works unchanged in
//! front of anything that serves that API (one daemon today, a cluster gateway tomorrow). Measured
//! with `firepit bench e2b` (a `Stat` through the endpoint vs the same stat on the daemon's
//! socket, alternating, on 2 cores shared with a loaded host): 1.5 ms vs 1.1 ms p50 (load 13),
//! 3.3 ms vs 2.6 ms (load 18): the endpoint and its hop add ≈0.4–0.7 ms to a call whose guest
//! round trip is most of the rest.
//!
//! # What it is not
//! Not E2B's infrastructure: no template builds, no volumes, no secrets, no teams. Pause, resume,
//! connect to a paused sandbox, `autoPause` and `autoResume` are firepit's lease pause and resume
//! ([`lifecycle`]); snapshot templates and forks are firepit's snapshots and forks
//! ([`snapshots`]); metrics come
//! from firepit's usage samples ([`metrics`]).
//! Directory watches run Debian's `inotifywait` in the guest ([`watchers`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use firepit_e2b::E2bConfig;
//! let config = E2bConfig::new("127.0.0.1:3000".parse()?, "secret".into());
//! let client = firepit_client::Client::new(firepit_client::Endpoint::Unix(firepit_api::default_socket_path()));
//! let listener = firepit_e2b::server::bind(&config).await?;
//! firepit_e2b::server::serve(listener, config, client, tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod background;
pub mod call;
pub mod config;
pub mod connect;
pub mod control;
pub mod envd;
pub mod envd_files;
pub mod envd_fs;
pub mod envd_process;
pub mod error;
pub mod lifecycle;
pub mod listing;
pub mod metrics;
pub mod pages;
pub mod paths;
pub mod processes;
pub mod proto;
pub mod proxy;
pub mod rpc;
pub mod sandbox_views;
pub mod sandboxes;
pub mod server;
pub mod snapshot_names;
pub mod snapshots;
pub mod state;
pub mod sync;
pub mod time;
pub mod timeouts;
pub mod users;
pub mod watchers;

pub use config::{E2bConfig, ENVD_PORT, ENVD_VERSION};
pub use error::ApiError;
