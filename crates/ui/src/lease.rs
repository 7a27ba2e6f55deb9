//! A lease's page: its details (kept current while it runs), its actions, and, while it runs, a
//! terminal ([`crate::terminal`]), its files ([`crate::files`]) and its background processes
//! ([`crate::processes`]).
//!
//! Actions answer a notice and fire the `lease-changed` htmx event, on which the details reload;
//! when the state changed (paused, resumed, ended) the page reloads once, as its tools depend on
//! it. Every action that destroys something or stops the VM asks first (`hx-confirm`). Pause,
//! resume, snapshot, fork and kill are in [`crate::lifecycle`]; the usage charts in
//! [`crate::charts`].

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use firepit_api::{LeaseState, LeaseView};
use maud::{Markup, html};
use serde::Deserialize;

use crate::assets::asset_url;
use crate::error::UiError;
use crate::format;
use crate::layout::{Section, page};
use crate::notice::notice;
use crate::session::Session;
use crate::state::UiState;

/// The htmx event fired after an action, on which the details reload.
const CHANGED: &str = "lease-changed";

/// `GET /ui/leases/{id}`.
pub(crate) async fn page_handler(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let lease = match ui.client().lease(&id).await {
        Ok(lease) => lease,
        Err(error) => {
            let error = UiError::from(error);
            let status = error.status();
            let body = html! { h1 { "Lease " code { (id) } } (error.into_notice()) p { a href="/ui/leases" { "All leases" } } };
            return (status, page("Lease", Some(Section::Leases), &session, html! {}, body)).into_response();
        }
    };
    let running = lease.state == LeaseState::Running;
    let head = html! {
        link rel="stylesheet" href=(asset_url("xterm.css"));
        link rel="stylesheet" href=(asset_url("uPlot.min.css"));
        script src=(asset_url("xterm.js")) defer {}
        script src=(asset_url("xterm-addon-fit.js")) defer {}
        script src=(asset_url("uPlot.iife.min.js")) defer {}
        script src=(asset_url("app.charts.js")) defer {}
    };
    let body = html! {
        p.crumbs { a href="/ui/leases" { "Leases" } " / " }
        h1 { "Lease " code { (lease.id) } }
        (summary(&lease, format::now_ms()))
        @if lease.state != LeaseState::Ended {
            (actions(&lease))
            div #action-result aria-live="polite" {}
        }
        (crate::charts::section(&lease.id))
        @if running {
            section #terminal-section aria-labelledby="terminal-title" {
                h2 #terminal-title { "Terminal" }
                p.hint { "A login shell in the VM. " kbd { "Ctrl" } "+" kbd { "]" } " moves the focus out of the terminal." }
                div.terminal-tools {
                    button #terminal-open type="button" data-lease=(lease.id) { "Open terminal" }
                    button #terminal-close type="button" hidden { "Close terminal" }
                    span #terminal-status role="status" {}
                }
                div #terminal {}
            }
            div hx-get={ "/ui/leases/" (lease.id) "/files?path=/" } hx-trigger="load" hx-swap="outerHTML" {
                section { h2 { "Files" } p.muted { "Loading…" } }
            }
            div hx-get={ "/ui/leases/" (lease.id) "/processes" } hx-trigger="load" hx-swap="outerHTML" {
                section { h2 { "Processes" } p.muted { "Loading…" } }
            }
        }
    };
    page(&format!("Lease {}", lease.id), Some(Section::Leases), &session, head, body).into_response()
}

/// The state a page was drawn for (`?was=running`), sent by its details' reloads.
#[derive(Debug, Deserialize)]
pub(crate) struct Was {
    was: Option<String>,
}

/// `GET /ui/leases/{id}/summary`: the details alone (they poll themselves until the lease ends).
pub(crate) async fn summary_handler(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Query(was): Query<Was>,
) -> Result<Response, UiError> {
    let lease = ui.client().lease(&id).await?;
    let markup = summary(&lease, format::now_ms());
    if was.was.as_deref().is_none_or(|was| was == lease.state.as_str()) {
        return Ok(markup.into_response());
    }
    // Paused, resumed or ended: the actions and tools above change; reload the page once.
    Ok(([("hx-refresh", "true")], markup).into_response())
}

fn summary(lease: &LeaseView, now_ms: u64) -> Markup {
    let live = lease.state != LeaseState::Ended;
    let url = format!("/ui/leases/{}/summary?was={}", lease.id, lease.state.as_str());
    let trigger = format!("every 2s, {CHANGED} from:body");
    html! {
        section #summary aria-labelledby="summary-title"
            hx-get=[live.then_some(&url)] hx-trigger=[live.then_some(&trigger)] hx-swap="outerHTML" {
            h2 #summary-title .visually-hidden { "Details" }
            dl.details {
                div { dt { "State" } dd { span.badge.(lease.state.as_str()) #lease-state { (lease.state.as_str()) } } }
                div { dt { "Shape" } dd { a href={ "/ui/leases?shape=" (lease.shape) } { (lease.shape) } } }
                div { dt { "VM" } dd { code { (lease.vm_id) } } }
                div { dt { "Created" } dd { (format::unix_ms(lease.created_at_unix_ms)) } }
                @if let Some(paused) = lease.paused_at_unix_ms { div { dt { "Paused" } dd { (format::unix_ms(paused)) } } }
                @match (lease.ended_at_unix_ms, lease.end_reason) {
                    (Some(ended), reason) => {
                        div { dt { "Ended" } dd { (format::unix_ms(ended)) } }
                        div { dt { "End reason" } dd {
                            span.reason #end-reason { (reason.map_or("unknown", |r| r.as_str())) }
                            @if let Some(detail) = &lease.end_detail { br; small.muted #end-detail { (detail) } }
                        } }
                    }
                    (None, _) => {
                        div { dt { "Expires" } dd { (format::unix_ms(lease.expires_at_unix_ms)) } }
                        div { dt { "TTL left" } dd { span data-until=(lease.expires_at_unix_ms) { (format::duration(format::between(now_ms, lease.expires_at_unix_ms))) } } }
                    }
                }
                @if !lease.metadata.is_empty() {
                    div { dt { "Metadata" } dd { @for (key, value) in &lease.metadata {
                        a.tag href={ "/ui/leases?metadata=" (crate::leases::encode_label(key, value)) } { (key) "=" (value) } " "
                    } } }
                }
            }
            p.links { a href={ "/ui/events?lease=" (lease.id) } { "Events of this lease" } }
        }
    }
}

/// What can be done to a lease that has not ended.
fn actions(lease: &LeaseView) -> Markup {
    let base = format!("/ui/leases/{}", lease.id);
    let confirm = format!(
        "Release lease {}? Its VM is destroyed with everything in it (files, processes, terminals).",
        lease.id
    );
    let kill = format!(
        "Kill lease {}? Its VM is stopped at once and destroyed; the lease ends as `killed`.",
        lease.id
    );
    let pause =
        format!("Pause lease {}? Its VM stops running (terminals and streams end) until resumed.", lease.id);
    let running = lease.state == LeaseState::Running;
    let post = |action: &str| format!("{base}/{action}");
    html! {
        section.actions aria-label="Actions" {
            @if running {
                button.quiet #pause type="button" hx-post=(post("pause")) hx-confirm=(pause) hx-target="#action-result" { "Pause" }
            } @else {
                button #resume type="button" hx-post=(post("resume")) hx-target="#action-result" { "Resume" }
            }
            button.quiet #snapshot type="button" hx-post=(post("snapshot")) hx-target="#action-result" { "Snapshot" }
            form hx-post=(post("fork")) hx-target="#action-result" {
                label for="fork-count" { "Fork into " }
                input #fork-count name="count" type="number" min="1" max="16" value="1" size="3";
                " "
                button.quiet type="submit" { "Fork" }
            }
            form hx-post={ (base) "/renew" } hx-target="#action-result" {
                label for="ttl" { "Renew for " }
                select #ttl name="ttl_secs" {
                    option value="300" { "5 minutes" }
                    option value="1800" { "30 minutes" }
                    option value="3600" selected { "1 hour" }
                    option value="14400" { "4 hours" }
                }
                " "
                button type="submit" { "Renew" }
            }
            button.danger #release type="button" hx-post={ (base) "/release" } hx-confirm=(confirm) hx-target="#action-result" { "Release" }
            button.danger #kill type="button" hx-post=(post("kill")) hx-confirm=(kill) hx-target="#action-result" { "Kill" }
        }
    }
}

/// The renew form.
#[derive(Debug, Deserialize)]
pub(crate) struct RenewForm {
    ttl_secs: u64,
}

/// `POST /ui/leases/{id}/renew`.
pub(crate) async fn renew(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Form(form): Form<RenewForm>,
) -> Result<Response, UiError> {
    let ttl_ms = form.ttl_secs.checked_mul(1000).ok_or_else(|| UiError::BadRequest("TTL too long".into()))?;
    let lease = ui.client().renew(&id, Some(ttl_ms)).await?;
    let text = format!("Renewed: expires {}.", format::unix_ms(lease.expires_at_unix_ms));
    Ok(changed(notice("info", &text)))
}

/// `POST /ui/leases/{id}/release`.
pub(crate) async fn release(State(ui): State<UiState>, Path(id): Path<String>) -> Result<Response, UiError> {
    ui.client().release(&id).await?;
    Ok(changed(notice("info", "Released: the VM is being destroyed.")))
}

pub(crate) fn changed(markup: Markup) -> Response {
    ([("hx-trigger", CHANGED)], markup).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_api::EndReason;

    fn view(state: LeaseState) -> LeaseView {
        let ended = (state == LeaseState::Ended).then_some((30_000, EndReason::TtlExpired));
        crate::leases::fixture("l-1", state, 60_000, ended)
    }

    #[test]
    fn running_details_poll_and_ended_ones_show_the_reason_and_stop() {
        let running = summary(&view(LeaseState::Running), 0).into_string();
        assert!(running.contains(r#"hx-trigger="every 2s, lease-changed from:body""#), "{running}");
        assert!(running.contains("/summary?was=running"), "{running}");
        let ended = summary(&view(LeaseState::Ended), 0).into_string();
        assert!(!ended.contains("hx-trigger"), "{ended}");
        assert!(ended.contains(r#"<span class="reason" id="end-reason">ttl_expired</span>"#), "{ended}");
    }

    #[test]
    fn release_asks_first() {
        let html = actions(&view(LeaseState::Running)).into_string();
        assert!(html.contains("hx-confirm=\"Release lease l-1?"), "{html}");
        assert!(html.contains("hx-confirm=\"Kill lease l-1?"), "{html}");
        assert!(html.contains("hx-confirm=\"Pause lease l-1?"), "{html}");
        assert!(!html.contains("id=\"resume\""), "{html}");
        let paused = actions(&view(LeaseState::Paused)).into_string();
        assert!(paused.contains("id=\"resume\"") && !paused.contains("id=\"pause\""), "{paused}");
    }
}
