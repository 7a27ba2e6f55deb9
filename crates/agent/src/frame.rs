//! Length-prefixed framing shared by host and guest: sans-IO, so both sides (and the fuzzer) feed
//! it the bytes they read and take whole frames out.

use serde::{Serialize, de::DeserializeOwned};

/// Largest frame body either side accepts (16 MiB). Exec output is truncated to fit below it.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Why a frame could not be encoded or decoded.
///
/// ```
/// use firepit_agent::{FrameDecoder, FrameError, MAX_FRAME_LEN, RequestFrame};
/// let mut decoder = FrameDecoder::new();
/// decoder.push(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes()); // a hostile length prefix
/// let err = decoder.next_frame::<RequestFrame>().unwrap_err();
/// assert!(matches!(err, FrameError::TooLarge { .. })); // refused before allocating anything
/// decoder.clear();
/// ```
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`]; the stream cannot be resynchronised.
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// The body is not a valid message; the frame was consumed, the stream can go on.
    #[error("malformed frame body: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encodes `message` as one frame (length prefix + postcard body).
///
/// ```
/// use firepit_agent::{encode_frame, Request, RequestFrame};
/// let bytes = encode_frame(&RequestFrame { id: 1, request: Request::Ping }).unwrap();
/// assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
/// ```
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    // Serialized behind a placeholder prefix, so the body is not copied a second time (a data
    // frame is 64 KiB).
    let mut out = postcard::to_extend(message, vec![0u8; 4])?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len })?;
    out[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(out)
}

/// Incremental frame decoder: push bytes as they arrive, pop complete frames.
///
/// ```
/// use firepit_agent::{encode_frame, FrameDecoder, Request, RequestFrame};
/// let bytes = encode_frame(&RequestFrame { id: 3, request: Request::Ping }).unwrap();
/// let mut decoder = FrameDecoder::new();
/// decoder.push(&bytes[..2]);
/// assert!(decoder.next_frame::<RequestFrame>().unwrap().is_none()); // not complete yet
/// decoder.push(&bytes[2..]);
/// assert_eq!(decoder.next_frame::<RequestFrame>().unwrap().unwrap().id, 3);
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    /// Creates an empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Number of buffered bytes not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Drops everything buffered (after a reconnect, or after [`FrameError::TooLarge`]).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// Pops the next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// A malformed body is consumed and reported as [`FrameError::Malformed`]: the caller replies
    /// with an error and goes on. [`FrameError::TooLarge`] leaves the stream unusable: the caller
    /// should [`clear`](Self::clear) and resynchronise (reconnect).
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let len =
            u32::from_be_bytes([self.buffer[0], self.buffer[1], self.buffer[2], self.buffer[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len });
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let result = postcard::from_bytes::<T>(&self.buffer[4..4 + len]);
        self.buffer.drain(..4 + len);
        Ok(Some(result?))
    }
}
