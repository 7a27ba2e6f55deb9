//! The health check runs before hand-out; unhealthy VMs are destroyed, counted, and skipped.
mod common;

use std::time::Duration;

use common::{builder, health, tick};
use firepit_pool::testing::{FaultPlan, MemoryProvider, MemoryVm};
use firepit_pool::{BorrowingCheck, EvictReason, HealthCheck, PoolError, PoolVm, Unhealthy};

#[tokio::test(start_paused = true)]
async fn unhealthy_vms_are_destroyed_and_the_next_is_handed_out() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(3..=3).health_check(health).build().await.unwrap();
    let ready: Vec<String> = provider.ids();
    provider.fail_next_health_checks(2);
    let vm = pool.reserve().await.unwrap();
    // The two oldest failed their check; the third is handed out.
    assert_eq!(vm.id(), ready[2]);
    tick().await;
    assert!(!provider.ids().contains(&ready[0]) && !provider.ids().contains(&ready[1]));
    let m = pool.metrics();
    assert_eq!(m.shapes[0].validation_failures, 2);
    assert_eq!(m.shapes[0].evicted(EvictReason::Unhealthy), 2);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reserve_waits_for_a_healthy_vm_when_all_ready_ones_fail() {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(Duration::from_millis(10));
    let pool = builder(&provider).depth(2..=2).health_check(health).build().await.unwrap();
    let checks_before = provider.health_checks();
    provider.fail_next_health_checks(2);
    let vm = pool.reserve_timeout(Duration::from_secs(1)).await.unwrap();
    assert!(provider.health_checks() >= checks_before + 3);
    assert_eq!(pool.metrics().shapes[0].validation_failures, 2);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_vm_failing_its_first_check_is_never_ready() {
    let provider = MemoryProvider::with_plan(FaultPlan { fail_health_next: 1, ..FaultPlan::default() });
    let pool = builder(&provider).depth(1..=1).health_check(health).build().await.unwrap();
    // try_reserve cannot await a check: it relies on the check each VM passed when it became ready.
    let vm = pool.try_reserve().unwrap();
    assert_eq!(vm.id(), "mem-2", "mem-1 failed its first check and must not be handed out");
    assert_eq!(pool.metrics().shapes[0].validation_failures, 1);
    drop(vm);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn always_unhealthy_vms_fail_the_warm_up() {
    let provider = MemoryProvider::with_plan(FaultPlan { always_unhealthy: true, ..FaultPlan::default() });
    let err = builder(&provider).health_check(health).build().await.unwrap_err();
    match err {
        PoolError::WarmupFailed { message, .. } => assert!(message.contains("health check"), "{message}"),
        other => panic!("expected WarmupFailed, got {other:?}"),
    }
    tick().await;
    assert_eq!(provider.alive(), 0, "failed warm-up destroys what it made");
}

struct IdIsOdd;
impl HealthCheck<MemoryVm> for IdIsOdd {
    async fn check(&self, vm: &MemoryVm) -> Result<(), Unhealthy> {
        let n: u32 = vm.id().trim_start_matches("mem-").parse().map_err(|_| Unhealthy::new("bad id"))?;
        if n % 2 == 1 { Ok(()) } else { Err(Unhealthy::new(format!("{} is even", vm.id()))) }
    }
}

#[tokio::test(start_paused = true)]
async fn trait_and_borrowing_closure_checks_work() {
    let provider = MemoryProvider::new();
    let pool = builder(&provider).depth(2..=2).health_check(IdIsOdd).build().await.unwrap();
    for _ in 0..4 {
        let vm = pool.reserve().await.unwrap();
        assert!(vm.id().ends_with(['1', '3', '5', '7', '9']), "{} handed out", vm.id());
    }
    pool.shutdown().await;

    let provider = MemoryProvider::new();
    let check = BorrowingCheck::new(|vm: &MemoryVm| {
        Box::pin(async move { if vm.id() == "mem-1" { Err(Unhealthy::new("first")) } else { Ok(()) } })
    });
    let pool = builder(&provider).health_check(check).build().await.unwrap();
    assert_ne!(pool.reserve().await.unwrap().id(), "mem-1");
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_shape_without_health_check_skips_the_pools_check() {
    // Every check fails: the checked shape could never warm up, the unchecked one never runs it.
    let provider = MemoryProvider::with_plan(FaultPlan { always_unhealthy: true, ..FaultPlan::default() });
    let unchecked = firepit_pool::ShapeConfig { health_check: false, ..firepit_pool::ShapeConfig::default() };
    let pool = firepit_pool::Pool::builder(provider.clone())
        .shape_with(common::shape(), common::spec(), unchecked.clone())
        .health_check(health)
        .build()
        .await
        .unwrap();
    let vm = pool.reserve_timeout(Duration::from_secs(1)).await.unwrap();
    drop(vm);
    assert_eq!(provider.health_checks(), 0, "neither at fill nor at hand-out");
    // A checked shape of the same pool runs it (and here fails it).
    let checked = firepit_pool::ShapeConfig { health_check: true, ..unchecked };
    pool.register_shape(common::other_shape(), common::other_spec(), checked).unwrap();
    tick().await;
    assert!(provider.health_checks() >= 1);
    assert!(pool.try_reserve_shape(&common::other_shape()).is_err(), "no unhealthy VM is handed out");
    pool.shutdown().await;
}
