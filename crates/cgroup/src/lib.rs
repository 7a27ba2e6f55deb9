//! One cgroup per VM: what bounds a VM's QEMU process on its host, and what tells how much it
//! used.
//!
//! # Why
//! A guest is bounded by its QEMU settings (vCPUs, RAM), but QEMU itself is not: a busy guest can
//! take every core its threads can get, and QEMU's own memory (TCG's translation cache, device
//! state, a leak) is unbounded. Putting each VM's QEMU in its own cgroup gives the host the last
//! word — a CPU quota of the VM's vCPUs, a memory limit of its RAM plus QEMU's overhead, a process
//! limit — and reads its CPU time and memory for free from files the kernel keeps anyway.
//!
//! # How the parts fit
//! - [`Hierarchy::detect`] finds the controllers: cgroup v2 where the unified hierarchy has `cpu`,
//!   `memory` and `pids`, else v1 hierarchies of the three (the rule and the hybrid case are in
//!   the `hierarchy` module's docs).
//! - [`Parent::open`] makes the parent all VMs' cgroups go under (relative paths are below the
//!   process's own cgroup) and, under v2, delegates the controllers to it.
//! - [`Parent::create`] makes one VM's [`Cgroup`] with its [`Limits`]; the child process joins it
//!   between fork and exec through a [`Joiner`] (so everything QEMU allocates is charged to it,
//!   and no guest code runs outside it); [`Cgroup::usage`] reads CPU time and memory; dropping
//!   the [`Cgroup`] removes it once its process is gone.
//! - [`Parent::remove_stale`] removes what a crashed owner left (the caller says which names are
//!   stale: this crate does not know how VMs are named).
//!
//! What it is not: a general cgroup library (no freezer, cpuset, io or hugetlb; no systemd D-Bus
//! — firepit writes the cgroup files itself, which works the same with or without systemd, given
//! a delegated parent); a process supervisor (the caller spawns and reaps).
//!
//! Plain file I/O rather than a crate such as `cgroups-rs`: firepit needs four controllers and a
//! dozen files, and the pre-exec join must be async-signal-safe (one `write(2)` per open
//! descriptor), which a general library's attach API does not promise.
//!
//! ```no_run
//! use firepit_cgroup::{Hierarchy, Limits, Parent};
//! let hierarchy = Hierarchy::detect()?;
//! let parent = Parent::open(&hierarchy, "firepit".as_ref())?;
//! let cgroup = parent.create("fp-42-1", &Limits { cpus: 1, memory_bytes: 512 << 20, pids: 128 })?;
//! let joiner = cgroup.joiner()?;
//! let mut command = std::process::Command::new("sleep");
//! command.arg("1");
//! // SAFETY: `join_self` only calls write(2) on descriptors opened before the fork.
//! unsafe { std::os::unix::process::CommandExt::pre_exec(&mut command, move || joiner.join_self()) };
//! command.status().map_err(|e| firepit_cgroup::CgroupError::Io { what: "running", path: "sleep".into(), source: e })?;
//! println!("{:?}", cgroup.usage()?); // CPU time and memory of what ran in it
//! # Ok::<(), firepit_cgroup::CgroupError>(())
//! ```

#![warn(missing_docs)]

mod cgroup;
mod error;
mod hierarchy;
mod limits;
mod parent;

pub use cgroup::{Cgroup, Joiner, Usage};
pub use error::CgroupError;
pub use hierarchy::{Controller, Hierarchy, Mount, Version};
pub use limits::{Limits, PERIOD_US};
pub use parent::{Parent, Sweep};
