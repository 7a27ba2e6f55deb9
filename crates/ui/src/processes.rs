//! A lease's background processes: the list (running and recently exited), the tail of a
//! process's output, and stopping one.

use axum::extract::{Path, Query, State};
use axum::{Form, response::IntoResponse, response::Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use firepit_api::{Encoding, OutputChannel, OutputQuery, ProcessView, SignalSpec};
use maud::{Markup, html};
use serde::Deserialize;

use crate::error::UiError;
use crate::format;
use crate::state::UiState;

/// How much of an output the page shows (its end).
const TAIL_BYTES: u64 = 64 * 1024;

/// `GET /ui/leases/{id}/processes`.
pub(crate) async fn list(State(ui): State<UiState>, Path(id): Path<String>) -> Markup {
    let processes = ui.client().processes(&id).await.map_err(UiError::from);
    let base = format!("/ui/leases/{id}/processes");
    html! {
        section #processes aria-labelledby="processes-title" {
            h2 #processes-title { "Processes" }
            button.quiet type="button" hx-get=(base) hx-target="#processes" hx-swap="outerHTML" { "Refresh" }
            @match processes {
                Err(error) => (error.into_notice()),
                Ok(processes) if processes.is_empty() => p.muted { "No background processes (start them with the API's " code { "POST /v1/leases/{id}/processes" } ")." },
                Ok(processes) => div.scroll {
                    table.processes {
                        caption.visually-hidden { "Background processes" }
                        thead { tr {
                            th scope="col" { "Id" }
                            th scope="col" { "Command" }
                            th scope="col" { "Status" }
                            th scope="col" { "Started" }
                            th scope="col" .num { "Output" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody { @for process in &processes { (process_row(&base, process)) } }
                    }
                },
            }
            div #process-output aria-live="polite" {}
        }
    }
}

fn process_row(base: &str, process: &ProcessView) -> Markup {
    let url = format!("{base}/{}", process.id);
    let command = process.argv.join(" ");
    html! {
        tr {
            th scope="row" { (process.id) @if let Some(tag) = &process.tag { " " span.muted { "(" (tag) ")" } } }
            td { code.command title=(command) { (command) } }
            td { (status(process)) }
            td { @if process.started_unix_ms > 0 { (format::unix_ms(process.started_unix_ms as u64)) } }
            td.num { (format::bytes(process.stdout_bytes)) " / " (format::bytes(process.stderr_bytes)) }
            td.buttons {
                button.small.quiet type="button" hx-get={ (url) "/output?channel=stdout" } hx-target="#process-output" { "stdout" }
                button.small.quiet type="button" hx-get={ (url) "/output?channel=stderr" } hx-target="#process-output" { "stderr" }
                @if process.exit.is_none() {
                    button.small.danger type="button" hx-post={ (url) "/signal" } hx-vals=r#"{"signal":"TERM"}"#
                        hx-confirm={ "Stop process " (process.id) " (" (command) ") with SIGTERM?" }
                        hx-target="#processes" hx-swap="outerHTML" { "Stop" }
                }
            }
        }
    }
}

fn status(process: &ProcessView) -> Markup {
    match &process.exit {
        None => html! { span.badge.running { "running" } " pid " (process.pid) },
        Some(exit) => html! {
            span.badge.ended {
                @match (exit.exit_code, exit.signal) {
                    (Some(code), _) => { "exit " (code) },
                    (None, Some(signal)) => { "signal " (signal) },
                    (None, None) => "ended",
                }
            }
            @if exit.timed_out { " timed out" }
        },
    }
}

/// Which output to show.
#[derive(Debug, Deserialize)]
pub(crate) struct OutputChoice {
    channel: OutputChannel,
}

/// `GET /ui/leases/{id}/processes/{process}/output?channel=`: the last 64 KiB of a channel.
pub(crate) async fn output(
    State(ui): State<UiState>,
    Path((id, process)): Path<(String, String)>,
    Query(choice): Query<OutputChoice>,
) -> Result<Markup, UiError> {
    let view = ui.client().process(&id, &process, 0).await?;
    let written = match choice.channel {
        OutputChannel::Stdout => view.stdout_bytes,
        OutputChannel::Stderr => view.stderr_bytes,
    };
    let offset = written.saturating_sub(TAIL_BYTES);
    let query =
        OutputQuery { channel: choice.channel, offset, max_bytes: TAIL_BYTES as u32, ..Default::default() };
    let out = ui.client().process_output(&id, &process, &query).await?;
    let bytes = match out.encoding {
        Encoding::Utf8 => out.data.into_bytes(),
        Encoding::Base64 => BASE64.decode(out.data.as_bytes()).unwrap_or_default(),
    };
    let channel = match choice.channel {
        OutputChannel::Stdout => "stdout",
        OutputChannel::Stderr => "stderr",
    };
    Ok(html! {
        h3 { "Process " (process) ", " (channel) }
        @if out.offset > 0 { p.muted { "The last " (format::bytes(written - out.offset)) " of " (format::bytes(written)) "." } }
        @if out.missed > 0 { p.muted { (format::bytes(out.missed)) " were dropped by the guest before they were read." } }
        pre.output tabindex="0" { (String::from_utf8_lossy(&bytes)) }
    })
}

/// The signal form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignalForm {
    signal: String,
}

/// `POST /ui/leases/{id}/processes/{process}/signal`, then the list again.
pub(crate) async fn signal(
    State(ui): State<UiState>,
    Path((id, process)): Path<(String, String)>,
    Form(form): Form<SignalForm>,
) -> Result<Response, UiError> {
    if !matches!(form.signal.as_str(), "TERM" | "KILL" | "INT") {
        return Err(UiError::BadRequest(format!("signal `{}` is not offered here", form.signal)));
    }
    ui.client().signal_process(&id, &process, SignalSpec::Name(form.signal)).await?;
    // Show it ended if it does so promptly (waits at most 2 s; a process that ignores the signal
    // shows as running).
    ui.client().process(&id, &process, 2000).await?;
    Ok(list(State(ui), Path(id)).await.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_api::ExitStatusView;

    #[test]
    fn a_process_shows_how_it_ended() {
        let mut process = ProcessView {
            id: 3,
            tag: Some("web".into()),
            pid: 42,
            argv: vec!["sleep".into(), "9".into()],
            started_unix_ms: 0,
            exit: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
        };
        let row = process_row("/b", &process).into_string();
        assert!(row.contains("running") && row.contains("hx-confirm"), "{row}");
        process.exit = Some(ExitStatusView {
            exit_code: None,
            signal: Some(15),
            timed_out: false,
            duration_ms: 5,
            oom_killed: false,
        });
        let row = process_row("/b", &process).into_string();
        assert!(row.contains("signal 15") && !row.contains("hx-confirm"), "{row}");
    }
}
