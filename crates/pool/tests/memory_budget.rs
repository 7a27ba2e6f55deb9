//! The memory of all alive VMs (ready, filling, leased) stays under the budget; fills wait.
mod common;

use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::testing::{FaultPlan, MemoryProvider};
use firepit_pool::{AdaptiveDepth, PoolError};

#[tokio::test(start_paused = true)]
async fn leased_and_ready_vms_together_stay_within_the_budget() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(10));
    // 256 MiB VMs, 1024 MiB budget: at most 4 alive, whatever the depth says.
    let pool = builder(&provider).depth(2..=8).memory_budget_mb(1024).build().await.unwrap();
    settle(Duration::from_millis(100)).await;
    assert_eq!(pool.available_now(), 4, "the budget caps the depth");
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
    assert_eq!(pool.available_now(), 1, "the freed memory is refilled");
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

#[tokio::test(start_paused = true)]
async fn clones_are_charged_their_own_memory_and_the_template_once() {
    // Snapshot-like provider: 256 MiB shape, a 256 MiB template held once, clones costing 64 MiB.
    let provider = MemoryProvider::with_plan(FaultPlan {
        fill_latency: Duration::from_millis(10),
        memory_charge_mb: Some(64),
        memory_estimate_mb: Some(64),
        shared_memory_mb: 256,
        ..FaultPlan::default()
    });
    let pool = builder(&provider).depth(2..=16).memory_budget_mb(1024).build().await.unwrap();
    settle(Duration::from_millis(100)).await;
    let status = pool.status();
    assert_eq!(pool.available_now(), 12, "(1024 - 256) / 64 clones fit: {status:?}");
    assert_eq!(status.shapes[0].target, 12);
    assert_eq!(status.shared_memory_mb, 256);
    assert_eq!(status.memory_used_mb, 256 + 12 * 64);
    let held = pool.reserve().await.unwrap();
    settle(Duration::from_millis(100)).await;
    assert_eq!(provider.alive(), 12, "a leased clone still counts");
    drop(held);
    settle(Duration::from_millis(100)).await;
    assert_eq!(pool.status().memory_used_mb, 1024, "the released clone's charge went back and was refilled");
    pool.shutdown().await;
    assert_eq!(pool.status().memory_used_mb, 256, "only the template's memory is left");
}

#[tokio::test(start_paused = true)]
async fn a_fill_reserves_the_estimate_and_is_then_charged_what_the_vm_reports() {
    // The provider does not know yet what a VM costs (estimate = the shape's 256 MiB), but each VM
    // reports 64 MiB once it exists.
    let provider = MemoryProvider::with_plan(FaultPlan {
        fill_latency: Duration::from_millis(10),
        memory_charge_mb: Some(64),
        ..FaultPlan::default()
    });
    let pool = builder(&provider).depth(1..=16).memory_budget_mb(1024).build().await.unwrap();
    settle(Duration::from_millis(100)).await;
    // VMs that exist count at what they report; the next fill would reserve the 256 MiB estimate,
    // which no longer fits beside 13 × 64 MiB.
    assert_eq!(pool.available_now(), 13, "planning uses the estimate for the next fill only");
    assert_eq!(pool.status().memory_used_mb, 13 * 64, "delivered VMs are charged what they report");
    assert_eq!(pool.status().shapes[0].target, 13, "the budget caps the target: {:?}", pool.status());
    // Once the provider has learnt the real cost, the pool grows to its high water.
    provider.update_plan(|p| p.memory_estimate_mb = Some(64));
    drop(pool.reserve().await.unwrap());
    settle(Duration::from_millis(100)).await;
    assert_eq!(pool.available_now(), 16);
    assert_eq!(pool.status().memory_used_mb, 16 * 64);
    // A failed fill gives back exactly what it reserved.
    provider.fail_next_creates(3);
    drop(pool.reserve().await.unwrap());
    settle(Duration::from_millis(100)).await;
    pool.shutdown().await;
    assert_eq!(pool.status().memory_used_mb, 0, "nothing left charged after shutdown");
}
