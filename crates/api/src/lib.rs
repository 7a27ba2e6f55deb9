//! The daemon's HTTP API as data: the request and response bodies of `firepit serve`'s `/v1`
//! endpoints, shared by the daemon (which serves them), the Rust client (which sends them) and
//! the tests.
//!
//! What it is not: no HTTP, no I/O, no behaviour beyond serde's defaults. The daemon
//! (`firepit-daemon`) owns the handlers and the OpenAPI document; with the `openapi` feature
//! every type here also derives `utoipa::ToSchema`, so that document is generated from these very
//! types and cannot drift from what the client sends. The client (`firepit-client`) depends on this
//! crate without that feature and so without utoipa.
//!
//! The sandbox endpoints (files, archives, streamed exec, background processes, the PTY) have their
//! bodies in the same crate; their streams' messages are [`StreamEvent`] (NDJSON lines) and
//! [`PtyControl`] (the PTY WebSocket's text messages).
//!
//! What a lease's VM uses is [`LeaseMetrics`] (its samples, [`UsageSample`]) and, for every
//! running lease at once, [`UsageList`].
//!
//! Port forwards of a lease are [`ForwardPortBody`] / [`PortForward`]; an acquire with lease
//! options (a narrowed egress policy) sends [`AcquireBody`], a superset of [`AcquireRequest`].
//!
//! Snapshots of a lease are [`SnapshotInfo`] (listed in [`SnapshotList`]); a fork is asked with
//! [`ForkRequest`] and answered with a [`ForkResponse`].
//!
//! The shape description in `PUT /v1/shapes/{name}` and in the config file is `firepit-shape`'s
//! [`ShapeSpec`], re-exported here.
//!
//! A program to run is a [`Program`] (argv, env, cwd) and its input a [`Stdin`], flattened into
//! each body that starts one ([`ExecBody`], [`SpawnBody`], [`StartProcessBody`]). A file's metadata
//! ([`FileStat`], [`DirEntry`], ...) is the guest agent's own type, served as it is.
//!
//! How data flows: a client builds e.g. an [`AcquireRequest`], serialises it as the JSON body of
//! `POST /v1/leases`; the daemon deserialises the same type (`deny_unknown_fields`: a typo is a 400,
//! not a silently ignored field) and answers a [`LeaseResponse`], or an [`ErrorBody`] whose `error`
//! is an [`ErrorCode`]: one enum of every code with its HTTP status and meaning.
//!
//! ```
//! let request = firepit_api::AcquireRequest { shape: "default".into(), wait_ms: 1000, ttl_ms: None, snapshot: None };
//! let json = serde_json::to_string(&request).unwrap();
//! assert_eq!(json, r#"{"shape":"default","wait_ms":1000,"ttl_ms":null}"#);
//! let back: firepit_api::AcquireRequest = serde_json::from_str(&json).unwrap();
//! assert_eq!(back.wait_ms, 1000);
//! ```

#![warn(missing_docs)]

mod attach;
mod cluster;
mod endpoint;
mod error;
mod events;
mod feed;
mod files;
mod lease_options;
mod lease_views;
mod ports;
mod processes;
mod shapes;
mod snapshots;
mod time;
mod types;
mod usage;

pub use attach::{ATTACH_STDERR, ATTACH_STDOUT, AttachControl};
pub use cluster::{ClusterHosts, DrainResponse, HostStatusView};
pub use endpoint::{default_runtime_dir, default_socket_path};
pub use error::{ErrorBody, ErrorCode};
pub use events::{NDJSON, OutputChunk, PtyControl, StreamEvent};
pub use feed::{EVENT_STREAM, Event, EventKind, EventQuery};
pub use files::{
    ChmodBody, ChownBody, DirEntry, DirListing, FILE_KIND_HEADER, FILE_MODE_HEADER, FILE_SIZE_HEADER,
    FileKind, FileStat, MkdirBody, PathQuery, ReadFileQuery, RemoveQuery, RenameBody, StatQuery,
    TransferResponse, WriteFileQuery,
};
pub use firepit_shape::{Depth, EgressPolicy, EgressRule, FillStrategy, NetworkSpec, ShapeSpec};
pub use lease_options::{
    METADATA_MAX_ENTRIES, METADATA_MAX_KEY_BYTES, METADATA_MAX_TOTAL_BYTES, METADATA_MAX_VALUE_BYTES,
    Metadata, OnExpiry, RELEASE_DETAIL_MAX_BYTES, ReleaseQuery, ReleaseReason, check_metadata,
};
pub use lease_views::{EndReason, LEASE_LIST_MAX, LeaseList, LeaseListQuery, LeaseState, LeaseView};
pub use ports::{AcquireBody, ForwardPortBody, PortForward, PortList};
pub use processes::{
    ExitStatusView, OutputChannel, OutputQuery, ProcessList, ProcessOutputView, ProcessQuery, ProcessView,
    SignalBody, SignalSpec, SpawnBody, StartProcessBody,
};
pub use shapes::{HostView, ShapeStatusView};
pub use snapshots::{FORK_MAX, ForkOutcome, ForkRequest, ForkResponse, SnapshotInfo, SnapshotList};
pub use time::{rfc3339_ms, unix_ms};
pub use types::{
    AcquireRequest, Encoding, ExecBody, ExecResponse, HealthResponse, LeaseResponse, PoolsResponse, Program,
    RenewRequest, Stdin,
};
pub use usage::{LeaseMetrics, LeaseUsage, MetricsQuery, UsageList, UsageSample};
