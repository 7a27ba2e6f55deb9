//! firepit's pool engine: keeps warm VMs of several shapes ready and hands them out fast.
//!
//! (Module docs and the engine are being written; see the issue "Pool engine".)

mod provider;
mod shape;

pub use provider::{PoolVm, Provider, Unhealthy};
pub use shape::ShapeKey;
