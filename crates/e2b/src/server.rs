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
use crate::control;
use crate::envd::{self, constant_time_eq};
use crate::error::ApiError;
use crate::sandboxes::Registry;
use crate::state::AppState;

/// Largest REST request body (a create with metadata and environment).
const MAX_REST_BODY: usize = 1024 * 1024;

/// The router of the whole endpoint over `client` (firepit's API).
pub fn router(config: E2bConfig, client: Client) -> Router {
    let state = AppState { client, registry: Arc::new(Registry::default()), config: Arc::new(config) };
    let rest = Router::new()
        .route("/health", get(control::health))
        .route("/sandboxes", post(control::create).get(control::list_v1))
        .route("/v2/sandboxes", post(control::create).get(control::list_v2))
        .route("/sandboxes/{id}", get(control::get).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(control::refresh))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/templates", get(control::templates))
        .route("/sandboxes/metrics", get(control::not_implemented))
        .route("/sandboxes/{id}/metrics", get(control::not_implemented))
        .route("/sandboxes/{id}/logs", get(control::not_implemented))
        .route("/v2/sandboxes/{id}/logs", get(control::not_implemented))
        .route("/sandboxes/{id}/pause", post(control::not_implemented))
        .route("/sandboxes/{id}/resume", post(control::not_implemented))
        .route("/sandboxes/{id}/fork", post(control::not_implemented))
        .route("/sandboxes/{id}/snapshots", post(control::not_implemented))
        .route("/sandboxes/{id}/network", any(control::not_implemented))
        .route("/snapshots", get(control::not_implemented))
        .route("/templates/{id}", delete(control::not_implemented))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint in E2B's API") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REST_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone());
    Router::new().fallback_service(rest).layer(axum::middleware::from_fn_with_state(state, to_envd))
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

/// Largest request head (request line and headers) a client may send; more is `431`.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves the endpoint on `listener` until `stop` fires (HTTP/1.1 with upgrades, and HTTP/2 with
/// prior knowledge); open connections get a graceful end, at most 5 s.
pub async fn serve(
    listener: TcpListener,
    config: E2bConfig,
    client: Client,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let app = router(config, client);
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEAD_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "the E2B endpoint could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection =
            builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "E2B connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::debug!("E2B connections still open after 5 s: dropped");
    }
    Ok(())
}
