//! A lease page's usage: the latest numbers and four charts (CPU, memory, disk, network) over the
//! samples the daemon keeps for the lease ([`crate::usage`]).
//!
//! The section's numbers reload every 5 s (`/ui/leases/{id}/usage`); each reload carries the whole
//! series as JSON in `#usage-data`, which `app.charts.js` draws with uPlot into the chart boxes
//! (those sit outside the reloaded part, so the charts update in place).

use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::Serialize;

use crate::error::UiError;
use crate::format;
use crate::state::UiState;
use crate::usage::{Metrics, Sample, lease_metrics};

/// The series the charts draw: time in seconds, then one value per sample (`null`: not measured).
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct Series {
    t: Vec<f64>,
    cpu: Vec<Option<f64>>,
    mem_used: Vec<Option<f64>>,
    mem_total: Vec<Option<f64>>,
    disk_used: Vec<Option<f64>>,
    disk_total: Vec<Option<f64>>,
    /// Bytes per second since the previous sample.
    net_rx: Vec<Option<f64>>,
    net_tx: Vec<Option<f64>>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Series {
    /// The series of `samples` (oldest first); sizes in MiB, network in KiB/s.
    pub(crate) fn of(samples: &[Sample]) -> Self {
        let mut series = Series::default();
        let mib = |v: Option<u64>| v.map(|v| v as f64 / MIB);
        for (i, sample) in samples.iter().enumerate() {
            series.t.push(sample.at_unix_ms as f64 / 1000.0);
            series.cpu.push(sample.cpu_percent);
            series.mem_used.push(mib(sample.memory_used_bytes));
            series.mem_total.push(mib(sample.memory_total_bytes));
            series.disk_used.push(mib(sample.disk_used_bytes));
            series.disk_total.push(mib(sample.disk_total_bytes));
            let previous = i.checked_sub(1).map(|p| &samples[p]);
            let rate = |now: Option<u64>, before: Option<u64>| {
                let seconds =
                    previous.map(|p| sample.at_unix_ms.saturating_sub(p.at_unix_ms) as f64 / 1000.0)?;
                (seconds > 0.0).then_some((now? as f64 - before? as f64).max(0.0) / seconds / 1024.0)
            };
            series.net_rx.push(rate(sample.net_rx_bytes, previous.and_then(|p| p.net_rx_bytes)));
            series.net_tx.push(rate(sample.net_tx_bytes, previous.and_then(|p| p.net_tx_bytes)));
        }
        series
    }
}

/// The usage section of a lease page (charts fill in when the first numbers arrive).
pub(crate) fn section(lease_id: &str) -> Markup {
    html! {
        section #usage-section aria-labelledby="usage-title" {
            h2 #usage-title { "Usage" }
            div #usage hx-get={ "/ui/leases/" (lease_id) "/usage" } hx-trigger="load, every 5s" hx-swap="innerHTML" {
                p.muted { "Loading…" }
            }
            div.charts #usage-charts {
                @for (id, title) in [("cpu", "CPU %"), ("mem", "Memory, MiB"), ("disk", "Disk, MiB"), ("net", "Network, KiB/s")] {
                    figure.chart {
                        figcaption { (title) }
                        div #{ "chart-" (id) } role="img" aria-label={ (title) " over time" } {}
                    }
                }
            }
        }
    }
}

/// `GET /ui/leases/{id}/usage`: the latest numbers and the series.
pub(crate) async fn handler(State(ui): State<UiState>, Path(id): Path<String>) -> Result<Markup, UiError> {
    Ok(numbers(lease_metrics(ui.client(), &id).await?.as_ref()))
}

fn numbers(metrics: Option<&Metrics>) -> Markup {
    let Some((metrics, latest)) = metrics.and_then(|m| m.samples.last().map(|latest| (m, latest))) else {
        return html! { p.muted #usage-none { "No usage yet: the daemon samples a lease every few seconds (or does not sample)." } };
    };
    let data = serde_json::to_string(&Series::of(&metrics.samples)).unwrap_or_default();
    let pair = |used: Option<u64>, total: Option<u64>| match (used, total) {
        (Some(used), Some(total)) => format!("{} of {}", format::bytes(used), format::bytes(total)),
        (Some(used), None) => format::bytes(used),
        _ => "—".to_owned(),
    };
    html! {
        div #usage-data hidden data-usage=(data) {}
        dl.summary {
            div { dt { "CPU" } dd { (latest.cpu_percent.map_or("—".to_owned(), |c| format!("{c:.1} %"))) } }
            div { dt { "Memory" } dd { (pair(latest.memory_used_bytes, latest.memory_total_bytes)) } }
            div { dt { "Disk" } dd { (pair(latest.disk_used_bytes, latest.disk_total_bytes)) } }
            div { dt { "Network in / out" } dd {
                (latest.net_rx_bytes.map_or("—".to_owned(), format::bytes)) " / " (latest.net_tx_bytes.map_or("—".to_owned(), format::bytes))
            } }
            @if latest.oom_kills > 0 { div { dt { "OOM kills" } dd.bad { (latest.oom_kills) } } }
            div { dt { "Samples" } dd { (metrics.samples.len()) small.muted { " every " (format::duration(std::time::Duration::from_millis(metrics.interval_ms))) } } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_give_rates_and_missing_numbers_stay_missing() {
        let samples = [
            Sample { at_unix_ms: 10_000, net_rx_bytes: Some(0), cpu_percent: None, ..Sample::default() },
            Sample {
                at_unix_ms: 15_000,
                net_rx_bytes: Some(51_200),
                cpu_percent: Some(50.0),
                ..Sample::default()
            },
        ];
        let series = Series::of(&samples);
        assert_eq!(series.t, vec![10.0, 15.0]);
        assert_eq!(series.cpu, vec![None, Some(50.0)]);
        assert_eq!(series.net_rx, vec![None, Some(10.0)]);
        assert_eq!(series.net_tx, vec![None, None]);
    }

    #[test]
    fn no_samples_say_so() {
        assert!(numbers(None).into_string().contains("No usage yet"));
        let metrics = Metrics {
            interval_ms: 5000,
            samples: vec![Sample {
                memory_used_bytes: Some(1 << 20),
                memory_total_bytes: Some(4 << 20),
                ..Sample::default()
            }],
            ..Metrics::default()
        };
        let html = numbers(Some(&metrics)).into_string();
        assert!(html.contains("1.0 MiB of 4.0 MiB"), "{html}");
        assert!(html.contains("data-usage="), "{html}");
    }
}
