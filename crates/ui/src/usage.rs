//! What leases use, from the API's usage samples: `GET /v1/leases/{id}/metrics` (a lease's
//! samples, every 5 s) for the lease page's charts, and `GET /v1/usage` (the latest sample of
//! every running lease) for the sparklines of the leases list.
//!
//! The dashboard also serves daemons that sample nothing, or that predate these endpoints (a
//! gateway, an older daemon): any of those answers (404, 405, 501, a body that is not samples)
//! means "no usage yet" on the page, never an error page.

use std::collections::{HashMap, HashSet, VecDeque};

use axum::http::Method;
use firepit_client::Client;
use maud::{Markup, html};

use crate::error::UiError;

/// Samples kept per lease for a sparkline (two minutes at one every 5 s).
pub(crate) const SPARK_POINTS: usize = 24;
/// Leases whose past samples are fetched per refresh of the list (the rest start from now).
const SEEDS_PER_REFRESH: usize = 16;

/// One usage sample.
pub(crate) type Sample = firepit_api::UsageSample;
/// `GET /v1/leases/{id}/metrics`.
pub(crate) type Metrics = firepit_api::LeaseMetrics;

/// `GET path` as `T`; `None` when the daemon has no such endpoint (or no usage for it).
async fn get_tolerant<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<Option<T>, UiError> {
    let response = client.request(Method::GET, path, None, &[]).await?;
    let status = response.status.as_u16();
    if matches!(status, 404 | 405 | 501) {
        return Ok(None);
    }
    if !response.status.is_success() {
        return match response.json::<serde_json::Value>() {
            Err(error) => Err(error.into()),
            Ok(_) => Err(UiError::BadRequest(format!("the daemon answered {status} to {path}"))),
        };
    }
    Ok(serde_json::from_slice(&response.body).ok())
}

/// A lease's samples, oldest first; `None`: the daemon has none (yet) or does not sample.
pub(crate) async fn lease_metrics(client: &Client, lease_id: &str) -> Result<Option<Metrics>, UiError> {
    get_tolerant(client, &format!("/v1/leases/{}/metrics", lease_id_segment(lease_id))).await
}

/// Lease ids are `l-` and hex; anything else is sent percent-encoded.
pub(crate) fn lease_id_segment(id: &str) -> String {
    serde_urlencoded::to_string([("", id)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

/// The last [`SPARK_POINTS`] CPU and memory percentages of each running lease, for the list's
/// sparklines: refreshed from `GET /v1/usage`, a new lease's past fetched once.
#[derive(Debug, Default)]
pub(crate) struct History {
    leases: HashMap<String, VecDeque<Sample>>,
}

impl History {
    /// Reads the latest samples (quietly keeping what it had when the daemon has none).
    pub(crate) async fn refresh(&mut self, client: &Client) {
        let list: firepit_api::UsageList = match get_tolerant(client, "/v1/usage").await {
            Ok(Some(list)) => list,
            Ok(None) | Err(_) => return,
        };
        let live: HashSet<&str> = list.leases.iter().map(|l| l.lease_id.as_str()).collect();
        self.leases.retain(|id, _| live.contains(id.as_str()));
        let mut seeds = 0;
        for lease in &list.leases {
            if !self.leases.contains_key(&lease.lease_id) && seeds < SEEDS_PER_REFRESH {
                seeds += 1;
                if let Ok(Some(metrics)) = lease_metrics(client, &lease.lease_id).await {
                    self.leases.insert(lease.lease_id.clone(), metrics.samples.into_iter().collect());
                }
            }
            if let Some(latest) = &lease.latest {
                self.push(&lease.lease_id, latest.clone());
            }
        }
    }

    /// Adds `sample` to a lease's history unless it has it already.
    pub(crate) fn push(&mut self, lease_id: &str, sample: Sample) {
        let samples = self.leases.entry(lease_id.to_owned()).or_default();
        if samples.back().is_some_and(|last| last.at_unix_ms >= sample.at_unix_ms) {
            return;
        }
        samples.push_back(sample);
        while samples.len() > SPARK_POINTS {
            samples.pop_front();
        }
    }

    /// The CPU and memory sparkline cells of a lease (empty cells when it has no samples).
    pub(crate) fn cells(&self, lease_id: &str) -> Markup {
        let samples: Vec<&Sample> = self
            .leases
            .get(lease_id)
            .map(|s| s.iter().rev().take(SPARK_POINTS).rev().collect())
            .unwrap_or_default();
        let cpu: Vec<Option<f64>> = samples.iter().map(|s| s.cpu_percent).collect();
        let memory: Vec<Option<f64>> = samples.iter().map(|s| s.memory_percent()).collect();
        html! {
            td.spark data-label="CPU" { (spark("CPU", &cpu)) }
            td.spark data-label="Memory" { (spark("Memory", &memory)) }
        }
    }
}

/// A sparkline of percentages (0–100) with the latest value beside it, as inline SVG.
pub(crate) fn spark(what: &str, values: &[Option<f64>]) -> Markup {
    let Some(latest) = values.iter().rev().find_map(|v| *v) else {
        return html! {};
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.map(|v| format!("{},{:.1}", i * 60 / SPARK_POINTS.max(1), 20.0 - v.clamp(0.0, 100.0) / 5.0))
        })
        .collect();
    let label = format!("{what} {latest:.0} %, last {} samples", values.len());
    html! {
        svg.spark viewBox="0 0 60 20" width="60" height="20" role="img" aria-label=(label) {
            polyline points=(points.join(" ")) fill="none" stroke="currentColor" stroke-width="1.5" {}
        }
        " " span.num { (format!("{latest:.0}")) " %" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64, cpu: f64) -> Sample {
        Sample {
            at_unix_ms: at,
            cpu_percent: Some(cpu),
            memory_used_bytes: Some(1),
            memory_total_bytes: Some(4),
            ..Sample::default()
        }
    }

    #[test]
    fn history_is_bounded_and_ignores_old_samples() {
        let mut history = History::default();
        for at in 0..40 {
            history.push("l-1", sample(at, at as f64));
        }
        history.push("l-1", sample(3, 99.0)); // older than what it has: ignored
        assert_eq!(history.leases["l-1"].len(), SPARK_POINTS);
        let cells = history.cells("l-1").into_string();
        assert!(cells.contains(r#"aria-label="CPU 39 %, last 24 samples""#), "{cells}");
        assert!(cells.contains(r#"aria-label="Memory 25 %"#), "{cells}");
        assert_eq!(history.cells("l-2").into_string().matches("<svg").count(), 0);
    }

    #[test]
    fn odd_lease_ids_are_encoded() {
        assert_eq!(lease_id_segment("l-0a"), "l-0a");
        assert_eq!(lease_id_segment("a/b c"), "a%2Fb+c");
    }
}
