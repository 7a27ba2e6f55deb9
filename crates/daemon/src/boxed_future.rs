//! [`BoxFuture`]: the one future type the daemon's object-safe traits return. It stands alone,
//! below both [`crate::backend`] and [`crate::sandbox`], so neither has to import the other for it.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what the async methods of the daemon's object-safe traits
/// ([`crate::backend::LeaseBackend`], [`crate::backend::LeasedVm`], [`crate::sandbox::Sandbox`])
/// return, so the traits work as `dyn` without extra crates.
///
/// ```
/// use firepit_daemon::backend::BoxFuture;
///
/// fn answer() -> BoxFuture<'static, u32> {
///     Box::pin(async { 42 })
/// }
/// # let _ = answer();
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
