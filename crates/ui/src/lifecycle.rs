//! A lease's lifecycle actions besides renew and release ([`crate::lease`]): pause, resume,
//! snapshot, fork and kill.
//!
//! They call the API's paths as plain requests (`POST /v1/leases/{id}/pause`, `/resume`,
//! `/snapshots`, `/fork`, `DELETE /v1/leases/{id}?reason=killed`), so the dashboard works with
//! daemons that have them and says so plainly with those that do not: an `unknown_endpoint` or
//! `method_not_allowed` answer becomes "this daemon cannot pause leases", any other error the
//! daemon's own message.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use firepit_api::{ErrorCode, ReleaseQuery, ReleaseReason};
use firepit_client::ClientError;
use maud::{Markup, html};
use serde::Deserialize;

use crate::error::UiError;
use crate::lease::changed;
use crate::notice::notice;
use crate::state::UiState;

/// Most leases one fork makes from the dashboard.
const MAX_FORKS: u32 = 16;

/// Sends `method path` with a JSON `body`; the answer's JSON on success.
async fn call(
    ui: &UiState,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    what: &str,
) -> Result<serde_json::Value, UiError> {
    let body = body.map(|b| b.to_string().into_bytes());
    let response = ui.client().request(method, path, body, &[]).await?;
    if response.status.is_success() {
        return Ok(serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null));
    }
    Err(match response.json::<serde_json::Value>() {
        Err(error) => cannot(error, what),
        Ok(_) => UiError::BadRequest(format!("the daemon answered {}", response.status)),
    })
}

/// A missing endpoint as what the daemon cannot do; other errors as they are.
fn cannot(error: ClientError, what: &str) -> UiError {
    let missing = matches!(error.code(), Some(ErrorCode::UnknownEndpoint | ErrorCode::MethodNotAllowed))
        || matches!(&error, ClientError::Decode { status, .. } if matches!(status.as_u16(), 404 | 405 | 501));
    if missing {
        return UiError::Unsupported(format!("This daemon cannot {what}."));
    }
    UiError::Api(error)
}

fn lease_path(id: &str, action: &str) -> String {
    format!("/v1/leases/{}/{action}", crate::usage::lease_id_segment(id))
}

/// `POST /ui/leases/{id}/pause`.
pub(crate) async fn pause(State(ui): State<UiState>, Path(id): Path<String>) -> Result<Response, UiError> {
    call(&ui, Method::POST, &lease_path(&id, "pause"), None, "pause leases").await?;
    Ok(changed(notice("info", "Paused: the VM is stopped and its state kept; resume it to go on.")))
}

/// `POST /ui/leases/{id}/resume`.
pub(crate) async fn resume(State(ui): State<UiState>, Path(id): Path<String>) -> Result<Response, UiError> {
    call(&ui, Method::POST, &lease_path(&id, "resume"), None, "resume leases").await?;
    Ok(changed(notice("info", "Resumed: the VM runs again.")))
}

/// `POST /ui/leases/{id}/snapshot`.
pub(crate) async fn snapshot(State(ui): State<UiState>, Path(id): Path<String>) -> Result<Response, UiError> {
    let answer = call(&ui, Method::POST, &lease_path(&id, "snapshots"), None, "snapshot leases").await?;
    let snapshot = answer.get("snapshot_id").and_then(|v| v.as_str()).unwrap_or("?");
    let markup = html! {
        p.notice.info role="status" { "Snapshot taken: " code #snapshot-id { (snapshot) } ". Start a lease from it with " code { "\"snapshot\": \"" (snapshot) "\"" } "." }
    };
    Ok(changed(markup))
}

/// The fork form.
#[derive(Debug, Deserialize)]
pub(crate) struct ForkForm {
    count: u32,
}

/// `POST /ui/leases/{id}/fork`.
pub(crate) async fn fork(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Form(form): Form<ForkForm>,
) -> Result<Response, UiError> {
    if !(1..=MAX_FORKS).contains(&form.count) {
        return Err(UiError::BadRequest(format!("fork 1 to {MAX_FORKS} leases at a time")));
    }
    let body = serde_json::json!({ "count": form.count });
    let answer = call(&ui, Method::POST, &lease_path(&id, "fork"), Some(body), "fork leases").await?;
    Ok(changed(forked(&answer)))
}

/// What a fork answered: the new leases (as links) and the forks that failed.
fn forked(answer: &serde_json::Value) -> Markup {
    let items: Vec<&serde_json::Value> = match answer {
        serde_json::Value::Array(items) => items.iter().collect(),
        other => {
            other.get("leases").and_then(|l| l.as_array()).map(|l| l.iter().collect()).unwrap_or_default()
        }
    };
    let id_of = |item: &serde_json::Value| {
        item.get("lease_id").or_else(|| item.get("id")).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let error_of = |item: &serde_json::Value| {
        item.get("message")
            .or_else(|| item.get("error"))
            .map(|v| v.as_str().map_or(v.to_string(), str::to_owned))
    };
    html! {
        div.notice.info role="status" #fork-result {
            "Forked: "
            @for item in &items {
                @if let Some(id) = id_of(item) { a href={ "/ui/leases/" (id) } { code { (id) } } " " }
                @else if let Some(error) = error_of(item) { span.bad { "failed: " (error) } " " }
            }
            @if items.is_empty() { "the daemon answered no leases." }
        }
    }
}

/// `POST /ui/leases/{id}/kill`: ends the lease at once, as `killed`.
pub(crate) async fn kill(State(ui): State<UiState>, Path(id): Path<String>) -> Result<Response, UiError> {
    let query =
        ReleaseQuery { reason: ReleaseReason::Killed, detail: Some("killed from the dashboard".into()) };
    ui.client().end_lease(&id, &query).await.map_err(|e| cannot(e, "kill leases"))?;
    Ok(changed(notice("info", "Killed: the VM was stopped at once.")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn missing_endpoints_say_what_the_daemon_cannot_do() {
        let missing = ClientError::Api {
            status: StatusCode::NOT_FOUND,
            error: ErrorCode::UnknownEndpoint,
            message: "no such endpoint".into(),
        };
        assert_eq!(cannot(missing, "pause leases").message(), "This daemon cannot pause leases.");
        let paused = ClientError::Api {
            status: StatusCode::NOT_FOUND,
            error: ErrorCode::LeaseNotFound,
            message: "lease l-1 ended".into(),
        };
        assert_eq!(cannot(paused, "pause leases").message(), "lease l-1 ended");
    }

    #[test]
    fn forks_link_the_new_leases_and_name_failures() {
        let answer = serde_json::json!({ "leases": [{ "lease_id": "l-2" }, { "error": "pool_exhausted", "message": "no VM ready" }] });
        let html = forked(&answer).into_string();
        assert!(html.contains(r#"<a href="/ui/leases/l-2"><code>l-2</code></a>"#), "{html}");
        assert!(html.contains("failed: no VM ready"), "{html}");
    }
}
