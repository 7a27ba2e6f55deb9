//! The boxed future the daemon's object-safe traits return (a module of its own so that
//! `backend` and `sandbox`, which both use it, need not import each other).

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
