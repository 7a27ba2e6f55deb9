//! `firepit serve`: warm pools behind an HTTP API, for clients that are not Rust programs.
//!
//! How the parts fit:
//!
//! ```text
//! config.rs ──validate──▶ start() ──▶ records.rs (lock state dir, reap a previous run)
//!                            │
//!                            ├──▶ wiring::build_backend ──▶ Arc<dyn LeaseBackend>  (backend.rs)
//!                            └──▶ server.rs: Unix socket (0600) [+ TCP with auth.rs bearer token]
//!                                    └── api/: /v1/leases… ──▶ leases.rs (TTL, expiry, idempotency)
//!                                             /v1/pools, /v1/shapes, /metrics (metrics.rs), /healthz
//! shutdown.rs: SIGTERM/SIGINT ──▶ Phase::Graceful ──▶ Phase::Immediate
//! ```
//!
//! The HTTP layer only knows the small [`backend::LeaseBackend`] trait; the QEMU pool is plugged in
//! by [`wiring::build_backend`], and [`fake::FakeBackend`] serves the tests.

#![warn(missing_docs)]

use std::sync::Arc;

use tracing::info;

pub mod api;
pub mod auth;
pub mod backend;
pub mod config;
#[cfg(feature = "testing")]
pub mod fake;
pub mod leases;
mod load;
pub mod metrics;
pub mod qemu_backend;
pub mod records;
pub mod server;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod test_daemon;
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
use server::{Daemon, ServeError, ServeOptions, StopReport};
use shutdown::ShutdownSignal;
use wiring::BuildBackendError;

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state dir could not be locked or prepared.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// The TCP bearer token could not be loaded.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The backend could not be built.
    #[error(transparent)]
    Backend(#[from] BuildBackendError),
    /// The listeners could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The listener options a validated config asks for (loads the TCP token).
pub fn serve_options(config: &Config) -> Result<ServeOptions, TokenError> {
    let tcp = match config.listen.tcp {
        None => None,
        Some(addr) => {
            let token = match (&config.listen.token_file, &config.listen.token_env) {
                (Some(file), _) => BearerToken::from_file(file)?,
                (None, Some(var)) => BearerToken::from_env(var)?,
                // Validation guarantees a token source with TCP; refuse rather than serve without.
                (None, None) => return Err(TokenError::MissingEnv("listen.token_env".into())),
            };
            Some((addr, token))
        }
    };
    Ok(ServeOptions {
        socket: config.socket_path(),
        tcp,
        shutdown_budget: config.shutdown_budget(),
        max_body_bytes: config.limits.max_body_bytes,
        default_ttl: config.default_ttl(),
        max_ttl: config.max_ttl(),
    })
}

/// Runs the daemon for a validated config until `signal` stops it: locks the state dir, reaps
/// what a previous run left, builds the backend with `build`, binds and serves.
///
/// `build` is [`build_backend`] in `firepit serve`; tests pass a fake.
pub async fn run<F, Fut>(config: &Config, signal: ShutdownSignal, build: F) -> Result<StopReport, DaemonError>
where
    F: FnOnce(Arc<RecordStore>) -> Fut,
    Fut: Future<Output = Result<Arc<dyn LeaseBackend>, BuildBackendError>>,
{
    let options = serve_options(config)?;
    let records = Arc::new(RecordStore::open(&config.state_dir())?);
    let reaper = records.clone();
    let report = tokio::task::spawn_blocking(move || reaper.reap_previous())
        .await
        .map_err(|e| BuildBackendError::Pool(format!("the reaper task failed: {e}")))?;
    if !report.errors.is_empty() {
        tracing::warn!(errors = ?report.errors, "some VMs of a previous run could not be reaped");
    }
    // The state-dir lock lives as long as this function, whatever the backend does with its handle.
    let _state_dir_lock = records.clone();
    let backend = build(records).await?;
    let daemon = match Daemon::bind(backend.clone(), options).await {
        Ok(daemon) => daemon,
        Err(error) => {
            backend.shutdown().await;
            return Err(error.into());
        }
    };
    info!(shapes = config.shapes.len(), "daemon ready");
    Ok(daemon.run(signal).await)
}
