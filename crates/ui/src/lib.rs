//! firepit's web dashboard, served under `/ui`: the pools, a live list of leases, the live event
//! stream, and a page per lease with its details, usage charts, actions (renew, pause, resume,
//! snapshot, fork, release, kill), a terminal, its files and its background processes.
//!
//! Why it is built this way:
//! - **One data source, the API.** Every page gets its data through [`firepit_client::Client`],
//!   the typed client of the daemon's own HTTP API, never from the daemon's internals. So the
//!   dashboard shows exactly what API clients see, and the same router can sit in front of any
//!   server of that API (the daemon, `firepit ui` on a Unix socket, a cluster gateway).
//! - **Server-rendered HTML.** Pages are [maud] templates: HTML written in Rust, checked when the
//!   crate compiles, every value escaped unless marked otherwise. Live parts use htmx (partial
//!   reloads, and Server-Sent Events for the lease list); the terminal is xterm.js. The JavaScript
//!   comes from npm at fixed versions (`assets/package-lock.json`), copied with its licences into
//!   `assets/vendor/` by `scripts/ui-assets` and built into the binary ([`asset_url`]): building
//!   firepit needs neither node nor a network beyond crates.io.
//!
//! # Security
//!
//! The API's token never reaches the browser's JavaScript, and the API itself keeps accepting
//! only its bearer token: the dashboard holds the [`Client`] (with the token, or on the Unix
//! socket) and proxies what the browser needs — pages, the live list's event stream, the terminal
//! WebSocket, file downloads and uploads. So there is no ambient authority (a cookie) on `/v1`,
//! and cross-site request forgery against the API is impossible by construction; only `/ui` has
//! to defend against it:
//! - **Login.** The daemon's token, typed once, starts a session ([`session`]): a 256-bit random
//!   secret in a cookie that is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
//!   page or link sends it) and scoped to `Path=/ui`. `firepit ui` (for a daemon on a Unix socket
//!   only) logs in with a one-time link instead, as Jupyter does. A wrong token costs 300 ms.
//! - **Nothing without a session**: every page, fragment, stream and action is behind the guard;
//!   only the login page and the static files (the same for everyone, from the public repository)
//!   are not. Pages redirect to the login.
//! - **CSRF**: besides `SameSite=Strict`, every state-changing request must carry the session's
//!   CSRF token in `X-CSRF-Token` (htmx adds it from the page; a cross-site form cannot set
//!   headers), and is refused when the browser says it comes from another origin (`Origin`,
//!   `Sec-Fetch-Site`); WebSocket upgrades are checked the same way.
//! - **XSS**: templates escape everything; a strict `Content-Security-Policy` allows scripts only
//!   from our own files (no inline script, no `eval`); guest files are only ever downloaded as
//!   attachments under `CSP: sandbox`, never shown inline.
//! - **Not in place**: TLS (the daemon's TCP listener is plain HTTP: put it on loopback or behind
//!   a TLS proxy that keeps the `Host` header; the cookie has no `Secure` flag for that reason);
//!   roles (a session can do what the token can); sessions survive only as long as the process.
//!
//! # Use
//!
//! ```no_run
//! use firepit_client::{Client, Endpoint};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(Endpoint::Unix(firepit_api::default_socket_path()));
//! let dashboard = firepit_ui::Dashboard::new(client, None, Default::default());
//! println!("open http://127.0.0.1:8080{}", dashboard.one_time_login_path());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, dashboard.router()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod assets;
mod auth;
mod charts;
pub mod error;
mod events;
mod files;
pub mod format;
mod layout;
mod lease;
mod leases;
mod lifecycle;
mod notice;
mod pools;
mod processes;
pub mod session;
mod state;
mod terminal;
mod usage;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Redirect;
use axum::routing::{get, post, put};
use firepit_client::Client;
use tokio_util::sync::CancellationToken;

pub use assets::{VENDOR_MANIFEST, asset_url};
pub use auth::{COOKIE, CSRF_HEADER};
pub use state::TokenCheck;

use state::UiState;

/// The dashboard: its router and its sessions.
#[derive(Clone)]
pub struct Dashboard {
    state: UiState,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("endpoint", self.state.client().endpoint()).finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard showing what `client` reaches. `token` checks the login form's token (`None`:
    /// logins only by [one-time link](Self::one_time_login_path)); `stopping` ends the live
    /// streams (lease list, terminals) when the server stops.
    pub fn new(client: Client, token: Option<TokenCheck>, stopping: CancellationToken) -> Self {
        Self { state: UiState::new(client, token, stopping) }
    }

    /// A path that logs a browser in once (within 15 minutes): `/ui/login?ticket=…`.
    pub fn one_time_login_path(&self) -> String {
        format!("/ui/login?ticket={}", self.state.sessions().issue_ticket())
    }

    /// The routes, all under `/ui` (merge them into a server's router; no fallback is set).
    pub fn router(&self) -> Router {
        let guarded = Router::new()
            .route("/ui/", get(pools::page_handler))
            .route("/ui/pools/table", get(pools::table_handler))
            .route("/ui/leases", get(leases::page_handler))
            .route("/ui/leases/stream", get(leases::stream_handler))
            .route("/ui/leases/{id}", get(lease::page_handler))
            .route("/ui/leases/{id}/summary", get(lease::summary_handler))
            .route("/ui/leases/{id}/renew", post(lease::renew))
            .route("/ui/leases/{id}/release", post(lease::release))
            .route("/ui/leases/{id}/pause", post(lifecycle::pause))
            .route("/ui/leases/{id}/resume", post(lifecycle::resume))
            .route("/ui/leases/{id}/snapshot", post(lifecycle::snapshot))
            .route("/ui/leases/{id}/fork", post(lifecycle::fork))
            .route("/ui/leases/{id}/kill", post(lifecycle::kill))
            .route("/ui/leases/{id}/usage", get(charts::handler))
            .route("/ui/events", get(events::page_handler))
            .route("/ui/events/stream", get(events::stream_handler))
            .route("/ui/leases/{id}/terminal", get(terminal::open))
            .route("/ui/leases/{id}/files", get(files::list))
            .route("/ui/leases/{id}/files/download", get(files::download))
            .route("/ui/leases/{id}/files/upload", put(files::upload))
            .route("/ui/leases/{id}/files/delete", post(files::delete))
            .route("/ui/leases/{id}/processes", get(processes::list))
            .route("/ui/leases/{id}/processes/{process}/output", get(processes::output))
            .route("/ui/leases/{id}/processes/{process}/signal", post(processes::signal))
            .route("/ui/logout", post(auth::logout))
            .route("/ui/{*rest}", get(not_found))
            .route_layer(from_fn_with_state(self.state.clone(), auth::require_session));
        Router::new()
            .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
            .route("/ui/login", get(auth::login_page).post(auth::login))
            .route("/ui/assets/{name}", get(assets::serve))
            .merge(guarded)
            .layer(from_fn(auth::security_headers))
            .with_state(self.state.clone())
    }
}

async fn not_found(
    axum::Extension(session): axum::Extension<session::Session>,
) -> (axum::http::StatusCode, maud::Markup) {
    let body = maud::html! { h1 { "Not found" } p { "No such page. " a href="/ui/" { "Pools" } } };
    (axum::http::StatusCode::NOT_FOUND, layout::page("Not found", None, &session, maud::html! {}, body))
}
