//! max_age / idle_ttl replace VMs in the background without emptying the pool.
mod common;

use std::time::Duration;

use common::{builder, settle};
use firepit_pool::EvictReason;
use firepit_pool::testing::MemoryProvider;

#[tokio::test(start_paused = true)]
async fn old_vms_are_replaced_and_the_pool_never_drops_below_low_water() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(2));
    let pool = builder(&provider)
        .depth(2..=2)
        .max_age(Duration::from_secs(60))
        .probe_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let old = provider.ids();
    // Watch every 100 ms across the expiry and the replacement fills.
    for _ in 0..700 {
        settle(Duration::from_millis(100)).await;
        assert!(pool.available_now() >= 2, "ready dropped to {} during age eviction", pool.available_now());
    }
    let now = provider.ids();
    for id in &old {
        assert!(!now.contains(id), "VM {id} outlived max_age");
    }
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::MaxAge), 2);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn expired_vms_are_still_handed_out_while_replacements_boot() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(10));
    let pool = builder(&provider)
        .depth(1..=1)
        .max_age(Duration::from_secs(5))
        .warmup_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    settle(Duration::from_secs(6)).await; // expired; replacement needs 10 s
    assert_eq!(pool.status().shapes[0].filling, 1, "the replacement is being created");
    let vm = pool.try_reserve().expect("an expired VM beats an empty pool");
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn idle_ttl_replaces_idle_vms_with_its_own_reason() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider)
        .depth(1..=1)
        .idle_ttl(Duration::from_secs(30))
        .max_age(Duration::from_secs(300))
        .build()
        .await
        .unwrap();
    settle(Duration::from_secs(31)).await;
    let m = pool.metrics();
    assert_eq!(m.shapes[0].evicted(EvictReason::IdleTtl), 1);
    assert_eq!(m.shapes[0].evicted(EvictReason::MaxAge), 0);
    assert_eq!(pool.available_now(), 1);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn expired_vm_makes_room_when_the_budget_blocks_its_replacement() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider)
        .depth(1..=1)
        .memory_budget_mb(256) // exactly one VM
        .max_age(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let old = provider.ids();
    settle(Duration::from_secs(11)).await;
    settle(Duration::from_millis(10)).await;
    assert_ne!(provider.ids(), old, "the stale VM must be replaced even with no room for both");
    assert_eq!(pool.available_now(), 1);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn max_age_too_large_for_the_clock_is_ignored_and_maintenance_goes_on() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider)
        .depth(1..=1)
        .max_age(Duration::MAX)
        .idle_ttl(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let first = provider.ids();
    settle(Duration::from_secs(90)).await;
    // Maintenance survived the unbounded max_age: idle_ttl still replaced the idle VM.
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::IdleTtl), 1);
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::MaxAge), 0);
    assert!(provider.ids().iter().all(|id| !first.contains(id)), "the idle VM was not replaced");
    assert!(pool.try_reserve().is_ok(), "the pool still serves");
    pool.shutdown().await;
}
