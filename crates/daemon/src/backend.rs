//! The daemon's only door to VMs: a small, object-safe trait over a warm pool.
//!
//! The HTTP layer never sees QEMU or the engine's generic `Pool<P>`: it talks to an
//! `Arc<dyn LeaseBackend>`. The real backend is an adapter over the facade's pool
//! (`firepit::VmPool`, see [`crate::build_backend`]); `fake::FakeBackend` (behind the `testing` feature) is an in-memory one
//! for tests and examples.
//!
//! Contract, in short:
//! - [`LeaseBackend::acquire`] hands out one warm VM of a shape, waiting at most `wait`.
//! - The VM is a `Box<dyn LeasedVm>`; **dropping it releases the VM** (the backend destroys it and
//!   refills). `Drop` must not block and must not panic (no `tokio::spawn` inside `Drop`).
//! - [`LeaseBackend::shutdown`] is idempotent and bounded; after it, `acquire` returns
//!   [`AcquireError::ShuttingDown`].
//!
//! Methods that wait return a [`BoxFuture`] so the trait stays object-safe without extra crates;
//! implement them with `Box::pin(async move { ... })`.

use std::net::SocketAddr;
use std::time::Duration;

use firepit_agent::{ExecRequest, ExecResult};
use firepit_guest::{Guest, GuestError};

use crate::sandbox::Sandbox;

pub use crate::paused::{PauseFailed, PausedVm, ResumeFailed};
pub use crate::saved::{SaveError, SavedSnapshot};

/// The VMs of a fork ([`LeaseBackend::fork`]), each made or not on its own.
pub type Forks = Vec<Result<Box<dyn LeasedVm>, BoxError>>;

pub use firepit_api::ShapeStatusView;

/// What [`LeaseBackend::memory_mb`] answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Charged to every alive VM (and shared templates), MiB.
    pub used_mb: u64,
    /// The cap, if any, MiB.
    pub budget_mb: Option<u64>,
}
/// The hook through which the QEMU provider reports the processes it owns (recorded by
/// [`crate::records::RecordStore`], reaped by [`crate::recovery`] after a crash).
pub use firepit_qemu::{OwnedProcess, OwnershipHook};
/// What a leased VM costs its host ([`LeasedVm::host_usage`]).
pub use firepit_qemu::{UsageDepth, VmUsage};
pub use firepit_shape::{EgressPolicy, FillStrategy, NetworkSpec, ShapeSpec};

pub use crate::boxed::{BoxError, BoxFuture};

/// A pool of warm VMs, seen from the daemon.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use firepit_daemon::backend::LeaseBackend;
/// use firepit_daemon::fake::FakeBackend;
///
/// # tokio_test_block_on(async {
/// let backend = FakeBackend::with_shape("small", 2);
/// let vm = backend.acquire("small", Duration::from_millis(10)).await?;
/// assert!(vm.vm_id().starts_with("fake-"));
/// drop(vm); // release: destroyed and refilled
/// backend.shutdown().await;
/// # Ok::<(), firepit_daemon::backend::AcquireError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub trait LeaseBackend: Send + Sync + 'static {
    /// Hands out one ready VM of `shape`, waiting up to `wait` for one (zero: do not wait).
    ///
    /// Errors: [`AcquireError::UnknownShape`], [`AcquireError::Exhausted`] (none ready within
    /// `wait`), [`AcquireError::ShuttingDown`], [`AcquireError::Backend`].
    fn acquire<'a>(
        &'a self,
        shape: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>>;

    /// A snapshot of every shape's state, for `GET /v1/pools` and `firepit status`.
    fn status(&self) -> Vec<ShapeStatusView>;

    /// Memory charged to the VMs, and the budget capping it, MiB (`GET /v1/pools`' `host`).
    fn memory_mb(&self) -> MemoryUse {
        MemoryUse::default()
    }

    /// The network of `shape` (`mode = none` for a shape without one); `None` for an unknown
    /// shape. The daemon checks a lease's egress narrowing against it before it acquires.
    fn network(&self, shape: &str) -> Option<NetworkSpec>;

    /// Registers the backend's metric families (with a `shape` label) once, at start-up; the
    /// daemon encodes them with its own on `GET /metrics`. The default registers nothing.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _unused = registry;
    }

    /// Adds a shape at run time and starts filling it; `Err` when the name is taken or the spec
    /// cannot be served (say why in the error).
    fn register_shape<'a>(&'a self, spec: ShapeSpec) -> BoxFuture<'a, Result<(), ShapeError>>;

    /// Adds a shape whose `image` names a snapshot (`snapshot:ID`): its VMs start from the saved
    /// snapshot in `dir`, each with an identity of its own, instead of booting. The default
    /// refuses (a backend that cannot start VMs from snapshots).
    fn register_snapshot_shape<'a>(
        &'a self,
        spec: ShapeSpec,
        dir: std::path::PathBuf,
    ) -> BoxFuture<'a, Result<(), ShapeError>> {
        let _unused = dir;
        Box::pin(async move {
            let source = "this daemon's backend cannot start VMs from snapshots".into();
            Err(ShapeError::Invalid { shape: spec.name, source })
        })
    }

    /// Removes a shape: its ready VMs are destroyed; VMs already leased stay valid until dropped.
    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>>;

    /// Stops filling and destroys every VM the backend still holds. Idempotent, bounded in time.
    fn shutdown(&self) -> BoxFuture<'_, ()>;

    /// Whether [`pause`](Self::pause) can work (a lease may ask for `on_expiry = pause` only then).
    /// The default: no.
    fn can_pause(&self) -> bool {
        false
    }

    /// Saves a leased VM's state and stops it (see [`crate::paused`]). On failure the VM comes
    /// back, still running. The default cannot pause.
    fn pause(&self, vm: Box<dyn LeasedVm>) -> BoxFuture<'_, Result<Box<dyn PausedVm>, PauseFailed>> {
        Box::pin(async move { Err(PauseFailed { vm, error: "this backend cannot pause VMs".into() }) })
    }

    /// A paused VM of a previous run of the daemon, from what [`PausedVm::saved`] gave then. The
    /// default knows none.
    fn adopt_paused(&self, saved: &serde_json::Value) -> Result<Box<dyn PausedVm>, BoxError> {
        let _unused = saved;
        Err("this backend cannot pause VMs, so it cannot adopt a paused one".into())
    }

    /// Removes the half-written paused VMs that no lease keeps: a pause cut short by a `kill -9`
    /// of the daemon. Called once at start, after the paused leases were adopted, with what
    /// their [`PausedVm::saved`] gives.
    /// Returns how many were removed. The default keeps nothing on disk, so removes nothing.
    fn remove_unkept_paused(&self, kept: &[serde_json::Value]) -> usize {
        let _unused = kept;
        0
    }

    /// Whether snapshots and forks can work ([`save_snapshot`](Self::save_snapshot),
    /// [`start_snapshot`](Self::start_snapshot), [`fork`](Self::fork)). The default: no.
    fn can_snapshot(&self) -> bool {
        false
    }

    /// Saves a leased VM's memory, device state and disk into `dir` (which must not exist; its
    /// parent does); the VM is stopped only while its state is written, then runs on. On error
    /// nothing is left in `dir`. The default cannot.
    fn save_snapshot<'a>(
        &'a self,
        vm: &'a dyn LeasedVm,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<SavedSnapshot, SaveError>> {
        let _unused = (vm, dir);
        Box::pin(async { Err(SaveError::Unsupported("this backend cannot snapshot VMs".into())) })
    }

    /// A new VM started from the snapshot saved in `dir` (by [`save_snapshot`](Self::save_snapshot)),
    /// with an identity of its own; the snapshot stays. Dropping it destroys it. The default cannot.
    fn start_snapshot<'a>(
        &'a self,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        let _unused = dir;
        Box::pin(async { Err(AcquireError::Backend("this backend cannot start VMs from snapshots".into())) })
    }

    /// `count` new VMs, each a copy of `vm`'s memory and disk at this moment with an identity of
    /// its own; `vm` runs on. Each fork is made or not on its own; `Err`: none was. The default
    /// cannot.
    fn fork<'a>(&'a self, vm: &'a dyn LeasedVm, count: usize) -> BoxFuture<'a, Result<Forks, SaveError>> {
        let _unused = (vm, count);
        Box::pin(async { Err(SaveError::Unsupported("this backend cannot fork VMs".into())) })
    }
}

/// One leased VM. Dropping it releases the VM: the backend destroys it and refills.
///
/// Everything the guest does goes through its [`Guest`]; `exec` and the sandbox are written once,
/// over it, for every backend.
pub trait LeasedVm: Send + Sync {
    /// The VM's id, unique within the daemon's lifetime (shown to clients as `vm_id`).
    fn vm_id(&self) -> &str;

    /// The backend's own VM behind this trait object, for what only the backend can do with it
    /// (pause it to disk). `None` by default.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// The guest agent's client of the VM.
    fn guest(&self) -> &Guest;

    /// Runs a program in the guest through its agent.
    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, ExecError>> {
        let guest = self.guest();
        Box::pin(async move {
            match guest.exec_request(request).await {
                Ok(out) => Ok(ExecResult::from(out)),
                Err(error @ GuestError::Remote { .. }) => Err(ExecError::Refused(error.into())),
                Err(other) => Err(ExecError::Unreachable(other.into())),
            }
        })
    }

    /// Files, streamed processes, background processes and terminals ([`crate::sandbox`]).
    fn sandbox(&self) -> Sandbox<'_> {
        Sandbox::new(self.guest())
    }

    /// Forwards a TCP port of the host (loopback unless the shape's `forward_bind` says otherwise,
    /// port chosen by the kernel) to `guest_port`; asking again for the same guest port returns
    /// the same address. The forward must go away with the VM.
    fn forward_port(&self, guest_port: u16) -> BoxFuture<'_, Result<SocketAddr, NetworkError>>;

    /// Closes the forward to `guest_port` (connections through it stop being accepted).
    fn remove_forward(&self, guest_port: u16) -> BoxFuture<'_, Result<(), NetworkError>>;

    /// The forwards in place, `(guest port, host address)`, oldest first.
    fn forwards(&self) -> Vec<(u16, SocketAddr)>;

    /// Narrows the VM's egress policy (never widens it; the daemon refuses widening requests
    /// before it gets here).
    fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), NetworkError>;

    /// Resolves when the VM stops on its own (its QEMU exited, a guest panic), saying how; never
    /// while it runs. Not borrowed from the VM: the lease watches it without holding the VM. The
    /// default never resolves.
    fn exited(&self) -> BoxFuture<'static, VmExit> {
        Box::pin(std::future::pending())
    }

    /// The VM's process id on this host, when there is one.
    fn pid(&self) -> Option<u32> {
        None
    }

    /// The VM's cgroup on this host, when it has one of its own.
    fn cgroup(&self) -> Option<String> {
        None
    }

    /// What the VM costs its host now: CPU time, memory, its disk overlay, network bytes (cheap
    /// file reads; the PSS only with [`UsageDepth::WithPss`]). `None` (the default): the backend
    /// cannot tell, as the fake's VMs have no process of their own. The usage sampler
    /// ([`crate::usage`]) calls it every few seconds per lease.
    fn host_usage(&self, depth: UsageDepth) -> Option<VmUsage> {
        let _unused = depth;
        None
    }
}

/// How a VM stopped on its own ([`LeasedVm::exited`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmExit {
    /// What happened, for people: `QEMU exit code 1`, `QEMU killed by signal 9; console: Kernel
    /// panic - not syncing: ...`.
    pub detail: String,
}

/// Why a network operation on a leased VM failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The VM's shape has no network (`network = "none"`).
    #[error("the VM has no network")]
    Disabled,
    /// No forward to that guest port is open.
    #[error("no forward to guest port {0} is open")]
    NoSuchForward(u16),
    /// The backend failed (e.g. QEMU refused the forward); the cause says why.
    #[error("the VM's network failed")]
    Failed(#[source] BoxError),
}

/// Why [`LeaseBackend::acquire`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// No shape of that name is registered.
    #[error("unknown shape `{0}`")]
    UnknownShape(String),
    /// No VM of the shape became ready within the wait.
    #[error("no ready VM of shape `{shape}` within {waited_ms} ms")]
    Exhausted {
        /// The shape asked for.
        shape: String,
        /// How long the backend waited.
        waited_ms: u64,
    },
    /// The backend is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// The backend failed for another reason (its cause chain is shown to the client).
    #[error("the pool failed to hand out a VM")]
    Backend(#[source] BoxError),
}

/// Why [`LeasedVm::exec`] failed (the program's own failure is an `Ok` with its exit code).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The agent refused the request (bad argv, program not found, ...); the cause says why.
    #[error("the guest agent refused the request")]
    Refused(#[source] BoxError),
    /// The agent did not answer or the VM is gone; the cause says why.
    #[error("the VM did not answer")]
    Unreachable(#[source] BoxError),
}

/// Why registering or unregistering a shape failed.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// A shape of that name exists already.
    #[error("shape `{0}` is already registered")]
    AlreadyExists(String),
    /// No shape of that name is registered.
    #[error("unknown shape `{0}`")]
    Unknown(String),
    /// The spec is valid but cannot be served (e.g. its image does not open); the cause says why.
    #[error("shape `{shape}` cannot be served")]
    Invalid {
        /// The shape's name.
        shape: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The backend is shutting down.
    #[error("the pool is shutting down")]
    ShuttingDown,
}
