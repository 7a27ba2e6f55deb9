//! What every handler shares: the client of the API the pages show, the sessions, how a login is
//! checked, and the token that ends live streams when the server stops.

use std::sync::Arc;

use firepit_client::Client;
use tokio_util::sync::CancellationToken;

use crate::session::Sessions;

/// Checks a token typed on the login page (the daemon passes its bearer token's constant-time
/// comparison).
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The dashboard's shared state (cheap to clone).
#[derive(Clone)]
pub(crate) struct UiState {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    sessions: Sessions,
    token: Option<TokenCheck>,
    stopping: CancellationToken,
}

impl UiState {
    pub(crate) fn new(client: Client, token: Option<TokenCheck>, stopping: CancellationToken) -> Self {
        Self { inner: Arc::new(Inner { client, sessions: Sessions::default(), token, stopping }) }
    }

    /// The client of the API whose data the pages show.
    pub(crate) fn client(&self) -> &Client {
        &self.inner.client
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Whether `presented` is the login token; false when logins by token are off.
    pub(crate) fn token_matches(&self, presented: &str) -> bool {
        self.inner.token.as_ref().is_some_and(|check| check(presented))
    }

    /// Whether the login page offers a token field.
    pub(crate) fn accepts_tokens(&self) -> bool {
        self.inner.token.is_some()
    }

    /// Fired when the server stops: live streams (lists, terminals) end on it.
    pub(crate) fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }
}
