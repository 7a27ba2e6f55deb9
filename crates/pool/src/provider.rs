//! The pool's only door to virtual machines.
//!
//! The engine knows nothing about QEMU or any other VMM: it asks a [`Provider`] to create, probe and
//! destroy VMs of a shape. A shape is registered once with its name ([`ShapeKey`]) and the
//! provider's description of its VMs ([`Provider::Spec`]); the pool keeps the spec in the shape's
//! bucket and passes it to every `create`, so the provider keeps no table of shapes. A provider is
//! nearly as small as deadpool's `Manager`: `create`, `destroy` and `memory` are required, `probe`
//! and `shape_unregistered` are optional.

use std::future::Future;

use crate::memory::MemoryAccounting;
use crate::shape::ShapeKey;

/// Why a VM is not fit to be handed out.
///
/// ```
/// use firepit_pool::Unhealthy;
/// let reason = Unhealthy::new("agent did not answer ping within 2s");
/// assert_eq!(reason.to_string(), "agent did not answer ping within 2s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unhealthy {
    /// Human-readable reason, logged and counted by the pool.
    pub reason: String,
}

impl Unhealthy {
    /// Creates a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }
}

/// A VM as the pool sees it: something with a stable id that may die on its own.
///
/// The VM value must clean up after itself when dropped (kill its process, remove its files): the
/// pool always tries [`Provider::destroy`] first, but when the runtime is gone (the last pool handle
/// was dropped outside a runtime), dropping the value is the last line of defence.
pub trait PoolVm: Send + Sync + 'static {
    /// A stable, unique id (unique across the provider's lifetime), used in logs, metrics and leases.
    fn id(&self) -> &str;

    /// Resolves when the VM has died on its own (process exited, guest crashed).
    ///
    /// The pool watches idle VMs with it, so a dead VM is evicted and replaced at once rather than at
    /// the next probe. The default never resolves: the pool then relies on [`Provider::probe`].
    fn exited(&self) -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    /// How the provider made this VM, when it has more than one way (e.g. `"cold_boot"`,
    /// `"snapshot"`, `"cold_boot_fallback"`). The engine only passes it on: it is the `fill_strategy`
    /// label of the `firepit_pool_vms_filled_total` counter, [`ShapeMetrics::filled`] and
    /// [`ShapeStatus::last_fill`]. The default, `None`, is counted as [`UNSPECIFIED_FILL`].
    ///
    /// Return a short constant (a label value: lowercase, no spaces), not a per-VM string.
    ///
    /// ```
    /// use firepit_pool::PoolVm;
    /// struct Clone(String);
    /// impl PoolVm for Clone {
    ///     fn id(&self) -> &str { &self.0 }
    ///     fn fill_kind(&self) -> Option<&'static str> { Some("snapshot") }
    /// }
    /// assert_eq!(Clone("vm-1".into()).fill_kind(), Some("snapshot"));
    /// ```
    ///
    /// [`ShapeMetrics::filled`]: crate::ShapeMetrics::filled
    /// [`ShapeStatus::last_fill`]: crate::ShapeStatus::last_fill
    /// [`UNSPECIFIED_FILL`]: crate::UNSPECIFIED_FILL
    fn fill_kind(&self) -> Option<&'static str> {
        None
    }
}

/// Creates, probes and destroys VMs for the pool.
///
/// All methods take `&self` and may run concurrently (the pool fills in parallel up to its limit).
/// `create`, `destroy` and `memory` are required; `probe`, `pause`, `resume` and
/// `shape_unregistered` have defaults a simple provider keeps.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), firepit_pool::PoolError> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use firepit_pool::{MemoryAccounting, Pool, PoolVm, Provider, ShapeKey};
///
/// /// A "VM" that is only a name: enough to show the contract.
/// struct Sandbox(String);
/// impl PoolVm for Sandbox {
///     fn id(&self) -> &str { &self.0 }
/// }
///
/// /// What a shape's sandboxes look like: here only their memory.
/// struct SandboxSpec { memory_mb: u64 }
///
/// #[derive(Default)]
/// struct Sandboxes { next: AtomicU64 }
/// impl Provider for Sandboxes {
///     type Vm = Sandbox;
///     type Spec = SandboxSpec;
///     type Error = std::io::Error;
///     async fn create(&self, shape: &ShapeKey, _spec: &SandboxSpec) -> Result<Sandbox, std::io::Error> {
///         // A real provider boots here and returns once the VM is ready to use.
///         Ok(Sandbox(format!("{shape}-{}", self.next.fetch_add(1, Ordering::Relaxed))))
///     }
///     async fn destroy(&self, vm: Sandbox) {
///         drop(vm); // a real provider stops the VM and removes its files; it never fails
///     }
///     fn memory(&self) -> &dyn MemoryAccounting<SandboxSpec, Sandbox> {
///         self
///     }
/// }
/// impl MemoryAccounting<SandboxSpec, Sandbox> for Sandboxes {
///     fn full_mb(&self, spec: &SandboxSpec) -> u64 { spec.memory_mb }
/// }
///
/// let pool = Pool::builder(Sandboxes::default())
///     .shape(ShapeKey::new("small"), SandboxSpec { memory_mb: 64 })
///     .build()
///     .await?;
/// assert!(pool.reserve().await?.id().starts_with("small-"));
/// pool.shutdown().await;
/// # Ok(()) }
/// ```
pub trait Provider: Send + Sync + 'static {
    /// The VM type handed out in a lease (`PooledVm<P>` derefs to it).
    type Vm: PoolVm;
    /// What a VM of one shape looks like (image, size, how it is made), registered with the
    /// shape's key and passed to every [`create`](Self::create) of that shape.
    type Spec: Send + Sync + 'static;
    /// Error of a failed `create`; logged, counted as a fill failure, and retried with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a VM of `shape` as `spec` describes it and returns it once it is ready to be handed
    /// out.
    fn create(
        &self,
        shape: &ShapeKey,
        spec: &Self::Spec,
    ) -> impl Future<Output = Result<Self::Vm, Self::Error>> + Send;

    /// Cheap liveness probe of an idle VM (run in the background at the pool's probe interval).
    /// The default says every VM is alive.
    fn probe(&self, vm: &Self::Vm) -> impl Future<Output = Result<(), Unhealthy>> + Send {
        let _ = vm;
        std::future::ready(Ok(()))
    }

    /// Lets a VM that just became ready rest while it waits in the pool (e.g. stops its vCPUs), so
    /// idle VMs cost no CPU. The pool calls it once per VM, after the VM's fill-time health check,
    /// for shapes whose [`ShapeConfig::pause_idle`](crate::ShapeConfig::pause_idle) is on (and not
    /// when a caller is already waiting for the VM). `Ok(true)`: the VM now rests, and
    /// [`resume`](Self::resume) wakes it when it is handed out. The default does nothing and
    /// returns `Ok(false)`. An error destroys the VM (counted as a failed fill).
    ///
    /// While a VM rests, [`probe`](Self::probe) must not need the guest (a provider probes a
    /// resting VM from the outside: its process, its VMM), and `PoolVm::exited` still resolves.
    fn pause(&self, vm: &Self::Vm) -> impl Future<Output = Result<bool, Unhealthy>> + Send {
        let _ = vm;
        std::future::ready(Ok(false))
    }

    /// Wakes a VM that [`pause`](Self::pause) put to rest, when it leaves the pool for a lease and
    /// before the hand-out health check: `reserve` awaits it (an error destroys the VM and the next
    /// one is tried). The future must not borrow: `try_reserve`, which cannot await, spawns it and
    /// hands the VM out at once, so a provider whose VMs rest must also make a resting VM wake on
    /// its first use (QEMU's does). The default does nothing.
    fn resume(&self, vm: &Self::Vm) -> impl Future<Output = Result<(), Unhealthy>> + Send + 'static {
        let _ = vm;
        std::future::ready(Ok(()))
    }

    /// Destroys a VM and releases everything it holds. Must not fail: log what went wrong.
    fn destroy(&self, vm: Self::Vm) -> impl Future<Output = ()> + Send;

    /// Called once by [`Pool::unregister_shape`](crate::Pool::unregister_shape), after the shape's
    /// idle VMs were destroyed (leased ones may still be alive). A provider drops what it keeps per
    /// shape here; a snapshot provider removes the shape's template once its last clone is gone. The
    /// default does nothing.
    fn shape_unregistered(&self, shape: &ShapeKey) {
        let _ = shape;
    }

    /// What this provider's VMs cost against the pool's memory budget (see [`MemoryAccounting`]).
    /// Required, so that a provider wrapping another one cannot drop the inner one's accounting
    /// without noticing: it returns the inner `memory()`, or its own on purpose.
    fn memory(&self) -> &dyn MemoryAccounting<Self::Spec, Self::Vm>;
}
