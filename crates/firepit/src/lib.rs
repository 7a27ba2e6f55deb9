//! firepit: warm pools of real microVMs (facade being written).

pub use firepit_pool as pool;
pub mod daemon;
