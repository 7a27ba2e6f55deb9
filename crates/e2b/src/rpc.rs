//! Handling one Connect call: checking its method and content type, reading its body within the
//! message limit, and answering in the call's codec (the protocol itself is [`crate::connect`]).

use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use http_body_util::BodyExt;

use crate::connect::{self, Code, Codec, ConnectError, Kind, MAX_MESSAGE, Message};

/// A Connect call, checked.
pub struct Rpc {
    /// The method's name (`Start`, `Stat`, ...).
    pub method: String,
    /// The codec both ways.
    pub codec: Codec,
    /// Unary or streaming framing.
    pub kind: Kind,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The request's body, unread.
    pub body: Body,
}

impl Rpc {
    /// Checks `request` (a `POST` with a Connect content type and no compression); the error is
    /// the answer to send.
    pub fn parse(request: Request) -> Result<Self, Box<Response>> {
        let (parts, body) = request.into_parts();
        if parts.method != Method::POST {
            return Err(Box::new(
                (StatusCode::METHOD_NOT_ALLOWED, "Connect calls are POST requests").into_response(),
            ));
        }
        let content_type = parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let Some((codec, kind)) = connect::content_type(content_type) else {
            return Err(Box::new(
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("content type {content_type:?} is not a Connect codec (json or proto)"),
                )
                    .into_response(),
            ));
        };
        for name in ["content-encoding", "connect-content-encoding"] {
            if let Some(encoding) = parts.headers.get(name).and_then(|v| v.to_str().ok())
                && !encoding.eq_ignore_ascii_case("identity")
            {
                let error =
                    ConnectError::new(Code::Unimplemented, format!("{name} {encoding:?} is not supported"));
                return Err(Box::new(match kind {
                    Kind::Unary => error.into_unary_response(),
                    Kind::Streaming => connect::stream_error(codec, error),
                }));
            }
        }
        let method = parts.uri.path().rsplit('/').next().unwrap_or_default().to_owned();
        Ok(Self { method, codec, kind, headers: parts.headers, body })
    }

    /// The answer to a call of an unknown method.
    pub fn unknown_method(self) -> Response {
        let error = ConnectError::new(Code::Unimplemented, format!("no method {:?}", self.method));
        match self.kind {
            Kind::Unary => error.into_unary_response(),
            Kind::Streaming => connect::stream_error(self.codec, error),
        }
    }

    /// Serves a unary method with `handler`.
    pub async fn unary<Req, Resp, F, Fut>(self, handler: F) -> Response
    where
        Req: Message,
        Resp: Message,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, ConnectError>>,
    {
        if self.kind != Kind::Unary {
            return wrong_kind("unary");
        }
        let codec = self.codec;
        let result = async {
            let body = read_body(self.body).await?;
            handler(connect::decode(codec, &body)?).await
        }
        .await;
        connect::unary_response(codec, result)
    }

    /// Serves a server-streaming method with `handler`, which answers the stream of messages.
    pub async fn server_stream<Req, Resp, F, Fut, S>(self, handler: F) -> Response
    where
        Req: Message,
        Resp: Message,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<S, ConnectError>>,
        S: Stream<Item = Result<Resp, ConnectError>> + Send + 'static,
    {
        if self.kind != Kind::Streaming {
            return wrong_kind("server-streaming");
        }
        let codec = self.codec;
        let stream = async {
            let body = read_body(self.body).await?;
            handler(connect::single_envelope(codec, &body)?).await
        }
        .await;
        match stream {
            Ok(stream) => connect::stream_response(codec, stream),
            Err(error) => connect::stream_error(codec, error),
        }
    }
}

fn wrong_kind(kind: &str) -> Response {
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("this method is {kind}: use the matching content type"))
        .into_response()
}

/// The whole body, at most one message (plus an envelope's header) long.
pub async fn read_body(body: Body) -> Result<Bytes, ConnectError> {
    let limited = http_body_util::Limited::new(body, MAX_MESSAGE + 5);
    limited.collect().await.map(|collected| collected.to_bytes()).map_err(|error| {
        ConnectError::new(Code::ResourceExhausted, format!("reading the request failed: {error}"))
    })
}
