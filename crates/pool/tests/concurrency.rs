//! Many tasks reserving at once on a multi-threaded runtime.
mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::builder;
use firepit_pool::testing::MemoryProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reserves_never_share_a_vm_and_all_succeed() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(4..=8).max_parallel_fills(8).build().await.unwrap();
    let in_use = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pool = pool.clone();
        let in_use = in_use.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let vm = pool.reserve_timeout(Duration::from_secs(10)).await.unwrap();
                assert!(in_use.lock().unwrap().insert(vm.id().to_owned()), "VM {} handed out twice", vm.id());
                tokio::task::yield_now().await;
                assert!(in_use.lock().unwrap().remove(vm.id()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = pool.metrics();
    assert_eq!(m.shapes[0].acquired, 64 * 20);
    pool.shutdown().await;
    assert_eq!(provider.alive(), 0, "shutdown destroys everything");
    assert_eq!(provider.dropped_without_destroy(), 0);
}
