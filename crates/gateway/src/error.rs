//! Every answer the gateway itself gives (as opposed to a daemon's, which it passes through): the
//! daemon's error shape `{"error": "<code>", "message": "..."}`, plus the lease and host where
//! they say something.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firepit_api::ErrorCode;
use serde_json::json;

/// An error the gateway answers with.
#[derive(Debug, Clone)]
pub struct GatewayError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`firepit_api::ErrorCode`: the gateway's own are `host_lost`,
    /// `host_unreachable`, `cluster_unavailable` and `no_host`).
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
    /// The lease it is about.
    pub lease_id: Option<String>,
    /// The host it is about.
    pub host: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    /// An error with a code (its status is the code's) and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, code, message: message.into(), lease_id: None, host: None, retry_after_secs: None }
    }

    /// The same with another status (a daemon's answer passed on with its own status).
    pub fn with_status(self, status: StatusCode) -> Self {
        Self { status, ..self }
    }

    /// `410 host_lost`: the lease's host died (its record expired) or restarted; the lease is gone.
    pub fn host_lost(lease_id: &str, host: &str, restarted: bool) -> Self {
        let why = match restarted {
            true => "restarted, which ended its leases",
            false => "stopped answering (its registration in etcd expired)",
        };
        Self {
            lease_id: Some(lease_id.to_owned()),
            host: Some(host.to_owned()),
            ..Self::new(
                ErrorCode::HostLost,
                format!(
                    "lease {lease_id} was on host {host}, which {why}; the lease is gone: acquire a new one"
                ),
            )
        }
    }

    /// `503 cluster_unavailable`: etcd does not answer.
    pub fn cluster_unavailable(what: &str, cause: &str) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(
                ErrorCode::ClusterUnavailable,
                format!(
                    "{what}: etcd does not answer ({cause}); leases this gateway routed before still work; retry when etcd is back"
                ),
            )
        }
    }

    /// `502 host_unreachable`: the lease's host is registered but did not answer.
    pub fn host_unreachable(host: &str, cause: &str) -> Self {
        Self {
            host: Some(host.to_owned()),
            ..Self::new(
                ErrorCode::HostUnreachable,
                format!(
                    "host {host} did not answer ({cause}); if it died, its leases answer 410 host_lost once its registration expires"
                ),
            )
        }
    }

    /// `400 bad_json`.
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadJson, message)
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code.as_str(), "message": self.message});
        if let Some(lease_id) = self.lease_id {
            body["lease_id"] = lease_id.into();
        }
        if let Some(host) = self.host {
            body["host"] = host.into();
        }
        if self.code == ErrorCode::HostLost {
            body["end_reason"] = "host_lost".into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
