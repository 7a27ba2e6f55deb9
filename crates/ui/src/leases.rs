//! The leases page: running and recently ended leases, filtered by state and shape, kept live
//! over Server-Sent Events (a new or ended lease shows within a second, without a reload).
//!
//! The stream's source is `GET /v1/leases`, read once a second while a browser watches and sent
//! on only when the rows changed. (The API's own event stream, `GET /v1/events`, will replace the
//! polling when the daemon has it.) Ages and TTLs tick in the browser (`app.js`), from the
//! timestamps in the rows.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use firepit_api::{LeaseListQuery, LeaseState, LeaseView};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;

use crate::error::UiError;
use crate::format;
use crate::layout::{Section, page};
use crate::session::Session;
use crate::state::UiState;

/// How often the live list reads the leases.
const POLL: Duration = Duration::from_secs(1);
/// Most rows shown (the daemon remembers up to 1,024 ended leases).
const MAX_ROWS: usize = 200;

/// The filters of the page, as the form sends them (empty means any).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    shape: String,
}

impl Filter {
    fn to_query(&self) -> Result<LeaseListQuery, UiError> {
        let state = match self.state.as_str() {
            "" => None,
            "running" => Some(LeaseState::Running),
            "paused" => Some(LeaseState::Paused),
            "ended" => Some(LeaseState::Ended),
            other => return Err(UiError::BadRequest(format!("unknown state `{other}`"))),
        };
        let shape = (!self.shape.is_empty()).then(|| self.shape.clone());
        Ok(LeaseListQuery { state, shape, ..LeaseListQuery::default() })
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string([("state", &self.state), ("shape", &self.shape)]).unwrap_or_default()
    }
}

/// `GET /ui/leases`.
pub(crate) async fn page_handler(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Markup {
    let rows = match filter.to_query() {
        Ok(query) => rows(&ui, &query).await,
        Err(error) => error_row(error),
    };
    let shapes: Vec<String> = match ui.client().pools().await {
        Ok(pools) => pools.shapes.into_iter().map(|s| s.name).collect(),
        Err(_) => Vec::new(),
    };
    let stream_url = format!("/ui/leases/stream?{}", filter.query_string());
    page(
        "Leases",
        Some(Section::Leases),
        &session,
        html! {},
        html! {
            h1 { "Leases" }
            form.filters method="get" action="/ui/leases" {
                label { "State "
                    select name="state" {
                        @for (value, label) in [("", "any"), ("running", "running"), ("ended", "ended")] {
                            option value=(value) selected[filter.state == value] { (label) }
                        }
                    }
                }
                label { "Shape "
                    select name="shape" {
                        option value="" selected[filter.shape.is_empty()] { "any" }
                        @for shape in &shapes { option value=(shape) selected[&filter.shape == shape] { (shape) } }
                    }
                }
                button type="submit" { "Filter" }
            }
            div.scroll {
                table.leases {
                    caption.visually-hidden { "Leases (updated live)" }
                    thead { tr {
                        th scope="col" { "Lease" }
                        th scope="col" { "Shape" }
                        th scope="col" { "State" }
                        th scope="col" { "Age" }
                        th scope="col" { "TTL left / ended" }
                        th scope="col" { "End reason" }
                    } }
                    tbody #lease-rows hx-ext="sse" sse-connect=(stream_url) sse-swap="rows" aria-live="polite" { (rows) }
                }
            }
        },
    )
}

/// `GET /ui/leases/stream`: the table's rows as SSE `rows` events, whenever they change.
pub(crate) async fn stream_handler(
    State(ui): State<UiState>,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let query = filter.to_query();
    let stream = futures_util::stream::unfold((ui, query, String::new(), true), |state| async move {
        let (ui, query, last, first) = state;
        if !first {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = ui.stopping().cancelled() => return None,
            }
        }
        let mut last = last;
        loop {
            let html = match &query {
                Ok(query) => rows(&ui, query).await.into_string(),
                Err(error) => format!(
                    "<tr><td colspan=\"6\">{}</td></tr>",
                    maud::html! { (error.to_string()) }.into_string()
                ),
            };
            if html != last {
                let event = Event::default().event("rows").data(&html);
                last = html;
                return Some((Ok(event), (ui, query, last, false)));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = ui.stopping().cancelled() => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn rows(ui: &UiState, query: &LeaseListQuery) -> Markup {
    match ui.client().leases(query).await {
        Ok(leases) => lease_rows(&leases, format::now_ms()),
        Err(error) => error_row(error.into()),
    }
}

fn error_row(error: UiError) -> Markup {
    html! { tr { td colspan="6" { (error.into_notice()) } } }
}

/// The table rows for `leases`, as of `now_ms`.
pub(crate) fn lease_rows(leases: &[LeaseView], now_ms: u64) -> Markup {
    html! {
        @if leases.is_empty() {
            tr { td colspan="6" .muted { "No leases." } }
        }
        @for lease in leases.iter().take(MAX_ROWS) {
            tr #{ "lease-" (lease.id) } data-state=(lease.state.as_str()) {
                th scope="row" { a href={ "/ui/leases/" (lease.id) } { code { (lease.id) } } }
                td data-label="Shape" { (lease.shape) }
                td data-label="State" { span.badge.(lease.state.as_str()) { (lease.state.as_str()) } }
                td data-label="Age" {
                    @if lease.state == LeaseState::Ended {
                        (format::duration(format::between(lease.created_at_unix_ms, lease.ended_at_unix_ms.unwrap_or(now_ms))))
                    } @else {
                        span data-since=(lease.created_at_unix_ms) { (format::duration(format::between(lease.created_at_unix_ms, now_ms))) }
                    }
                }
                td data-label=(if lease.ended_at_unix_ms.is_some() { "Ended" } else { "TTL left" }) {
                    @match lease.ended_at_unix_ms {
                        Some(ended) => span data-since=(ended) data-suffix=" ago" { (format::duration(format::between(ended, now_ms))) " ago" },
                        None => span data-until=(lease.expires_at_unix_ms) { (format::duration(format::between(now_ms, lease.expires_at_unix_ms))) },
                    }
                }
                td data-label="End reason" { @if let Some(reason) = lease.end_reason { span.reason { (reason.as_str()) } } }
            }
        }
        @if leases.len() > MAX_ROWS {
            tr { td colspan="6" .muted { "Showing " (MAX_ROWS) " of " (leases.len()) "; filter to see others." } }
        }
    }
}

/// A lease view for tests: created at 1 s, expiring at `expires_ms`, maybe ended.
#[cfg(test)]
pub(crate) fn fixture(
    id: &str,
    state: LeaseState,
    expires_ms: u64,
    ended: Option<(u64, firepit_api::EndReason)>,
) -> LeaseView {
    LeaseView {
        id: id.into(),
        vm_id: "vm-1".into(),
        shape: "small".into(),
        state,
        created_at: String::new(),
        created_at_unix_ms: 1_000,
        expires_at: String::new(),
        expires_at_unix_ms: expires_ms,
        metadata: Default::default(),
        auto_resume: false,
        on_expiry: Default::default(),
        paused_at: None,
        paused_at_unix_ms: None,
        ttl_remaining_ms: None,
        ended_at: None,
        ended_at_unix_ms: ended.map(|(at, _)| at),
        end_reason: ended.map(|(_, reason)| reason),
        end_detail: None,
        pid: None,
        cgroup: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_api::EndReason;

    fn view(id: &str, state: LeaseState) -> LeaseView {
        let ended = (state == LeaseState::Ended).then_some((61_000, EndReason::Released));
        fixture(id, state, 301_000, ended)
    }

    #[test]
    fn rows_show_ttl_for_running_and_reason_for_ended_leases() {
        let html = lease_rows(&[view("l-a", LeaseState::Running), view("l-b", LeaseState::Ended)], 121_000)
            .into_string();
        assert!(html.contains(r#"<tr id="lease-l-a" data-state="running">"#), "{html}");
        assert!(html.contains(r#"data-until="301000">3 m 0 s</span>"#), "{html}");
        assert!(html.contains(r#"<span class="reason">released</span>"#), "{html}");
        assert!(html.contains("1 m 0 s ago"), "{html}");
    }

    #[test]
    fn filters_are_checked() {
        let filter = Filter { state: "ended".into(), shape: String::new() };
        assert_eq!(
            filter.to_query().unwrap(),
            LeaseListQuery { state: Some(LeaseState::Ended), ..LeaseListQuery::default() }
        );
        assert!(Filter { state: "asleep".into(), shape: String::new() }.to_query().is_err());
        assert!(lease_rows(&[], 0).into_string().contains("No leases."));
    }
}
