//! Shutdown is idempotent, bounded, and leaks nothing; dropping never panics.
mod common;

use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::PoolError;
use firepit_pool::testing::{FaultPlan, MemoryProvider};

#[tokio::test(start_paused = true)]
async fn shutdown_destroys_everything_and_is_idempotent() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(3..=3).build().await.unwrap();
    pool.shutdown().await;
    assert_eq!(provider.alive(), 0);
    assert_eq!(provider.destroyed(), 3);
    pool.shutdown().await;
    pool.clone().shutdown().await;
    assert_eq!(provider.destroyed(), 3);
    assert!(pool.status().shutting_down);
    assert_eq!(pool.try_reserve().unwrap_err(), PoolError::ShuttingDown);
    assert_eq!(pool.reserve().await.unwrap_err(), PoolError::ShuttingDown);
}

#[tokio::test(start_paused = true)]
async fn queued_reserves_fail_with_shutting_down() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(5));
    let pool = builder(&provider).depth(1..=1).warmup_timeout(Duration::from_secs(60)).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.reserve().await.map(|_| ()) }
    });
    tick().await;
    pool.shutdown().await;
    assert_eq!(waiter.await.unwrap(), Err(PoolError::ShuttingDown));
    // The fill in flight finished within the budget and was destroyed; only the lease is alive.
    assert_eq!(provider.alive(), 1);
    drop(held);
    tick().await;
    assert_eq!(provider.alive(), 0, "a lease outstanding at shutdown is destroyed when dropped");
    assert_eq!(provider.dropped_without_destroy(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_by_its_budget() {
    let provider = MemoryProvider::with_plan(FaultPlan {
        destroy_latency: Duration::from_secs(60),
        ..FaultPlan::default()
    });
    let pool = builder(&provider).depth(2..=2).shutdown_budget(Duration::from_secs(1)).build().await.unwrap();
    let started = tokio::time::Instant::now();
    pool.shutdown().await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    settle(Duration::from_secs(60)).await;
    assert_eq!(provider.alive(), 0, "destroys still finish in the background");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_leaves_nothing_alive() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(1));
    let pool = builder(&provider).depth(4..=8).max_parallel_fills(8).build().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match pool.reserve().await {
                    Ok(vm) => {
                        tokio::task::yield_now().await;
                        drop(vm);
                    }
                    Err(PoolError::ShuttingDown) => return,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    pool.shutdown().await;
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..100 {
        if provider.alive() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(provider.alive(), 0);
    assert_eq!(provider.dropped_without_destroy(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_pool_handle_destroys_every_vm() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).depth(3..=3).build().await.unwrap();
    let lease = pool.reserve().await.unwrap(); // a fill is now in flight
    drop(pool);
    settle(Duration::from_millis(200)).await;
    assert_eq!(provider.alive(), 1, "only the lease is alive");
    drop(lease);
    tick().await;
    assert_eq!(provider.alive(), 0);
    assert_eq!(provider.dropped_without_destroy(), 0, "destroyed, not just dropped");
}

#[test]
fn dropping_a_lease_outside_any_runtime_does_not_panic_or_leak() {
    let provider = MemoryProvider::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (pool, lease) = rt.block_on(async {
        let pool = builder(&provider).depth(2..=2).build().await.unwrap();
        let lease = pool.reserve().await.unwrap();
        (pool, lease)
    });
    drop(rt);
    drop(lease); // no runtime: the VM is dropped in place
    drop(pool);
    assert_eq!(provider.alive(), 0, "every VM value was dropped and cleaned up after itself");
}

#[test]
fn dropping_a_lease_during_shutdown_on_another_thread_does_not_panic() {
    let provider = MemoryProvider::new();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let pool = rt.block_on(builder(&provider).depth(2..=2).build()).unwrap();
    let lease = rt.block_on(pool.reserve()).unwrap();
    let handle = std::thread::spawn(move || drop(lease));
    rt.block_on(pool.shutdown());
    handle.join().expect("drop on a plain thread must not panic");
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    assert_eq!(provider.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_vm_sent_to_a_waiter_before_shutdown_is_not_handed_out_after_it() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    let mut pending = Box::pin(pool.reserve());
    assert!(tokio::time::timeout(Duration::from_millis(1), &mut pending).await.is_err());
    settle(Duration::from_millis(150)).await; // the refill was sent to `pending`, unpolled
    pool.shutdown().await;
    assert_eq!(pending.await.unwrap_err(), PoolError::ShuttingDown);
    tick().await;
    assert_eq!(provider.alive(), 1, "only the lease taken before shutdown is alive");
    drop(held);
    tick().await;
    assert_eq!(provider.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_a_slow_fill_instead_of_waiting_for_it() {
    let provider = MemoryProvider::new();
    let pool =
        builder(&provider).depth(1..=1).shutdown_budget(Duration::from_secs(30)).build().await.unwrap();
    provider.set_fill_latency(Duration::from_secs(3600));
    let held = pool.reserve().await.unwrap();
    tick().await; // the refiller starts the (hour-long) replacement fill
    assert_eq!(pool.status().shapes[0].filling, 1);
    let started = tokio::time::Instant::now();
    pool.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(1), "shutdown waited {:?} for a fill", started.elapsed());
    assert_eq!(provider.alive(), 1, "only the lease is alive; the cancelled fill made no VM");
    assert_eq!(pool.status().shapes[0].fill_failures, 0, "a cancelled fill is not a provider failure");
    drop(held);
    settle(Duration::from_millis(10)).await;
    assert_eq!(provider.alive(), 0);
}
