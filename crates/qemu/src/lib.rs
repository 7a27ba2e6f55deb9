//! firepit's QEMU provider: real microVMs for the pool.
//!
//! The pool engine (`firepit-pool`) asks a [`Provider`](firepit_pool::Provider) for VMs; this crate
//! is the one that makes them with QEMU (`-M microvm`). How the parts fit:
//!
//! - [`QemuProvider`] holds the configuration, the registered images and the accelerator verdict;
//!   `create` builds a command line ([`argv`](crate) module, no shell strings), spawns QEMU under
//!   supervision, and waits until the guest printed [`firepit_agent::READY_LINE`] and its agent
//!   answered a ping, all under one boot deadline.
//! - [`QemuVm`] is the handle a lease derefs to: [`Console`] (serial console: send, `read_until`,
//!   output stream), `exec` through the guest agent, `status` through QMP and the process state.
//! - The sandbox API on [`QemuVm`], all through the guest agent's streams (bounded memory on both
//!   sides whatever the size: see [`STREAM_WINDOW`]): files (`write_file`, `read_file`, `stat`,
//!   `list_dir`, `mkdir`, `remove`, `chmod`, `chown`, `rename`), directories as tar streams
//!   (`upload_dir`, `download_dir`, `upload_tar`, `download_tar`), attached processes with streamed
//!   output (`spawn` → [`GuestProcess`]), background processes that outlive connections
//!   (`start_process`, `processes`, `signal_process`, `wait_process`, `process_output`), and
//!   terminals (`pty` → [`PtySession`]). Failures the guest reports carry a [`GuestErrorKind`]
//!   ([`QemuError::guest_error_kind`]).
//! - Supervision: QEMU dies with its handle (SIGKILL on drop) and with the firepit process
//!   (`PR_SET_PDEATHSIG`); a watcher task reaps it and makes `exited()` resolve at once.
//! - The QMP client ([`QmpClient`]) is a small typed one; its module docs say why not `qapi`.
//!
//! Accelerator: [`Accel::Auto`] picks KVM only when it can run our guests ([`detect_accel`]);
//! on our hosts (`kvm_pvm`) that is TCG. The env var `FIREPIT_ACCEL` overrides the config.
//!
//! Fill strategies ([`FillStrategy`]): `ColdBoot` boots the kernel for every VM; `Snapshot` boots one
//! template per shape and restores copy-on-write clones of it (see the `snapshot` module docs for how,
//! and [`QemuProvider::template_state`] for the fallback to cold boot).
//!
//! Caveat: QEMU is spawned with `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the *thread* that
//! spawned it exits. Call `create` from async tasks on a runtime that outlives the VMs (tokio workers
//! live as long as their runtime); never from a `spawn_blocking` thread or a short-lived thread.
//!
//! Tests: `cargo test -p firepit-qemu` boots real VMs and needs `FIREPIT_IMAGE_DIR` pointing at a
//! built guest image (`scripts/build-image`); without it the VM tests fail with that instruction.

mod accel;
mod agent;
mod agent_routes;
mod argv;
mod boot;
mod caps;
mod config;
mod console;
mod error;
mod exec;
mod guest_background;
mod guest_dirs;
mod guest_files;
mod guest_process;
mod guest_pty;
mod memory_charge;
mod process;
mod provider;
mod qmp;
mod restore;
mod ring;
mod run_as;
mod rundir;
mod snapshot;
mod streams;
mod template_build;
mod template_store;
mod vm;

pub use accel::{AccelVerdict, detect_accel};
pub use caps::QemuCaps;
pub use config::{
    ACCEL_ENV, Accel, FillKind, FillStrategy, ImagePaths, ParseAccelError, ProviderConfig,
    default_runtime_dir, default_template_dir,
};
pub use console::{Console, ConsoleOutput};
pub use error::{AgentError, BootError, ConsoleError, QemuError, QmpError, SnapshotError, SpawnError};
pub use exec::{ExecOutput, agent_health_check, fresh_identity};
pub use firepit_agent::{
    Channel, DirEntry, DirListing, ExecRequest, ExitStatus, FailureKind as GuestErrorKind, FileKind,
    FileStat, IdentityApplied, IdentityRequest, MkdirRequest, Pong, ProcessInfo, ProcessOutput,
    ProcessOutputRequest, ProcessRef, PtyRequest, STREAM_WINDOW, SpawnRequest, StartProcessRequest,
    WindowSize,
};
pub use guest_files::{GuestFileReader, WriteOptions};
pub use guest_process::{GuestProcess, ProcessControl};
pub use guest_pty::PtySession;
pub use memory_charge::process_memory_kib;
pub use process::ExitInfo;
pub use provider::QemuProvider;
pub use qmp::{MigrationInfo, QmpClient, QmpEvent, StatusInfo};
pub use snapshot::{MAX_RESTORE_FAILURES, RESTORE_TIMEOUT, RETRY_AFTER, TemplateOrigin, TemplateState};
pub use streams::{GuestInput, GuestOutput};
pub use vm::{QemuVm, VmStatus};
