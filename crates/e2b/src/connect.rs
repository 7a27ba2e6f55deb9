//! The Connect protocol (connectrpc.com), server side, as far as envd's services use it: unary
//! and server-streaming calls in both codecs (JSON and binary protobuf), and the one
//! client-streaming call (`StreamInput`).
//!
//! A call is `POST /{package}.{Service}/{Method}`. Its `Content-Type` says both the codec and the
//! kind: `application/json` and `application/proto` are unary (the body is the message, an error
//! is a non-200 status with a JSON `{"code", "message"}` body); `application/connect+json` and
//! `application/connect+proto` are streaming (bodies are *envelopes*: one flag byte, a 4-byte
//! big-endian length, the message; the response ends with an end-of-stream envelope, flag `0x02`,
//! holding JSON `{"error": {...}}` or `{}`, always 200).
//!
//! ```
//! use firepit_e2b::connect::{Codec, Kind, content_type};
//! assert_eq!(content_type("application/connect+json"), Some((Codec::Json, Kind::Streaming)));
//! assert_eq!(content_type("application/proto; charset=utf-8"), Some((Codec::Proto, Kind::Unary)));
//! assert_eq!(content_type("text/plain"), None);
//! ```

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest message a client may send (envelope or unary body).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Flag of the envelope that ends a stream.
const END_STREAM: u8 = 0x02;
/// Flag of a compressed envelope (refused: envd's clients never compress).
const COMPRESSED: u8 = 0x01;

/// How messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Proto3 JSON mapping.
    Json,
    /// Binary protobuf.
    Proto,
}

/// Whether the call's bodies are bare messages or envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `application/json`, `application/proto`.
    Unary,
    /// `application/connect+json`, `application/connect+proto`.
    Streaming,
}

/// The codec and kind a `Content-Type` names, `None` for anything else.
pub fn content_type(value: &str) -> Option<(Codec, Kind)> {
    let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Some((Codec::Json, Kind::Unary)),
        "application/proto" => Some((Codec::Proto, Kind::Unary)),
        "application/connect+json" => Some((Codec::Json, Kind::Streaming)),
        "application/connect+proto" => Some((Codec::Proto, Kind::Streaming)),
        _ => None,
    }
}

fn response_content_type(codec: Codec, kind: Kind) -> &'static str {
    match (codec, kind) {
        (Codec::Json, Kind::Unary) => "application/json",
        (Codec::Proto, Kind::Unary) => "application/proto",
        (Codec::Json, Kind::Streaming) => "application/connect+json",
        (Codec::Proto, Kind::Streaming) => "application/connect+proto",
    }
}

/// A Connect error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The operation was cancelled.
    Canceled,
    /// Unknown error.
    Unknown,
    /// The request is invalid.
    InvalidArgument,
    /// The deadline passed.
    DeadlineExceeded,
    /// Something named does not exist.
    NotFound,
    /// Something to create exists.
    AlreadyExists,
    /// Not allowed.
    PermissionDenied,
    /// A limit was reached.
    ResourceExhausted,
    /// The system is not in the state the operation needs.
    FailedPrecondition,
    /// Not implemented.
    Unimplemented,
    /// A bug or an unexpected failure.
    Internal,
    /// The service is unavailable (try again).
    Unavailable,
    /// No valid credentials.
    Unauthenticated,
}

impl Code {
    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error with this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::REQUEST_TIMEOUT),
            Code::Unknown | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error answered to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    /// Its code.
    pub code: Code,
    /// What happened, for people.
    pub message: String,
    /// The sandbox went away: a stream ends by breaking its connection, as it does when an E2B
    /// sandbox dies, so that the SDK probes the sandbox and reports it gone.
    pub sandbox_gone: bool,
}

impl ConnectError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), sandbox_gone: false }
    }

    /// The sandbox ended under a running call (see [`ConnectError::sandbox_gone`]).
    pub fn gone(message: impl Into<String>) -> Self {
        Self { sandbox_gone: true, ..Self::new(Code::Unavailable, message) }
    }

    /// `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    /// `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// `unimplemented`, saying what firepit does not do yet.
    pub fn unimplemented(what: &str) -> Self {
        Self::new(Code::Unimplemented, format!("{what} is not implemented by firepit's E2B endpoint"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code.as_str(), "message": self.message })
    }

    /// The error as a unary response.
    pub fn into_unary_response(self) -> Response {
        let mut response = (self.code.http_status(), self.json().to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ConnectError {}

/// A message type both codecs can carry.
pub trait Message: prost::Message + Default + Serialize + DeserializeOwned + Send + 'static {}
impl<T: prost::Message + Default + Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// Decodes one message.
pub fn decode<M: Message>(codec: Codec, bytes: &[u8]) -> Result<M, ConnectError> {
    match codec {
        Codec::Json => serde_json::from_slice(bytes)
            .map_err(|e| ConnectError::invalid(format!("the request message is not valid JSON for it: {e}"))),
        Codec::Proto => M::decode(bytes)
            .map_err(|e| ConnectError::invalid(format!("the request message is not valid protobuf: {e}"))),
    }
}

/// Encodes one message.
pub fn encode<M: Message>(codec: Codec, message: &M) -> Bytes {
    match codec {
        // A generated type always serialises; an empty object is the safe fallback.
        Codec::Json => Bytes::from(serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec())),
        Codec::Proto => Bytes::from(message.encode_to_vec()),
    }
}

/// One envelope.
pub fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    out.put_u8(flags);
    out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
    out.freeze()
}

/// Splits complete envelopes off the front of `buffer`: `Ok(Some((flags, payload)))`, `Ok(None)`
/// when more bytes are needed.
pub fn next_envelope(buffer: &mut BytesMut) -> Result<Option<(u8, Bytes)>, ConnectError> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    let flags = buffer[0];
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(ConnectError::new(
            Code::ResourceExhausted,
            format!("a message of {len} bytes exceeds the limit of {MAX_MESSAGE}"),
        ));
    }
    if flags & COMPRESSED != 0 {
        return Err(ConnectError::new(Code::Unimplemented, "compressed messages are not supported"));
    }
    if buffer.len() < 5 + len {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some((flags, buffer.split_to(len).freeze())))
}

/// The one message of a server-streaming request body (exactly one envelope).
pub fn single_envelope<M: Message>(codec: Codec, body: &[u8]) -> Result<M, ConnectError> {
    let mut buffer = BytesMut::from(body);
    match next_envelope(&mut buffer)? {
        Some((flags, payload)) if flags & END_STREAM == 0 && buffer.is_empty() => decode(codec, &payload),
        _ => Err(ConnectError::invalid("the request body must be exactly one enveloped message")),
    }
}

/// A unary call's answer.
pub fn unary_response<M: Message>(codec: Codec, result: Result<M, ConnectError>) -> Response {
    match result {
        Ok(message) => {
            let mut response = (StatusCode::OK, encode(codec, &message)).into_response();
            let kind = HeaderValue::from_static(response_content_type(codec, Kind::Unary));
            response.headers_mut().insert(header::CONTENT_TYPE, kind);
            response
        }
        Err(error) => error.into_unary_response(),
    }
}

/// A streaming call's answer: each message as an envelope, then the end of the stream with the
/// error that ended it, if any.
pub fn stream_response<M, S>(codec: Codec, messages: S) -> Response
where
    M: Message,
    S: Stream<Item = Result<M, ConnectError>> + Send + 'static,
{
    let body = messages.map(Some).chain(futures_util::stream::once(async { None })).scan(
        false,
        move |ended, item| {
            let out = match (*ended, item) {
                (true, _) => None,
                (false, Some(Ok(message))) => Some(Ok(envelope(0, &encode(codec, &message)))),
                // A dead sandbox's stream breaks; it does not end.
                (false, Some(Err(error))) if error.sandbox_gone => {
                    *ended = true;
                    Some(Err(std::io::Error::other(error.message)))
                }
                (false, Some(Err(error))) => {
                    *ended = true;
                    Some(Ok(end_of_stream(Some(&error))))
                }
                (false, None) => {
                    *ended = true;
                    Some(Ok(end_of_stream(None)))
                }
            };
            futures_util::future::ready(out)
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let kind = HeaderValue::from_static(response_content_type(codec, Kind::Streaming));
    response.headers_mut().insert(header::CONTENT_TYPE, kind);
    response
}

/// The end-of-stream envelope.
pub fn end_of_stream(error: Option<&ConnectError>) -> Bytes {
    let json = match error {
        Some(error) => serde_json::json!({ "error": error.json() }),
        None => serde_json::json!({}),
    };
    envelope(END_STREAM, json.to_string().as_bytes())
}

/// A streaming call refused before it started: a 200 with only the end of the stream.
pub fn stream_error(codec: Codec, error: ConnectError) -> Response {
    let mut response = (StatusCode::OK, end_of_stream(Some(&error))).into_response();
    let kind = HeaderValue::from_static(response_content_type(codec, Kind::Streaming));
    response.headers_mut().insert(header::CONTENT_TYPE, kind);
    response
}

/// The call's deadline from `Connect-Timeout-Ms` (at most 10 digits, as the protocol says).
pub fn timeout(headers: &HeaderMap) -> Result<Option<std::time::Duration>, ConnectError> {
    let Some(value) = headers.get("connect-timeout-ms") else { return Ok(None) };
    let text = value.to_str().unwrap_or_default();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectError::invalid(format!(
            "Connect-Timeout-Ms {text:?} is not a number of milliseconds"
        )));
    }
    Ok(text.parse::<u64>().ok().map(std::time::Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::process::{ProcessSelector, SendSignalRequest, Signal, process_selector};

    #[test]
    fn envelopes_round_trip_and_wait_for_more_bytes() {
        let bytes = envelope(0, b"hello");
        let mut buffer = BytesMut::from(&bytes[..4]);
        assert_eq!(next_envelope(&mut buffer).unwrap(), None);
        let mut buffer = BytesMut::from(&bytes[..]);
        let (flags, payload) = next_envelope(&mut buffer).unwrap().unwrap();
        assert_eq!((flags, &payload[..]), (0, &b"hello"[..]));
        assert!(buffer.is_empty());
    }

    #[test]
    fn an_oversized_or_compressed_envelope_is_refused() {
        let mut huge = BytesMut::from(&[0u8, 0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(next_envelope(&mut huge).unwrap_err().code, Code::ResourceExhausted);
        let mut compressed = BytesMut::from(&envelope(COMPRESSED, b"x")[..]);
        assert_eq!(next_envelope(&mut compressed).unwrap_err().code, Code::Unimplemented);
    }

    #[test]
    fn a_stream_request_must_be_one_envelope() {
        let message = SendSignalRequest {
            process: Some(ProcessSelector { selector: Some(process_selector::Selector::Pid(7)) }),
            signal: Signal::Sigkill as i32,
        };
        let one = envelope(0, &encode(Codec::Proto, &message));
        let back: SendSignalRequest = single_envelope(Codec::Proto, &one).unwrap();
        assert_eq!(back, message);
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        assert!(single_envelope::<SendSignalRequest>(Codec::Proto, &two).is_err());
        assert!(single_envelope::<SendSignalRequest>(Codec::Proto, b"\0\0").is_err());
    }

    #[test]
    fn json_uses_the_proto3_mapping() {
        let json = br#"{"process":{"pid":7},"signal":"SIGNAL_SIGKILL"}"#;
        let message: SendSignalRequest = decode(Codec::Json, json).unwrap();
        assert_eq!(message.signal, Signal::Sigkill as i32);
        let out = String::from_utf8(encode(Codec::Json, &message).to_vec()).unwrap();
        assert_eq!(out, r#"{"process":{"pid":7},"signal":"SIGNAL_SIGKILL"}"#);
        assert_eq!(decode::<SendSignalRequest>(Codec::Json, b"{").unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn the_end_of_a_stream_carries_the_error_as_json() {
        let end = end_of_stream(Some(&ConnectError::not_found("process 7")));
        assert_eq!(end[0], END_STREAM);
        let json: serde_json::Value = serde_json::from_slice(&end[5..]).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
    }

    #[test]
    fn timeouts_are_digits_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(timeout(&headers).unwrap(), None);
        headers.insert("connect-timeout-ms", HeaderValue::from_static("2000"));
        assert_eq!(timeout(&headers).unwrap(), Some(std::time::Duration::from_secs(2)));
        headers.insert("connect-timeout-ms", HeaderValue::from_static("-1"));
        assert!(timeout(&headers).is_err());
    }
}
