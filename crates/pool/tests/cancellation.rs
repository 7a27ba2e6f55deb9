//! A dropped reserve() future never loses a VM.
mod common;

use std::time::Duration;

use common::{builder, settle, tick};
use firepit_pool::testing::{MemoryProvider, MemoryVm};
use firepit_pool::{PoolError, Unhealthy};

#[tokio::test(start_paused = true)]
async fn dropping_a_queued_reserve_leaves_the_queue() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_secs(1));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    // Queue and cancel.
    assert_eq!(pool.reserve_timeout(Duration::from_millis(10)).await.unwrap_err(), PoolError::Timeout);
    assert_eq!(pool.status().shapes[0].waiting, 0, "a cancelled reserve must leave the queue");
    settle(Duration::from_secs(2)).await;
    assert_eq!(pool.available_now(), 1, "the refilled VM must be ready, not sent to the dead waiter");
    drop(held);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_a_reserve_after_its_vm_was_sent_gives_the_vm_back() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let held = pool.reserve().await.unwrap();

    let mut pending = Box::pin(pool.reserve());
    // Poll once so the reserve queues, then stop polling it.
    assert!(tokio::time::timeout(Duration::from_millis(1), &mut pending).await.is_err());
    assert_eq!(pool.status().shapes[0].waiting, 1);
    // The refill completes (t = 100 ms) and sends its VM to the queued (unpolled) reserve; the
    // next refill (started at once) is not done before t = 200 ms.
    settle(Duration::from_millis(150)).await;
    assert_eq!(pool.status().shapes[0].waiting, 0);
    assert_eq!(pool.available_now(), 0, "the VM is in flight to the waiter");
    drop(pending);
    assert_eq!(pool.available_now(), 1, "dropping the reserve must put the VM back");
    let again = pool.try_reserve().expect("the VM given back is reservable");
    assert_eq!(provider.destroyed(), 0);
    drop((held, again));
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn vm_sent_to_a_cancelled_reserve_goes_to_the_next_waiter() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(100));
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let held = pool.reserve().await.unwrap();
    let mut first = Box::pin(pool.reserve());
    assert!(tokio::time::timeout(Duration::from_millis(1), &mut first).await.is_err());
    let second = tokio::spawn({
        let pool = pool.clone();
        async move { pool.reserve().await.map(|vm| vm.id().to_owned()) }
    });
    tick().await;
    assert_eq!(pool.status().shapes[0].waiting, 2);
    settle(Duration::from_millis(150)).await; // VM sent to `first`, which is not polled
    drop(first);
    let got = tokio::time::timeout(Duration::from_millis(1), second).await;
    assert!(matches!(got, Ok(Ok(Ok(_)))), "the second waiter must get the VM: {got:?}");
    drop(held);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_the_health_check_gives_the_vm_back() {
    let provider = MemoryProvider::new();
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = slow.clone();
    let pool = builder(&provider)
        .depth(1..=1)
        .health_check(move |_vm: &MemoryVm| {
            let slow = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<(), Unhealthy>(())
            }
        })
        .build()
        .await
        .unwrap();
    slow.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(pool.reserve_timeout(Duration::from_millis(10)).await.unwrap_err(), PoolError::Timeout);
    let status = pool.status();
    assert_eq!(
        (status.shapes[0].ready, status.shapes[0].leased),
        (1, 0),
        "VM must be back in ready: {status:?}"
    );
    assert_eq!(provider.destroyed(), 0);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn many_timeouts_never_lose_or_leak_vms() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(7));
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    let mut kept = Vec::new();
    for i in 0..200u64 {
        match pool.reserve_timeout(Duration::from_millis(i % 5)).await {
            Ok(vm) if i % 3 == 0 => kept.push(vm),
            Ok(vm) => drop(vm),
            Err(e) => assert_eq!(e, PoolError::Timeout),
        }
        if kept.len() > 3 {
            kept.clear();
        }
    }
    kept.clear();
    settle(Duration::from_millis(100)).await;
    let status = pool.status();
    assert_eq!(status.shapes[0].ready, 2, "{status:?}");
    assert_eq!(status.shapes[0].leased, 0, "{status:?}");
    assert_eq!(provider.alive(), 2, "exactly the ready VMs are alive");
    pool.shutdown().await;
    assert_eq!(provider.alive(), 0);
    assert_eq!(provider.dropped_without_destroy(), 0);
}
