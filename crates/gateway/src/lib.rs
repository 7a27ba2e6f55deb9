//! `firepit gateway`: one stateless HTTP front for many `firepit serve` daemons.
//!
//! What it does: clients (the CLI with `FIREPIT_URL`, the Rust client, the Python SDK) talk to a
//! gateway exactly as to a daemon's TCP listener, with a bearer token. An acquire is placed on a
//! host by the capacity the daemons advertise in etcd (warm hosts first, best of K by load; the
//! next host on `503`); the lease → host route is written to etcd; every later request on the lease
//! is forwarded to its host unchanged (bodies streamed both ways, NDJSON, the PTY WebSocket).
//! Whole-cluster requests (pools, shapes, lease lists, usage, snapshots) ask every host; `GET /v1/events` is
//! every host's event stream merged into one, each event naming its `host`, resumable with a
//! cursor over all hosts ([`events`]). With `--e2b ADDR` the gateway also serves E2B's SDKs
//! (`firepit-e2b`) on a second listener, over its own API, so sandboxes are placed and routed like
//! any lease. Any number of gateways can run side by side; a restarted one loses nothing, because
//! everything it knows is in etcd (except the E2B endpoint's own sandbox records: see
//! [`GatewayConfig::e2b`]).
//!
//! Faults: a host whose registration expired answers `410 host_lost` for its leases; a host that
//! drains gets no placements; with etcd unreachable the gateway keeps routing the leases it has
//! routed before (from memory), refuses new placements with `503 cluster_unavailable`, and says
//! `degraded` on `/healthz`.
//!
//! How the parts fit: [`admin`] (health, metrics, token check) and [`error`] at the bottom;
//! [`upstream`] is the client to the daemons; [`fanout`] asks every host, [`snapshots`] finds a
//! snapshot's host and routes forks (on top of it), [`acquire`] and [`lease`] are the lease
//! handlers (on top of those), [`events`] the merged event stream; [`Gateway`] binds the router
//! (and the E2B endpoint). The cluster logic (records, placement, routes) is
//! `firepit-cluster`'s; this crate is HTTP.
//!
//! Why hyper-util's pooled client rather than reqwest: it passes `Upgrade` through (the PTY) and
//! takes axum's body type as is, so a request is forwarded without copying it.

#![warn(missing_docs)]

pub mod acquire;
pub mod admin;
pub mod error;
pub mod events;
pub mod fanout;
pub mod lease;
pub mod metrics;
pub mod snapshots;
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
    /// Serve E2B's SDKs too (`firepit gateway --e2b ADDR`): the `firepit-e2b` endpoint on its own
    /// listener, over this gateway's own API (so its sandboxes are placed and routed across the
    /// hosts like any lease). Its `api_key` is replaced by `token`: E2B clients send the clients'
    /// token as `X-API-Key`.
    ///
    /// Limits: the endpoint keeps what E2B says about a sandbox and a lease does not hold
    /// (template, metadata, envd's access token, envd's processes) in this process, so a sandbox
    /// is served by the gateway that created it, until that gateway restarts; put one gateway's
    /// E2B listener behind a name, or pin clients to one. A port other than envd's is proxied
    /// through a port forward the lease's host opens on its own loopback: it reaches the guest
    /// only when the gateway runs on that host.
    pub e2b: Option<firepit_e2b::E2bConfig>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The etcd endpoints are unusable.
    #[error(transparent)]
    Etcd(#[from] firepit_cluster::ClusterError),
    /// The E2B listener could not be bound.
    #[error(transparent)]
    E2b(#[from] firepit_e2b::server::ServeError),
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
    /// Fired when the gateway stops: ends the dashboard's live streams and the E2B endpoint.
    stopping: tokio_util::sync::CancellationToken,
    /// The E2B endpoint, bound, with the client it speaks to this gateway through.
    e2b: Option<E2bEndpoint>,
}

/// The E2B endpoint of a gateway, bound and not yet serving.
struct E2bEndpoint {
    listener: TcpListener,
    config: firepit_e2b::E2bConfig,
    client: firepit_client::Client,
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
        let own = loopback(
            listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?,
        );
        let e2b = match config.e2b {
            Some(mut e2b) => {
                e2b.api_key = config.token.secret().to_owned();
                let listener = firepit_e2b::server::bind(&e2b).await?;
                Some(E2bEndpoint { listener, config: e2b, client: own_client(own, &config.token) })
            }
            None => None,
        };
        let mut api = router(state.clone(), config.token.clone());
        if config.ui {
            api = dashboard(own, config.token, stopping.clone()).merge(api);
        }
        Ok(Self { listener, router: api, state, http: config.http, stopping, e2b })
    }

    /// The address the E2B endpoint listens on, when it was asked for.
    pub fn e2b_addr(&self) -> Option<SocketAddr> {
        self.e2b.as_ref().and_then(|e2b| e2b.listener.local_addr().ok())
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
        let e2b = self.e2b.map(|e2b| {
            tracing::info!(addr = ?e2b.listener.local_addr().ok(), domain = %e2b.config.domain, "E2B endpoint listening");
            tokio::spawn(firepit_e2b::server::serve(e2b.listener, e2b.config, e2b.client, stopping.clone()))
        });
        let stop = async move {
            stop.await;
            stopping.cancel();
        };
        if let Err(error) = firepit_http::serve(self.listener, self.router, self.http, stop).await {
            tracing::warn!(%error, "the gateway's listener failed");
        }
        // The E2B endpoint stops with the gateway (its own graceful end is bounded at 5 s).
        self.stopping.cancel();
        if let Some(task) = e2b {
            match task.await {
                Ok(Err(error)) => tracing::warn!(%error, "the E2B endpoint failed"),
                Err(error) => tracing::warn!(%error, "the E2B endpoint's task failed"),
                Ok(Ok(())) => {}
            }
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
    let client = own_client(own, &token);
    let check: firepit_ui::TokenCheck = std::sync::Arc::new(move |presented| token.matches(presented));
    firepit_ui::Dashboard::new(client, Some(check), stopping).router()
}

/// A client of this gateway's own API at `own`, with the clients' token (the dashboard's and the
/// E2B endpoint's way in: every lease they touch is placed and routed as any client's).
fn own_client(own: SocketAddr, token: &BearerToken) -> firepit_client::Client {
    let endpoint =
        firepit_client::Endpoint::Tcp { authority: own.to_string(), token: Some(token.secret().to_owned()) };
    firepit_client::Client::new(endpoint)
}

/// The gateway's routes; everything but `/healthz` needs the token.
pub fn router(state: GatewayState, token: BearerToken) -> Router {
    let authed = Router::new()
        .route("/v1/leases", post(acquire::acquire).get(fanout::list_leases))
        .route("/v1/leases/{id}", any(lease::lease))
        .route("/v1/leases/{id}/{*rest}", any(lease::lease_path))
        .route("/v1/pools", get(fanout::pools))
        .route("/v1/events", get(events::events))
        .route("/v1/usage", get(fanout::usage))
        .route("/v1/snapshots", get(snapshots::list))
        .route("/v1/snapshots/{id}", get(snapshots::one).delete(snapshots::one))
        .route("/v1/shapes/{name}", put(fanout::put_shape).delete(fanout::delete_shape))
        .route("/v1/openapi.json", get(fanout::openapi))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
        .layer(axum::middleware::from_fn_with_state(token, admin::require_bearer));
    Router::new().route("/healthz", get(admin::healthz)).merge(authed).with_state(state)
}
