//! reserve / try_reserve / reserve_timeout basics.
mod common;

use std::time::Duration;

use common::{builder, shape, tick};
use firepit_pool::testing::MemoryProvider;
use firepit_pool::{Pool, PoolError, PoolVm, ShapeKey};

#[tokio::test(start_paused = true)]
async fn build_returns_with_low_water_ready() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).depth(3..=5).build().await.unwrap();
    assert!(pool.available_now() >= 3, "low water 3 must be ready, got {}", pool.available_now());
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_hands_out_a_ready_vm_of_the_shape() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    let vm = pool.reserve().await.unwrap();
    assert_eq!(vm.shape(), &shape());
    assert_eq!(vm.id(), vm.deref_id());
    assert!(provider.ids().contains(&vm.id().to_owned()));
    pool.shutdown().await;
}

trait DerefId {
    fn deref_id(&self) -> &str;
}
impl DerefId for firepit_pool::PooledVm<MemoryProvider> {
    fn deref_id(&self) -> &str {
        PoolVm::id(&**self)
    }
}

#[tokio::test(start_paused = true)]
async fn try_reserve_on_empty_pool_errors_exhausted_at_once() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(10));
    let pool = builder(&provider).depth(1..=1).warmup_timeout(Duration::from_secs(60)).build().await.unwrap();
    let held = pool.try_reserve().unwrap();
    assert!(matches!(pool.try_reserve(), Err(PoolError::Exhausted)));
    drop(held);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_timeout_errors_timeout_when_no_vm_comes() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(10));
    let pool = builder(&provider).depth(1..=1).warmup_timeout(Duration::from_secs(60)).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.reserve_timeout(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(err, PoolError::Timeout);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    drop(held);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_waits_for_the_refill() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(200));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let first = pool.reserve().await.unwrap();
    let started = tokio::time::Instant::now();
    let second = pool.reserve().await.unwrap();
    // The refill started when `first` was handed out, so the wait is one fill latency.
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert_ne!(first.id(), second.id());
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_of_unknown_shape_errors() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).build().await.unwrap();
    let stranger = ShapeKey::new("nope");
    assert_eq!(pool.reserve_shape(&stranger).await.unwrap_err(), PoolError::UnknownShape(stranger.clone()));
    assert_eq!(pool.try_reserve_shape(&stranger).unwrap_err(), PoolError::UnknownShape(stranger));
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pool_without_shapes_has_no_default_shape() {
    let pool = Pool::builder(MemoryProvider::new()).build().await.unwrap();
    assert_eq!(pool.reserve().await.unwrap_err(), PoolError::NoDefaultShape);
    assert_eq!(pool.try_reserve().unwrap_err(), PoolError::NoDefaultShape);
    tick().await;
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn build_n_waits_for_n_identical_vms() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).max_parallel_fills(2).build_n(4).await.unwrap();
    assert_eq!(pool.available_now(), 4);
    let s = &pool.status().shapes[0];
    assert_eq!((s.low_water, s.high_water), (4, 4));
    pool.shutdown().await;
}
