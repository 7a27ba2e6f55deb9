//! The shape description and its defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{FillStrategy, NetworkSpec};

/// One kind of VM kept warm: a `[[shape]]` table of the daemon's config, the body of
/// `PUT /v1/shapes/{name}`, or built in code. Every field but `name` and `image` has a default
/// ([`ShapeSpec::new`] shows them); unknown fields are refused.
///
/// ```
/// use firepit_shape::{Depth, FillStrategy, ShapeSpec};
/// let spec = ShapeSpec { cpus: 2, depth: Depth { low: 2, high: 4 }, ..ShapeSpec::new("big", "/images/debian") };
/// assert_eq!(spec.memory_mb, 256);
/// assert!(spec.validate().is_err(), "the image directory does not exist here");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShapeSpec {
    /// Name clients lease by (`[a-z0-9][a-z0-9_-]*`, at most 63 characters). In the body of
    /// `PUT /v1/shapes/{name}` it may be left out (the path names the shape).
    #[serde(default)]
    pub name: String,
    /// The guest image: a firepit image directory (built by `firepit image build`), a root disk
    /// (raw ext4 or qcow2) or initramfs file, or the id of a stored image (`firepit image ls`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub image: PathBuf,
    /// Virtual CPUs per VM (1..=64). Default 1.
    #[serde(default = "defaults::cpus")]
    pub cpus: u32,
    /// Guest memory per VM in MiB (64..=65536). Default 256.
    #[serde(default = "defaults::memory_mb")]
    pub memory_mb: u64,
    /// How much each VM may write to its disk, MiB (16..=1048576); past it the guest gets
    /// `ENOSPC` and the host never holds more of one VM's writes. With a root disk: each VM's file
    /// system has exactly this much free space (the image is resized to its content plus this,
    /// once per image and size), so its copy-on-write overlay stays within it plus file-system
    /// and qcow2 metadata. Without one (the guest's files live in its RAM): the root file system
    /// and `/tmp` together may hold this much more than the image. Default: none — the image's own
    /// free space, or half the guest's RAM for `/` and `/tmp` each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    /// How many ready VMs to keep. Default `{ low = 1, high = 2 }`.
    #[serde(default)]
    pub depth: Depth,
    /// Replace ready VMs older than this many seconds. Default: never.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// `snapshot` (default) or `cold`.
    #[serde(default)]
    pub fill: FillStrategy,
    /// Ping the guest agent before handing a VM out. Default `true`.
    #[serde(default = "defaults::yes")]
    pub health_check: bool,
    /// `"none"` (default: no network device) or `"nat"`, or a table with the egress policy (see
    /// [`NetworkSpec`]).
    #[serde(default)]
    pub network: NetworkSpec,
    /// Pause idle VMs while they wait in the pool (their vCPUs stop: no CPU used) and wake them,
    /// with the guest clock set, as they are handed out. Default `true`.
    #[serde(default = "defaults::yes")]
    pub pause_idle: bool,
    /// Run a trivial command in every new VM while it is filled, so the user's first command is as
    /// fast as later ones (under TCG a fresh VM's first exec costs ≈100–200 ms more; the warm-up
    /// costs each idle VM ≈8 MiB more memory). Default `true`.
    #[serde(default = "defaults::yes")]
    pub warm_up: bool,
    /// A command from the VM's own image to run too in every new VM while it is filled, after
    /// firepit's warm-up: e.g. `["/bin/bash", "-lc", "true"]` for a shape whose users' commands
    /// start as login shells (E2B's SDKs run every command so). Under TCG each VM translates the
    /// guest's code afresh, so the programs this runs then start faster in the user's first
    /// command too. Runs with the image's exec defaults, at most 10 s; a failure is logged and counted as a failed
    /// warm-up and the VM is handed out all the same. Needs `warm_up`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warm_up_argv: Vec<String>,
}

/// How a shape's `image` names a snapshot of the daemon (`snapshot:ID`, an id of
/// `GET /v1/snapshots`) rather than a guest image: no image path or stored image id holds a `:`
/// at that place (stored ids are hex; write `./snapshot:x` for a file named so).
pub const SNAPSHOT_IMAGE_PREFIX: &str = "snapshot:";

impl ShapeSpec {
    /// The snapshot id the shape's `image` names (`snapshot:ID`), if it names one.
    ///
    /// ```
    /// use firepit_shape::ShapeSpec;
    /// assert_eq!(ShapeSpec::new("warm", "snapshot:0123abcd").snapshot_image(), Some("0123abcd"));
    /// assert_eq!(ShapeSpec::new("small", "/images/debian").snapshot_image(), None);
    /// ```
    pub fn snapshot_image(&self) -> Option<&str> {
        self.image.to_str()?.strip_prefix(SNAPSHOT_IMAGE_PREFIX)
    }

    /// A shape named `name` on `image`, every other field at its default: 1 vCPU, 256 MiB, no
    /// disk bound, depth 1..=2, no age limit, snapshot fill, health check on, no network, idle VMs paused, new
    /// VMs warmed up.
    pub fn new(name: impl Into<String>, image: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            cpus: defaults::cpus(),
            memory_mb: defaults::memory_mb(),
            disk_mb: None,
            depth: Depth::default(),
            max_age_secs: None,
            fill: FillStrategy::default(),
            health_check: true,
            network: NetworkSpec::default(),
            pause_idle: true,
            warm_up: true,
            warm_up_argv: Vec::new(),
        }
    }

    /// `max_age_secs` as a duration.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age_secs.map(Duration::from_secs)
    }
}

/// `depth = { low = 2, high = 4 }`: refill when fewer than `low` VMs are ready, up to `high`. A
/// field left out takes its default (`low` 1, `high` 2).
///
/// ```
/// use firepit_shape::Depth;
/// assert_eq!(Depth::default(), Depth { low: 1, high: 2 });
/// assert_eq!(serde_json::from_str::<Depth>(r#"{"high": 4}"#).unwrap(), Depth { low: 1, high: 4 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Depth {
    /// Refill when fewer than this many VMs are ready.
    pub low: usize,
    /// Fill up to this many ready VMs (1..=64, at least `low`).
    pub high: usize,
}

impl Default for Depth {
    fn default() -> Self {
        Self { low: 1, high: 2 }
    }
}

mod defaults {
    pub fn cpus() -> u32 {
        1
    }
    pub fn memory_mb() -> u64 {
        256
    }
    pub fn yes() -> bool {
        true
    }
}
