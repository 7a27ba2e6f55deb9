//! firepit's QEMU provider: real microVMs for the pool.
//!
//! # Why
//! The pool engine (`firepit-pool`) keeps VMs warm without knowing how they are made; it asks a
//! [`Provider`](firepit_pool::Provider). This crate is the provider that makes them with QEMU
//! (`-M microvm`): it owns everything between "a shape is wanted" and "a guest answers its agent",
//! and everything needed to tear that down again without leaving a process, a socket or a file.
//!
//! # What it is not
//! - Not a pool: it makes, probes and destroys one VM at a time; depth, refill and leases are the
//!   engine's. It keeps no table of shapes either: the pool hands it each shape's [`VmSpec`].
//! - Not an image builder: it boots the guest image it is given ([`ImagePaths`] in a [`VmSpec`]);
//!   `firepit-image` builds them, and the `firepit` facade turns a shape description
//!   (`firepit_shape::ShapeSpec`) into a [`VmSpec`].
//! - Not the guest agent's client, nor the network: a VM *holds* a [`Guest`](firepit_guest::Guest)
//!   (`firepit-guest`: exec, files, processes, terminals) and, with a network, a
//!   `firepit_net::VmNetwork` (the NAT's filter, addresses, counters); it starts them with QEMU and
//!   stands between them and a QEMU that exited or rests paused in its pool.
//! - Not a general QEMU wrapper: one machine type (microvm), one command line built in code (never
//!   a shell string), the devices firepit needs (serial console, QMP, the agent's virtio-serial
//!   port, virtio-rng, a virtio-blk root disk when the image has one: see [`RootDisk`], and for a
//!   shape with `network = "nat"` one virtio NIC) and nothing configurable beyond
//!   [`ProviderConfig`] and the [`VmSpec`].
//!
//! # How data flows
//! [`ProviderConfig`] is checked once by [`QemuProvider::new`] (errors: [`ConfigError`]). A shape's
//! [`VmSpec`] (the shape itself — vCPUs, memory, [`FillStrategy`], … — and its image) is checked
//! when it is added ([`QemuProvider::check`]) and arrives with every `create` of the shape, which
//! then goes one of two ways, chosen by the spec's fill strategy:
//! - cold boot: a private runtime directory, a command line, QEMU spawned under supervision, its
//!   console and QMP sockets accepted, then the readiness line [`firepit_agent::READY_LINE`] on the
//!   console and an agent ping, all under one boot deadline;
//! - snapshot: the shape's template is booted once, stopped and saved (its RAM in a shared file),
//!   and every VM after that is a copy-on-write clone restored from it in ≈0.1–0.3 s and given its
//!   own identity ([`fresh_identity`](firepit_guest::fresh_identity)); when that fails the shape cold-boots
//!   ([`QemuProvider::template_state`] says why).
//!
//! Networking (the shape's `network`, a [`NetworkSpec`]): none by default. With `nat`, each VM has
//! a user-mode NAT (libslirp, in its QEMU process) behind firepit's own egress filter, which
//! answers the guest's DNS too; its own MAC and IPv4 address, set by the agent after every cold
//! boot and restore ([`QemuVm::network`]); port forwards made at run time
//! ([`QemuVm::forward_port`]); an egress policy a lease can narrow ([`QemuVm::narrow_egress`]);
//! traffic counters per VM and per shape ([`QemuProvider::network_stats`]). The NAT's filter,
//! addresses and counters are `firepit-net`'s (why this design, and measurements against passt:
//! its docs and `firepit bench net`); this crate starts them with the VM and drives the forwards
//! over QMP.
//!
//! Beyond one QEMU process, a running VM can be paused to disk and resumed as itself
//! ([`QemuProvider::pause_to_disk`], [`QemuProvider::resume_saved`]: files, processes and their
//! output, address and port forwards kept; the paused VM's QEMU has exited), snapshotted and
//! started again as new VMs ([`QemuProvider::snapshot`], [`QemuProvider::start_from_snapshot`],
//! [`QemuProvider::clones_of`]), or forked into copy-on-write copies with identities of their own
//! ([`QemuProvider::fork`]). All rest on one on-disk format, [`SavedVm`] (QEMU's migration stream,
//! the disk layers, a manifest with checksums); what is wrong with one is a [`LifecycleError`].
//!
//! Either way the result is a [`QemuVm`], the handle a lease derefs to: [`Console`] (serial
//! console: send, `read_until`, output stream), `status` through [`QmpClient`] and the process
//! state, and everything through the guest agent (`exec`, files, processes, terminals): the
//! handle derefs to its [`Guest`](firepit_guest::Guest), whose every request first passes the VM's
//! gate (QEMU has not exited; a VM resting in its pool is woken, see `pause.rs`). Supervision: QEMU dies with its handle (SIGKILL on drop)
//! and with the firepit process (`PR_SET_PDEATHSIG`); a watcher task reaps it and makes
//! [`exit_info`](QemuVm::exit_info) and the pool's `exited()` resolve at once. `destroy` quits
//! QEMU over QMP, waits [`ProviderConfig::quit_grace`], then kills it and removes its directory.
//! An [`OwnershipHook`] ([`QemuProvider::with_ownership_hook`]) hears of every VM handed to the
//! pool and every VM destroyed: the daemon records them so that a restart after a crash can reap
//! them. What a VM costs against the pool's memory budget is the provider's
//! [`MemoryAccounting`](firepit_pool::MemoryAccounting): a clone its PSS, its template once.
//!
//! Bounds: each VM's QEMU runs in a cgroup of its own ([`CgroupConfig`]: a CPU quota of its
//! vCPUs, a memory limit of its RAM plus QEMU's overhead, a process limit; [`QemuVm::cgroup`]
//! reads its usage), and a shape's `disk_mb` bounds what a VM may write to its disk.
//! [`QemuVm::host_usage`] says what a VM costs its host now (CPU time, RSS/PSS, disk overlay, network
//! bytes), cheaply enough to sample every VM every few seconds.
//!
//! Accelerator: [`Accel::Auto`] picks KVM only when it can run our guests ([`detect_accel`]);
//! on our hosts (`kvm_pvm`) that is TCG. The env var [`ACCEL_ENV`] (`FIREPIT_ACCEL`) overrides the
//! config.
//!
//! Caveat: QEMU is spawned with `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the *thread* that
//! spawned it exits. Call `create` from async tasks on a runtime that outlives the VMs (tokio workers
//! live as long as their runtime); never from a `spawn_blocking` thread or a short-lived thread.
//!
//! ```no_run
//! # async fn demo() -> Result<(), firepit_qemu::QemuError> {
//! use firepit_pool::{Provider, ShapeKey};
//! use firepit_qemu::{ImagePaths, ProviderConfig, QemuProvider, VmSpec};
//! let provider = QemuProvider::new(ProviderConfig::default())?;
//! let paths = ImagePaths::new("target/firepit-image/vmlinuz", "target/firepit-image/initramfs.cpio.gz");
//! let spec = VmSpec::new("img", paths);                 // 1 vCPU, 256 MiB, snapshot fill
//! let vm = provider.create(&ShapeKey::new("small"), &spec).await?; // builds the template first
//! println!("{} ({:?})", vm.exec(["uname", "-r"]).await?.stdout_lossy(), vm.fill());
//! provider.destroy(vm).await;
//! # Ok(()) }
//! ```
//!
//! Tests: `cargo test -p firepit-qemu` boots real VMs and needs `FIREPIT_IMAGE_DIR` pointing at a
//! built guest image (`scripts/build-image`); without it the VM tests fail with that instruction.

#![warn(missing_docs)]

mod accel;
mod argv;
mod boot;
mod caps;
mod config;
mod config_error;
mod console;
mod disk;
mod disk_size;
mod error;
mod exit;
mod health;
mod launch;
mod lifecycle;
mod lifecycle_error;
mod memory_charge;
mod net;
mod ownership;
mod pause;
mod process;
mod provider;
mod provider_net;
mod qmp;
mod qmp_fd;
mod ring;
mod root_disk;
mod run_as;
mod rundir;
mod snapshot;
mod vm;
mod vm_cgroup;
mod vm_net;
mod vm_spec;
mod vm_usage;
mod warm;

pub use accel::{AccelVerdict, detect_accel};
pub use caps::QemuCaps;
pub use config::{
    ACCEL_ENV, Accel, CgroupConfig, FillKind, ImagePaths, ParseAccelError, ProviderConfig,
    QEMU_MEMORY_OVERHEAD_MB, QEMU_TCG_CACHE_MB, RETRY_AFTER, VM_PIDS_MAX, default_runtime_dir,
    default_template_dir,
};
pub use config_error::ConfigError;
pub use console::{Console, ConsoleOutput};
pub use error::{BootError, ConsoleError, QemuError, QmpError, SnapshotError, SpawnError};
pub use exit::ExitInfo;
pub use firepit_cgroup::{
    Cgroup, CgroupError, Sweep as CgroupSweep, Usage as CgroupUsage, Version as CgroupVersion,
};
/// How a shape's VMs are made ready: the one `FillStrategy`, firepit-shape's.
pub use firepit_shape::FillStrategy;
pub use firepit_shape::{EgressPolicy, EgressRule, EgressTarget, NetworkMode, NetworkSpec};
pub use health::agent_health_check;
pub use lifecycle::{LifecycleError, SavedKind, SavedVm};
pub use memory_charge::process_memory_kib;
pub use ownership::{OwnedProcess, OwnershipHook};
pub use provider::QemuProvider;
pub use qmp::{MigrationInfo, QmpClient, QmpEvent, StatusInfo};
pub use root_disk::{DiskError, DiskFormat, RootDisk};
pub use snapshot::{MAX_RESTORE_FAILURES, RESTORE_TIMEOUT, TemplateOrigin, TemplateState};
pub use vm::{QemuVm, VmStatus};
pub use vm_cgroup::{CgroupStatus, CgroupSupport, remove_stale_cgroups};
pub use vm_spec::VmSpec;
pub use vm_usage::{UsageDepth, VmUsage};
