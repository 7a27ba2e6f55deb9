//! The listener: one router for E2B's REST API, every sandbox's envd in front of it (a request
//! naming a sandbox by header or host name goes to [`envd::serve`]), the API key checked on the
//! REST side.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use firepit_client::Client;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::E2bConfig;
use crate::envd::{self, constant_time_eq};
use crate::error::ApiError;
use crate::sandboxes::Registry;
use crate::state::AppState;
use crate::{control, lifecycle, listing, metrics, snapshots, timeouts};

/// Largest REST request body (a create with metadata and environment).
const MAX_REST_BODY: usize = 1024 * 1024;

/// The router of the whole endpoint over `client` (firepit's API).
pub fn router(config: E2bConfig, client: Client) -> Router {
    let state = AppState {
        client,
        registry: Arc::new(Registry::default()),
        config: Arc::new(config),
        snapshot_names: Arc::default(),
    };
    let rest = Router::new()
        .route("/health", get(control::health))
        .route("/sandboxes", post(control::create).get(listing::list_v1))
        .route("/v2/sandboxes", post(control::create).get(listing::list_v2))
        .route("/sandboxes/{id}", get(control::get).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(timeouts::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(timeouts::refresh))
        .route("/sandboxes/{id}/connect", post(lifecycle::connect))
        .route("/v2/sandboxes/{id}/connect", post(lifecycle::connect))
        .route("/sandboxes/{id}/pause", post(lifecycle::pause))
        .route("/sandboxes/{id}/resume", post(lifecycle::resume_sandbox))
        .route("/templates", get(control::templates))
        .route("/sandboxes/metrics", get(metrics::many_metrics))
        .route("/sandboxes/{id}/metrics", get(metrics::sandbox_metrics))
        .route("/sandboxes/{id}/logs", get(control::not_implemented))
        .route("/v2/sandboxes/{id}/logs", get(control::not_implemented))
        .route("/sandboxes/{id}/fork", post(snapshots::fork))
        .route("/sandboxes/{id}/snapshots", post(snapshots::create_snapshot))
        .route("/sandboxes/{id}/network", any(control::not_implemented))
        .route("/snapshots", get(snapshots::list_snapshots))
        .route("/templates/{id}", delete(snapshots::delete_template))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint in E2B's API") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REST_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone());
    Router::new()
        .fallback_service(rest)
        .layer(axum::middleware::from_fn_with_state(state, to_envd))
        .layer(axum::middleware::from_fn(utf8_queries))
}

/// A query whose %-escapes are not UTF-8 is a 400 before anything decodes it (lossily: two paths
/// would name one file).
async fn utf8_queries(request: Request, next: Next) -> Response {
    match firepit_http::query::non_utf8_parameter(request.uri().query()) {
        Some(parameter) => ApiError::bad_request(firepit_http::query::message(&parameter)).into_response(),
        None => next.run(request).await,
    }
}

/// Sends envd requests to [`envd::serve`]; the rest go on to the REST API.
async fn to_envd(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match envd::target(request.headers(), &state.config.domain) {
        Ok(Some(target)) => envd::serve(state, target, request).await,
        // A signed file URL made with `E2B_SANDBOX_URL` names no sandbox: its signature does.
        Ok(None) if request.uri().path() == "/files" => match crate::envd_files::signer(&state, &request) {
            Some(sandbox) => {
                let target = envd::Target { sandbox, port: crate::config::ENVD_PORT };
                envd::serve(state, target, request).await
            }
            None => {
                ApiError::new(StatusCode::UNAUTHORIZED, "no sandbox signed this file URL").into_response()
            }
        },
        Ok(None) => next.run(request).await,
        Err(message) => ApiError::bad_request(message).into_response(),
    }
}

/// The REST API's key check: `X-API-Key`, or `Authorization: Bearer` with the same key.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let headers = request.headers();
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok()).or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    match given {
        Some(key) if constant_time_eq(key.as_bytes(), state.config.api_key.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "Invalid API key").into_response(),
        None => {
            ApiError::new(StatusCode::UNAUTHORIZED, "Missing API key: send it as X-API-Key").into_response()
        }
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener could not be bound.
    #[error("cannot listen on {address} for the E2B endpoint: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the E2B endpoint failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds the listener (so that a caller learns of a taken port at once).
pub async fn bind(config: &E2bConfig) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind { address: config.listen, source })
}

/// Serves the endpoint on `listener` until `stop` fires (HTTP/1.1 with upgrades, and HTTP/2 with
/// prior knowledge, under `config.http`'s timeouts and connection bound: see `firepit-http`); open
/// connections get a graceful end, at most 5 s.
pub async fn serve(
    listener: TcpListener,
    config: E2bConfig,
    client: Client,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let limits = config.http;
    let app = router(config, client);
    let served = firepit_http::serve(listener, app, limits, stop.clone().cancelled_owned());
    tokio::pin!(served);
    tokio::select! {
        result = &mut served => return result.map_err(ServeError::Serve),
        () = stop.cancelled() => {}
    }
    match tokio::time::timeout(std::time::Duration::from_secs(5), served).await {
        Ok(result) => result.map_err(ServeError::Serve),
        Err(_) => {
            tracing::debug!("E2B connections still open after 5 s: dropped");
            Ok(())
        }
    }
}
