//! `GET /sandboxes` (v1: running sandboxes) and `GET /v2/sandboxes` (running and paused, filtered
//! by state, metadata, template and start time, ordered, in pages). Each sandbox's state is its
//! firepit lease's, read in one `GET /v1/leases`; a sandbox whose lease has ended is forgotten.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use firepit_api::{LeaseListQuery, LeaseState};
use serde::Deserialize;

use crate::error::ApiError;
use crate::pages::{page, set_next_token};
use crate::sandbox_views::{listed_json, note_view};
use crate::state::AppState;
use crate::time::parse_rfc3339;

/// The query of the sandbox lists.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    metadata: Option<String>,
    state: Option<String>,
    order: Option<String>,
    started_after: Option<String>,
    template: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

/// `key=value&...` of the `metadata` filter (keys and values URL-encoded).
fn metadata_filter(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(text)
        .map_err(|e| ApiError::bad_request(format!("metadata filter {text:?}: {e}")))
}

async fn listed(state: &AppState, query: &ListQuery, v2: bool) -> Result<Response, ApiError> {
    let filter = query.metadata.as_deref().map(metadata_filter).transpose()?.unwrap_or_default();
    let mut states: Vec<&str> = query.state.as_deref().map(|s| s.split(',').collect()).unwrap_or_default();
    if let Some(bad) = states.iter().find(|s| !matches!(**s, "running" | "paused")) {
        return Err(ApiError::bad_request(format!("state {bad:?}: expected running or paused")));
    }
    if !v2 {
        states = vec!["running"];
    }
    let after = match query.started_after.as_deref() {
        Some(text) => Some(
            parse_rfc3339(text)
                .ok_or_else(|| ApiError::bad_request(format!("startedAfter {text:?} is not RFC 3339")))?,
        ),
        None => None,
    };
    let views: HashMap<String, _> = state
        .client
        .leases(&LeaseListQuery::default())
        .await
        .map_err(|e| ApiError::from_client(&e))?
        .into_iter()
        .map(|view| (view.id.clone(), view))
        .collect();
    let mut sandboxes = Vec::new();
    for sandbox in state.registry.list() {
        let Some(view) = views.get(&sandbox.id).filter(|v| v.state != LeaseState::Ended) else {
            state.registry.remove(&sandbox.id);
            continue;
        };
        note_view(&sandbox, view);
        let paused = view.state == LeaseState::Paused;
        let state_ok = states.is_empty() || states.contains(&crate::sandbox_views::state_name(paused));
        if state_ok
            && filter.iter().all(|(k, v)| sandbox.metadata.get(k) == Some(v))
            && after.is_none_or(|after| sandbox.started_at >= after)
            && query.template.as_ref().is_none_or(|t| &sandbox.template_id == t)
        {
            sandboxes.push((sandbox, paused));
        }
    }
    if v2 && query.order.as_deref() != Some("asc") {
        sandboxes.reverse();
    }
    let total = sandboxes.len();
    let mut next = None;
    if v2 {
        (sandboxes, next) =
            page(sandboxes, |(sandbox, _)| sandbox.id.as_str(), query.next_token.as_deref(), query.limit)?;
    }
    let mut items = Vec::with_capacity(sandboxes.len());
    for (sandbox, paused) in &sandboxes {
        items.push(listed_json(state, sandbox, *paused).await);
    }
    let mut response = axum::Json(items).into_response();
    set_next_token(&mut response, next);
    if let Ok(value) = HeaderValue::from_str(&total.to_string()) {
        response.headers_mut().insert("x-total-running", value);
    }
    Ok(response)
}

/// `GET /sandboxes` (running sandboxes, metadata filter).
pub async fn list_v1(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    listed(&state, &query, false).await
}

/// `GET /v2/sandboxes` (states, metadata, template, start time, order, pages).
pub async fn list_v2(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    listed(&state, &query, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filters_are_url_encoded_pairs() {
        assert_eq!(
            metadata_filter("user=abc&app=prod%20x").unwrap(),
            [("user".to_owned(), "abc".to_owned()), ("app".to_owned(), "prod x".to_owned())]
        );
    }
}
