//! What happened, for whoever wants to know: leases created, paused, resumed, forked and ended (with
//! why), processes the guest's OOM killer took, shapes whose fills fail or recover.
//!
//! - [`bus`]: the [`EventBus`] every part of the daemon emits on (a ring of recent events and a
//!   broadcast; emitting never waits).
//! - `GET /v1/events` serves the bus as Server-Sent Events (`crate::api::events`).
//! - [`webhook`]: each `[[events.webhooks]]` of the config gets the events it asked for, POSTed as JSON and
//!   signed, retried with backoff, from a bounded queue of its own.
//! - [`fills`]: watches the backend's shapes and emits `shape.fill_failed` /
//!   `shape.fill_recovered`.

pub mod bus;
pub mod fills;
pub mod webhook;

pub use bus::{EventBus, Subscription};

use std::time::Duration;

/// How long a stop waits by default for the webhooks to deliver what they have queued.
pub const DEFAULT_WEBHOOK_GRACE: Duration = Duration::from_secs(5);

/// The events' settings (`[events]` and `[[events.webhooks]]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// Events kept for readers that resume (`Last-Event-ID`).
    pub history: usize,
    /// Where events are POSTed.
    pub webhooks: Vec<webhook::WebhookConfig>,
    /// How long a stop waits for the webhooks to deliver what they have queued (the stop's
    /// `host_shutdown` ends among it) before it cancels them (see [`webhook::Webhooks::flush`]).
    pub webhook_grace: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { history: 4096, webhooks: Vec::new(), webhook_grace: DEFAULT_WEBHOOK_GRACE }
    }
}
