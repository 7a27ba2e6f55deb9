//! Idle VMs rest (`Provider::pause`) and every hand-out path wakes them (`Provider::resume`)
//! before the caller sees them; the fast path of `reserve` never yields.
mod common;

use std::time::Duration;

use common::{builder, health, shape, spec, tick};
use firepit_pool::testing::{FaultPlan, MemoryProvider};
use firepit_pool::{EvictReason, Pool, PoolError, ShapeConfig};
use futures_util::FutureExt;

fn pausing() -> MemoryProvider {
    MemoryProvider::with_plan(FaultPlan { pause: true, ..FaultPlan::default() })
}

#[tokio::test(start_paused = true)]
async fn idle_vms_rest_and_reserve_wakes_one_before_its_check() {
    let provider = pausing();
    let pool = builder(&provider).depth(2..=2).health_check(health).build().await.unwrap();
    assert_eq!(provider.paused(), 2, "both ready VMs rest after their fill-time check");
    // The check fails on a resting VM: a hand-out without its wake-up would be rejected.
    let vm = pool.reserve().await.unwrap();
    assert!(!vm.is_paused());
    assert_eq!((provider.resumes(), pool.metrics().shapes[0].validation_failures), (1, 0));
    tick().await;
    assert_eq!(provider.paused(), 2, "the replacement rests too");
    drop(vm);
    pool.shutdown().await;
    assert_eq!(provider.paused(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_reserve_hands_out_at_once_and_wakes_the_vm_in_the_background() {
    let provider = pausing();
    let pool = builder(&provider).depth(1..=1).health_check(health).build().await.unwrap();
    let vm = pool.try_reserve().unwrap();
    tick().await;
    assert!(!vm.is_paused(), "the spawned wake-up ran");
    assert_eq!(provider.resumes(), 1);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_now_wakes_and_checks_but_never_waits() {
    let provider = pausing();
    provider.set_fill_latency(Duration::from_secs(1));
    let pool = builder(&provider).depth(1..=1).health_check(health).build().await.unwrap();
    let checks = provider.health_checks();
    let vm = pool.reserve_now().await.unwrap();
    assert!(!vm.is_paused());
    assert_eq!(provider.health_checks(), checks + 1, "checked right before hand-out");
    // The replacement takes a second: reserve_now does not wait for it.
    let started = tokio::time::Instant::now();
    assert!(matches!(pool.reserve_now().await, Err(PoolError::Exhausted)));
    assert_eq!(started.elapsed(), Duration::ZERO);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_now_skips_a_vm_whose_check_fails() {
    let provider = pausing();
    let pool = builder(&provider).depth(2..=2).health_check(health).build().await.unwrap();
    provider.fail_next_health_checks(1);
    let vm = pool.reserve_now().await.unwrap();
    assert_eq!(pool.metrics().shapes[0].validation_failures, 1);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_vm_that_fails_to_wake_is_destroyed_and_the_next_is_handed_out() {
    let provider = pausing();
    let pool = builder(&provider).depth(2..=2).health_check(health).build().await.unwrap();
    let ready = provider.ids();
    provider.fail_next_resumes(1);
    let vm = pool.reserve().await.unwrap();
    assert_eq!(vm.id(), ready[1]);
    tick().await;
    assert!(!provider.ids().contains(&ready[0]), "the VM that did not wake is destroyed");
    let m = pool.metrics();
    assert_eq!((m.shapes[0].validation_failures, m.shapes[0].evicted(EvictReason::Unhealthy)), (1, 1));
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_shape_with_pause_idle_off_keeps_its_vms_running() {
    let provider = pausing();
    let config = ShapeConfig { depth: 2..=2, pause_idle: false, ..ShapeConfig::default() };
    let pool = Pool::builder(provider.clone())
        .shape_with(shape(), spec(), config)
        .health_check(health)
        .build()
        .await
        .unwrap();
    let vm = pool.reserve().await.unwrap();
    tick().await;
    assert_eq!((provider.pauses(), provider.resumes(), provider.paused()), (0, 0, 0));
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_vm_a_caller_waits_for_is_not_paused_first() {
    let provider = pausing();
    provider.set_fill_latency(Duration::from_millis(50));
    let pool = builder(&provider).depth(1..=1).health_check(health).build().await.unwrap();
    let first = pool.reserve().await.unwrap();
    assert_eq!((provider.pauses(), provider.resumes()), (1, 1));
    // The replacement is filling: this caller queues, and gets it without a pause and a resume.
    let second = pool.reserve_timeout(Duration::from_secs(1)).await.unwrap();
    assert!(!second.is_paused());
    assert_eq!((provider.pauses(), provider.resumes()), (1, 1));
    drop((first, second));
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_resting_vm_that_dies_is_evicted_and_replaced() {
    let provider = pausing();
    let pool = builder(&provider).depth(1..=1).build().await.unwrap();
    let dead = provider.ids()[0].clone();
    assert!(provider.kill(&dead));
    tick().await;
    assert_eq!(pool.metrics().shapes[0].evicted(EvictReason::Exited), 1);
    let vm = pool.reserve().await.unwrap();
    assert_ne!(vm.id(), dead);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test]
async fn reserve_with_a_ready_vm_completes_without_yielding() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).build().await.unwrap();
    // `now_or_never` polls once: a future that yields even once returns None.
    let vm = pool.reserve().now_or_never().expect("the fast path never yields").unwrap();
    let other = pool.reserve_now().now_or_never().expect("nor does reserve_now's").unwrap();
    drop((vm, other));
    pool.shutdown().await;
}
