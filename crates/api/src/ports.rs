//! Port forwards and per-lease egress: `POST/GET /v1/leases/{id}/ports` and the acquire body with
//! lease options.

use std::net::SocketAddr;

use firepit_shape::EgressPolicy;
use serde::{Deserialize, Serialize};

use crate::lease_options::{Metadata, OnExpiry};
use crate::types::AcquireRequest;

/// `POST /v1/leases/{id}/ports`: forward a host port (on the host's loopback) to a guest port.
///
/// ```
/// let body: firepit_api::ForwardPortBody = serde_json::from_str(r#"{"guest_port": 8000}"#).unwrap();
/// assert_eq!(body.guest_port, 8000);
/// assert!(serde_json::from_str::<firepit_api::ForwardPortBody>(r#"{"guest_port": 70000}"#).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForwardPortBody {
    /// The TCP port in the guest, 1..=65535 (something in the guest listens on it, now or later).
    pub guest_port: u16,
}

/// One port forward of a lease.
///
/// ```
/// let forward = firepit_api::PortForward { guest_port: 8000, host_addr: "127.0.0.1:41234".parse().unwrap() };
/// assert_eq!(
///     serde_json::to_string(&forward).unwrap(),
///     r#"{"guest_port":8000,"host_addr":"127.0.0.1:41234"}"#
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortForward {
    /// The guest's TCP port.
    pub guest_port: u16,
    /// Where to connect on the host (loopback unless the shape's `forward_bind` says otherwise);
    /// gone when the lease ends.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.0.0.1:41234"))]
    pub host_addr: SocketAddr,
}

/// `GET /v1/leases/{id}/ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortList {
    /// The lease's forwards, in the order they were opened.
    pub ports: Vec<PortForward>,
}

/// The whole body of `POST /v1/leases`: [`AcquireRequest`] plus the lease options. A body without
/// the options (what `AcquireRequest` serialises to) is still valid; the client sends this type
/// when options are set ([`AcquireBody::from`] an `AcquireRequest`, then set them).
///
/// ```
/// use firepit_api::{AcquireBody, AcquireRequest, EgressPolicy};
/// let request = AcquireRequest { shape: "web".into(), wait_ms: 0, ttl_ms: None, snapshot: None };
/// let body = AcquireBody { egress: Some(EgressPolicy::Deny), ..AcquireBody::from(request) };
/// let json = serde_json::to_string(&body).unwrap();
/// assert_eq!(json, r#"{"shape":"web","wait_ms":0,"ttl_ms":null,"egress":"deny"}"#);
/// let listed: AcquireBody =
///     serde_json::from_str(r#"{"shape":"web","egress":["pypi.org:443","10.0.0.0/8"]}"#).unwrap();
/// assert!(matches!(listed.egress, Some(EgressPolicy::List(ref rules)) if rules.len() == 2));
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    /// Shape to lease a VM of. Or leave it out (empty) and give sizes: `cpus`, `memory_mb`,
    /// `disk_mb` (any of them) lease the smallest registered shape that covers them
    /// (`400 no_shape_fits`, naming the largest, when none does).
    #[serde(default)]
    pub shape: String,
    /// How long to wait for a ready VM, in ms (0: answer 503 at once when none is ready).
    #[serde(default)]
    pub wait_ms: u64,
    /// Lease lifetime in ms, counted from the moment the VM is handed out (default: the daemon's
    /// `leases.default_ttl_secs`).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Narrows the shape's egress policy for this lease (before the VM is handed out): `"deny"`
    /// or a list of `CIDR[:port]`, `IP[:port]`, `name[:port]` entries, each within the shape's
    /// own policy. An entry the shape does not allow is refused (`400 egress_widens`); a list on a
    /// shape without a network is `409 network_disabled`. Default: the shape's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, example = json!(["pypi.org:443"])))]
    pub egress: Option<EgressPolicy>,
    /// Instead of `shape`: at least this many vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Instead of `shape`: at least this much guest memory, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Instead of `shape`: at least this much room on the disk, MiB (only shapes that declare a
    /// `disk_mb` cover it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    /// The lease's labels (at most 32; names of `A-Z a-z 0-9 _ . -`, values up to 256 bytes):
    /// returned in its views and events, and a filter of `GET /v1/leases` (`metadata.NAME=VALUE`).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// A call on the lease while it is paused resumes it first instead of answering
    /// `lease_paused`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_resume: bool,
    /// What the TTL running out does: `destroy` (default) or `pause` (needs a backend that can
    /// pause; else `501 unsupported`).
    #[serde(default, skip_serializing_if = "is_destroy")]
    pub on_expiry: OnExpiry,
    /// Start the VM from this snapshot instead of a warm VM of `shape` (see
    /// [`AcquireRequest::snapshot`]); `shape`, when given, must be the snapshot's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

fn is_destroy(on_expiry: &OnExpiry) -> bool {
    *on_expiry == OnExpiry::Destroy
}

impl From<AcquireRequest> for AcquireBody {
    fn from(request: AcquireRequest) -> Self {
        Self {
            shape: request.shape,
            wait_ms: request.wait_ms,
            ttl_ms: request.ttl_ms,
            egress: None,
            cpus: None,
            memory_mb: None,
            disk_mb: None,
            metadata: Metadata::new(),
            auto_resume: false,
            on_expiry: OnExpiry::Destroy,
            snapshot: request.snapshot,
        }
    }
}
