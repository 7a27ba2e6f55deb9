//! Files in a leased VM: the query strings and JSON bodies of `/v1/leases/{id}/files…` and
//! `/v1/leases/{id}/archive`.
//!
//! File contents never travel in JSON: `PUT /v1/leases/{id}/files?path=…` takes the raw bytes as
//! its body (`application/octet-stream`) and `GET` answers with them, both streamed. Every path
//! is an absolute guest path.
//!
//! ```
//! let query = firepit_api::WriteFileQuery { path: "/tmp/a".into(), mode: Some("755".into()), ..Default::default() };
//! assert!(!query.append && !query.create_parents);
//! ```

use serde::{Deserialize, Serialize};

/// Response header of `GET /v1/leases/{id}/files`: the file's size when the read started.
pub const FILE_SIZE_HEADER: &str = "x-firepit-file-size";
/// Response header of `GET /v1/leases/{id}/files`: the file's permission bits, in octal.
pub const FILE_MODE_HEADER: &str = "x-firepit-file-mode";
/// Response header of `GET /v1/leases/{id}/files` and `/archive`: `file`, `dir`, `symlink`, `other`.
pub const FILE_KIND_HEADER: &str = "x-firepit-file-kind";

/// The metadata a stat and a listing answer are the guest agent's own types, served as they are
/// (one description of a file, written once in `firepit-agent`).
pub use firepit_agent::{DirEntry, DirListing, FileKind, FileStat};

/// Query of `PUT /v1/leases/{id}/files` (the body is the file's bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct WriteFileQuery {
    /// Absolute guest path; an existing file is truncated (or appended to).
    pub path: String,
    /// Permission bits in octal, as `chmod` takes them (`755`, `0644`); default 644 for a new
    /// file, unchanged for an existing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Create missing parent directories.
    #[serde(default)]
    pub create_parents: bool,
    /// Append instead of truncating.
    #[serde(default)]
    pub append: bool,
}

/// Query of `GET /v1/leases/{id}/files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ReadFileQuery {
    /// Absolute guest path of a regular file (or a readable device).
    pub path: String,
    /// Start reading here.
    #[serde(default)]
    pub offset: u64,
    /// Read at most this many bytes (default: to the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Query naming one guest path (`/files/list`, `/archive`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    /// Absolute guest path.
    pub path: String,
}

/// Query of `GET /v1/leases/{id}/files/stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct StatQuery {
    /// Absolute guest path.
    pub path: String,
    /// Describe a symbolic link's target (default) instead of the link.
    #[serde(default = "yes")]
    pub follow_symlinks: bool,
}

/// Query of `DELETE /v1/leases/{id}/files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Absolute guest path (a symbolic link is removed, not its target).
    pub path: String,
    /// Remove a directory with everything in it (otherwise only a file, a link or an empty one).
    #[serde(default)]
    pub recursive: bool,
}

/// Answer of an upload (`PUT /files`, `PUT /archive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferResponse {
    /// Bytes received: the file's size, or the archive's.
    pub bytes: u64,
}

/// `POST /v1/leases/{id}/files/mkdir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MkdirBody {
    /// Absolute guest path.
    pub path: String,
    /// Create missing parents and accept an existing directory, like `mkdir -p` (default true).
    #[serde(default = "yes")]
    pub parents: bool,
    /// Permission bits of the new directory (a number: 0o700 is 448; default 0o755).
    #[serde(default)]
    pub mode: Option<u32>,
}

/// `POST /v1/leases/{id}/files/chmod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChmodBody {
    /// Absolute guest path (symbolic links are followed).
    pub path: String,
    /// New permission bits (a number: 0o755 is 493).
    pub mode: u32,
}

/// `POST /v1/leases/{id}/files/chown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChownBody {
    /// Absolute guest path (symbolic links are followed).
    pub path: String,
    /// New owner (unchanged if absent).
    #[serde(default)]
    pub uid: Option<u32>,
    /// New group (unchanged if absent).
    #[serde(default)]
    pub gid: Option<u32>,
}

/// `POST /v1/leases/{id}/files/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    /// Absolute source path.
    pub from: String,
    /// Absolute destination path (replaced if it is a file).
    pub to: String,
}

fn yes() -> bool {
    true
}
