//! The one error type of the pool's public API.
//!
//! Every variant names what failed and, where the caller can do something about it, what to change.

use std::time::Duration;

use crate::shape::ShapeKey;

/// Why a pool operation failed.
///
/// ```
/// use firepit_pool::PoolError;
/// let err = PoolError::Exhausted;
/// assert!(err.to_string().contains("no warm VM"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `try_reserve`: no ready VM of the shape right now.
    #[error("no warm VM is ready right now: wait with reserve(), or raise the pool depth")]
    Exhausted,
    /// `reserve_timeout`: no VM became ready within the deadline.
    #[error("timed out waiting for a warm VM: raise the timeout or the pool depth")]
    Timeout,
    /// The pool is shutting down or was shut down; it hands out no more VMs.
    #[error("the pool is shutting down and hands out no more VMs")]
    ShuttingDown,
    /// The shape is not registered (or was unregistered while waiting).
    #[error("shape {0} is not registered in this pool: register it with register_shape()")]
    UnknownShape(ShapeKey),
    /// `register_shape` for a shape that is already registered.
    #[error("shape {0} is already registered: unregister it first to change its settings")]
    DuplicateShape(ShapeKey),
    /// `reserve()` / `try_reserve()` on a pool that has no default shape.
    #[error("the pool has no default shape: add one with PoolBuilder::shape(), or use reserve_shape()")]
    NoDefaultShape,
    /// The configuration is invalid; the message says what to change.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(String),
    /// `build()`: the provider failed to create VMs several times in a row during warm-up.
    #[error("warm-up of shape {shape} failed: {message}")]
    WarmupFailed {
        /// The shape that could not be warmed up.
        shape: ShapeKey,
        /// The provider's last error (with its sources), as text.
        message: String,
    },
    /// `build()`: a shape did not reach its low water within the warm-up timeout.
    #[error(
        "warm-up of shape {shape} timed out after {waited:?} with {ready} of {low_water} VMs ready: \
         raise warmup_timeout or lower the depth"
    )]
    WarmupTimeout {
        /// The slowest shape.
        shape: ShapeKey,
        /// How long `build()` waited.
        waited: Duration,
        /// VMs ready when the timeout elapsed.
        ready: usize,
        /// VMs the shape needed.
        low_water: usize,
    },
    /// The pool needs a tokio runtime (it spawns its background tasks in `build()`).
    #[error("no tokio runtime: call build() from within a tokio runtime")]
    NoRuntime,
}

/// Formats an error with its chain of sources on one line: `outer: inner: innermost`.
///
/// ```
/// #[derive(Debug)]
/// struct BootFailed(std::io::Error);
/// impl std::fmt::Display for BootFailed {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("boot failed")
///     }
/// }
/// impl std::error::Error for BootFailed {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
/// let error = BootFailed(std::io::Error::other("no space left"));
/// assert_eq!(firepit_pool::error_chain(&error), "boot failed: no space left");
/// ```
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
