//! What a firepit *shape* is: one kind of VM kept warm — which guest image, how big, how many
//! ready, how they are made — described once, with one set of defaults and one validation.
//!
//! Why a crate of its own: the same description arrives from three places — a `[[shape]]` table
//! of the daemon's config file, the body of `PUT /v1/shapes/{name}`, and a library user's code —
//! and flows on to the pool (depth, age) and the VM provider (image, size, fill). Keeping it here,
//! as plain data, lets the daemon, its HTTP API, the client and the library share it without
//! pulling each other in, and makes "the defaults" one `Default` impl rather than one per entry
//! point.
//!
//! What it is not: it does not open images, start VMs or keep pools; it only says what is asked
//! for and whether that is allowed ([`ShapeSpec::validate`]), and whether a lease's egress policy
//! only narrows its shape's ([`NetworkSpec::check_narrowing`]). Enforcing a policy on a VM's
//! traffic is `firepit-net`'s.
//!
//! ```
//! use firepit_shape::{FillStrategy, ShapeSpec};
//! let spec: ShapeSpec = toml::from_str("name = \"small\"\nimage = \"/var/lib/firepit/image\"\n").unwrap();
//! assert_eq!((spec.cpus, spec.memory_mb, spec.depth.low, spec.depth.high), (1, 256, 1, 2));
//! assert_eq!(spec.fill, FillStrategy::Snapshot);
//! assert_eq!(spec, ShapeSpec::new("small", "/var/lib/firepit/image"));
//! ```

#![warn(missing_docs)]

mod egress;
mod fill;
mod narrowing;
mod network;
mod spec;
mod validate;

pub use egress::{EgressPolicy, EgressRule, EgressTarget, MAX_EGRESS_RULES};
pub use fill::FillStrategy;
pub use narrowing::NarrowingError;
pub use network::{MAX_HOST_PORTS, NetworkMode, NetworkSpec};
pub use spec::{Depth, SNAPSHOT_IMAGE_PREFIX, ShapeSpec};
pub use validate::{
    DISK_MB_RANGE, InvalidShape, MAX_CPUS, MAX_DEPTH, MAX_DURATION_SECS, MAX_WARM_UP_ARGS,
    MAX_WARM_UP_ARGV_BYTES, MEMORY_MB_RANGE,
};
