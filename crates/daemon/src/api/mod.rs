//! The HTTP API: routes under `/v1`, `/metrics`, `/healthz`, and the OpenAPI document.
//!
//! Routes are declared once, through `utoipa-axum`'s `routes!`, which registers each handler with
//! the axum router *and* its `#[utoipa::path]` description with the OpenAPI document, so the two
//! cannot drift. Handlers are thin: they validate input, call the [`LeaseTable`] or the backend, and
//! map errors to [`ApiError`]s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::backend::LeaseBackend;
use super::config::UsageConfig;
use super::leases::LeaseTable;
use super::usage::UsageSampler;

pub mod admin;
mod args;
mod chunks;
pub mod drain;
pub mod error;
pub mod events;
pub mod exec_stream;
pub mod exec_ws;
pub mod files;
pub mod lease_pause;
pub mod lease_views;
pub mod leases;
pub mod ports;
pub mod processes;
pub mod pty;
mod sandbox_error;
pub mod snapshots;
mod streaming;
pub mod usage;
mod ws_halves;
mod ws_input;

pub use error::{ApiError, ErrorBody, ErrorCode};

/// What the API bounds besides the listeners' own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest JSON request body (`413 body_too_large`).
    pub max_body_bytes: usize,
    /// Port forwards one lease may have open (`429 limit_reached`).
    pub max_forwards_per_lease: usize,
}

/// Longest `wait_ms` an acquire may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn LeaseBackend>,
    leases: Arc<LeaseTable>,
    usage: Arc<UsageSampler>,
    registry: Registry,
    openapi_json: String,
    started: Instant,
    shutting_down: AtomicBool,
    /// Fired with `shutting_down`: endless streams (terminals, followed output) end on it.
    stopping: CancellationToken,
    limits: ApiLimits,
    /// Forwards being opened, so that concurrent requests cannot pass the bound together.
    opening: ports::Opening,
}

impl AppState {
    /// The backend.
    pub fn backend(&self) -> &dyn LeaseBackend {
        self.inner.backend.as_ref()
    }

    /// The lease table.
    pub fn leases(&self) -> &Arc<LeaseTable> {
        &self.inner.leases
    }

    /// The usage sampler (`/v1/leases/{id}/metrics`, `/v1/usage`; the OOM events).
    pub fn usage(&self) -> &Arc<UsageSampler> {
        &self.inner.usage
    }

    /// Marks the daemon as shutting down: acquires get 503, `/healthz` reports it.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.stopping.cancel();
    }

    /// Fired when shutdown begins.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// The API's limits.
    pub fn limits(&self) -> ApiLimits {
        self.inner.limits
    }

    /// Port forwards being opened (see [`ports`]).
    pub fn opening(&self) -> &ports::Opening {
        &self.inner.opening
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "firepit daemon API",
        description = "Lease warm microVMs, run commands in them (streamed too), move files in and out, \
                       keep background processes, open terminals, inspect and reshape the pools."
    ),
    components(schemas(
        ErrorBody,
        firepit_api::OutputChannel,
        firepit_api::EventKind,
        firepit_api::ReleaseReason
    ))
)]
struct ApiDoc;

/// The routes with their OpenAPI descriptions (no state yet).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(leases::acquire_lease))
        .routes(routes!(lease_views::list_leases))
        .routes(routes!(lease_views::get_lease))
        .routes(routes!(lease_pause::pause_lease))
        .routes(routes!(lease_pause::resume_lease))
        .routes(routes!(snapshots::snapshot_lease))
        .routes(routes!(snapshots::list_snapshots))
        .routes(routes!(snapshots::get_snapshot, snapshots::delete_snapshot))
        .routes(routes!(snapshots::fork_lease))
        .routes(routes!(events::follow_events))
        .routes(routes!(leases::release_lease))
        .routes(routes!(leases::exec_command))
        .routes(routes!(leases::renew_lease))
        .routes(routes!(ports::forward_port, ports::list_ports))
        .routes(routes!(ports::remove_port_forward))
        .routes(routes!(exec_stream::exec_stream))
        .routes(routes!(exec_ws::exec_ws))
        .routes(routes!(files::write_file, files::read_file, files::remove_path))
        .routes(routes!(files::stat_path))
        .routes(routes!(files::list_dir))
        .routes(routes!(files::make_dir))
        .routes(routes!(files::change_mode))
        .routes(routes!(files::change_owner))
        .routes(routes!(files::rename_path))
        .routes(routes!(files::upload_archive, files::download_archive))
        .routes(routes!(processes::start_process, processes::list_processes))
        .routes(routes!(processes::get_process, processes::remove_process))
        .routes(routes!(processes::signal_process))
        .routes(routes!(processes::read_process_output))
        .routes(routes!(pty::open_pty))
        .routes(routes!(usage::lease_metrics))
        .routes(routes!(usage::list_usage))
        .routes(routes!(admin::list_pools))
        .routes(routes!(admin::register_shape, admin::unregister_shape))
        .routes(routes!(admin::get_metrics))
        .routes(routes!(admin::get_health))
        .routes(routes!(drain::drain, drain::undrain))
        .routes(routes!(admin::get_openapi))
}

/// The OpenAPI document of the API, as JSON.
///
/// # Example
/// ```
/// let doc = firepit_daemon::api::openapi_json();
/// assert!(doc.contains("/v1/leases"));
/// ```
pub fn openapi_json() -> String {
    let (_router, doc) = routes().split_for_parts();
    doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"openapi\",\"message\":\"{e}\"}}"))
}

/// Builds the router and the state it shares; `registry` already holds the backend's and the
/// daemon's metric families. Starts the usage sampler (it stops when shutdown begins).
pub fn router(
    backend: Arc<dyn LeaseBackend>,
    leases: Arc<LeaseTable>,
    mut registry: Registry,
    limits: ApiLimits,
    usage: UsageConfig,
) -> (Router, AppState) {
    let (router, doc) = routes().split_for_parts();
    let openapi_json = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let stopping = CancellationToken::new();
    let usage = UsageSampler::start(&leases, backend.clone(), usage, &mut registry, stopping.clone());
    usage.set_oom_sink(crate::usage::to_event_bus(leases.events().clone()));
    let state = AppState {
        inner: Arc::new(Inner {
            backend,
            leases,
            usage,
            registry,
            openapi_json,
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            stopping,
            limits,
            opening: ports::Opening::default(),
        }),
    };
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(utf8_queries))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state.clone());
    (router, state)
}

/// Logs each request with its status and duration. Failures and the rare endpoints log at info;
/// successful calls of the hot endpoints log at debug: lease calls (acquire, exec, renew, release:
/// their lease events are logged at info inside the lease's span, with the lease and VM ids) and
/// status reads (`/healthz`, `/metrics`, `/v1/pools`, which tools poll). This keeps one log line
/// per lease event instead of two, and none per poll; `RUST_LOG=firepit_daemon=debug` shows all.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    // A cheap clone (shared bytes), not a copy of the path.
    let uri = request.uri().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let path = uri.path();
    if status.is_success() && quiet_when_ok(&method, path) {
        tracing::debug!(%method, path, status = status.as_u16(), ms, "request");
    } else {
        tracing::info!(%method, path, status = status.as_u16(), ms, "request");
    }
    response
}

/// Endpoints whose successful calls log at debug (see [`log_request`]).
fn quiet_when_ok(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    match *method {
        Method::GET => {
            matches!(path, "/healthz" | "/metrics" | "/v1/pools" | "/v1/leases" | "/v1/events" | "/v1/usage")
                || path.starts_with("/v1/leases/")
        }
        Method::PUT => path.starts_with("/v1/leases/"),
        Method::POST => path == "/v1/leases" || path.starts_with("/v1/leases/"),
        Method::DELETE => path.starts_with("/v1/leases/"),
        _ => false,
    }
}

/// Middleware: a query string whose %-escapes are not UTF-8 is `400 bad_request` before any
/// handler decodes it (lossily: `x%80` and `x%C3` would name one file).
async fn utf8_queries(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match firepit_http::query::non_utf8_parameter(request.uri().query()) {
        Some(parameter) => ApiError::bad_request(firepit_http::query::message(&parameter)).into_response(),
        None => next.run(request).await,
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::UnknownEndpoint, "no such endpoint; see GET /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
}

#[cfg(test)]
mod tests {
    use super::quiet_when_ok;
    use axum::http::Method;

    #[test]
    fn every_operation_has_its_own_id_and_every_error_code_is_published() {
        let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id =
                    operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no id"));
                assert!(ids.insert(id.to_owned()), "{method} {path}: operation id `{id}` used twice");
            }
        }
        assert!(ids.len() >= 30, "{ids:?}");
        let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        let codes: Vec<&str> = codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let all: Vec<&str> = super::ErrorCode::ALL.iter().map(super::ErrorCode::as_str).collect();
        assert_eq!(codes, all);
        let error = &doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["$ref"];
        assert_eq!(error, "#/components/schemas/ErrorCode");
    }

    #[test]
    fn lease_calls_and_status_reads_are_quiet_shape_changes_are_not() {
        assert!(quiet_when_ok(&Method::POST, "/v1/leases"));
        assert!(quiet_when_ok(&Method::POST, "/v1/leases/l-1/exec"));
        assert!(quiet_when_ok(&Method::POST, "/v1/leases/l-1/renew"));
        assert!(quiet_when_ok(&Method::DELETE, "/v1/leases/l-1"));
        assert!(quiet_when_ok(&Method::GET, "/v1/pools"));
        assert!(quiet_when_ok(&Method::GET, "/healthz"));
        assert!(quiet_when_ok(&Method::GET, "/v1/leases"));
        assert!(!quiet_when_ok(&Method::PUT, "/v1/shapes/small"));
        assert!(!quiet_when_ok(&Method::DELETE, "/v1/shapes/small"));
        assert!(!quiet_when_ok(&Method::GET, "/v1/openapi.json"));
        assert!(!quiet_when_ok(&Method::GET, "/v1/leasesX"));
        assert!(quiet_when_ok(&Method::GET, "/v1/leases/l-1/files"));
        assert!(quiet_when_ok(&Method::PUT, "/v1/leases/l-1/files"));
    }
}
