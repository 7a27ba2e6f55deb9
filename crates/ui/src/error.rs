//! [`UiError`]: why a page or an action failed, shown to the person as a notice in place of what
//! they asked for (htmx swaps error answers too, see `layout::HTMX_CONFIG`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use firepit_client::ClientError;

use crate::notice::notice;

/// Why a dashboard request failed.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The API answered an error, or could not be reached.
    #[error("{0}")]
    Api(#[from] ClientError),
    /// The request itself is wrong (a bad path, a missing field).
    #[error("{0}")]
    BadRequest(String),
    /// The daemon lacks what was asked for (an endpoint of a newer API).
    #[error("{0}")]
    Unsupported(String),
}

impl UiError {
    /// The HTTP status to answer with: the API's for its errors (404 stays 404), 502 when the API
    /// could not be reached.
    pub fn status(&self) -> StatusCode {
        match self {
            UiError::Api(ClientError::Api { status, .. }) => {
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            UiError::Api(_) => StatusCode::BAD_GATEWAY,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// What to tell the person.
    pub fn message(&self) -> String {
        match self {
            UiError::Api(ClientError::Api { message, .. }) => message.clone(),
            other => other.to_string(),
        }
    }
}

impl UiError {
    /// The error as a notice inside a page.
    pub(crate) fn into_notice(self) -> maud::Markup {
        notice("error", &self.message())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        (self.status(), notice("error", &self.message())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_apis_are_bad_gateways() {
        let error = UiError::Api(ClientError::Stream("broken".into()));
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    }
}
