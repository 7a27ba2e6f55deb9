//! Bytes in JSON: UTF-8 text when they are, base64 when not, and NDJSON lines.
//!
//! Output arrives in arbitrary chunks, which may cut a multi-byte character in two; [`Utf8Carry`]
//! holds such a cut tail back until the next chunk, so text stays text in the stream's events.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use firepit_api::{Encoding, OutputChunk, StreamEvent};

/// `bytes` as a JSON string: UTF-8 text if valid, else base64.
pub fn encode(bytes: Vec<u8>) -> (String, Encoding) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, Encoding::Utf8),
        Err(error) => (BASE64.encode(error.into_bytes()), Encoding::Base64),
    }
}

/// A chunk event without offsets (streamed exec).
pub fn chunk(bytes: Vec<u8>) -> OutputChunk {
    let (data, encoding) = encode(bytes);
    OutputChunk { data, encoding, offset: None, missed: None }
}

/// One NDJSON line.
pub fn line(event: &StreamEvent) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_else(|e| {
        format!(r#"{{"type":"error","error":"internal_error","message":"encoding an event: {e}"}}"#)
            .into_bytes()
    });
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Holds back an incomplete UTF-8 character at the end of a chunk (at most 3 bytes).
#[derive(Debug, Default)]
pub struct Utf8Carry {
    tail: Vec<u8>,
}

impl Utf8Carry {
    /// The bytes to emit now: the carried tail, then `bytes`, minus a character cut at the end.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.tail);
        all.extend_from_slice(bytes);
        if let Err(error) = std::str::from_utf8(&all)
            && error.error_len().is_none()
            && all.len() - error.valid_up_to() < 4
        {
            self.tail = all.split_off(error.valid_up_to());
        }
        all
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_chunks_stays_text() {
        let text = "grüße".as_bytes();
        let mut carry = Utf8Carry::default();
        let first = carry.push(&text[..3]); // "gr" + the first byte of "ü"
        assert_eq!(encode(first), ("gr".into(), Encoding::Utf8));
        let second = carry.push(&text[3..]);
        assert_eq!(encode(second), ("üße".into(), Encoding::Utf8));
        assert!(carry.finish().is_empty());
    }

    #[test]
    fn binary_goes_as_base64_and_a_dangling_tail_is_flushed_at_the_end() {
        let mut carry = Utf8Carry::default();
        assert_eq!(encode(carry.push(&[0xff, 0x00])).1, Encoding::Base64);
        assert!(carry.push(&[0xc3]).is_empty());
        assert_eq!(encode(carry.finish()), ("ww==".into(), Encoding::Base64));
    }
}
