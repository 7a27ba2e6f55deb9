//! The events page: the daemon's event stream (`GET /v1/events`) live, newest first, filtered by
//! kind and lease.
//!
//! The browser never talks to the API: `/ui/events/stream` (behind the session guard like every
//! page) follows the API's stream with the dashboard's client and sends each event on as a ready
//! table row (SSE event `event`, with the API stream's own id as its SSE id: a daemon's event id, or a
//! gateway's cursor over its hosts). A browser that reconnects
//! sends the last id it saw (`Last-Event-ID`, as `EventSource` does), and the proxy resumes from
//! there, so a dropped connection loses nothing the daemon still remembers. A first connection
//! starts from the daemon's kept history (`last_event_id=0`), so the page opens with the recent
//! past, not empty.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use firepit_api::{Event, EventKind, EventQuery};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;

use crate::error::UiError;
use crate::format;
use crate::layout::{Section, page};
use crate::session::Session;
use crate::state::UiState;

/// The page's filters, as its form sends them (empty means any).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    lease: String,
}

impl Filter {
    /// The API query, from the kept history on (a browser's `Last-Event-ID` is passed on as it
    /// is instead: see [`stream_handler`]).
    fn to_query(&self) -> Result<EventQuery, UiError> {
        let kinds = match self.kind.as_str() {
            "" => Vec::new(),
            name => vec![
                EventKind::from_name(name)
                    .ok_or_else(|| UiError::BadRequest(format!("unknown event kind `{name}`")))?,
            ],
        };
        let lease = self.lease.trim();
        let lease_id = (!lease.is_empty()).then(|| lease.to_owned());
        Ok(EventQuery { kinds, lease_id, last_event_id: Some(0) })
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string([("kind", &self.kind), ("lease", &self.lease)]).unwrap_or_default()
    }
}

/// `GET /ui/events`.
pub(crate) async fn page_handler(
    Extension(session): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Markup {
    let stream_url = format!("/ui/events/stream?{}", filter.query_string());
    let error = filter.to_query().err();
    let body = html! {
        h1 { "Events" }
        form.filters method="get" action="/ui/events" {
            label { "Kind "
                select name="kind" {
                    option value="" selected[filter.kind.is_empty()] { "any" }
                    @for kind in EventKind::ALL.iter().filter(|k| **k != EventKind::EventsMissed) {
                        option value=(kind.as_str()) selected[filter.kind == kind.as_str()] { (kind.as_str()) }
                    }
                }
            }
            label { "Lease " input name="lease" value=(filter.lease) placeholder="l-…" size="24" spellcheck="false"; }
            button type="submit" { "Filter" }
        }
        @if let Some(error) = error {
            (error.into_notice())
        } @else {
            p.hint { "Newest first, live; the daemon keeps its last 4,096 events." }
            div.scroll {
                table.events {
                    caption.visually-hidden { "Events (updated live, newest first)" }
                    thead { tr {
                        th scope="col" { "Time" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Lease" }
                        th scope="col" { "Shape" }
                        th scope="col" { "Details" }
                    } }
                    tbody #event-rows hx-ext="sse" sse-connect=(stream_url) sse-swap="event" hx-swap="afterbegin" {
                        tr #no-events { td colspan="5" .muted { "No events yet." } }
                    }
                }
            }
        }
    };
    page("Events", Some(Section::Events), &session, html! {}, body)
}

/// `GET /ui/events/stream`: the API's events as table rows (SSE event `event`).
pub(crate) async fn stream_handler(
    State(ui): State<UiState>,
    Query(filter): Query<Filter>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // The id a browser resumes with is the API stream's own `id:` (a daemon's event id, or a
    // gateway's cursor over its hosts), passed back unchanged.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let feed = match (filter.to_query(), resume) {
        (Ok(query), Some(resume)) => {
            ui.client().events_resuming(&query, &resume).await.map_err(UiError::from)
        }
        (Ok(query), None) => ui.client().events(&query).await.map_err(UiError::from),
        (Err(error), _) => Err(error),
    };
    let stream = futures_util::stream::unfold(Some((ui, feed)), |state| async move {
        let (ui, feed) = state?;
        let mut feed = match feed {
            Ok(feed) => feed,
            Err(error) => return Some((Ok(error_row(&error)), None)),
        };
        let next = tokio::select! {
            next = feed.next_event() => next,
            () = ui.stopping().cancelled() => return None,
        };
        match next {
            Ok(Some(event)) => {
                let sse = SseEvent::default()
                    .event("event")
                    .id(feed.resume_id().map_or_else(|| event.id.to_string(), str::to_owned))
                    .data(row(&event).into_string());
                Some((Ok(sse), Some((ui, Ok(feed)))))
            }
            Ok(None) => None,
            Err(error) => Some((Ok(error_row(&error.into())), None)),
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn error_row(error: &UiError) -> SseEvent {
    let markup = html! { tr { td colspan="5" { (crate::notice::notice("error", &format!("The event stream stopped: {}", error.message()))) } } };
    SseEvent::default().event("event").data(markup.into_string())
}

/// One event as a table row.
pub(crate) fn row(event: &Event) -> Markup {
    let kind = event.kind.as_str();
    let tone = match event.kind {
        EventKind::LeaseEnded
        | EventKind::ProcessOomKilled
        | EventKind::ShapeFillFailed
        | EventKind::EventsMissed => "bad",
        EventKind::LeasePaused => "warn",
        _ => "good",
    };
    html! {
        tr #{ "event-" (event.id) } data-kind=(kind) {
            td data-label="Time" { time datetime=(event.at) { (format::unix_ms(event.at_unix_ms)) } }
            td data-label="Kind" { span.dot.(tone) aria-hidden="true" {} code { (kind) } }
            td data-label="Lease" {
                @if let Some(lease) = &event.lease_id { a href={ "/ui/leases/" (lease) } { code { (lease) } } }
            }
            td data-label="Shape" { @if let Some(shape) = &event.shape { (shape) } }
            td data-label="Details" { (details(event)) }
        }
    }
}

fn details(event: &Event) -> Markup {
    html! {
        @if let Some(reason) = event.reason { span.reason { (reason.as_str()) } " " }
        @if let Some(detail) = &event.detail { (detail) " " }
        @if !event.leases.is_empty() {
            "new: "
            @for lease in &event.leases { a href={ "/ui/leases/" (lease) } { code { (lease) } } " " }
        }
        @if let Some(pid) = event.pid { "pid " (pid) " " }
        @if let Some(failures) = event.failures {
            @if event.kind == EventKind::EventsMissed { (failures) " events no longer kept " } @else { (failures) " in a row " }
        }
        @for (key, value) in &event.metadata { span.tag { (key) "=" (value) } " " }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_what_the_event_says() {
        let mut event = Event::new(7, EventKind::LeaseEnded, 1_795_600_000_000);
        event.lease_id = Some("l-1".into());
        event.shape = Some("small".into());
        event.reason = Some(firepit_api::EndReason::Killed);
        event.metadata.insert("job".into(), "<nightly>".into());
        let html = row(&event).into_string();
        assert!(html.contains(r#"<tr id="event-7" data-kind="lease.ended">"#), "{html}");
        assert!(html.contains(r#"<a href="/ui/leases/l-1"><code>l-1</code></a>"#), "{html}");
        assert!(html.contains(r#"<span class="reason">killed</span>"#), "{html}");
        assert!(html.contains("job=&lt;nightly&gt;"), "escaped: {html}");
    }

    #[test]
    fn filters_become_the_api_query() {
        let filter = Filter { kind: "lease.created".into(), lease: " l-9 ".into() };
        let query = filter.to_query().unwrap();
        assert_eq!(query.kinds, vec![EventKind::LeaseCreated]);
        assert_eq!(query.lease_id.as_deref(), Some("l-9"));
        assert_eq!(query.last_event_id, Some(0));
        assert!(Filter { kind: "lease.exploded".into(), lease: String::new() }.to_query().is_err());
    }
}
