//! E2B's sandbox metrics from firepit's usage samples: `GET /sandboxes/{id}/metrics` (the samples
//! between `start` and `end`, Unix seconds) and `GET /sandboxes/metrics?sandbox_ids=a,b` (the
//! latest sample of each running sandbox asked for).
//!
//! E2B's `SandboxMetric`: `timestamp` (RFC 3339) and `timestampUnix` (seconds), `cpuCount`,
//! `cpuUsedPct` (percent of all its CPUs), `memUsed`/`memTotal`/`memCache` (the guest's memory
//! and its page cache, bytes),
//! `diskUsed`/`diskTotal` (the guest's `/`, bytes). A sample without the guest's part (it did not
//! answer in time) is left out: E2B's fields are numbers, not `null`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use firepit_api::{ErrorCode, UsageSample};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::sandbox_views::find;
use crate::state::AppState;
use crate::time::rfc3339;

/// The query of `GET /sandboxes/{id}/metrics`.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    /// The first second wanted (Unix seconds; default: the oldest kept).
    start: Option<u64>,
    /// The last second wanted (default: now).
    end: Option<u64>,
}

/// The query of `GET /sandboxes/metrics`.
#[derive(Debug, Default, Deserialize)]
pub struct ManyQuery {
    /// Sandbox ids, comma-separated.
    #[serde(default)]
    sandbox_ids: String,
}

/// E2B's `SandboxMetric` of one sample (`None` without the guest's part).
pub fn sandbox_metric(sample: &UsageSample) -> Option<Value> {
    let at = UNIX_EPOCH + Duration::from_millis(sample.at_unix_ms);
    Some(json!({
        "timestamp": rfc3339(at),
        "timestampUnix": sample.at_unix_ms / 1000,
        "cpuCount": sample.cpus,
        "cpuUsedPct": sample.cpu_percent.unwrap_or(0.0),
        "memUsed": sample.memory_used_bytes?,
        "memTotal": sample.memory_total_bytes?,
        "memCache": sample.memory_cache_bytes?,
        "diskUsed": sample.disk_used_bytes?,
        "diskTotal": sample.disk_total_bytes?,
    }))
}

/// `GET /sandboxes/{id}/metrics`: the sandbox's samples in the range, oldest first.
pub async fn sandbox_metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(range): Query<RangeQuery>,
) -> Result<axum::Json<Vec<Value>>, ApiError> {
    let sandbox = find(&state, &id)?;
    if let (Some(start), Some(end)) = (range.start, range.end)
        && start > end
    {
        return Err(ApiError::bad_request("`start` is after `end`"));
    }
    let since_ms = range.start.map(|s| (s * 1000).saturating_sub(1));
    let metrics = match state.client.lease_metrics(&sandbox.id, since_ms).await {
        Ok(metrics) => metrics,
        Err(error) if error.code() == Some(ErrorCode::LeaseNotFound) => {
            return Err(ApiError::sandbox_not_found(&id));
        }
        Err(error) => return Err(ApiError::from_client(&error)),
    };
    let end_ms = range.end.map_or(u64::MAX, |end| end.saturating_mul(1000).saturating_add(999));
    Ok(axum::Json(
        metrics.samples.iter().filter(|s| s.at_unix_ms <= end_ms).filter_map(sandbox_metric).collect(),
    ))
}

/// `GET /sandboxes/metrics?sandbox_ids=a,b`: `{sandboxes: {id: SandboxMetric}}`, the latest
/// sample of each running sandbox named (one without a sample yet is left out).
pub async fn many_metrics(
    State(state): State<AppState>,
    Query(query): Query<ManyQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let wanted: Vec<&str> = query.sandbox_ids.split(',').map(str::trim).filter(|id| !id.is_empty()).collect();
    if wanted.is_empty() {
        return Err(ApiError::bad_request("`sandbox_ids` names no sandbox"));
    }
    let usage = state.client.usage().await.map_err(|e| ApiError::from_client(&e))?;
    let sandboxes: BTreeMap<String, Value> = usage
        .leases
        .iter()
        .filter(|lease| {
            wanted.contains(&lease.lease_id.as_str()) && state.registry.get(&lease.lease_id).is_some()
        })
        .filter_map(|lease| Some((lease.lease_id.clone(), sandbox_metric(lease.latest.as_ref()?)?)))
        .collect();
    Ok(axum::Json(json!({ "sandboxes": sandboxes })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_becomes_e2bs_metric_and_one_without_the_guest_is_left_out() {
        let sample = UsageSample {
            at_unix_ms: 1_700_000_000_500,
            cpus: 2,
            cpu_percent: Some(12.5),
            memory_used_bytes: Some(10),
            memory_total_bytes: Some(20),
            memory_cache_bytes: Some(5),
            disk_used_bytes: Some(1),
            disk_total_bytes: Some(2),
            ..UsageSample::default()
        };
        let metric = sandbox_metric(&sample).unwrap();
        assert_eq!(metric["timestampUnix"], 1_700_000_000u64);
        assert_eq!(metric["timestamp"], "2023-11-14T22:13:20.500Z");
        assert_eq!((metric["cpuCount"].as_u64(), metric["cpuUsedPct"].as_f64()), (Some(2), Some(12.5)));
        assert_eq!((metric["memUsed"].as_u64(), metric["diskTotal"].as_u64()), (Some(10), Some(2)));
        assert_eq!(metric["memCache"].as_u64(), Some(5));
        assert!(sandbox_metric(&UsageSample { memory_used_bytes: None, ..sample }).is_none());
    }
}
