//! firepit keeps real microVMs booted and hands one out in microseconds.
//!
//! # What it is
//! The facade most users depend on. It ties together
//! - [`pool`] (`firepit-pool`): the provider-agnostic engine — buckets per shape, refill, health
//!   checks, eviction, metrics, shutdown;
//! - [`qemu`] (`firepit-qemu`): the QEMU provider — microVM processes, QMP, serial console,
//!   snapshots; a VM handle derefs to its [`Guest`];
//! - [`guest`] (`firepit-guest`): the guest agent's client — exec, files, processes, terminals;
//! - [`net`] (`firepit-net`): a VM's NAT behind its egress filter;
//! - [`image`] (`firepit-image`): the guest image built from Debian packages;
//! - [`shape`] (`firepit-shape`): the one description of a shape ([`ShapeSpec`]) with its defaults.
//!
//! # What it is not
//! No HTTP server, no CLI, no progress bars: `firepit serve` (the daemon crate) and the `firepit`
//! binary are built on this crate, not in it.
//!
//! # How data flows
//! A shape is described once, as a [`ShapeSpec`] — the daemon's config file and API take one, and
//! a [`VmConfig`] (what [`Firepit::pool`] builds) holds one, with the kernel and console settings
//! only a library user gives. [`PoolShape`] checks it with the one [`ShapeSpec::validate`] (the
//! same error whichever way it came) and wires it into what the pool keeps (its name,
//! [`ShapeKey`], and its depth, age, health check and pausing) and what the QEMU provider makes its
//! VMs from ([`qemu::VmSpec`]: the shape itself and the image files it resolved to). The pool
//! stores the spec with the shape and passes it to every `create`, where the QEMU command line is
//! derived from it:
//!
//! ```text
//! VmConfig { ShapeSpec, kernel, console } ─▶ PoolShape ─┬─▶ Pool: bucket "default" (ShapeConfig + VmSpec) ─▶ QemuProvider::create(key, spec)
//! [[shape]] / PUT /v1/shapes: ShapeSpec ────────────────┘
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), firepit::Error> {
//! use firepit::{Firepit, VmConfig};
//! let image = firepit::image::Image::open("target/firepit-image".as_ref())?;
//! let pool = Firepit::pool(VmConfig::from_image(&image))
//!     .cpus(1)
//!     .memory_mb(256)
//!     .console_enabled()
//!     .build(4)
//!     .await?;                                    // returns when all 4 are booted & ready
//! let vm = pool.reserve().await?;                 // a warm VM, in microseconds
//! let console = vm.console().await?;
//! console.send("echo hello\n").await?;
//! let _out = console.read_until("hello").await?;
//! let r = vm.exec(["uname", "-r"]).await?;        // exit code, stdout, stderr via the agent
//! println!("{} {}", r.exit_code.unwrap_or(-1), r.stdout_lossy());
//! drop(vm);                                       // destroyed; the pool boots a replacement
//! pool.shutdown().await;                          // nothing left behind
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod builder;
mod error;
mod vm_config;
mod wiring;

pub use firepit_guest as guest;
pub use firepit_image as image;
pub use firepit_net as net;
pub use firepit_pool as pool;
pub use firepit_qemu as qemu;
pub use firepit_shape as shape;

pub use builder::{AgentPing, Firepit, VmPoolBuilder};
pub use error::Error;
pub use firepit_pool::{PoolError, ShapeKey, Status};
// The guest agent's request types a user builds to call the guest's methods; the rest of the wire
// protocol (answers, frames) stays in `firepit-agent`.
pub use firepit_agent::{
    Channel, ExecRequest, ProcessOutputRequest, PtyRequest, SpawnRequest, StartProcessRequest, WindowSize,
};
pub use firepit_guest::{ExecOutput, Guest, GuestError};
// What a VM costs its host (`vm.host_usage(UsageDepth::Cheap)`) and what its guest says it uses
// (`vm.usage(0, timeout)`, the guest's request).
pub use firepit_agent::{GuestUsage, OomKill};
pub use firepit_qemu::{Accel, Console, FillStrategy, QemuVm as VmHandle, UsageDepth, VmStatus, VmUsage};
pub use firepit_shape::{Depth, ShapeSpec};
pub use vm_config::{POOL_SHAPE, ResolvedImage, VmConfig};
pub use wiring::{PoolShape, PooledVm, VmPool};
