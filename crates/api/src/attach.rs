//! The messages of `GET /v1/leases/{id}/exec/ws`: a command on pipes whose stdin, stdout and
//! stderr travel over one WebSocket, for clients that feed a command's input while it runs (the
//! NDJSON exec takes its stdin up front).
//!
//! Framing: the server's binary messages are output, their first byte names the channel
//! ([`ATTACH_STDOUT`], [`ATTACH_STDERR`]) and the rest is the bytes; the client's binary messages
//! are stdin bytes as they are. The client's text messages are [`AttachControl`]; the server's are
//! [`StreamEvent`](crate::StreamEvent)s: `started` first, `exit` (or `error`) last, right before
//! the close.
//!
//! ```
//! let close: firepit_api::AttachControl = serde_json::from_str(r#"{"type":"close_stdin"}"#).unwrap();
//! assert_eq!(close, firepit_api::AttachControl::CloseStdin);
//! ```

use serde::{Deserialize, Serialize};

use crate::processes::SignalSpec;

/// First byte of a server binary message carrying stdout bytes.
pub const ATTACH_STDOUT: u8 = 1;
/// First byte of a server binary message carrying stderr bytes.
pub const ATTACH_STDERR: u8 = 2;

/// A JSON text message a client sends on the exec WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttachControl {
    /// Send a signal to the command's process group.
    Signal {
        /// Which signal.
        signal: SignalSpec,
    },
    /// Close the command's stdin (it reads end-of-file once it has read what was sent).
    CloseStdin,
}
