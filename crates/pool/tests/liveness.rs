//! Idle VMs that die are evicted and replaced at once; idle VMs are probed at an interval.
mod common;

use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::EvictReason;
use firepit_pool::testing::MemoryProvider;

#[tokio::test(start_paused = true)]
async fn a_dead_idle_vm_is_evicted_and_replaced_at_once() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(50));
    let pool =
        builder(&provider).depth(2..=2).probe_interval(Duration::from_secs(3600)).build().await.unwrap();
    let victim = provider.ids()[0].clone();
    assert!(provider.kill(&victim));
    tick().await;
    // Not counted as ready depth a moment later, long before any probe.
    assert_eq!(pool.available_now(), 1);
    assert_eq!(pool.status().shapes[0].filling, 1, "its replacement is being created");
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::Exited), 1);
    assert!(!provider.ids().contains(&victim), "the dead VM is destroyed");
    settle(Duration::from_millis(60)).await;
    assert_eq!(pool.available_now(), 2);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_vm_is_never_handed_out() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let victim = provider.ids()[0].clone();
    provider.kill(&victim);
    tick().await;
    let vm = pool.reserve().await.unwrap();
    assert_ne!(vm.id(), victim);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failing_probes_evict_idle_vms_at_the_probe_interval() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).probe_interval(Duration::from_secs(10)).build().await.unwrap();
    let first = provider.ids();
    settle(Duration::from_secs(9)).await;
    provider.set_probes_fail(true);
    settle(Duration::from_millis(500)).await;
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::ProbeFailed), 0, "no probe before the interval");
    settle(Duration::from_secs(1)).await;
    assert!(pool.metrics().shapes[0].evicted(EvictReason::ProbeFailed) >= 2);
    for id in first {
        assert!(!provider.ids().contains(&id));
    }
    provider.set_probes_fail(false);
    settle(Duration::from_secs(11)).await;
    assert_eq!(pool.available_now(), 2, "replacements are ready");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn healthy_probes_keep_the_vms() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).probe_interval(Duration::from_secs(1)).build().await.unwrap();
    let ids = provider.ids();
    settle(Duration::from_secs(30)).await;
    assert_eq!(provider.ids(), ids);
    assert_eq!(pool.metrics().shapes[0].evicted_total(), 0);
    assert_eq!(pool.available_now(), 2);
    pool.shutdown().await;
}
