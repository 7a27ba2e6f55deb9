//! firepit keeps real microVMs booted and hands one out in microseconds.
//!
//! This crate is the facade most users depend on. It ties together
//! - [`pool`] (`firepit-pool`): the provider-agnostic engine — buckets per shape, refill, health
//!   checks, eviction, metrics, shutdown;
//! - [`qemu`] (`firepit-qemu`): the QEMU provider — microVM processes, QMP, serial console, agent;
//! - [`image`] (`firepit-image`): the guest image built from Debian packages.
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

mod builder;
mod error;
mod vm_config;

pub use firepit_image as image;
pub use firepit_pool as pool;
pub use firepit_qemu as qemu;

pub use builder::{AgentPing, Firepit, VmPoolBuilder};
pub use error::Error;
pub use firepit_pool::{PoolError, ShapeKey, Status};
pub use firepit_qemu::{Accel, Console, ExecOutput, ExecRequest, FillStrategy, QemuVm as VmHandle, VmStatus};
pub use vm_config::{ResolvedImage, VmConfig};

/// A pool of QEMU microVMs, as built by [`Firepit::pool`].
pub type VmPool = firepit_pool::Pool<firepit_qemu::QemuProvider>;

/// A VM leased from a [`VmPool`]: derefs to [`VmHandle`]; dropping it destroys the VM and the
/// pool boots a replacement.
pub type PooledVm = firepit_pool::PooledVm<firepit_qemu::QemuProvider>;
