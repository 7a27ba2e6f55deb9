//! What the daemon reports about its shapes.

use firepit_shape::FillStrategy;
use serde::{Deserialize, Serialize};

/// One shape's state, as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShapeStatusView {
    /// Shape name.
    pub name: String,
    /// VMs ready to hand out.
    pub ready: usize,
    /// VMs being booted or restored.
    pub filling: usize,
    /// VMs handed out and not yet released.
    pub leased: usize,
    /// Low water mark.
    pub depth_low: usize,
    /// High water mark.
    pub depth_high: usize,
    /// Failed fills since start.
    pub fill_failures: u64,
    /// Failed fills in a row (reset by a success).
    pub consecutive_failures: u64,
    /// The last fill error, if any.
    pub last_error: Option<String>,
    /// Virtual CPUs per VM.
    #[serde(default)]
    pub cpus: u32,
    /// Guest memory per VM, MiB.
    #[serde(default)]
    pub memory_mb: u64,
    /// What each VM may write to its disk, MiB (`None`: the image's own free space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    /// The guest image's id (for a root-disk image, the disk's and the boot image's ids).
    #[serde(default)]
    pub image_id: String,
    /// The root disk every VM gets a private copy-on-write overlay of, when the image has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk: Option<String>,
    /// Accelerator the VMs run on (`kvm`, `tcg`, or `none` for fakes).
    pub accelerator: String,
    /// How VMs are made ready.
    pub fill: FillStrategy,
    /// How the last VM was actually made: `cold_boot`, `snapshot`, or `cold_boot_fallback` when a
    /// snapshot shape fell back to cold boot (see `fill_state`). `None` before the first fill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fill: Option<String>,
    /// For snapshot shapes, the template's state in one line, e.g. `snapshot: template reused` or
    /// `cold boot fallback: template damaged: ...; template retried in 42 s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_state: Option<String>,
}

/// The host's CPUs and memory, and what the pools' VMs take of the memory budget (`GET /v1/pools`).
///
/// ```
/// let host: firepit_api::HostView = serde_json::from_str(
///     r#"{"cpus":2,"memory_total_mb":24000,"memory_used_mb":1200,"memory_budget_mb":8192}"#,
/// ).unwrap();
/// assert_eq!(host.memory_budget_mb, Some(8192));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostView {
    /// CPUs this daemon may run on.
    pub cpus: usize,
    /// The host's memory, MiB (0: unknown).
    pub memory_total_mb: u64,
    /// Memory charged to the pools' VMs (every alive VM, and snapshot templates), MiB.
    pub memory_used_mb: u64,
    /// The cap on that memory (`limits.memory_budget_mb`); `None`: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget_mb: Option<u64>,
}
