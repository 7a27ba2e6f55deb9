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

#![warn(missing_docs)]

mod accel;
mod agent;
mod argv;
mod boot;
mod caps;
mod config;
mod config_error;
mod console;
mod error;
mod exec;
mod health;
mod launch;
mod memory_charge;
mod process;
mod provider;
mod qmp;
mod restore;
mod ring;
mod run_as;
mod rundir;
mod snapshot;
mod template_build;
mod template_store;
mod vm;

pub use accel::{AccelVerdict, detect_accel};
pub use caps::QemuCaps;
pub use config::{
    ACCEL_ENV, Accel, FillKind, FillStrategy, ImagePaths, ParseAccelError, ProviderConfig, RETRY_AFTER,
    default_runtime_dir, default_template_dir,
};
pub use config_error::ConfigError;
pub use console::{Console, ConsoleOutput};
pub use error::{AgentError, BootError, ConsoleError, QemuError, QmpError, SnapshotError, SpawnError};
pub use exec::{ExecOutput, fresh_identity};
pub use firepit_agent::{ExecRequest, IdentityApplied, IdentityRequest, Pong};
pub use health::agent_health_check;
pub use memory_charge::process_memory_kib;
pub use process::ExitInfo;
pub use provider::QemuProvider;
pub use qmp::{MigrationInfo, QmpClient, QmpEvent, StatusInfo};
pub use restore::RESTORE_TIMEOUT;
pub use snapshot::{MAX_RESTORE_FAILURES, TemplateOrigin, TemplateState};
pub use vm::{QemuVm, VmStatus};
