//! `GET /v1/events`: the daemon's events ([`crate::events`]) as Server-Sent Events.
//!
//! A client gets what happens from its request on; with `Last-Event-ID` (or `?last_event_id=`) it
//! first gets what it missed since that event, from the bus's history (and `events.missed` first
//! when the history no longer holds all of it). Filters: `kind` (repeated or comma-separated) and
//! `lease_id`. A comment line every 15 s keeps idle connections (and proxies) open. A reader that
//! falls behind the live events catches up from the history, as a resuming one does.
//!
//! The stream ends when the daemon stops, but only after the stop's own events: a stop ends every
//! running lease (`lease.ended`, reason `host_shutdown`) and then closes the bus
//! ([`EventBus::close`]), which is what ends the stream, so a dashboard or controller learns how
//! every lease ended before its stream closes (see [`crate::server`] for the order of a stop).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use firepit_api::{Event, EventKind, EventQuery};
use tokio::sync::broadcast;

use super::AppState;
use super::error::ApiError;
use crate::events::{EventBus, Subscription};

/// How often an idle stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Follow the daemon's events (Server-Sent Events).
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(
        EventQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (what an SSE client sends when it reconnects); wins over `last_event_id`"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: per event `id:` (its id), `event:` (its kind) and `data:` (the event as JSON)", content_type = "text/event-stream", body = Event),
        (status = 400, description = "Unknown kind, parameter or event id", body = super::ErrorBody),
    )
)]
pub async fn follow_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut query = EventQuery::from_pairs(pairs).map_err(ApiError::bad_request)?;
    if let Some(value) = headers.get("last-event-id") {
        let id =
            value.to_str().ok().and_then(|text| text.trim().parse().ok()).ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be the id of an event (a number)")
            })?;
        query.last_event_id = Some(id);
    }
    let bus = state.leases().events().clone();
    let subscription = bus.subscribe(query.last_event_id);
    let reader = Reader::new(bus, subscription, query);
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok::<SseEvent, Infallible>(sse(&event)), reader))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// One event as SSE.
fn sse(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_default();
    SseEvent::default().id(event.id.to_string()).event(event.kind.as_str()).data(data)
}

/// What one client reads: its backlog, then the live events, caught up from the history after a
/// lag.
struct Reader {
    bus: EventBus,
    query: EventQuery,
    /// Events to send before reading live ones, oldest first (reversed: popped from the end).
    pending: Vec<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The last event id seen (sent or filtered out).
    seen: Option<u64>,
}

impl Reader {
    fn new(bus: EventBus, subscription: Subscription, query: EventQuery) -> Self {
        let Subscription { backlog, missed, live, next_id } = subscription;
        let seen =
            Some(query.last_event_id.unwrap_or(next_id.saturating_sub(1)).min(next_id.saturating_sub(1)));
        let mut reader = Self { bus, query, pending: Vec::new(), live, seen };
        reader.queue(backlog, missed);
        reader
    }

    /// Queues `backlog`, after an `events.missed` when `missed` events are gone.
    fn queue(&mut self, backlog: Vec<Arc<Event>>, missed: u64) {
        let mut queued = Vec::with_capacity(backlog.len() + 1);
        if missed > 0 {
            let first_kept = backlog.first().map_or_else(|| self.bus.next_id(), |event| event.id);
            let mut notice = Event::new(
                first_kept.saturating_sub(1),
                EventKind::EventsMissed,
                firepit_api::unix_ms(std::time::SystemTime::now()),
            );
            notice.failures = Some(missed);
            notice.detail =
                Some(format!("{missed} events after the one asked for are no longer kept (events.history)"));
            queued.push(Arc::new(notice));
        }
        queued.extend(backlog);
        queued.reverse();
        self.pending = queued;
    }

    async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            let event = match self.pending.pop() {
                Some(event) => event,
                // The bus closes once the daemon's stop has emitted its last events.
                None => match self.live.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let (backlog, missed) = self.bus.since(self.seen.unwrap_or(0));
                        self.queue(backlog, missed);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            // After a catch-up the live channel may repeat what the history gave.
            if event.kind != EventKind::EventsMissed && self.seen.is_some_and(|seen| event.id <= seen) {
                continue;
            }
            if event.kind != EventKind::EventsMissed {
                self.seen = Some(event.id);
            }
            if self.query.matches(&event) {
                return Some(event);
            }
        }
    }
}
