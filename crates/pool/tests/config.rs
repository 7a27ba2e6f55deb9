//! build() rejects invalid configuration with a message that says what to change.
mod common;

use std::time::Duration;

use common::{builder, shape};
use firepit_pool::testing::{MemoryProvider, MemorySpec};
use firepit_pool::{AdaptiveDepth, Backoff, Pool, PoolError, ShapeKey};

async fn rejected(b: firepit_pool::PoolBuilder<MemoryProvider>) -> String {
    match b.build().await {
        Err(PoolError::InvalidConfig(msg)) => msg,
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected InvalidConfig, got a pool"),
    }
}

#[tokio::test]
async fn invalid_configs_are_rejected_with_what_to_change() {
    let p = MemoryProvider::new();
    #[allow(clippy::reversed_empty_ranges)]
    let cases: Vec<(firepit_pool::PoolBuilder<MemoryProvider>, &str)> = vec![
        (builder(&p).depth(0..=0), "use a high water of at least 1"),
        (builder(&p).depth(4..=2), "write the smaller number first, e.g. .depth(2..=4)"),
        // The pool charges a shape what its provider says (here the spec's memory); vCPUs are the
        // provider's business (the QEMU provider refuses 0 when it checks a spec).
        (Pool::builder(p.clone()).shape(ShapeKey::new("empty"), MemorySpec::new(0)), "memory_mb = 0"),
        (builder(&p).max_parallel_fills(0), "max_parallel_fills is 0"),
        (builder(&p).memory_budget_mb(0), "memory_budget_mb is 0"),
        (builder(&p).max_age(Duration::ZERO), "max_age is zero"),
        (builder(&p).shutdown_budget(Duration::ZERO), "must be positive"),
        (builder(&p).warmup_max_failures(0), "use at least 1"),
        (
            builder(&p).depth(1..=4).adaptive(AdaptiveDepth { max: 2, ..AdaptiveDepth::default() }),
            "raise AdaptiveDepth::max",
        ),
        (builder(&p).backoff(Backoff { multiplier: 0.5, ..Backoff::default() }), "multiplier"),
        (builder(&p).backoff(Backoff { jitter: 2.0, ..Backoff::default() }), "jitter"),
        (builder(&p).shape(shape(), MemorySpec::new(64)), "added twice"),
    ];
    for (b, needle) in cases {
        let msg = rejected(b).await;
        assert!(msg.contains(needle), "message {msg:?} should contain {needle:?}");
    }
    assert_eq!(p.create_calls(), 0, "nothing is created for an invalid config");
}

#[test]
fn build_outside_a_runtime_errors_instead_of_panicking() {
    let fut = builder(&MemoryProvider::new()).build();
    let err = futures_lite_block_on(fut);
    assert!(matches!(err, Err(PoolError::NoRuntime)));
}

/// Minimal executor: polls a future to completion on this thread (no tokio runtime).
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
