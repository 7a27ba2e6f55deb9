//! [`RawResponse`]: an answer as it came (status, headers, body), for requests the typed methods
//! do not cover (tests of malformed requests).

use bytes::Bytes;
use firepit_api::ErrorBody;
use hyper::StatusCode;
use hyper::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::error::ClientError;

/// A raw response: status, headers, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl RawResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Decodes a 2xx JSON body, or turns an error body into [`ClientError::Api`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        if !self.status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&self.body) {
                Ok(e) => ClientError::Api { status: self.status, error: e.error, message: e.message },
                Err(_) => ClientError::Decode { status: self.status, message: self.text() },
            });
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Decode { status: self.status, message: e.to_string() })
    }
}
