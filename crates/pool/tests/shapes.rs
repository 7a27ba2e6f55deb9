//! Several shapes in one pool; register / unregister at run time.
mod common;

use std::time::Duration;

use common::{builder, other_shape, other_spec, settle, shape, tick};
use firepit_pool::testing::MemoryProvider;
use firepit_pool::{EvictReason, PoolError, ShapeConfig};

#[tokio::test(start_paused = true)]
async fn each_shape_has_its_own_bucket() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider)
        .depth(1..=1)
        .shape_with(other_shape(), other_spec(), ShapeConfig { depth: 2..=2, ..ShapeConfig::default() })
        .build()
        .await
        .unwrap();
    let status = pool.status();
    assert_eq!(status.shape(&shape()).map(|s| s.ready), Some(1));
    assert_eq!(status.shape(&other_shape()).map(|s| s.ready), Some(2));
    let vm = pool.reserve_shape(&other_shape()).await.unwrap();
    assert_eq!(vm.shape(), &other_shape());
    assert_eq!(vm.spec(), &other_spec(), "the provider made it from the spec registered with the shape");
    assert_eq!(pool.reserve().await.unwrap().shape(), &shape(), "reserve() uses the first shape");
    assert_eq!(status.memory_used_mb, 256 + 2 * 512);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_shape_registered_at_run_time_fills() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).build().await.unwrap();
    pool.register_shape(other_shape(), other_spec(), ShapeConfig { depth: 3..=3, ..ShapeConfig::default() })
        .unwrap();
    tick().await;
    assert_eq!(pool.status().shape(&other_shape()).map(|s| s.ready), Some(3));
    assert_eq!(
        pool.register_shape(other_shape(), other_spec(), ShapeConfig::default()).unwrap_err(),
        PoolError::DuplicateShape(other_shape())
    );
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unregister_destroys_the_bucket_and_fails_its_waiters() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).build().await.unwrap();
    pool.register_shape(other_shape(), other_spec(), ShapeConfig { depth: 2..=2, ..ShapeConfig::default() })
        .unwrap();
    settle(Duration::from_millis(150)).await;
    let lease = pool.reserve_shape(&other_shape()).await.unwrap();
    let _second = pool.reserve_shape(&other_shape()).await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.reserve_shape(&other_shape()).await.map(|_| ()) }
    });
    tick().await;
    let alive_before = provider.alive();
    assert!(provider.unregistered_shapes().is_empty());
    pool.unregister_shape(&other_shape()).await.unwrap();
    assert_eq!(provider.unregistered_shapes(), [other_shape()], "the provider is told once");
    assert_eq!(waiter.await.unwrap(), Err(PoolError::UnknownShape(other_shape())));
    assert!(pool.status().shape(&other_shape()).is_none());
    assert_eq!(pool.reserve_shape(&other_shape()).await.unwrap_err(), PoolError::UnknownShape(other_shape()));
    let lease_id = lease.id().to_owned();
    drop(lease);
    settle(Duration::from_millis(200)).await; // in-flight fills finish and are destroyed too
    assert!(!provider.ids().contains(&lease_id), "a lease of an unregistered shape is destroyed on drop");
    assert!(provider.alive() < alive_before);
    // Only the default shape's VM and the one lease still held are alive.
    assert_eq!(provider.alive(), 2, "{:?}", provider.ids());
    assert_eq!(
        pool.unregister_shape(&other_shape()).await.unwrap_err(),
        PoolError::UnknownShape(other_shape())
    );
    assert_eq!(provider.unregistered_shapes().len(), 1, "an unknown shape is not passed on");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unregister_counts_evictions_and_frees_memory() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).build().await.unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    pool.register_metrics(&mut registry);
    pool.register_shape(other_shape(), other_spec(), ShapeConfig { depth: 2..=2, ..ShapeConfig::default() })
        .unwrap();
    tick().await;
    assert_eq!(pool.status().memory_used_mb, 256 + 2 * 512);
    assert!(pool.metrics().shape(&other_shape()).is_some());
    pool.unregister_shape(&other_shape()).await.unwrap();
    assert_eq!(pool.status().memory_used_mb, 256, "unregister waits for the destroys");
    assert!(pool.metrics().shape(&other_shape()).is_none());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let needle = format!(
        r#"firepit_pool_vms_evicted_total{{shape="{}",reason="{}"}} 2"#,
        other_shape(),
        EvictReason::Unregistered
    );
    assert!(text.contains(&needle), "missing {needle} in\n{text}");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn register_validates_its_config() {
    let pool = builder(&MemoryProvider::new()).build().await.unwrap();
    let err = pool
        .register_shape(other_shape(), other_spec(), ShapeConfig { depth: 0..=0, ..ShapeConfig::default() })
        .unwrap_err();
    assert!(matches!(err, PoolError::InvalidConfig(ref m) if m.contains("at least 1")), "{err}");
    pool.shutdown().await;
}
