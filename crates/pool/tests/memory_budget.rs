//! The memory of all alive VMs (ready, filling, leased) stays under the budget; fills wait.
mod common;

use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::testing::MemoryProvider;
use firepit_pool::{AdaptiveDepth, PoolError};

#[tokio::test(start_paused = true)]
async fn leased_and_ready_vms_together_stay_within_the_budget() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(10));
    // 256 MiB VMs, 1024 MiB budget: at most 4 alive, whatever the depth says.
    let pool = builder(&provider).depth(2..=8).memory_budget_mb(1024).build().await.unwrap();
    settle(Duration::from_millis(100)).await;
    assert_eq!(pool.available_count(), 4, "the budget caps the depth");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.reserve().await.unwrap());
    }
    settle(Duration::from_millis(100)).await;
    assert_eq!(provider.alive(), 4, "no fill while 4 leased VMs use the whole budget");
    assert!(pool.status().memory_used_mb <= 1024);
    assert_eq!(pool.try_reserve().unwrap_err(), PoolError::Exhausted);
    held.pop();
    tick().await;
    settle(Duration::from_millis(20)).await;
    assert_eq!(pool.available_count(), 1, "the freed memory is refilled");
    assert_eq!(provider.alive(), 4);
    drop(held);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn memory_used_never_exceeds_the_budget_under_churn() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(3));
    let pool =
        builder(&provider).depth(1..=3).memory_budget_mb(768).max_parallel_fills(8).build().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                let vm = pool.reserve().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(vm);
            }
        }));
    }
    let watcher = {
        let pool = pool.clone();
        let provider = provider.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                assert!(pool.status().memory_used_mb <= 768);
                assert!(provider.alive() <= 3, "{} alive", provider.alive());
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    watcher.await.unwrap();
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_the_adaptive_target() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(1));
    let pool = builder(&provider)
        .depth(1..=1)
        .adaptive(AdaptiveDepth { max: 50, safety: 4.0, window: Duration::from_secs(5) })
        .memory_budget_mb(256 * 3)
        .build()
        .await
        .unwrap();
    for _ in 0..100 {
        drop(pool.reserve().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = pool.status();
    assert_eq!(status.shapes[0].target, 3, "{status:?}");
    assert!(status.memory_used_mb <= 768);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_budget_below_the_low_water_is_rejected() {
    let err = builder(&MemoryProvider::new()).depth(3..=4).memory_budget_mb(512).build().await.unwrap_err();
    let PoolError::InvalidConfig(msg) = err else { panic!("expected InvalidConfig") };
    assert!(msg.contains("768") && msg.contains("raise the budget"), "{msg}");
}
