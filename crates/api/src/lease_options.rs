//! What a client may say about a lease besides its shape and TTL: `metadata` (its own labels, to
//! find the lease again and to tell whose it is), `auto_resume` and `on_expiry` (what happens to
//! it when it is paused or its TTL runs out), and how it ends (`DELETE /v1/leases/{id}?reason=`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A lease's labels: a small string map given at acquire, returned in every view and usable as a
/// filter (`GET /v1/leases?metadata.owner=ci`).
pub type Metadata = BTreeMap<String, String>;

/// Most labels one lease may carry.
pub const METADATA_MAX_ENTRIES: usize = 32;
/// Longest label name, in bytes.
pub const METADATA_MAX_KEY_BYTES: usize = 63;
/// Longest label value, in bytes.
pub const METADATA_MAX_VALUE_BYTES: usize = 256;
/// Most bytes of names and values together.
pub const METADATA_MAX_TOTAL_BYTES: usize = 4096;

/// Checks `metadata` against the limits above; the error names the label and the limit.
///
/// Names are 1 to 63 characters of `A-Z a-z 0-9 _ . -` (so that `metadata.NAME=VALUE` reads back
/// unambiguously in a query); values are any UTF-8 without control characters, at most 256 bytes.
///
/// ```
/// use firepit_api::{Metadata, check_metadata};
/// let ok: Metadata = [("owner".to_string(), "ci-42".to_string())].into();
/// assert!(check_metadata(&ok).is_ok());
/// let bad: Metadata = [("has space".to_string(), "x".to_string())].into();
/// assert!(check_metadata(&bad).unwrap_err().contains("has space"));
/// ```
pub fn check_metadata(metadata: &Metadata) -> Result<(), String> {
    if metadata.len() > METADATA_MAX_ENTRIES {
        return Err(format!(
            "metadata has {} labels: at most {METADATA_MAX_ENTRIES} are allowed",
            metadata.len()
        ));
    }
    let mut total = 0;
    for (key, value) in metadata {
        let key_ok = (1..=METADATA_MAX_KEY_BYTES).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(format!(
                "metadata label {key:?}: a name is 1 to {METADATA_MAX_KEY_BYTES} characters of A-Z a-z 0-9 _ . -"
            ));
        }
        if value.len() > METADATA_MAX_VALUE_BYTES || value.chars().any(char::is_control) {
            return Err(format!(
                "metadata label {key:?}: a value is at most {METADATA_MAX_VALUE_BYTES} bytes without control characters"
            ));
        }
        total += key.len() + value.len();
    }
    if total > METADATA_MAX_TOTAL_BYTES {
        return Err(format!(
            "metadata holds {total} bytes of names and values: at most {METADATA_MAX_TOTAL_BYTES} are allowed"
        ));
    }
    Ok(())
}

/// What happens when a lease's TTL runs out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// The lease ends (`ttl_expired`) and its VM is destroyed.
    #[default]
    Destroy,
    /// The lease is paused (its VM's state saved, the VM stopped); it stays until resumed or until
    /// the daemon's paused retention runs out. Needs a backend that can pause: where it cannot,
    /// the acquire is refused with `unsupported`.
    Pause,
}

impl OnExpiry {
    /// As the API writes it.
    ///
    /// ```
    /// assert_eq!(firepit_api::OnExpiry::Pause.as_str(), "pause");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Destroy => "destroy",
            Self::Pause => "pause",
        }
    }
}

/// Why a client ends a lease (`DELETE /v1/leases/{id}?reason=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// Its holder is done with it (the default).
    #[default]
    Released,
    /// An operator ends a lease that is not theirs (a runaway, a tenant's VM to reclaim): the end
    /// reason reads `killed`, with the `detail` given.
    Killed,
}

/// The query of `DELETE /v1/leases/{id}`.
///
/// ```
/// let query: firepit_api::ReleaseQuery = serde_json::from_str(r#"{"reason":"killed","detail":"runaway"}"#).unwrap();
/// assert_eq!(query.reason, firepit_api::ReleaseReason::Killed);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ReleaseQuery {
    /// `released` (default) or `killed` (an operator's kill).
    #[serde(default)]
    pub reason: ReleaseReason,
    /// Why, in a few words (at most 200 bytes); shown as the lease's `end_detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Longest `detail` of a release.
pub const RELEASE_DETAIL_MAX_BYTES: usize = 200;
