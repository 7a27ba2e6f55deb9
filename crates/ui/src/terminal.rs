//! The terminal: the browser's xterm.js talks to `GET /ui/leases/{id}/terminal` (a WebSocket
//! behind the session guard), which opens the API's PTY WebSocket through the client and copies
//! both ways. The framing is the API's: binary messages are terminal bytes, text messages JSON
//! (`resize` from the browser; `started`, `exit`, `error` to it).
//!
//! The browser never holds the API token: the dashboard's session authenticates it here, and the
//! dashboard's client authenticates to the API.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use firepit_api::{ErrorCode, PtyControl, StreamEvent};
use firepit_client::{PtyEvent, PtyOptions, PtyReceiver, PtySender};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tracing::debug;

use crate::error::UiError;
use crate::state::UiState;

/// The terminal's first size.
#[derive(Debug, Deserialize)]
pub(crate) struct Size {
    rows: u16,
    cols: u16,
}

/// `GET /ui/leases/{id}/terminal?rows=&cols=` (WebSocket).
pub(crate) async fn open(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Query(size): Query<Size>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, UiError> {
    let options =
        PtyOptions { rows: size.rows.clamp(2, 500), cols: size.cols.clamp(2, 1000), ..Default::default() };
    // Opened before the upgrade, so a lease that is gone is an HTTP error the page can show.
    let pty = ui.client().pty(&id, &options).await?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        let (sender, receiver) = pty.split();
        let stopping = ui.stopping().clone();
        tokio::select! {
            () = pump(socket, sender, receiver) => {}
            () = stopping.cancelled() => {}
        }
    }))
}

/// Copies both ways until either side ends.
async fn pump(socket: WebSocket, mut to_guest: PtySender, mut from_guest: PtyReceiver) {
    let (mut to_browser, mut from_browser) = socket.split();
    let upstream = async {
        while let Some(Ok(message)) = from_browser.next().await {
            let sent = match message {
                Message::Binary(bytes) => to_guest.send_input(&bytes).await,
                Message::Text(text) => match serde_json::from_str::<PtyControl>(text.as_str()) {
                    Ok(PtyControl::Resize { rows, cols }) => to_guest.resize(rows, cols).await,
                    Ok(PtyControl::Signal { signal }) => to_guest.signal(signal).await,
                    Err(error) => {
                        debug!(%error, "ignoring a terminal message that is not a control");
                        Ok(())
                    }
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        let _closed = to_guest.close().await;
    };
    let downstream = async {
        loop {
            let message = match from_guest.next_event().await {
                Ok(Some(PtyEvent::Output(bytes))) => Message::Binary(bytes.into()),
                Ok(Some(PtyEvent::Started { pid })) => text(&StreamEvent::Started { pid }),
                Ok(Some(PtyEvent::Exit(status))) => text(&StreamEvent::Exit(status)),
                Ok(Some(PtyEvent::Error { error, message })) => text(&StreamEvent::Error { error, message }),
                Ok(None) => break,
                // The dashboard's own connection to the API broke (no code the API sent).
                Err(error) => text(&StreamEvent::Error {
                    error: ErrorCode::InternalError,
                    message: format!("the terminal's connection to the API broke: {error}"),
                }),
            };
            let last = matches!(&message, Message::Text(_)) && !is_started(&message);
            if to_browser.send(message).await.is_err() || last {
                break;
            }
        }
        let _closed = to_browser.close().await;
    };
    // Whichever side ends first ends the session (dropping the other closes its socket).
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

fn text(event: &StreamEvent) -> Message {
    Message::Text(serde_json::to_string(event).unwrap_or_default().into())
}

fn is_started(message: &Message) -> bool {
    matches!(message, Message::Text(text) if text.as_str().contains(r#""type":"started""#))
}
