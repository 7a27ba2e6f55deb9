//! A failing provider is retried with exponential backoff, visible in status and metrics.
mod common;

use std::time::Duration;

use common::{builder, settle};
use firepit_pool::Backoff;
use firepit_pool::testing::MemoryProvider;

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

#[tokio::test(start_paused = true)]
async fn failing_creates_back_off_exponentially_instead_of_busy_looping() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(1..=1).backoff(backoff()).build().await.unwrap();
    provider.set_failure_rate(1.0);
    let held = pool.reserve().await.unwrap(); // the refill now fails forever
    let before = provider.create_calls();
    settle(Duration::from_secs(60)).await;
    let calls = provider.create_calls() - before;
    // Delays 0.1, 0.2, 0.4, … 6.4, then 10 s each: 12 or 13 attempts in 60 s. A busy loop makes thousands.
    assert!((11..=14).contains(&calls), "{calls} creates in 60 s");
    let status = pool.status();
    let s = &status.shapes[0];
    assert!(s.backing_off, "{s:?}");
    assert_eq!(u64::from(s.consecutive_failures), calls);
    assert!(s.last_error.as_deref().unwrap_or("").contains("injected create failure"), "{s:?}");
    assert_eq!(pool.metrics().shapes[0].fill_failures, calls);
    drop(held);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_pool_recovers_when_the_provider_does() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).backoff(backoff()).build().await.unwrap();
    provider.fail_next_creates(4);
    let a = pool.reserve().await.unwrap();
    let b = pool.reserve().await.unwrap();
    drop((a, b));
    settle(Duration::from_secs(5)).await;
    let status = pool.status();
    let s = &status.shapes[0];
    assert_eq!(s.ready, 2, "refilled after the failures: {s:?}");
    assert_eq!((s.consecutive_failures, s.backing_off), (0, false));
    assert_eq!(s.fill_failures, 4);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_the_delays() {
    let b = Backoff { jitter: 0.5, ..backoff() };
    let delays: std::collections::HashSet<_> = (0..50).map(|_| b.delay(3)).collect();
    assert!(delays.len() > 10, "jitter must vary the delay");
    for d in delays {
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(600), "{d:?}");
    }
}
