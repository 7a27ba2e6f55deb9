//! What VMs cost against the pool's memory budget: the provider's own, required piece.
//!
//! The engine charges every alive VM (filling, ready, leased, being destroyed) against
//! `memory_budget_mb`. Only the provider knows what a VM costs: a cold-booted VM its guest memory,
//! a copy-on-write clone only its private pages while its template's RAM is paid once. That
//! knowledge is one small trait, [`MemoryAccounting`], which a provider hands out through the
//! *required* [`Provider::memory`](crate::Provider::memory): a type that wraps a provider must say
//! what it returns (usually the inner provider's), so it cannot inherit a default and silently
//! charge every VM its full memory.

use crate::shape::ShapeKey;

/// How a provider's VMs of spec `S` (VM type `V`) are charged against the memory budget, in MiB.
///
/// Only [`full_mb`](Self::full_mb) is required: a provider whose VMs always cost their guest
/// memory implements that and nothing else. All methods are called with the pool's lock held:
/// keep them cheap and non-blocking.
///
/// ```
/// use firepit_pool::{MemoryAccounting, ShapeKey};
/// /// VMs cost their guest memory, except that a clone costs 40 MiB once one is measured.
/// struct Clones { measured: Option<u64> }
/// struct Spec { memory_mb: u64 }
/// impl MemoryAccounting<Spec, String> for Clones {
///     fn full_mb(&self, spec: &Spec) -> u64 { spec.memory_mb }
///     fn estimate_mb(&self, _shape: &ShapeKey, spec: &Spec) -> u64 {
///         self.measured.unwrap_or(spec.memory_mb)
///     }
/// }
/// let spec = Spec { memory_mb: 256 };
/// let shape = ShapeKey::new("small");
/// assert_eq!(Clones { measured: None }.estimate_mb(&shape, &spec), 256);
/// assert_eq!(Clones { measured: Some(40) }.estimate_mb(&shape, &spec), 40);
/// assert_eq!(Clones { measured: Some(40) }.shared_mb(), 0);
/// ```
pub trait MemoryAccounting<S, V>: Send + Sync {
    /// The most one VM of `spec` can cost: its guest memory. Registration checks that the low
    /// water of every shape fits the budget at this price.
    fn full_mb(&self, spec: &S) -> u64;

    /// What the next VM of `shape` is expected to cost before it exists: the refiller reserves this
    /// much when it starts a fill and plans depth with it. The default is [`full_mb`](Self::full_mb).
    fn estimate_mb(&self, shape: &ShapeKey, spec: &S) -> u64 {
        let _ = shape;
        self.full_mb(spec)
    }

    /// What `vm`, just made, costs from now until it is destroyed (read once, when the fill
    /// delivers it; the fill's reservation is corrected to it). The default is
    /// [`full_mb`](Self::full_mb).
    fn charge_mb(&self, shape: &ShapeKey, spec: &S, vm: &V) -> u64 {
        let _ = (shape, vm);
        self.full_mb(spec)
    }

    /// Memory the provider holds once for many VMs (e.g. snapshot templates' RAM files), charged
    /// on top of the VMs' own charges. The default is 0.
    fn shared_mb(&self) -> u64 {
        0
    }
}
