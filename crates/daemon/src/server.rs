//! The listeners and the serve loop: bind, serve until told to stop, then stop in order.
//!
//! Order of a stop:
//! 1. mark the daemon as shutting down (acquires get 503, terminals and followed output end) and
//!    stop accepting;
//! 2. give in-flight requests the shutdown budget (or nothing, on an immediate stop) and cancel
//!    what is left; event streams are not waited for here ([`crate::in_flight`]);
//! 3. remove the socket file;
//! 4. end every running lease, reason `host_shutdown` (their VMs are destroyed now, their records
//!    written; paused leases stay paused for the next start);
//! 5. close the event bus: every `GET /v1/events` stream sends what it has not sent yet, the
//!    stop's `lease.ended` events among it, and ends; the connections get [`STREAM_GRACE`] to
//!    close (a client that does not read is cut off then); meanwhile the webhooks deliver their
//!    queues within their grace (`[events] webhook_grace_ms`; a second signal ends it at once),
//!    and a daemon in a cluster removes its record;
//! 6. shut the backend down (it waits for those destroys, so every ownership record is gone when
//!    it returns).
//!
//! Why the event streams stay open until the leases have ended (rather than the daemon keeping
//! its event history on disk for the clients that reconnect after a restart): a dashboard or a
//! controller watching the events must learn how every lease ended, and a stopped daemon may not
//! start again (a host taken out of service). Delivered live, the stop's events reach every
//! reader at the cost of a few milliseconds of the stop; a reader that reconnects to the next run
//! with `Last-Event-ID` gets that run's events from its start (ids keep growing across runs, see
//! [`crate::events::bus`]). What no stop emits — a crash — is told by the next start: it ends the
//! leases it finds in the records, reason `daemon_restart`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::auth::{BearerToken, require_bearer};
use crate::backend::LeaseBackend;
use crate::dashboard;
use crate::events::webhook::{WebhookMetrics, Webhooks};
use crate::events::{EventBus, EventSettings};
use crate::in_flight::{self, InFlight};
use crate::leases::{LeaseSettings, LeaseTable};
use crate::listeners::SocketFile;
pub use crate::listeners::{Listeners, ServeError};
use crate::metrics::DaemonMetrics;
use crate::shutdown::{Phase, ShutdownSignal};

/// How the daemon listens and stops.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Unix socket path (parent created 0700 if missing; socket 0600).
    pub socket: PathBuf,
    /// Optional TCP listener and the token it requires.
    pub tcp: Option<(SocketAddr, BearerToken)>,
    /// Time in-flight requests get on a graceful stop.
    pub shutdown_budget: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How leases live and how long ended ones are remembered (and where their records are).
    pub leases: LeaseSettings,
    /// The event history and the webhooks.
    pub events: EventSettings,
    /// Port forwards one lease may have open.
    pub max_forwards_per_lease: usize,
    /// Timeouts and the connection bound of both listeners.
    pub http: firepit_http::HttpLimits,
    /// Serve the web dashboard under `/ui` on the TCP listener.
    pub ui: bool,
    /// Register in a cluster (`[cluster]`): a stop then drains first (see [`crate::cluster`]).
    pub cluster: Option<firepit_cluster::AdvertiseConfig>,
    /// How often each lease's usage is sampled (`[usage]`, see [`crate::usage`]).
    pub usage: crate::config::UsageConfig,
}

/// What a stop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    /// All in-flight requests finished within the budget.
    pub drained: bool,
    /// The stop was (or became) immediate.
    pub immediate: bool,
    /// Leases ended by the stop.
    pub leases_ended: usize,
    /// Every webhook delivered (or gave up on) what it had queued within its grace.
    pub webhooks_flushed: bool,
}

/// A bound, not yet serving daemon.
pub struct Daemon {
    state: AppState,
    backend: Arc<dyn LeaseBackend>,
    leases: Arc<LeaseTable>,
    cancel: CancellationToken,
    cancel_requests: CancellationToken,
    router: Router,
    unix: UnixListener,
    socket: SocketFile,
    tcp: Option<(TcpListener, Router)>,
    budget: Duration,
    cluster: Option<firepit_cluster::AdvertiseConfig>,
    http: firepit_http::HttpLimits,
    in_flight: InFlight,
    webhooks: Webhooks,
    webhook_grace: Duration,
}

impl Daemon {
    /// Binds the listeners of `options` and builds the API over `backend`.
    pub async fn bind(backend: Arc<dyn LeaseBackend>, options: ServeOptions) -> Result<Self, ServeError> {
        let listeners = Listeners::bind(&options.socket, options.tcp.clone()).await?;
        Self::new(backend, listeners, &options)
    }

    /// Builds the API over `backend` on listeners bound earlier (the socket and TCP settings of
    /// `options` are the listeners'). Reads the lease records back (see [`crate::leases::store`])
    /// and starts the webhooks and the watch of the shapes' fills.
    pub fn new(
        backend: Arc<dyn LeaseBackend>,
        listeners: Listeners,
        options: &ServeOptions,
    ) -> Result<Self, ServeError> {
        let mut registry = Registry::default();
        backend.register_metrics(&mut registry);
        let metrics = DaemonMetrics::register(&mut registry);
        let webhook_metrics = WebhookMetrics::register(&mut registry);
        let cancel = CancellationToken::new();
        let events = EventBus::new(options.events.history);
        let webhooks = crate::events::webhook::start(
            options.events.webhooks.clone(),
            &events,
            &webhook_metrics,
            &cancel,
        );
        tokio::spawn(crate::events::fills::watch(backend.clone(), events.clone(), cancel.clone()));
        let leases =
            LeaseTable::new(backend.clone(), options.leases.clone(), events, metrics, cancel.child_token())?;
        let limits = api::ApiLimits {
            max_body_bytes: options.max_body_bytes,
            max_forwards_per_lease: options.max_forwards_per_lease,
        };
        let (router, state) = api::router(backend.clone(), leases.clone(), registry, limits, options.usage);
        // Handlers still running when the budget is spent (or on an immediate stop) are dropped
        // here, answering 503: axum runs each connection in its own task, which aborting the
        // accept loop would not reach.
        let cancel_requests = CancellationToken::new();
        let router =
            router.layer(axum::middleware::from_fn_with_state(cancel_requests.clone(), cancel_on_stop));
        let in_flight = InFlight::default();
        let track = axum::middleware::from_fn_with_state(in_flight.clone(), in_flight::track);
        let Listeners { unix, socket, tcp } = listeners;
        let tcp = tcp.map(|(listener, token)| {
            let authed =
                router.clone().layer(axum::middleware::from_fn_with_state(token.clone(), require_bearer));
            let routes = match options.ui {
                true => dashboard::mount(authed, token, &socket.0, state.stopping()),
                false => authed,
            };
            (listener, routes.layer(track.clone()))
        });
        let router = router.layer(track);
        Ok(Self {
            state,
            backend,
            leases,
            cancel,
            cancel_requests,
            router,
            unix,
            socket,
            tcp,
            budget: options.shutdown_budget,
            cluster: options.cluster.clone(),
            http: options.http,
            in_flight,
            webhooks,
            webhook_grace: options.events.webhook_grace,
        })
    }

    /// The TCP address actually bound (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The daemon's event bus (to emit or follow events in the same process: tests, benches).
    pub fn events(&self) -> crate::events::EventBus {
        self.leases.events().clone()
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket.0
    }

    /// Serves until `signal` asks for a stop, then stops in order (see the module docs).
    pub async fn run(self, signal: ShutdownSignal) -> StopReport {
        let mut servers = JoinSet::new();
        // One token fired on the first stop request, shared by every listener.
        let stop = CancellationToken::new();
        let fire = stop.clone();
        let registration = self
            .cluster
            .map(|config| crate::cluster::register(config, self.backend.clone(), self.leases.clone()));
        let reached: futures_util::future::BoxFuture<'static, ()> = match registration {
            // In a cluster the listeners serve the leases until they end; then the stop goes on.
            Some(_) => {
                Box::pin(crate::cluster::drained_after_stop_request(self.leases.clone(), signal.clone()))
            }
            None => Box::pin(signal.clone().reached(Phase::Graceful)),
        };
        tokio::spawn(async move {
            reached.await;
            fire.cancel();
        });
        info!(socket = %self.socket.0.display(), "listening");
        servers.spawn(firepit_http::serve(self.unix, self.router, self.http, stop.clone().cancelled_owned()));
        if let Some((listener, router)) = self.tcp {
            info!(addr = ?listener.local_addr().ok(), "listening on TCP (bearer token required)");
            servers.spawn(firepit_http::serve(listener, router, self.http, stop.clone().cancelled_owned()));
        }
        stop.cancelled().await;
        self.state.begin_shutdown();
        let immediate = signal.clone().reached(Phase::Immediate);
        let drained = tokio::select! {
            idle = tokio::time::timeout(self.budget, self.in_flight.idle()) => idle.is_ok(),
            () = immediate => false,
        };
        if !drained {
            warn!(budget_ms = self.budget.as_millis() as u64, "cancelling in-flight requests");
            self.cancel_requests.cancel();
            // Cancelled handlers answer at once; give the connections a moment to flush that.
            if tokio::time::timeout(CANCEL_GRACE, self.in_flight.idle()).await.is_err() {
                warn!(left = self.in_flight.count(), "requests still in flight after their cancellation");
            }
        }
        // Nothing listens any more: remove the socket now, so clients fail fast while VMs stop.
        drop(self.socket);
        let leases_ended = self.leases.release_all().await;
        // The stop's last events are out: the event streams and the webhooks end after them.
        let events = self.leases.events();
        events.close();
        let streams_closed = async {
            if !drain(&mut servers, STREAM_GRACE).await {
                warn!(grace_ms = STREAM_GRACE.as_millis() as u64, "closing connections that did not finish");
                servers.abort_all();
                while servers.join_next().await.is_some() {}
            }
        };
        let webhooks_flushed = async {
            tokio::select! {
                // First, so that a stop without webhooks (flushed at once) says so.
                biased;
                flushed = self.webhooks.flush(self.webhook_grace) => flushed,
                () = signal.clone().reached(Phase::Immediate) => false,
            }
        };
        let deregistered = async {
            if let Some(registration) = registration {
                registration.stop().await;
            }
        };
        let ((), webhooks_flushed, ()) = tokio::join!(streams_closed, webhooks_flushed, deregistered);
        self.cancel.cancel();
        self.backend.shutdown().await;
        let immediate = signal.phase() == Phase::Immediate;
        let report = StopReport { drained, immediate, leases_ended, webhooks_flushed };
        info!(?report, "stopped");
        report
    }
}

/// How long connections get to deliver the 503 of a cancelled request.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How long the connections get to close once the leases have ended and the event streams have
/// their last events: a stream's client that does not read them by then is cut off.
pub const STREAM_GRACE: Duration = Duration::from_secs(2);

/// Middleware: runs the request unless the daemon cancels in-flight requests first (503).
async fn cancel_on_stop(
    axum::extract::State(cancel): axum::extract::State<CancellationToken>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    tokio::select! {
        response = next.run(request) => response,
        () = cancel.cancelled() => api::ApiError::new(
            api::ErrorCode::ShuttingDown,
            "the daemon stopped before this request finished; it was cancelled",
        )
        .into_response(),
    }
}

/// Waits for every server task to finish, at most `budget`; true if they all did.
async fn drain(servers: &mut JoinSet<std::io::Result<()>>, budget: Duration) -> bool {
    let all = async {
        while let Some(joined) = servers.join_next().await {
            match joined {
                Ok(Err(error)) => warn!(%error, "listener failed"),
                Err(error) => warn!(%error, "listener task failed"),
                Ok(Ok(())) => {}
            }
        }
    };
    tokio::time::timeout(budget, all).await.is_ok()
}
