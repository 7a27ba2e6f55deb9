//! build() returns once low water is ready, or errors — never hangs.
mod common;

use std::time::Duration;

use common::{builder, tick};
use firepit_pool::PoolError;
use firepit_pool::testing::{FaultPlan, MemoryProvider};

#[tokio::test(start_paused = true)]
async fn consecutive_failures_fail_the_warm_up_with_the_provider_message() {
    let provider = MemoryProvider::with_plan(FaultPlan { failure_rate: 1.0, ..FaultPlan::default() });
    let err = builder(&provider).warmup_max_failures(3).build().await.unwrap_err();
    match err {
        PoolError::WarmupFailed { shape, message } => {
            assert_eq!(shape, common::shape());
            assert!(message.contains("injected create failure"), "{message}");
        }
        other => panic!("expected WarmupFailed, got {other:?}"),
    }
    assert_eq!(provider.create_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_slow_provider_hits_the_warmup_timeout() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let err =
        builder(&provider).depth(2..=2).warmup_timeout(Duration::from_secs(10)).build().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(matches!(err, PoolError::WarmupTimeout { ready: 0, low_water: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("raise warmup_timeout"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    tick().await;
    assert_eq!(provider.alive(), 0, "fills in flight at the timeout are destroyed when they finish");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_do_not_fail_the_warm_up() {
    let provider = MemoryProvider::with_plan(FaultPlan { fail_next: 2, ..FaultPlan::default() });
    let pool = builder(&provider).depth(1..=1).warmup_max_failures(3).build().await.unwrap();
    assert_eq!(pool.available_now(), 1);
    assert_eq!(pool.status().shapes[0].fill_failures, 2);
    pool.shutdown().await;
}
