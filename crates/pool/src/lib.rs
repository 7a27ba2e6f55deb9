//! firepit's pool engine: keeps warm VMs of several shapes ready and hands them out fast.
//!
//! # Why
//! Booting a microVM takes hundreds of milliseconds to seconds; handing out one that is already
//! booted takes microseconds. This crate is the provider-agnostic machinery that keeps VMs booted
//! and ready — refill, eviction, health, limits, metrics, shutdown — without knowing how a VM is
//! made: a [`Provider`] creates, probes and destroys them (firepit's is QEMU; the `testing` feature
//! has an in-memory one).
//!
//! # What it is not
//! - Not a VMM, and not tied to one: it never starts a process, opens a socket or reads an image.
//!   Everything about a VM goes through the small traits [`Provider`], [`PoolVm`] and
//!   [`MemoryAccounting`].
//! - Not a recycler: VMs are single-use. A lease that ends destroys its VM (a tenant may have
//!   changed anything inside); the pool only ever hands out fresh ones.
//! - Not a scheduler or a server: no HTTP, no tenants, no placement across hosts. One process, one
//!   pool per provider; the daemon and the CLI sit on top of it.
//!
//! # How data flows
//! A VM travels one way: the provider creates it → it waits, ready, in its shape's bucket → a
//! `reserve()` takes it out as a [`PooledVm`] → the lease is dropped → the reaper destroys it →
//! the refiller, woken by the hand-out, has already started its replacement. Configuration flows
//! the same way, once: a shape is registered ([`PoolBuilder::shape`], [`Pool::register_shape`]) as
//! its name ([`ShapeKey`]), the provider's description of its VMs ([`Provider::Spec`]) and how its
//! bucket is kept warm ([`ShapeConfig`]); all three are validated at the edge, the bucket keeps
//! them, and every fill hands the spec to [`Provider::create`]. The engine trusts them from then
//! on. Observations flow out as [`Status`] (a plain struct) and metrics labelled by shape name.
//!
//! # How the parts fit
//! - A [`Pool`] holds one *bucket* per [`ShapeKey`] (a shape's name): its spec and settings, its
//!   ready VMs (oldest first), its FIFO queue of waiting `reserve()` calls, and its counts. One
//!   mutex covers all buckets and is never held across an `.await`.
//! - [`Pool::reserve`] takes a ready VM if nobody is queued, else queues; a new VM is handed to the
//!   first in the queue. Every step that holds a VM outside its bucket is a guard that gives it back
//!   on drop, so cancelling a `reserve()` never loses a VM. A [`HealthCheck`] runs before hand-out
//!   (for shapes whose [`ShapeConfig::health_check`] is on).
//! - The returned [`PooledVm`] derefs to the provider's VM. VMs are single-use: dropping the lease
//!   sends the VM to the *reaper* (an unbounded channel, so `Drop` never needs a runtime), which
//!   destroys it.
//! - The *refiller* task keeps each bucket at its target depth. It is event-driven: a hand-out, an
//!   eviction, a finished fill or freed memory wakes it at once. Fills run in parallel up to
//!   `max_parallel_fills`, within the memory budget (what a VM costs is the provider's
//!   [`MemoryAccounting`]); failures back off exponentially with jitter
//!   and show in [`Status`] and the metrics. With [`AdaptiveDepth`] the target grows with demand
//!   (acquire rate × fill latency × safety, Little's law).
//! - The *maintenance* task replaces VMs past `max_age` / `idle_ttl` (a replacement first, so the
//!   pool never empties under load) and probes idle VMs; one watcher task evicts an idle VM the moment
//!   [`PoolVm::exited`] resolves.
//! - [`Pool::shutdown`] (or dropping the last `Pool` clone) stops all of it and destroys every VM.
//!
//! The [`guide`] shows how to use it: health checks, several shapes, `Drop`, metrics.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), firepit_pool::PoolError> {
//! use std::time::Duration;
//! use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec}};
//!
//! let shape = ShapeKey::new("small");
//! let pool = Pool::builder(MemoryProvider::new())
//!     .shape(shape.clone(), MemorySpec::new(256))   // the provider's spec of its VMs
//!     .depth(2..=4)
//!     .max_age(Duration::from_secs(600))
//!     .health_check(|vm: &firepit_pool::testing::MemoryVm| vm.health())
//!     .build()
//!     .await?;                                   // returns once 2 VMs are ready
//! let vm = pool.reserve().await?;                // a warm VM, in microseconds
//! println!("got {} of {}", vm.id(), vm.shape());
//! drop(vm);                                      // destroyed; the refiller replaces it
//! assert_eq!(pool.status().shape(&shape).map(|s| s.low_water), Some(2));
//! pool.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod adaptive;
mod bucket;
mod builder;
mod config;
mod error;
mod health;
mod lease;
mod maintenance;
mod memory;
mod metrics;
mod pool;
mod provider;
mod reaper;
mod refill;
mod registry;
mod reserve;
mod shape;
mod shared;
mod shutdown;
mod status;
#[cfg(feature = "testing")]
pub mod testing;
mod warmup;
mod watch;

/// The user guide (`GUIDE.md`), with examples that run as doctests.
#[doc = include_str!("../GUIDE.md")]
pub mod guide {}

pub use builder::PoolBuilder;
pub use config::{AdaptiveDepth, Backoff, ShapeConfig};
pub use error::{PoolError, error_chain};
pub use health::{BorrowingCheck, CheckFuture, HealthCheck};
pub use lease::PooledVm;
pub use memory::MemoryAccounting;
pub use metrics::{EvictReason, MetricsSnapshot, ShapeMetrics, UNSPECIFIED_FILL};
pub use pool::Pool;
pub use provider::{PoolVm, Provider, Unhealthy};
pub use shape::ShapeKey;
pub use status::{ShapeStatus, Status};
