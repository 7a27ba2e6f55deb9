//! Metrics: a plain snapshot and prometheus text, with a `shape` label.
mod common;

use std::time::Duration;

use common::{builder, other_shape, other_spec, tick};
use firepit_pool::testing::MemoryProvider;
use firepit_pool::{EvictReason, ShapeConfig};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

#[tokio::test(start_paused = true)]
async fn snapshot_counts_what_happened() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    let a = pool.reserve().await.unwrap();
    let b = pool.reserve().await.unwrap();
    drop(a);
    tick().await;
    let m = pool.metrics();
    let s = &m.shapes[0];
    assert_eq!((s.acquired, s.released, s.leased), (2, 1, 1));
    assert_eq!(s.created, 4);
    assert_eq!(s.ready, 2);
    assert_eq!(s.waits, 2);
    assert!(s.refill_runs >= 2);
    assert_eq!(s.evicted_total(), 0);
    drop(b);
    pool.shutdown().await;
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::Shutdown), 2);
}

#[tokio::test(start_paused = true)]
async fn prometheus_text_carries_the_shape_label() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider)
        .depth(1..=1)
        .shape_with(other_shape(), other_spec(), ShapeConfig { depth: 2..=2, ..ShapeConfig::default() })
        .build()
        .await
        .unwrap();
    let mut registry = Registry::default();
    pool.register_metrics(&mut registry);
    let vm = pool.reserve_timeout(Duration::from_secs(1)).await.unwrap();
    provider.fail_next_creates(1);
    drop(vm);
    tick().await;
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for needle in [
        r#"firepit_pool_vms_created_total{shape="small"} 1"#,
        r#"firepit_pool_vms_created_total{shape="big"} 2"#,
        r#"firepit_pool_vms_acquired_total{shape="small"} 1"#,
        r#"firepit_pool_vms_released_total{shape="small"} 1"#,
        r#"firepit_pool_fill_failures_total{shape="small"} 1"#,
        r#"firepit_pool_vms_ready{shape="big"} 2"#,
        r#"firepit_pool_vms_leased{shape="small"} 0"#,
        r#"firepit_pool_vms_filling{shape="small"} 0"#,
        r#"firepit_pool_vms_evicted_total{shape="small",reason="max_age"} 0"#,
        r#"firepit_pool_validation_failures_total{shape="small"} 0"#,
        r#"firepit_pool_refill_runs_total{shape="small"}"#,
        r#"firepit_pool_reserve_wait_seconds_count{shape="small"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fills_are_counted_by_the_fill_kind_the_vm_reports() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    let mut registry = Registry::default();
    pool.register_metrics(&mut registry);
    assert_eq!(pool.status().shapes[0].last_fill, None, "the memory provider reports no kind by default");
    // The provider changes how it makes VMs (as a snapshot provider falling back to cold boot does).
    provider.update_plan(|plan| plan.fill_kind = Some("snapshot"));
    let vm = pool.reserve().await.unwrap();
    drop(vm);
    tick().await;
    assert_eq!(pool.status().shapes[0].last_fill, Some("snapshot"));
    provider.update_plan(|plan| plan.fill_kind = Some("cold_boot_fallback"));
    let vm = pool.reserve().await.unwrap();
    drop(vm);
    tick().await;
    let status = pool.status();
    assert_eq!(status.shapes[0].last_fill, Some("cold_boot_fallback"));
    let m = pool.metrics();
    let s = &m.shapes[0];
    assert_eq!(
        s.filled,
        vec![("cold_boot_fallback", 1), ("snapshot", 1), (firepit_pool::UNSPECIFIED_FILL, 2)]
    );
    assert_eq!(s.filled("snapshot"), 1);
    assert_eq!(s.filled.iter().map(|(_, n)| n).sum::<u64>(), s.created);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for needle in [
        r#"firepit_pool_vms_filled_total{shape="small",fill_strategy="snapshot"} 1"#,
        r#"firepit_pool_vms_filled_total{shape="small",fill_strategy="cold_boot_fallback"} 1"#,
        r#"firepit_pool_vms_filled_total{shape="small",fill_strategy="unspecified"} 2"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    pool.shutdown().await;
}
