//! The health check that runs on a VM right before it is handed out.
//!
//! A check is an async trait so it may talk to the guest (an agent ping, an HTTP probe). Closures
//! work too: `|vm: &MyVm| vm.ping_future()` for any closure returning a `'static` future (clone
//! what the future needs out of the VM), or [`BorrowingCheck`] for a closure whose future borrows
//! the VM. A failed check destroys the VM, counts a validation failure and tries the next VM; the
//! caller never sees a VM that failed its check.

use std::future::Future;
use std::pin::Pin;

use crate::provider::Unhealthy;

/// A boxed future that may borrow what it checks.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Unhealthy>> + Send + 'a>>;

/// Checks a VM before it is handed out.
///
/// ```
/// use firepit_pool::{HealthCheck, Unhealthy};
/// struct NonEmptyId;
/// impl HealthCheck<String> for NonEmptyId {
///     async fn check(&self, vm: &String) -> Result<(), Unhealthy> {
///         if vm.is_empty() { Err(Unhealthy::new("empty id")) } else { Ok(()) }
///     }
/// }
/// ```
pub trait HealthCheck<V>: Send + Sync + 'static {
    /// `Ok(())` when `vm` may be handed out.
    fn check(&self, vm: &V) -> impl Future<Output = Result<(), Unhealthy>> + Send;
}

impl<V, F, Fut> HealthCheck<V> for F
where
    V: Sync,
    F: Fn(&V) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Unhealthy>> + Send + 'static,
{
    fn check(&self, vm: &V) -> impl Future<Output = Result<(), Unhealthy>> + Send {
        self(vm)
    }
}

/// Wraps a closure whose future borrows the VM:
/// `BorrowingCheck::new(|vm: &MyVm| Box::pin(async move { vm.ping().await }))`.
///
/// ```
/// use firepit_pool::{BorrowingCheck, Unhealthy};
/// let check = BorrowingCheck::new(|vm: &String| {
///     Box::pin(async move { if vm.len() > 1 { Ok(()) } else { Err(Unhealthy::new("short")) } })
/// });
/// # let _ = &check;
/// ```
pub struct BorrowingCheck<F>(pub F);

impl<F> BorrowingCheck<F> {
    /// Wraps `f` (this constructor guides the closure's lifetime inference).
    pub fn new<V>(f: F) -> Self
    where
        F: for<'a> Fn(&'a V) -> CheckFuture<'a>,
    {
        Self(f)
    }
}

impl<V, F> HealthCheck<V> for BorrowingCheck<F>
where
    V: Sync,
    F: for<'a> Fn(&'a V) -> CheckFuture<'a> + Send + Sync + 'static,
{
    fn check(&self, vm: &V) -> impl Future<Output = Result<(), Unhealthy>> + Send {
        (self.0)(vm)
    }
}

/// Object-safe form stored inside the pool.
pub(crate) trait DynHealthCheck<V>: Send + Sync {
    fn check_dyn<'a>(&'a self, vm: &'a V) -> CheckFuture<'a>;
}

impl<V: Sync, T: HealthCheck<V>> DynHealthCheck<V> for T {
    fn check_dyn<'a>(&'a self, vm: &'a V) -> CheckFuture<'a> {
        Box::pin(self.check(vm))
    }
}
