//! Leases: which client holds which VM, until when, in which state, and what is left of a lease
//! once it ended.
//!
//! # The model
//! A lease is `running` (it holds a VM), `paused` (it holds no VM, only a saved state on the host,
//! and its TTL clock stands still) or `ended` (for a reason: [`firepit_api::EndReason`]). Its end is
//! final whatever its clients do: ending a lease (release, TTL, a kill, its VM exiting, a failed
//! health check, the daemon stopping) destroys its VM **at once**, and every request and stream
//! on it ends with `lease_ended`. That holds because nothing but the lease owns the VM: handlers
//! reach it only through [`Lease::on_vm`], which lends it for the length of one call and drops
//! the call (answering `lease_ended` or `lease_paused`) the moment the lease stops running.
//! Streams (exec output, downloads, terminals) hold the guest's stream handles, never the VM, and
//! watch [`Lease::stopped`] to end with the lease.
//!
//! # The parts
//! - [`lease`]: one lease, its VM slot and its state; [`lease::Interrupted`].
//! - `state`: the small types the parts share (where the VM is, how a lease ended, why a call or a
//!   transition did not happen) and the mutex `lock`; below all of them.
//! - [`clock`]: the TTL clock (stops while paused) and the task that acts when it runs out.
//! - [`transitions`]: pause and resume (the backend saves and restores; the lease keeps its id).
//! - [`watch`]: a running lease's VM watched: its QEMU exiting ends the lease (`vm_exited`), a VM
//!   that stops answering its health check too (`health_check_failed`).
//! - [`views`]: what `GET /v1/leases` shows, and the bounded memory of ended leases.
//! - [`store`]: lease records under the state dir (written atomically), read back at start: leases
//!   that were running end as `daemon_restart`, paused ones stay paused.
//! - [`table`]: all leases by id: acquire ([`acquire`]), renew, release, end, list.
//! - [`snapshots`]: snapshots and forks of a running lease (new leases from them).
//!
//! Every change of state is an event on the bus ([`crate::events`]): `lease.created`,
//! `lease.paused`, `lease.resumed`, `lease.ended`, `lease.forked`.

pub mod acquire;
pub mod clock;
mod context;
mod error;
pub mod lease;
pub mod snapshots;
pub(crate) mod state;
pub mod store;
pub mod table;
pub mod transitions;
pub mod views;
pub mod watch;

pub use acquire::AcquireParams;
pub use context::LeaseSettings;
pub use error::LeaseError;
pub use lease::{Interrupted, Lease, LeaseOptions};
pub use snapshots::ForkParams;
pub use table::LeaseTable;
pub use views::{lease_response, unix_ms};
