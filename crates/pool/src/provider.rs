//! The pool's only door to virtual machines.
//!
//! The engine knows nothing about QEMU or any other VMM: it asks a [`Provider`] to create, probe and
//! destroy VMs of a [`ShapeKey`]. A provider is as small as deadpool's `Manager`: `create` and
//! `destroy` are required, `probe` is optional.

use std::future::Future;

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

    /// What this VM costs against the pool's memory budget, MiB, when the provider knows better than
    /// the shape's `memory_mb`: a copy-on-write clone costs its private pages (e.g. estimated from
    /// its PSS), its template being charged once through [`Provider::shared_memory_mb`]. Read once,
    /// when the VM is delivered, and again when it is destroyed, so return a value fixed at creation.
    /// The default, `None`, charges the shape's `memory_mb`.
    ///
    /// ```
    /// use firepit_pool::PoolVm;
    /// struct Clone { id: String, pss_mib: u64 }
    /// impl PoolVm for Clone {
    ///     fn id(&self) -> &str { &self.id }
    ///     fn memory_charge_mb(&self) -> Option<u64> { Some(self.pss_mib) }
    /// }
    /// assert_eq!(Clone { id: "vm-1".into(), pss_mib: 36 }.memory_charge_mb(), Some(36));
    /// ```
    fn memory_charge_mb(&self) -> Option<u64> {
        None
    }
}

/// Creates, probes and destroys VMs for the pool.
///
/// All methods take `&self` and may run concurrently (the pool fills in parallel up to its limit).
/// Only `create` and `destroy` are required; the rest have defaults a simple provider keeps.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), firepit_pool::PoolError> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use firepit_pool::{Pool, PoolVm, Provider, ShapeKey};
///
/// /// A "VM" that is only a name: enough to show the contract.
/// struct Sandbox(String);
/// impl PoolVm for Sandbox {
///     fn id(&self) -> &str { &self.0 }
/// }
///
/// #[derive(Default)]
/// struct Sandboxes { next: AtomicU64 }
/// impl Provider for Sandboxes {
///     type Vm = Sandbox;
///     type Error = std::io::Error;
///     async fn create(&self, shape: &ShapeKey) -> Result<Sandbox, std::io::Error> {
///         // A real provider boots here and returns once the VM is ready to use.
///         Ok(Sandbox(format!("{}-{}", shape.image_id, self.next.fetch_add(1, Ordering::Relaxed))))
///     }
///     async fn destroy(&self, vm: Sandbox) {
///         drop(vm); // a real provider stops the VM and removes its files; it never fails
///     }
/// }
///
/// let pool = Pool::builder(Sandboxes::default()).shape(ShapeKey::new("img", "1", 1, 64)).build().await?;
/// assert!(pool.reserve().await?.id().starts_with("img-"));
/// pool.shutdown().await;
/// # Ok(()) }
/// ```
pub trait Provider: Send + Sync + 'static {
    /// The VM type handed out in a lease (`PooledVm<P>` derefs to it).
    type Vm: PoolVm;
    /// Error of a failed `create`; logged, counted as a fill failure, and retried with backoff.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a VM of `shape` and returns it once it is ready to be handed out.
    fn create(&self, shape: &ShapeKey) -> impl Future<Output = Result<Self::Vm, Self::Error>> + Send;

    /// Cheap liveness probe of an idle VM (run in the background at the pool's probe interval).
    /// The default says every VM is alive.
    fn probe(&self, vm: &Self::Vm) -> impl Future<Output = Result<(), Unhealthy>> + Send {
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

    /// What the next VM of `shape` is expected to cost against the memory budget, MiB, before it
    /// exists: the refiller reserves this much when it starts a fill and corrects it to the VM's
    /// [`PoolVm::memory_charge_mb`] when the VM arrives. Called with the pool's lock held: keep it
    /// cheap and non-blocking. The default is the shape's `memory_mb`.
    fn memory_estimate_mb(&self, shape: &ShapeKey) -> u64 {
        u64::from(shape.memory_mb)
    }

    /// Memory the provider holds once for many VMs (e.g. snapshot templates' RAM files), MiB,
    /// charged against the memory budget on top of the VMs' own charges. Called with the pool's
    /// lock held: keep it cheap. The default is 0.
    fn shared_memory_mb(&self) -> u64 {
        0
    }
}
