//! The one shape of every error the API answers with.

use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, machine-readable code (`unknown_shape`, `exhausted`, `bad_request`, ...).
    pub error: String,
    /// What went wrong and what to do, for humans.
    pub message: String,
}
