//! Waiters are served first come, first served; late callers cannot overtake.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::PoolError;
use firepit_pool::testing::MemoryProvider;

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(10));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let pool = pool.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let vm = pool.reserve().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(vm);
        }));
        tick().await; // task i queues before task i+1 starts
    }
    assert_eq!(pool.status().shapes[0].waiting, 8);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn try_reserve_does_not_overtake_queued_waiters() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(10));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.reserve().await.map(|vm| vm.id().to_owned()) }
    });
    tick().await;
    // While someone waits, every new VM goes to them, never into `ready` for try_reserve.
    for _ in 0..5 {
        assert!(matches!(pool.try_reserve(), Err(PoolError::Exhausted)));
        settle(Duration::from_millis(3)).await;
    }
    assert!(waiter.await.unwrap().is_ok());
    drop(held);
    pool.shutdown().await;
}
