//! Dropping a lease destroys the VM and the pool refills at once (event-driven, no polling).
mod common;

use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::testing::MemoryProvider;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn drop_destroys_the_vm_and_replaces_it() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(10));
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    let a = pool.reserve().await.unwrap();
    let b = pool.reserve().await.unwrap();
    let ids = [a.id().to_owned(), b.id().to_owned()];
    drop((a, b));
    tick().await;
    for id in &ids {
        assert!(!provider.ids().contains(id), "a dropped lease's VM must be destroyed");
    }
    assert_eq!(provider.destroyed(), 2);
    settle(Duration::from_millis(20)).await;
    assert_eq!(pool.available_now(), 2);
    assert_eq!(provider.created(), 4);
    let m = pool.metrics();
    assert_eq!((m.shapes[0].acquired, m.shapes[0].released), (2, 2));
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refill_starts_the_moment_a_vm_is_handed_out() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(250));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let started = Instant::now();
    let _held = pool.reserve().await.unwrap();
    while pool.available_now() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Exactly one fill latency after the hand-out (paused clock): no polling interval in between.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took <= Duration::from_millis(251), "took {took:?}");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_top_up_starts_a_moment_after_the_hand_out_an_urgent_fill_at_once() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(500));
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    // One VM left ready: the replacement only tops the bucket up, so it lets the caller go first,
    // 1 % of a fill's duration capped at 2 ms.
    let started = Instant::now();
    let first = pool.reserve().await.unwrap();
    while pool.available_count().await < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(502) && took <= Duration::from_millis(503), "took {took:?}");
    // Nothing left ready after two hand-outs: that fill is urgent and starts at once.
    let second = pool.reserve().await.unwrap();
    let third = pool.reserve().await.unwrap();
    let started = Instant::now();
    while pool.available_count().await < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    assert!(took <= Duration::from_millis(501), "took {took:?}");
    drop((first, second, third));
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_full_pool_does_no_refill_work() {
    let provider = MemoryProvider::new();
    let pool =
        builder(&provider).depth(3..=3).probe_interval(Duration::from_secs(3600)).build().await.unwrap();
    let runs = pool.metrics().shapes[0].refill_runs;
    let calls = provider.create_calls();
    settle(Duration::from_secs(600)).await;
    assert_eq!(provider.create_calls(), calls);
    assert_eq!(pool.metrics().shapes[0].refill_runs, runs, "no refill passes while nothing changes");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fills_run_in_parallel_up_to_the_limit() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(1));
    let started = Instant::now();
    let pool = builder(&provider).depth(8..=8).max_parallel_fills(4).build().await.unwrap();
    // 8 VMs, 4 at a time, 1 s each: 2 s, not 8 s (sequential) nor 1 s (unbounded).
    assert_eq!(started.elapsed().as_secs(), 2);
    pool.shutdown().await;
}
