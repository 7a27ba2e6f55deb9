//! The web dashboard (`firepit-ui`) on the TCP listener, under `/ui`, when `listen.ui` is on
//! (the default).
//!
//! The dashboard is a client of this daemon's own API, over its Unix socket, so it shows exactly
//! what API clients see. Its login takes the listener's bearer token (checked by the same
//! constant-time comparison); everything else under `/ui` needs the session that login starts,
//! and the API under `/v1` keeps requiring the bearer token (see `firepit_ui`'s "Security").

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use firepit_client::{Client, Endpoint};
use firepit_ui::{Dashboard, TokenCheck};
use tokio_util::sync::CancellationToken;

use crate::auth::BearerToken;

/// `api` (already behind the bearer token) with the dashboard's routes beside it; the dashboard
/// reads the API on `socket` and ends its live streams on `stopping`.
pub fn mount(api: Router, token: BearerToken, socket: &Path, stopping: CancellationToken) -> Router {
    let client = Client::new(Endpoint::Unix(socket.to_owned()));
    let check: TokenCheck = Arc::new(move |presented| token.matches(presented));
    Dashboard::new(client, Some(check), stopping).router().merge(api)
}
