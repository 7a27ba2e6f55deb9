//! firepit past one host: daemons register in etcd, gateways place leases on them and route every
//! later request of a lease to its host.
//!
//! Why etcd: the coordination firepit needs (a registry whose entries vanish when their owner dies,
//! a watch to learn about it, a small consistent map) is exactly what etcd's leases, watches and
//! transactions are, and Debian ships it (`etcd-server`). Building that on gossip or on a database
//! would be a second, weaker etcd. E2B keeps the same data in Nomad/Consul and Redis, Daytona in
//! Postgres; both place by capacity like [`placement`] does.
//!
//! How the parts fit, bottom up:
//!
//! ```text
//! keys (etcd key layout) ── record (HostRecord, LeaseRoute as JSON) ── placement (pure: which host first)
//!        └──────────────────────┬──────────────────────────────────────────┘
//!                        store (Etcd: bounded, retried operations)
//!            ┌───────────────────┴──────────────────┐
//!   advertiser (daemon: record under an           directory (gateway: hosts by watch, etcd health,
//!   etcd lease, kept alive, route sweep)          placement state) ── routes (lease → host map)
//! ```
//!
//! [`LocalEtcd`] starts a throw-away etcd cluster on 127.0.0.1 for tests, the cluster bench and
//! trying a cluster on one machine.
//!
//! What it is not: an HTTP server (the gateway is `firepit-gateway`) or part of the daemon (which
//! only implements [`CapacitySource`] and starts an [`Advertiser`]). The `firepit` library does not
//! depend on it.

#![warn(missing_docs)]

pub mod advertiser;
pub mod directory;
mod error;
mod host_load;
mod keys;
pub mod local_etcd;
pub mod placement;
mod record;
pub mod routes;
mod store;
mod sweep;

pub use advertiser::{AdvertiseConfig, Advertiser, CapacitySource};
pub use directory::{Directory, EtcdHealth};
pub use error::ClusterError;
pub use keys::{DEFAULT_PREFIX, Keys, MAX_HOST_ID_LEN, check_host_id};
pub use local_etcd::{LocalEtcd, LocalEtcdError};
pub use placement::{DEFAULT_K, HostState, placement_order};
pub use record::{HostRecord, LeaseRoute, RECORD_VERSION, ShapeCapacity, now_unix_ms};
pub use routes::{Lookup, RouteMap};
pub use store::{Etcd, REQUEST_TIMEOUT, RETRY_BUDGET};
