//! The one shape of every error the API answers with, and the one list of its codes.
//!
//! Every code lives in one table ([`error_codes!`] below): its Rust variant, its wire string, its
//! HTTP status and its meaning. The daemon answers with an [`ErrorCode`] (the status comes from
//! the code), the Rust client hands one back, the OpenAPI document lists them all (an enum
//! schema with a description per code) and the Python SDK's tests check its own table against that
//! document. Adding a code is one line here and one line in the SDK's `errors.py`.
//!
//! A code this build does not know (a newer daemon) reads as [`ErrorCode::Unknown`], so older
//! clients keep working.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The JSON body of every error response.
///
/// ```
/// use firepit_api::{ErrorBody, ErrorCode};
/// let body: ErrorBody = serde_json::from_str(r#"{"error":"lease_not_found","message":"no lease l-1"}"#).unwrap();
/// assert_eq!(body.error, ErrorCode::LeaseNotFound);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, machine-readable code; act on it, never on the message.
    pub error: ErrorCode,
    /// What went wrong and what to do, for humans.
    pub message: String,
}

/// Defines [`ErrorCode`] and its tables from one list: `Variant = ("wire_code", status, "meaning")`.
/// A macro so that a new code is one line, and the string, the status and the description of a
/// code cannot be added in one place and forgotten in another.
macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:literal, $meaning:literal),)+) => {
        /// A stable, machine-readable error code: the `error` of every error body and of a
        /// stream's `error` event. Each has one HTTP status ([`ErrorCode::status`]) and one
        /// meaning ([`ErrorCode::meaning`]).
        ///
        /// ```
        /// use firepit_api::ErrorCode;
        /// assert_eq!(ErrorCode::LeaseNotFound.as_str(), "lease_not_found");
        /// assert_eq!(ErrorCode::LeaseNotFound.status(), 404);
        /// assert_eq!(ErrorCode::from_code("exhausted"), ErrorCode::Exhausted);
        /// assert_eq!(ErrorCode::from_code("from_the_future"), ErrorCode::Unknown("from_the_future".into()));
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $code, "` (", stringify!($status), "): ", $meaning)]
                $variant,
            )+
            /// A code this build does not know: sent by a newer daemon. The daemon never sends
            /// it for its own errors; its status is 500.
            Unknown(String),
        }

        impl ErrorCode {
            /// Every code the daemon may send, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The wire string (`lease_not_found`).
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                    ErrorCode::Unknown(code) => code,
                }
            }

            /// The code of a wire string; [`ErrorCode::Unknown`] for one this build does not know.
            pub fn from_code(code: &str) -> Self {
                match code {
                    $($code => ErrorCode::$variant,)+
                    other => ErrorCode::Unknown(other.to_owned()),
                }
            }

            /// The HTTP status the daemon answers with this code.
            pub fn status(&self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
                    ErrorCode::Unknown(_) => 500,
                }
            }

            /// What the code means and what to do about it, in one sentence.
            pub fn meaning(&self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                    ErrorCode::Unknown(_) => "A code this client does not know (a newer daemon sent it).",
                }
            }

            /// The Rust variant's name (`LeaseNotFound`), for generated clients.
            pub fn variant_name(&self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => stringify!($variant),)+
                    ErrorCode::Unknown(_) => "Unknown",
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    BadRequest = ("bad_request", 400, "The request is malformed: a path, query or value the endpoint cannot read; the message says which."),
    BadJson = ("bad_json", 400, "The JSON body is missing, not an object, or has a wrong or unknown field; the message names it."),
    BadBody = ("bad_body", 400, "The request body could not be read to its end."),
    BodyTooLarge = ("body_too_large", 413, "The JSON body is larger than the daemon's `api.max_body_bytes`."),
    UnsupportedMediaType = ("unsupported_media_type", 415, "The body is not JSON: send `Content-Type: application/json`."),
    UnknownEndpoint = ("unknown_endpoint", 404, "No such endpoint; see `GET /v1/openapi.json`."),
    MethodNotAllowed = ("method_not_allowed", 405, "The endpoint exists but not with this method (the `Allow` header lists them)."),
    UpgradeRequired = ("upgrade_required", 426, "The endpoint is a WebSocket: connect with an HTTP/1.1 upgrade."),
    Unauthorized = ("unauthorized", 401, "The TCP listener needs `Authorization: Bearer <token>` and got none or a wrong one."),
    BadArgv = ("bad_argv", 400, "`argv` is empty, its program is empty, or an argument holds a NUL byte."),
    BadEnv = ("bad_env", 400, "An environment variable's name is empty or holds `=`, or a name or value holds a NUL byte."),
    BadStdin = ("bad_stdin", 400, "`stdin` is not valid base64 although `stdin_encoding` says so."),
    BadTag = ("bad_tag", 400, "A process tag is empty, all digits (those are ids) or holds `/`."),
    BadSignal = ("bad_signal", 400, "Not a signal number (1..=64) or a known signal name."),
    BadPort = ("bad_port", 400, "A guest port must be 1..=65535."),
    BadTtl = ("bad_ttl", 400, "A lease TTL outside 1 ms ..= the daemon's `leases.max_ttl_secs`."),
    BadCwd = ("bad_cwd", 400, "`cwd` is not an absolute path, or holds a NUL byte."),
    BodyTimeout = ("body_timeout", 408, "The client stopped sending the request body: no byte for the daemon's `http.body_idle_timeout_secs`."),
    TooManyConnections = ("too_many_connections", 429, "The client has as many connections open as the daemon's `http.max_connections_per_client` allows; close some (or reuse them)."),
    // Shapes and leases.
    UnknownShape = ("unknown_shape", 404, "No shape of that name is registered."),
    NoShapeFits = ("no_shape_fits", 400, "No registered shape covers the `cpus`, `memory_mb` and `disk_mb` asked for; the message names the largest."),
    ShapeExists = ("shape_exists", 409, "A shape of that name is registered already; unregister it first."),
    InvalidShape = ("invalid_shape", 422, "The shape's settings are invalid; the message names the field."),
    Exhausted = ("exhausted", 503, "No VM of the shape became ready within `wait_ms`; retry after `Retry-After` seconds."),
    LeaseNotFound = ("lease_not_found", 404, "The lease was released, expired or never existed."),
    IdempotencyConflict = ("idempotency_conflict", 422, "The `Idempotency-Key` was used before for another shape."),
    LeaseEnded = ("lease_ended", 410, "The lease ended (released, expired, killed, its VM exited, the daemon stopping) while a request or stream on it ran; `GET /v1/leases/{id}` says why."),
    SnapshotNotFound = ("snapshot_not_found", 404, "No snapshot with that id (deleted, or never made); `GET /v1/snapshots` lists them."),
    SnapshotInUse = ("snapshot_in_use", 409, "A registered shape's `image` is the snapshot (`snapshot:ID`): unregister that shape first (the message names it)."),
    LeasePaused = ("lease_paused", 409, "The lease is paused (or was paused while a request or stream on it ran): resume it first, or acquire with `auto_resume`."),
    BadMetadata = ("bad_metadata", 400, "Lease metadata over its limits: at most 32 labels, names of `A-Z a-z 0-9 _ . -` up to 63 characters, values up to 256 bytes."),
    NetworkDisabled = ("network_disabled", 409, "The lease's shape has no network (no forwards, no egress): give the shape `network = \"nat\"`."),
    EgressWidens = ("egress_widens", 400, "The egress asked for is not within the shape's policy: a lease can only narrow it."),
    ForwardNotFound = ("forward_not_found", 404, "No forward to that guest port is open on the lease."),
    ForwardFailed = ("forward_failed", 502, "The VM's network refused the port forward."),
    // Running programs.
    ExecRefused = ("exec_refused", 422, "The guest could not start the program (not found, not executable, bad directory)."),
    VmUnreachable = ("vm_unreachable", 502, "The leased VM did not answer; the lease is likely lost."),
    // The guest's files and processes.
    NotFound = ("not_found", 404, "The guest path (or a parent of it) does not exist."),
    AlreadyExists = ("already_exists", 409, "The path exists, or a running process has that tag."),
    PermissionDenied = ("permission_denied", 403, "The guest refused access to the path."),
    IsADirectory = ("is_a_directory", 409, "A directory where a file is needed."),
    NotADirectory = ("not_a_directory", 409, "A file where a directory is needed."),
    DirectoryNotEmpty = ("directory_not_empty", 409, "A non-empty directory removed without `recursive`."),
    InvalidInput = ("invalid_input", 400, "The guest refused the request's arguments (a relative path, a bad mode)."),
    ProcessNotFound = ("process_not_found", 404, "No background process with that id or tag."),
    LimitReached = ("limit_reached", 429, "Too many background processes or streams in the guest, or port forwards on the lease; end some first."),
    NameTooLong = ("name_too_long", 400, "A path, or one name in it, is longer than the guest takes (255 bytes a name, 4,095 a path)."),
    InsufficientStorage = ("insufficient_storage", 507, "The guest's file system is full (no space or no inodes left): free some, or use a shape with a larger disk. Or, for a pause or a snapshot, the host's directory for saved VMs has too little room: the lease runs on; free room there (delete snapshots) and retry."),
    BadArchive = ("bad_archive", 400, "The body is not an uncompressed tar archive: damaged, truncated, or compressed (decompress it first)."),
    ArchiveLimit = ("archive_limit", 400, "The archive goes past a limit of the unpacker (entries, path depth, header size); the message names which."),
    ArchiveEntryRefused = ("archive_entry_refused", 400, "An archive entry the unpacker does not make: a path with `..` or through a link of the archive, a hard link to anything but an earlier entry, a device node."),
    IoError = ("io_error", 500, "Another I/O error in the guest; the message says which."),
    // The daemon.
    Unsupported = ("unsupported", 501, "The daemon's backend cannot do this."),
    ShuttingDown = ("shutting_down", 503, "The daemon is stopping and takes no new work."),
    Draining = ("draining", 503, "The daemon is draining (`firepit drain`, or a stop in a cluster): its leases run to their end, new ones go to another host."),
    BackendError = ("backend_error", 500, "The pool or the VM backend failed; the message has the cause."),
    InternalError = ("internal_error", 500, "The daemon failed in an unexpected way; the message and its log have the cause."),
    // A gateway in front of many daemons (`firepit gateway`).
    HostLost = ("host_lost", 410, "Through a gateway: the lease's host died or restarted (its registration in etcd expired or changed); the lease is gone, acquire a new one."),
    HostUnreachable = ("host_unreachable", 502, "Through a gateway: the lease's host is registered but did not answer."),
    ClusterUnavailable = ("cluster_unavailable", 503, "Through a gateway: etcd does not answer, so new leases cannot be placed; leases the gateway routed before still work."),
    NoHost = ("no_host", 503, "Through a gateway: no daemon is registered in etcd."),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ErrorCode::from_code(&code))
    }
}

/// The OpenAPI schema: a string enum of every code, described by a table (code, status, meaning),
/// with `x-enum-varnames` and `x-enum-descriptions` for client generators.
#[cfg(feature = "openapi")]
mod schema {
    use std::borrow::Cow;

    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
    use utoipa::openapi::{RefOr, extensions::Extensions};

    use super::ErrorCode;

    impl utoipa::PartialSchema for ErrorCode {
        fn schema() -> RefOr<Schema> {
            let mut description = String::from(
                "Stable, machine-readable error code. A client should treat a code it does not know \
                 like the HTTP status it came with.\n\n| code | status | meaning |\n|---|---|---|\n",
            );
            for code in ErrorCode::ALL {
                description.push_str(&format!("| `{code}` | {} | {} |\n", code.status(), code.meaning()));
            }
            let names: Vec<_> = ErrorCode::ALL.iter().map(ErrorCode::variant_name).collect();
            let meanings: Vec<_> = ErrorCode::ALL.iter().map(ErrorCode::meaning).collect();
            let statuses: Vec<_> = ErrorCode::ALL.iter().map(ErrorCode::status).collect();
            let extensions: Extensions = [
                ("x-enum-varnames", serde_json::json!(names)),
                ("x-enum-descriptions", serde_json::json!(meanings)),
                ("x-http-statuses", serde_json::json!(statuses)),
            ]
            .into_iter()
            .collect();
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str().to_owned())))
                .description(Some(description))
                .extensions(Some(extensions))
                .into()
        }
    }

    impl utoipa::ToSchema for ErrorCode {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("ErrorCode")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::ErrorCode;

    #[test]
    fn every_code_is_unique_snake_case_an_error_status_and_reads_back_as_itself() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{text}");
            assert!((400..=599).contains(&code.status()), "{text}: {}", code.status());
            assert!(code.meaning().ends_with('.'), "{text}: a sentence");
            assert_eq!(&ErrorCode::from_code(text), code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn a_code_from_a_newer_daemon_is_kept_not_refused() {
        let body: super::ErrorBody =
            serde_json::from_str(r#"{"error":"from_the_future","message":"a newer daemon"}"#).unwrap();
        assert_eq!(body.error, ErrorCode::Unknown("from_the_future".into()));
        assert_eq!(body.error.to_string(), "from_the_future");
        assert_eq!(serde_json::to_string(&body.error).unwrap(), "\"from_the_future\"");
    }
}
