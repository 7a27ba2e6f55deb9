//! The pool's only door to virtual machines.
//!
//! The engine knows nothing about QEMU or any other VMM: it asks a [`Provider`] to create, probe and
//! destroy VMs of a [`ShapeKey`]. A provider is as small as deadpool's `Manager`: `create` and
//! `destroy` are required, `probe` is optional.

use std::future::Future;

use crate::ShapeKey;

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
}
