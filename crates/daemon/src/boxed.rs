//! The boxed future and the boxed error the daemon's object-safe traits use (a module of its own
//! so that `backend` and `sandbox`, which both use them, need not import each other).

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what the async methods of `LeaseBackend`, `LeasedVm` and `Sandbox`
/// return; implement them with `Box::pin(async move { ... })`.
///
/// ```
/// let answer: firepit_daemon::backend::BoxFuture<'static, u32> = Box::pin(async { 42 });
/// # drop(answer);
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's own error, boxed: the traits are backend-agnostic, the cause chain is kept.
///
/// ```
/// let cause = std::io::Error::other("agent port closed");
/// let boxed: firepit_daemon::backend::BoxError = cause.into();
/// assert_eq!(boxed.to_string(), "agent port closed");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
