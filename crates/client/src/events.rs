//! NDJSON event streams (streamed exec, followed process output): one [`StreamEvent`] per line,
//! parsed as the lines arrive.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, BytesMut};
use firepit_api::{Encoding, OutputChunk, StreamEvent};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::ClientError;

/// Longest line accepted (an event carries at most a few hundred KiB of base64).
const MAX_LINE: usize = 8 * 1024 * 1024;

/// The events of a streamed exec or a followed output, in order.
///
/// ```no_run
/// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
/// use firepit_api::{SpawnBody, StreamEvent};
/// let mut events = client.exec_stream("l-0123", &SpawnBody::new(["sh", "-c", "echo one; sleep 2; echo two"])).await?;
/// while let Some(event) = events.next_event().await? {
///     match event {
///         StreamEvent::Stdout(chunk) => print!("{}", String::from_utf8_lossy(&firepit_client::decode_chunk(&chunk)?)),
///         StreamEvent::Exit(status) => println!("exit {:?}", status.exit_code),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    buffer: BytesMut,
    finished: bool,
}

impl EventStream {
    pub(crate) fn new(response: hyper::Response<Incoming>) -> Self {
        Self { body: response.into_body(), buffer: BytesMut::new(), finished: false }
    }

    /// The next event, `None` after the last one (`exit`, `eof` without an exit, or `error`).
    /// An `error` event is returned as an event; a stream that breaks is
    /// [`ClientError::Stream`].
    pub async fn next_event(&mut self) -> Result<Option<StreamEvent>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let text = &line[..end];
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event = serde_json::from_slice(text)
                    .map_err(|e| ClientError::Stream(format!("a line is not an event ({e})")))?;
                return Ok(Some(event));
            }
            if self.finished {
                return if self.buffer.has_remaining() {
                    Err(ClientError::Stream("the stream ended inside a line".into()))
                } else {
                    Ok(None)
                };
            }
            if self.buffer.len() > MAX_LINE {
                return Err(ClientError::Stream(format!("a line is longer than {MAX_LINE} bytes")));
            }
            self.finished = !read_frame(&mut self.body, &mut self.buffer).await?;
        }
    }
}

/// The bytes of an output chunk (decoding base64 when needed).
///
/// ```
/// use firepit_api::{Encoding, OutputChunk};
/// let chunk = OutputChunk { data: "/wA=".into(), encoding: Encoding::Base64, offset: None, missed: None };
/// assert_eq!(firepit_client::decode_chunk(&chunk).unwrap(), vec![0xff, 0x00]);
/// ```
pub fn decode_chunk(chunk: &OutputChunk) -> Result<Vec<u8>, ClientError> {
    match chunk.encoding {
        Encoding::Utf8 => Ok(chunk.data.clone().into_bytes()),
        Encoding::Base64 => BASE64
            .decode(chunk.data.as_bytes())
            .map_err(|e| ClientError::Stream(format!("an output chunk is not valid base64: {e}"))),
    }
}

/// Appends the body's next data frame to `buffer`: `false` once the body has ended. The one step
/// of every line-framed reader of a response (NDJSON exec streams, the SSE event feed).
pub(crate) async fn read_frame(body: &mut Incoming, buffer: &mut BytesMut) -> Result<bool, ClientError> {
    match body.frame().await {
        None => Ok(false),
        Some(Err(error)) => Err(ClientError::Stream(error.to_string())),
        Some(Ok(frame)) => {
            if let Ok(data) = frame.into_data() {
                buffer.extend_from_slice(&data);
            }
            Ok(true)
        }
    }
}
