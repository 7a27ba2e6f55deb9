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
//!   engine's.
//! - Not an image builder: it boots the guest image it is given ([`ImagePaths`]); `firepit-image`
//!   builds them.
//! - Not a general QEMU wrapper: one machine type (microvm), one command line built in code (never
//!   a shell string), the devices firepit needs (serial console, QMP, the agent's virtio-serial
//!   port, virtio-rng) and nothing configurable beyond [`ProviderConfig`].
//!
//! # How data flows
//! [`ProviderConfig`] is checked once by [`QemuProvider::new`] (errors: [`ConfigError`]). Each
//! `create` of a shape then goes one of two ways, chosen per shape ([`FillStrategy`]):
//! - cold boot: a private runtime directory, a command line, QEMU spawned under supervision, its
//!   console and QMP sockets accepted, then the readiness line [`firepit_agent::READY_LINE`] on the
//!   console and an agent ping, all under one boot deadline;
//! - snapshot: the shape's template is booted once, stopped and saved (its RAM in a shared file),
//!   and every VM after that is a copy-on-write clone restored from it in ≈0.1–0.3 s and given its
//!   own identity ([`fresh_identity`]); when that fails the shape cold-boots
//!   ([`QemuProvider::template_state`] says why).
//!
//! Either way the result is a [`QemuVm`], the handle a lease derefs to: [`Console`] (serial
//! console: send, `read_until`, output stream), `exec` through the guest agent, `status` through
//! [`QmpClient`] and the process state. Supervision: QEMU dies with its handle (SIGKILL on drop)
//! and with the firepit process (`PR_SET_PDEATHSIG`); a watcher task reaps it and makes
//! [`exit_info`](QemuVm::exit_info) and the pool's `exited()` resolve at once. `destroy` quits
//! QEMU over QMP, waits [`ProviderConfig::quit_grace`], then kills it and removes its directory.
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
//! use firepit_qemu::{FillStrategy, ImagePaths, ProviderConfig, QemuProvider};
//! let provider = QemuProvider::new(ProviderConfig::default())?;
//! let paths = ImagePaths::new("target/firepit-image/vmlinuz", "target/firepit-image/initramfs.cpio.gz");
//! provider.register_image_with("img", paths, FillStrategy::Snapshot)?;
//! let vm = provider.create(&ShapeKey::new("img", "1", 1, 256)).await?; // builds the template first
//! println!("{} ({:?})", vm.exec(["uname", "-r"]).await?.stdout_lossy(), vm.fill());
//! provider.destroy(vm).await;
//! # Ok(()) }
//! ```
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
mod exit;
mod health;
mod launch;
mod memory_charge;
mod net;
mod process;
mod provider;
mod provider_net;
mod qmp;
mod restore;
mod ring;
mod run_as;
mod rundir;
mod snapshot;
mod template_build;
mod template_state;
mod template_store;
mod vm;
mod vm_net;

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
pub use exit::ExitInfo;
pub use firepit_agent::{ExecRequest, IdentityApplied, IdentityRequest, Pong};
pub use firepit_agent::{NetworkApplied, NetworkConfig};
pub use firepit_shape::{EgressPolicy, EgressRule, EgressTarget, NetworkMode, NetworkSpec};
pub use health::agent_health_check;
pub use memory_charge::process_memory_kib;
pub use net::{NetError, NetStats, NetworkInfo};
pub use provider::QemuProvider;
pub use qmp::{MigrationInfo, QmpClient, QmpEvent, StatusInfo};
pub use restore::RESTORE_TIMEOUT;
pub use snapshot::MAX_RESTORE_FAILURES;
pub use template_state::{TemplateOrigin, TemplateState};
pub use vm::{QemuVm, VmStatus};
