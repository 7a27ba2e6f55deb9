//! The pools page (the dashboard's home): per shape, how many VMs are ready, filling, leased and
//! paused (counted from `GET /v1/leases?state=paused`, as the pools view has no such count), the
//! depth it keeps, how it fills and how that went. The table refreshes itself every 2 s; each
//! refresh carries the totals as a sample (`#pool-sample`), which `app.js` charts (uPlot) for as
//! long as the page is open.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use firepit_api::{HostView, LeaseListQuery, LeaseState, PoolsResponse, ShapeStatusView};
use maud::{Markup, html};

use crate::assets::asset_url;
use crate::error::UiError;
use crate::format;
use crate::layout::{Section, page};
use crate::session::Session;
use crate::state::UiState;

/// `GET /ui/`.
pub(crate) async fn page_handler(
    State(ui): State<UiState>,
    Extension(session): Extension<Session>,
) -> Markup {
    let table = match table_handler(State(ui)).await {
        Ok(table) => table,
        Err(error) => error.into_notice(),
    };
    page(
        "Pools",
        Some(Section::Pools),
        &session,
        html! {
            link rel="stylesheet" href=(asset_url("uPlot.min.css"));
            script src=(asset_url("uPlot.iife.min.js")) defer {}
        },
        html! {
            h1 { "Pools" }
            div #pools hx-get="/ui/pools/table" hx-trigger="every 2s" hx-swap="innerHTML" { (table) }
            section aria-labelledby="pool-chart-title" {
                h2 #pool-chart-title { "VMs over time" }
                p.hint { "All shapes together, sampled every 2 s while this page is open." }
                div #pool-chart role="img" aria-label="Ready, filling and leased VMs over time" {}
            }
        },
    )
}

/// `GET /ui/pools/table`: the table alone, for the refresh.
pub(crate) async fn table_handler(State(ui): State<UiState>) -> Result<Markup, UiError> {
    let pools = ui.client().pools().await?;
    let query = LeaseListQuery { state: Some(LeaseState::Paused), ..LeaseListQuery::default() };
    let mut paused = Paused::new();
    // A daemon without paused leases in its lists shows none.
    for lease in ui.client().leases(&query).await.unwrap_or_default() {
        *paused.entry(lease.shape).or_default() += 1;
    }
    Ok(pools_table(&pools, &paused))
}

/// Paused leases per shape.
type Paused = BTreeMap<String, usize>;

fn pools_table(pools: &PoolsResponse, paused: &Paused) -> Markup {
    let ready: usize = pools.shapes.iter().map(|s| s.ready).sum();
    let filling: usize = pools.shapes.iter().map(|s| s.filling).sum();
    let leased: usize = pools.shapes.iter().map(|s| s.leased).sum();
    let sample = serde_json::json!({ "t": crate::format::now_ms() / 1000, "ready": ready, "filling": filling, "leased": leased });
    html! {
        div #pool-sample hidden data-sample=(sample.to_string()) {}
        dl.summary {
            div { dt { "Shapes" } dd { (pools.shapes.len()) } }
            div { dt { "Ready" } dd { (ready) } }
            div { dt { "Filling" } dd { (filling) } }
            div { dt { "Leases" } dd { a href="/ui/leases?state=running" { (pools.leases) } } }
            div { dt { "Paused" } dd { a href="/ui/leases?state=paused" { (paused.values().sum::<usize>()) } } }
            div { dt { "Up for" } dd { (format::duration(Duration::from_secs(pools.uptime_secs))) } }
            @if let Some(host) = &pools.host { (host_cards(host)) }
        }
        @if pools.shapes.is_empty() {
            p { "No shapes are registered." }
        } @else {
            div.scroll {
                table.pools {
                    caption.visually-hidden { "Pools per shape" }
                    thead { tr {
                        th scope="col" { "Shape" }
                        th scope="col" .num { "Ready" }
                        th scope="col" .num { "Filling" }
                        th scope="col" .num { "Leased" }
                        th scope="col" .num { "Paused" }
                        th scope="col" .num { "Depth" }
                        th scope="col" { "Fill" }
                        th scope="col" .num { "Failures" }
                        th scope="col" { "Accel" }
                    } }
                    tbody { @for shape in &pools.shapes { (shape_row(shape, paused.get(&shape.name).copied().unwrap_or(0))) } }
                }
            }
            @for shape in pools.shapes.iter().filter(|s| s.last_error.is_some()) {
                @if let Some(error) = &shape.last_error {
                    p.notice.error role="status" { strong { (shape.name) ": last fill error" } " " (error) }
                }
            }
        }
    }
}

/// The host's CPUs and what the VMs take of its memory (and of the budget, when one is set).
fn host_cards(host: &HostView) -> Markup {
    const MIB: u64 = 1024 * 1024;
    let of = |mb: u64| format::bytes(mb * MIB);
    let (cap, cap_name) = match host.memory_budget_mb {
        Some(budget) => (budget, "budget"),
        None => (host.memory_total_mb, "host"),
    };
    let tone = match (host.memory_used_mb * 100).checked_div(cap) {
        Some(p) if p >= 90 => "bad",
        Some(p) if p >= 75 => "warn",
        _ => "good",
    };
    html! {
        div { dt { "Host CPUs" } dd { (host.cpus) } }
        div #host-memory {
            dt { "VM memory" }
            dd {
                span.dot.(tone) aria-hidden="true" {}
                (of(host.memory_used_mb))
                @if cap > 0 { small.muted { " of " (of(cap)) " " (cap_name) } }
            }
            @if host.memory_budget_mb.is_some() && host.memory_total_mb > 0 {
                dd { small.muted { "host: " (of(host.memory_total_mb)) } }
            }
        }
    }
}

fn shape_row(shape: &ShapeStatusView, paused: usize) -> Markup {
    let fill = serde_json::to_value(shape.fill).ok().and_then(|v| v.as_str().map(str::to_owned));
    let health = if shape.consecutive_failures > 0 {
        "bad"
    } else if shape.ready >= shape.depth_low {
        "good"
    } else {
        "warn"
    };
    html! {
        tr {
            th scope="row" {
                span.dot.(health) aria-hidden="true" {}
                a href={ "/ui/leases?shape=" (shape.name) } { (shape.name) }
                @if let Some(disk) = &shape.root_disk { br; small.muted title=(disk) { "root disk" } }
            }
            td.num { (shape.ready) }
            td.num { (shape.filling) }
            td.num { (shape.leased) }
            td.num { (paused) }
            td.num { (shape.depth_low) "–" (shape.depth_high) }
            td {
                (fill.as_deref().unwrap_or("?"))
                @if let Some(last) = &shape.last_fill { br; small.muted { "last: " (last) } }
                @if let Some(state) = &shape.fill_state { br; small.muted { (state) } }
            }
            td.num {
                (shape.fill_failures)
                @if shape.consecutive_failures > 0 { br; small.bad { (shape.consecutive_failures) " in a row" } }
            }
            td { (shape.accelerator) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_memory_is_shown_against_the_budget_or_the_host() {
        let host = HostView {
            cpus: 2,
            memory_total_mb: 24_576,
            memory_used_mb: 7_000,
            memory_budget_mb: Some(8_192),
        };
        let html = host_cards(&host).into_string();
        assert!(html.contains(r#"<span class="dot warn" aria-hidden="true"></span>6.8 GiB<small class="muted"> of 8.0 GiB budget</small>"#), "{html}");
        assert!(html.contains("host: 24.0 GiB"), "{html}");
        let unbudgeted = HostView { memory_budget_mb: None, memory_used_mb: 1_024, ..host };
        let html = host_cards(&unbudgeted).into_string();
        assert!(html.contains(r#"dot good"#) && html.contains(" of 24.0 GiB host"), "{html}");
        let empty = PoolsResponse { shapes: Vec::new(), leases: 0, uptime_secs: 1, host: None };
        assert!(!pools_table(&empty, &Paused::new()).into_string().contains("Host CPUs"));
    }
}
