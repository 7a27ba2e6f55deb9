//! The leases page: running, paused and recently ended leases, filtered by state, shape and
//! metadata labels (`owner=ci, job=7`: leases carrying all of them), kept live over Server-Sent
//! Events (a new or ended lease shows within a second, without a reload), each running lease with
//! sparklines of its CPU and memory ([`crate::usage`]).
//!
//! The stream's source is `GET /v1/leases`, read once a second while a browser watches and sent
//! on only when the rows changed, and `GET /v1/usage`, read every 5 s. (Polling the list rather
//! than following `GET /v1/events` keeps the rows right whatever happened while the stream was
//! away; a read of the list is cheap.) Ages and TTLs tick in the browser (`app.js`), from the
//! timestamps in the rows.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use firepit_api::{LeaseListQuery, LeaseState, LeaseView, Metadata};
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;

use crate::error::UiError;
use crate::format;
use crate::layout::{Section, page};
use crate::session::Session;
use crate::state::UiState;
use crate::usage::History;

/// How often the live list reads the leases.
const POLL: Duration = Duration::from_secs(1);
/// Most rows shown (the daemon remembers up to 1,024 ended leases).
const MAX_ROWS: usize = 200;
/// How many list reads between two reads of the usage.
const USAGE_EVERY: u32 = 5;
/// Columns of the table.
const COLUMNS: usize = 9;

/// The filters of the page, as the form sends them (empty means any).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    shape: String,
    /// Labels, `k=v` separated by commas.
    #[serde(default)]
    metadata: String,
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
        Ok(LeaseListQuery {
            state,
            shape,
            metadata: parse_labels(&self.metadata)?,
            ..LeaseListQuery::default()
        })
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string([
            ("state", &self.state),
            ("shape", &self.shape),
            ("metadata", &self.metadata),
        ])
        .unwrap_or_default()
    }
}

/// `owner=ci, job=7` as labels; the error says which part is not `name=value`.
fn parse_labels(text: &str) -> Result<Metadata, UiError> {
    let mut labels = Metadata::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                labels.insert(key.trim().to_owned(), value.trim().to_owned());
            }
            _ => {
                return Err(UiError::BadRequest(format!(
                    "metadata filter `{part}`: write labels as name=value, separated by commas"
                )));
            }
        }
    }
    Ok(labels)
}

/// The value of a `metadata=` link that filters on one label.
pub(crate) fn encode_label(key: &str, value: &str) -> String {
    serde_urlencoded::to_string([("", format!("{key}={value}"))])
        .map(|s| s[1..].to_owned())
        .unwrap_or_default()
}

/// `GET /ui/leases`.
pub(crate) async fn page_handler(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Markup {
    let mut usage = History::default();
    let rows = match filter.to_query() {
        Ok(query) => {
            usage.refresh(ui.client()).await;
            rows(&ui, &query, &usage).await
        }
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
                        @for (value, label) in [("", "any"), ("running", "running"), ("paused", "paused"), ("ended", "ended")] {
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
                label { "Metadata "
                    input name="metadata" value=(filter.metadata) placeholder="owner=ci, job=7" size="24" spellcheck="false";
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
                        th scope="col" { "CPU" }
                        th scope="col" { "Memory" }
                        th scope="col" { "Metadata" }
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
    let start = (ui, query, String::new(), 0u32, History::default());
    let stream = futures_util::stream::unfold(start, |state| async move {
        let (ui, query, last, mut reads, mut usage) = state;
        let first = reads == 0;
        if !first {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = ui.stopping().cancelled() => return None,
            }
        }
        let mut last = last;
        loop {
            if reads % USAGE_EVERY == 0 {
                usage.refresh(ui.client()).await;
            }
            reads = reads.wrapping_add(1).max(1);
            let html = match &query {
                Ok(query) => rows(&ui, query, &usage).await.into_string(),
                Err(error) => format!(
                    "<tr><td colspan=\"{COLUMNS}\">{}</td></tr>",
                    maud::html! { (error.to_string()) }.into_string()
                ),
            };
            if html != last {
                let event = Event::default().event("rows").data(&html);
                last = html;
                return Some((Ok(event), (ui, query, last, reads, usage)));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = ui.stopping().cancelled() => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn rows(ui: &UiState, query: &LeaseListQuery, usage: &History) -> Markup {
    match ui.client().leases(query).await {
        Ok(leases) => lease_rows(&leases, format::now_ms(), usage),
        Err(error) => error_row(error.into()),
    }
}

fn error_row(error: UiError) -> Markup {
    html! { tr { td colspan=(COLUMNS) { (error.into_notice()) } } }
}

/// The table rows for `leases`, as of `now_ms`, with sparklines from `usage`.
pub(crate) fn lease_rows(leases: &[LeaseView], now_ms: u64, usage: &History) -> Markup {
    html! {
        @if leases.is_empty() {
            tr { td colspan=(COLUMNS) .muted { "No leases." } }
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
                (usage.cells(&lease.id))
                td data-label="Metadata" {
                    @for (key, value) in &lease.metadata {
                        a.tag href={ "/ui/leases?metadata=" (encode_label(key, value)) } { (key) "=" (value) } " "
                    }
                }
            }
        }
        @if leases.len() > MAX_ROWS {
            tr { td colspan=(COLUMNS) .muted { "Showing " (MAX_ROWS) " of " (leases.len()) "; filter to see others." } }
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
        let mut running = view("l-a", LeaseState::Running);
        running.metadata.insert("owner".into(), "ci 7".into());
        let html = lease_rows(&[running, view("l-b", LeaseState::Ended)], 121_000, &History::default())
            .into_string();
        assert!(
            html.contains(r#"<a class="tag" href="/ui/leases?metadata=owner%3Dci+7">owner=ci 7</a>"#),
            "{html}"
        );
        assert!(html.contains(r#"<tr id="lease-l-a" data-state="running">"#), "{html}");
        assert!(html.contains(r#"data-until="301000">3 m 0 s</span>"#), "{html}");
        assert!(html.contains(r#"<span class="reason">released</span>"#), "{html}");
        assert!(html.contains("1 m 0 s ago"), "{html}");
    }

    #[test]
    fn filters_are_checked() {
        let filter =
            Filter { state: "ended".into(), metadata: " owner=ci , job = 7".into(), ..Filter::default() };
        let labels: Metadata = [("owner".into(), "ci".into()), ("job".into(), "7".into())].into();
        assert_eq!(
            filter.to_query().unwrap(),
            LeaseListQuery { state: Some(LeaseState::Ended), metadata: labels, ..LeaseListQuery::default() }
        );
        assert!(Filter { state: "asleep".into(), ..Filter::default() }.to_query().is_err());
        let error = Filter { metadata: "owner".into(), ..Filter::default() }.to_query().unwrap_err();
        assert!(error.message().contains("name=value"), "{error}");
        assert!(lease_rows(&[], 0, &History::default()).into_string().contains("No leases."));
    }
}
