//! The messages of the API's streams: NDJSON events (streamed exec, followed process output) and
//! the JSON control messages of the PTY WebSocket.
//!
//! NDJSON framing (`Content-Type: application/x-ndjson`): one [`StreamEvent`] per line, each a
//! JSON object with a `type`. A streamed exec sends `started`, then `stdout` / `stderr` chunks as
//! the command writes them, then exactly one `exit` (or one `error` when the stream could not
//! finish: the VM went away, the lease ended), and the response ends. A followed output sends
//! `stdout` / `stderr` chunks (with their `offset`), then `eof`, then `exit` when the process has
//! exited. Chunks carry bytes as UTF-8 text when they are (a multi-byte character is never split
//! between two `utf8` chunks) and as base64 otherwise (`encoding`).
//!
//! ```
//! use firepit_api::{Encoding, OutputChunk, StreamEvent};
//! let line = r#"{"type":"stdout","data":"hi\n","encoding":"utf8"}"#;
//! let event: StreamEvent = serde_json::from_str(line).unwrap();
//! assert_eq!(event, StreamEvent::Stdout(OutputChunk { data: "hi\n".into(), encoding: Encoding::Utf8, offset: None, missed: None }));
//! ```

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::processes::{ExitStatusView, SignalSpec};
use crate::types::Encoding;

/// Content type of the NDJSON streams.
pub const NDJSON: &str = "application/x-ndjson";

/// A chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputChunk {
    /// The bytes, encoded as `encoding` says.
    pub data: String,
    /// `utf8` or `base64`.
    pub encoding: Encoding,
    /// Followed output only: the offset of the chunk's first byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Followed output only: bytes dropped by the guest before this chunk (the reader missed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// One line of an NDJSON stream (and the text messages the PTY WebSocket sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The command runs (streamed exec, PTY).
    Started {
        /// Its guest process id (also its process group id).
        pid: u32,
    },
    /// Bytes the command wrote to stdout.
    Stdout(OutputChunk),
    /// Bytes the command wrote to stderr.
    Stderr(OutputChunk),
    /// A followed output channel ended: everything up to `next_offset` was sent.
    Eof {
        /// The offset after the last byte.
        next_offset: u64,
    },
    /// The command exited (the last event).
    Exit(ExitStatusView),
    /// The stream could not go on (the last event); `error` is one of the API's error codes.
    Error {
        /// Machine-readable code (`vm_unreachable`, `lease_ended`, `shutting_down`, ...).
        error: ErrorCode,
        /// What happened, for people.
        message: String,
    },
}

/// A JSON text message a client sends on the PTY WebSocket (binary messages are keystrokes).
///
/// ```
/// let resize: firepit_api::PtyControl = serde_json::from_str(r#"{"type":"resize","rows":40,"cols":120}"#).unwrap();
/// assert_eq!(resize, firepit_api::PtyControl::Resize { rows: 40, cols: 120 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PtyControl {
    /// Resize the terminal (the program gets SIGWINCH).
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Send a signal to the terminal's foreground process group.
    Signal {
        /// Which signal.
        signal: SignalSpec,
    },
}
