//! `firepit serve`: warm pools of microVMs behind an HTTP API, for clients that are not Rust
//! programs (the CLI, the Python SDK, anything that speaks HTTP over a Unix socket or TCP).
//!
//! What it is: [`serve`] takes a validated [`config::Config`] and runs until SIGTERM — it binds the
//! listeners, locks its state dir and recovers what a crashed previous run left ([`recovery`]),
//! starts one pool with a bucket per configured shape, and answers `/v1/leases…` (acquire, exec, renew, release with TTLs and
//! idempotency keys), `/v1/pools`, `/v1/shapes`, `/metrics` and `/healthz`.
//!
//! What it is not: a VM library (the pool and the wiring of shapes are `firepit`'s, the VMs
//! `firepit-qemu`'s, everything done in a guest `firepit-guest`'s), a client
//! (that is `firepit-client`) or a command line (`firepit-cli` parses arguments and calls
//! [`serve`]). The request and response bodies are `firepit-api`'s.
//!
//! How data flows:
//!
//! ```text
//! config.rs + load.rs (parse) + validate.rs ──▶ serve() ──▶ server.rs: Listeners (Unix socket 0600,
//!                                                │            [+ TCP with auth.rs bearer token])
//!                                                ├──▶ records.rs (lock the state dir)
//!                                                ├──▶ recovery.rs (reap a crashed previous run)
//!                                                ├──▶ wiring::build_backend ──▶ Arc<dyn LeaseBackend>
//!                                                │      (backend.rs; qemu_backend.rs over the
//!                                                │       facade's pool, records.rs as its hook)
//!                                                └──▶ server.rs: Daemon::run
//!                                                       └── api/: /v1/leases… ──▶ leases.rs (TTL,
//!                                                           expiry, idempotency) ──▶ the backend
//!                                                           (exec, files, processes: sandbox.rs
//!                                                            over the leased VM's Guest)
//! shutdown.rs: SIGTERM/SIGINT ──▶ Phase::Graceful ──▶ Phase::Immediate
//! ```
//!
//! The HTTP layer only knows the small [`backend::LeaseBackend`] trait; the QEMU pool is plugged in
//! by [`wiring::build_backend`], and `fake::FakeBackend` (behind the `testing` feature, with
//! `test_daemon::TestDaemon` serving it) stands in for it in tests. Either way a leased VM's guest
//! is a `firepit_guest::Guest` (the fake's talks to the agent's request handling in-process), and
//! `exec` and the sandbox endpoints are written once over it ([`sandbox`]).

#![warn(missing_docs)]

use std::sync::Arc;

use tracing::info;

pub mod api;
pub mod auth;
pub mod backend;
mod boxed;
pub mod cgroup_metrics;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod events;
mod events_config;
pub mod exposition;
#[cfg(feature = "testing")]
pub mod exposition_lint;
#[cfg(feature = "testing")]
pub mod fake;
#[cfg(feature = "testing")]
mod fake_state;
#[cfg(feature = "testing")]
mod fake_vm;
mod lease_config;
pub mod leases;
mod load;
pub mod metrics;
pub mod net_metrics;
pub mod paused;
pub mod qemu_backend;
mod qemu_lease;
mod qemu_snapshots;
pub mod records;
pub mod recovery;
pub mod sandbox;
pub mod saved;
pub mod server;
pub mod shutdown;
pub mod sizing;
pub mod snapshot_store;
#[cfg(feature = "testing")]
pub mod test_daemon;
pub mod usage;
mod validate;
pub mod wiring;

/// The user guide: config, API table, error codes, metrics, stopping. Compiled into the docs, so it
/// cannot drift from the code silently (the API table is also checked by `tests/daemon_admin.rs`).
#[doc = include_str!("../GUIDE.md")]
pub mod guide {}

pub use wiring::build_backend;

use auth::{BearerToken, TokenError};
use backend::LeaseBackend;
use config::Config;
use records::{RecordError, RecordStore};
use recovery::RecoveryError;
use server::{Daemon, Listeners, ServeError, ServeOptions, StopReport};
use shutdown::ShutdownSignal;
use wiring::BuildBackendError;

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state dir could not be locked or prepared.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// What a crashed previous run left could not be cleaned up.
    #[error("cannot recover from the previous run")]
    Recovery(#[from] RecoveryError),
    /// The TCP bearer token or a webhook secret could not be loaded.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The backend could not be built.
    #[error(transparent)]
    Backend(#[from] BuildBackendError),
    /// The listeners could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// SIGTERM / SIGINT could not be watched.
    #[error("cannot watch SIGTERM / SIGINT: {0}")]
    Signals(#[source] std::io::Error),
}

/// Why the settings of a config could not be turned into [`ServeOptions`].
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The TCP bearer token could not be loaded.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A webhook's secret file does not read.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// Serves `config` until SIGTERM or SIGINT: what `firepit serve` does. The first signal stops
/// gracefully (in-flight requests get `shutdown.budget_secs`), a second one at once; every VM is
/// destroyed and the socket removed before it returns.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = firepit_daemon::config::Config::builtin(&firepit_image::default_dir())?;
/// let report = firepit_daemon::serve(&config).await?;
/// println!("stopped: {report:?}");
/// # Ok(()) }
/// ```
pub async fn serve(config: &Config) -> Result<StopReport, DaemonError> {
    let options = serve_options(config)?;
    let listeners = Listeners::bind(&options.socket, options.tcp).await?;
    serve_on(listeners, config).await
}

/// [`serve`] on listeners bound earlier: `firepit serve` without a config binds the default
/// socket first, then builds the default image, so clients started meanwhile wait for it.
pub async fn serve_on(listeners: Listeners, config: &Config) -> Result<StopReport, DaemonError> {
    let (controller, signal) = shutdown::channel();
    shutdown::forward_os_signals(controller).map_err(DaemonError::Signals)?;
    run_on(listeners, config, signal, |records| build_backend(config, records)).await
}

/// The listener options a validated config asks for (loads the TCP token and the webhooks'
/// secrets).
pub fn serve_options(config: &Config) -> Result<ServeOptions, OptionsError> {
    let tcp = match config.listen.tcp {
        None => None,
        Some(addr) => {
            let token = match (&config.listen.token_file, &config.listen.token_env) {
                (Some(file), _) => BearerToken::from_file(file)?,
                (None, Some(var)) => BearerToken::from_env(var)?,
                // Validation guarantees a token source with TCP; refuse rather than serve without.
                (None, None) => return Err(TokenError::MissingEnv("listen.token_env".into()).into()),
            };
            Some((addr, token))
        }
    };
    Ok(ServeOptions {
        socket: config.socket_path(),
        tcp,
        shutdown_budget: config.shutdown_budget(),
        max_body_bytes: config.limits.max_body_bytes,
        leases: config.lease_settings(),
        events: events_config::event_settings(config)?,
        max_forwards_per_lease: config.limits.max_forwards_per_lease,
        http: config.http.limits(),
        ui: config.listen.ui,
        cluster: cluster::advertise_config(config),
        usage: config.usage,
    })
}

/// Runs the daemon for a validated config until `signal` stops it: binds the listeners, locks the
/// state dir, recovers what a previous run left ([`recovery::recover`]), builds the backend with
/// `build` and serves.
///
/// `build` is [`build_backend`] in `firepit serve`; tests pass a fake.
pub async fn run<F, Fut>(config: &Config, signal: ShutdownSignal, build: F) -> Result<StopReport, DaemonError>
where
    F: FnOnce(Arc<RecordStore>) -> Fut,
    Fut: Future<Output = Result<Arc<dyn LeaseBackend>, BuildBackendError>>,
{
    let options = serve_options(config)?;
    let listeners = Listeners::bind(&options.socket, options.tcp).await?;
    run_on(listeners, config, signal, build).await
}

/// [`run`] on listeners bound earlier.
pub async fn run_on<F, Fut>(
    listeners: Listeners,
    config: &Config,
    signal: ShutdownSignal,
    build: F,
) -> Result<StopReport, DaemonError>
where
    F: FnOnce(Arc<RecordStore>) -> Fut,
    Fut: Future<Output = Result<Arc<dyn LeaseBackend>, BuildBackendError>>,
{
    let options = serve_options(config)?;
    let state_dir = config.state_dir();
    let records = Arc::new(RecordStore::open(&state_dir)?);
    let recovered = recovery::recover(&state_dir, records.clone(), &config.cgroups).await?;
    if !recovered.reaped.errors.is_empty() {
        let errors = recovered.reaped.errors.len();
        tracing::warn!(errors, "some VMs of a previous run could not be reaped (each is logged above)");
    }
    // The state-dir lock lives as long as this function, whatever the backend does with its handle.
    let _state_dir_lock = records.clone();
    let backend = build(records).await?;
    let daemon = Daemon::new(backend, listeners, &options)?;
    info!(shapes = config.shapes.len(), "daemon ready");
    Ok(daemon.run(signal).await)
}
