//! Helpers shared by the pool's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use firepit_pool::testing::{MemoryProvider, MemorySpec, MemoryVm};
use firepit_pool::{Pool, PoolBuilder, ShapeKey};

/// The default test shape: 256 MiB VMs.
pub fn shape() -> ShapeKey {
    ShapeKey::new("small")
}

pub fn spec() -> MemorySpec {
    MemorySpec::new(256)
}

/// A second shape: 512 MiB VMs.
pub fn other_shape() -> ShapeKey {
    ShapeKey::new("big")
}

pub fn other_spec() -> MemorySpec {
    MemorySpec::new(512)
}

pub fn builder(provider: &MemoryProvider) -> PoolBuilder<MemoryProvider> {
    Pool::builder(provider.clone()).shape(shape(), spec())
}

/// Lets background tasks run (under paused time this also advances the clock by `d`).
pub async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

/// A little time for event-driven work (fills with zero latency, destroys) to finish.
pub async fn tick() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

pub fn health(
    vm: &MemoryVm,
) -> impl std::future::Future<Output = Result<(), firepit_pool::Unhealthy>> + Send + use<> {
    vm.health()
}
