//! Adaptive depth follows demand (rate × fill latency × safety) within its bounds.
mod common;

use std::time::Duration;

use common::{builder, settle};
use firepit_pool::AdaptiveDepth;
use firepit_pool::testing::MemoryProvider;

async fn drive(pool: &firepit_pool::Pool<MemoryProvider>, per_second: u32, seconds: u32) {
    let gap = Duration::from_secs(1) / per_second;
    for _ in 0..per_second * seconds {
        drop(pool.reserve().await.unwrap());
        tokio::time::sleep(gap).await;
    }
}

#[tokio::test(start_paused = true)]
async fn depth_grows_with_the_acquire_rate_and_fill_latency() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(500));
    let pool = builder(&provider)
        .depth(1..=1)
        .max_parallel_fills(16)
        .adaptive(AdaptiveDepth { max: 20, safety: 2.0, window: Duration::from_secs(2) })
        .build()
        .await
        .unwrap();
    assert_eq!(pool.status().shapes[0].target, 1);
    drive(&pool, 5, 10).await;
    // 5/s × 0.5 s × 2 = 5.
    let target = pool.status().shapes[0].target;
    assert!((4..=6).contains(&target), "target {target}");
    settle(Duration::from_secs(1)).await;
    assert!(pool.available_now() >= 4, "the pool filled to the target: {:?}", pool.status());
    // Demand stops: the target decays back to the high water.
    settle(Duration::from_secs(30)).await;
    assert_eq!(pool.status().shapes[0].target, 1);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn adaptive_target_never_exceeds_its_max() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(1));
    let pool = builder(&provider)
        .depth(2..=2)
        .max_parallel_fills(16)
        .adaptive(AdaptiveDepth { max: 6, safety: 3.0, window: Duration::from_secs(2) })
        .build()
        .await
        .unwrap();
    drive(&pool, 20, 5).await;
    assert_eq!(pool.status().shapes[0].target, 6);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_adaptive_the_depth_stays_fixed() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(500));
    let pool = builder(&provider).depth(1..=2).max_parallel_fills(16).build().await.unwrap();
    drive(&pool, 5, 5).await;
    assert_eq!(pool.status().shapes[0].target, 2);
    pool.shutdown().await;
}
