//! `firepit gateway`: one stateless HTTP front for many `firepit serve` daemons.
//!
//! What it does: clients (the CLI with `FIREPIT_URL`, the Rust client, the Python SDK) talk to a
//! gateway exactly as to a daemon's TCP listener, with a bearer token. An acquire is placed on a
//! host by the capacity the daemons advertise in etcd (warm hosts first, best of K by load; the
//! next host on `503`); the lease → host route is written to etcd; every later request on the lease
//! is forwarded to its host unchanged (bodies streamed both ways, NDJSON, the PTY WebSocket).
//! Whole-cluster requests (pools, shapes, lease lists) ask every host. Any number of gateways can
//! run side by side; a restarted one loses nothing, because everything it knows is in etcd.
//!
//! Faults: a host whose registration expired answers `410 host_lost` for its leases; a host that
//! drains gets no placements; with etcd unreachable the gateway keeps routing the leases it has
//! routed before (from memory), refuses new placements with `503 cluster_unavailable`, and says
//! `degraded` on `/healthz`.
//!
//! How the parts fit: [`admin`] (health, metrics, token check) and [`error`] at the bottom;
//! [`upstream`] is the client to the daemons; [`acquire`], [`lease`] and [`fanout`] are the
//! handlers; [`Gateway`] binds the router. The cluster logic (records, placement, routes) is
//! `firepit-cluster`'s; this crate is HTTP.
//!
//! Why hyper-util's pooled client rather than reqwest: it passes `Upgrade` through (the PTY) and
//! takes axum's body type as is, so a request is forwarded without copying it.

#![warn(missing_docs)]

pub mod acquire;
pub mod admin;
pub mod error;
pub mod fanout;
pub mod lease;
pub mod metrics;
pub mod state;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::{any, get, post, put};
use firepit_cluster::{Directory, Etcd, Keys};
use firepit_token::BearerToken;
use tokio::net::TcpListener;

pub use error::GatewayError;
pub use state::GatewayState;

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// TCP address to listen on.
    pub listen: SocketAddr,
    /// etcd endpoints.
    pub etcd: Vec<String>,
    /// Key prefix in etcd (the daemons' `cluster.prefix`).
    pub prefix: String,
    /// The token clients present.
    pub token: BearerToken,
    /// The token the gateway presents to the daemons (their `listen` token).
    pub daemon_token: BearerToken,
    /// What the listener allows a client (timeouts, connections per client).
    pub http: firepit_http::HttpLimits,
    /// Serve the web dashboard under `/ui` (login with `token`): the cluster's pools, leases,
    /// lease pages and terminals, through this gateway's own API.
    pub ui: bool,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The etcd endpoints are unusable.
    #[error(transparent)]
    Etcd(#[from] firepit_cluster::ClusterError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound gateway, not yet serving.
pub struct Gateway {
    listener: TcpListener,
    router: Router,
    state: GatewayState,
    http: firepit_http::HttpLimits,
    /// Fired when the gateway stops: ends the dashboard's live streams.
    stopping: tokio_util::sync::CancellationToken,
}

impl Gateway {
    /// Binds the listener and starts watching the hosts in etcd (etcd may be down: the gateway
    /// serves and catches up when it answers).
    ///
    /// ```no_run
    /// # async fn demo(config: firepit_gateway::GatewayConfig) -> Result<(), firepit_gateway::StartError> {
    /// let gateway = firepit_gateway::Gateway::bind(config).await?;
    /// println!("listening on {}", gateway.local_addr());
    /// gateway.run(std::future::pending()).await;
    /// # Ok(()) }
    /// ```
    pub async fn bind(config: GatewayConfig) -> Result<Self, StartError> {
        let etcd = Etcd::connect(&config.etcd, Keys::new(&config.prefix)).await?;
        let state = GatewayState::new(Directory::start(etcd), upstream::Upstream::new(&config.daemon_token));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let stopping = tokio_util::sync::CancellationToken::new();
        let mut api = router(state.clone(), config.token.clone());
        if config.ui {
            let own = loopback(
                listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?,
            );
            api = dashboard(own, config.token, stopping.clone()).merge(api);
        }
        Ok(Self { listener, router: api, state, http: config.http, stopping })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The handlers' state (hosts, routes, metrics).
    pub fn state(&self) -> &GatewayState {
        &self.state
    }

    /// Serves until `stop` resolves, then lets in-flight requests finish (under `config.http`'s
    /// timeouts and connection bound: see `firepit-http`).
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(addr = %self.local_addr(), "gateway listening (bearer token required)");
        let stopping = self.stopping.clone();
        let stop = async move {
            stop.await;
            stopping.cancel();
        };
        if let Err(error) = firepit_http::serve(self.listener, self.router, self.http, stop).await {
            tracing::warn!(%error, "the gateway's listener failed");
        }
    }
}

/// Where the gateway reaches itself: its own address, or loopback's when it listens on every
/// address.
fn loopback(bound: SocketAddr) -> SocketAddr {
    match bound.ip().is_unspecified() {
        true if bound.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], bound.port())),
        true => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bound.port())),
        false => bound,
    }
}

/// The dashboard (`firepit-ui`) over this gateway's own API at `own`, with the clients' token: it
/// shows the whole cluster as the gateway does (pools and leases of every host; each lease's page,
/// files and terminal through its host).
fn dashboard(own: SocketAddr, token: BearerToken, stopping: tokio_util::sync::CancellationToken) -> Router {
    let endpoint =
        firepit_client::Endpoint::Tcp { authority: own.to_string(), token: Some(token.secret().to_owned()) };
    let check: firepit_ui::TokenCheck = std::sync::Arc::new(move |presented| token.matches(presented));
    firepit_ui::Dashboard::new(firepit_client::Client::new(endpoint), Some(check), stopping).router()
}

/// The gateway's routes; everything but `/healthz` needs the token.
pub fn router(state: GatewayState, token: BearerToken) -> Router {
    let authed = Router::new()
        .route("/v1/leases", post(acquire::acquire).get(fanout::list_leases))
        .route("/v1/leases/{id}", any(lease::lease))
        .route("/v1/leases/{id}/{*rest}", any(lease::lease_path))
        .route("/v1/pools", get(fanout::pools))
        .route("/v1/shapes/{name}", put(fanout::put_shape).delete(fanout::delete_shape))
        .route("/v1/openapi.json", get(fanout::openapi))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
        .layer(axum::middleware::from_fn_with_state(token, admin::require_bearer));
    Router::new().route("/healthz", get(admin::healthz)).merge(authed).with_state(state)
}
