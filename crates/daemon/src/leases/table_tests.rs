use std::path::Path;
use std::time::Duration;

use firepit_api::{EndReason, EventKind, LeaseState, Metadata, OnExpiry, ReleaseReason};
use prometheus_client::registry::Registry;

use super::*;
use crate::backend::AcquireError;
use crate::fake::FakeBackend;
use crate::leases::{AcquireParams, Interrupted, LeaseOptions};

fn settings(records: Option<&Path>) -> LeaseSettings {
    LeaseSettings {
        default_ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(600),
        health_check_interval: Duration::ZERO,
        records_dir: records.map(Path::to_owned),
        ..LeaseSettings::default()
    }
}

fn table_with(backend: &FakeBackend, settings: LeaseSettings) -> Arc<LeaseTable> {
    let metrics = DaemonMetrics::register(&mut Registry::default());
    let backend: Arc<dyn LeaseBackend> = Arc::new(backend.clone());
    LeaseTable::new(backend, settings, EventBus::new(64), metrics, CancellationToken::new()).unwrap()
}

fn table(backend: &FakeBackend) -> Arc<LeaseTable> {
    table_with(backend, settings(None))
}

fn params(shape: &str, key: Option<&str>) -> AcquireParams {
    AcquireParams {
        shape: shape.into(),
        wait: Duration::ZERO,
        ttl: None,
        idempotency_key: key.map(Into::into),
        egress: None,
        options: LeaseOptions::default(),
        snapshot: None,
    }
}

fn with_ttl(shape: &str, ttl_ms: u64, options: LeaseOptions) -> AcquireParams {
    AcquireParams { ttl: Some(Duration::from_millis(ttl_ms)), options, ..params(shape, None) }
}

/// Waits (at most 5 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn kinds(table: &LeaseTable) -> Vec<EventKind> {
    table.events().subscribe(Some(0)).backlog.iter().map(|event| event.kind).collect()
}

#[tokio::test]
async fn failed_acquire_does_not_poison_its_idempotency_key() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let (held, _) = table.acquire(params("one", None)).await.unwrap();
    let error = table.acquire(params("one", Some("k"))).await.err().unwrap();
    assert!(matches!(error, LeaseError::Acquire(AcquireError::Exhausted { .. })), "{error}");
    table.release(&held.id, ReleaseReason::Released, None).await.unwrap();
    let (lease, replayed) = table.acquire(params("one", Some("k"))).await.unwrap();
    assert!(!replayed);
    let (again, replayed) = table.acquire(params("one", Some("k"))).await.unwrap();
    assert!(replayed);
    assert_eq!(lease.id, again.id);
}

#[tokio::test]
async fn released_key_gets_a_new_lease() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let (first, _) = table.acquire(params("one", Some("k"))).await.unwrap();
    table.release(&first.id, ReleaseReason::Released, None).await.unwrap();
    let (second, replayed) = table.acquire(params("one", Some("k"))).await.unwrap();
    assert!(!replayed);
    assert_ne!(second.id, first.id);
}

#[tokio::test]
async fn release_destroys_the_vm_at_once_and_ends_a_call_still_holding_it() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let (lease, _) = table.acquire(params("one", None)).await.unwrap();
    // A call that would hold the VM for an hour.
    let call = tokio::spawn({
        let lease = lease.clone();
        async move { lease.on_vm(|_vm| Box::pin(std::future::pending::<()>())).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    table.release(&lease.id, ReleaseReason::Released, None).await.unwrap();
    assert_eq!(
        (backend.leased("one"), backend.destroyed("one")),
        (0, 1),
        "destroyed before release answered"
    );
    let interrupted = tokio::time::timeout(Duration::from_secs(1), call).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(interrupted, Interrupted::Ended { reason: "released", .. }), "{interrupted}");
    // The lease object outlives its VM; later calls say it ended.
    let later = lease.on_vm(|vm| Box::pin(std::future::ready(vm.vm_id().to_owned()))).await;
    assert!(matches!(later, Err(Interrupted::Ended { .. })));
    assert!(matches!(table.lease(&lease.id), Err(LeaseError::Ended(_))));
    assert_eq!(table.view(&lease.id).unwrap().end_reason, Some(EndReason::Released));
}

#[tokio::test]
async fn a_kill_is_an_end_of_its_own_with_the_operators_words() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let (lease, _) = table.acquire(params("one", None)).await.unwrap();
    table.release(&lease.id, ReleaseReason::Killed, Some("runaway".into())).await.unwrap();
    let view = table.view(&lease.id).unwrap();
    assert_eq!((view.end_reason, view.end_detail.as_deref()), (Some(EndReason::Killed), Some("runaway")));
    assert!(matches!(
        table.release(&lease.id, ReleaseReason::Released, None).await,
        Err(LeaseError::Ended(_))
    ));
    assert_eq!(kinds(&table), [EventKind::LeaseCreated, EventKind::LeaseEnded]);
}

#[tokio::test]
async fn release_all_ends_every_running_lease_and_keeps_paused_ones() {
    let backend = FakeBackend::with_shape("two", 3);
    backend.set_pausable(true);
    let table = table(&backend);
    table.acquire(params("two", None)).await.unwrap();
    table.acquire(params("two", None)).await.unwrap();
    let (paused, _) = table.acquire(params("two", None)).await.unwrap();
    table.pause(&paused.id).await.unwrap();
    assert_eq!((table.len(), table.running()), (3, 2));
    assert_eq!(table.release_all().await, 2);
    assert_eq!((table.len(), table.running()), (1, 0));
    assert_eq!((backend.leased("two"), backend.paused("two")), (1, 1));
}

#[tokio::test]
async fn renew_and_release_of_an_unknown_lease_are_not_found() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    assert!(matches!(table.renew("l-0", None), Err(LeaseError::NotFound(_))));
    assert!(matches!(
        table.release("l-0", ReleaseReason::Released, None).await,
        Err(LeaseError::NotFound(_))
    ));
    assert!(matches!(table.renew("l-0", Some(Duration::ZERO)), Err(LeaseError::BadTtl { .. })));
}

#[tokio::test]
async fn a_lease_whose_ttl_runs_out_ends_as_ttl_expired() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let (lease, _) = table.acquire(with_ttl("one", 50, LeaseOptions::default())).await.unwrap();
    eventually("the lease expired", || lease.state() == LeaseState::Ended).await;
    eventually("the VM is destroyed", || backend.leased("one") == 0).await;
    assert_eq!(table.view(&lease.id).unwrap().end_reason, Some(EndReason::TtlExpired));
}

#[tokio::test]
async fn on_expiry_pause_pauses_stops_the_clock_and_resumes_with_what_was_left() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let pause = LeaseOptions { on_expiry: OnExpiry::Pause, ..LeaseOptions::default() };
    let refused = table.acquire(with_ttl("one", 50, pause.clone())).await.err().unwrap();
    assert!(matches!(refused, LeaseError::Unsupported(_)), "a backend that cannot pause: {refused}");
    backend.set_pausable(true);
    let (lease, _) = table.acquire(with_ttl("one", 100, pause)).await.unwrap();
    eventually("the TTL paused the lease", || lease.state() == LeaseState::Paused).await;
    let view = lease.view();
    assert_eq!((view.ttl_remaining_ms, view.pid), (Some(0), None));
    assert!(view.paused_at_unix_ms.is_some());
    let call = lease.on_vm(|_vm| Box::pin(std::future::ready(()))).await;
    assert!(matches!(call, Err(Interrupted::Paused { .. })), "no auto_resume: {call:?}");
    table.renew(&lease.id, Some(Duration::from_secs(30))).unwrap();
    assert_eq!(lease.view().ttl_remaining_ms, Some(30_000), "renew while paused: the TTL at resume");
    table.resume(&lease.id).await.unwrap();
    assert_eq!(lease.state(), LeaseState::Running);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(lease.state(), LeaseState::Running, "30 s left after the resume");
    let kinds = kinds(&table);
    assert_eq!(kinds, [EventKind::LeaseCreated, EventKind::LeasePaused, EventKind::LeaseResumed]);
}

#[tokio::test]
async fn a_call_on_a_paused_lease_with_auto_resume_resumes_it() {
    let backend = FakeBackend::with_shape("one", 1);
    backend.set_pausable(true);
    let table = table(&backend);
    let auto = LeaseOptions { auto_resume: true, ..LeaseOptions::default() };
    let (lease, _) = table.acquire(AcquireParams { options: auto, ..params("one", None) }).await.unwrap();
    let call = tokio::spawn({
        let lease = lease.clone();
        async move { lease.on_vm(|_vm| Box::pin(std::future::pending::<()>())).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    table.pause(&lease.id).await.unwrap();
    let interrupted = call.await.unwrap().unwrap_err();
    assert!(matches!(interrupted, Interrupted::Paused { .. }), "a call in flight ends with the pause");
    let id = lease.on_vm(|vm| Box::pin(std::future::ready(vm.vm_id().to_owned()))).await.unwrap();
    assert_eq!((id, lease.state()), (lease.vm_id.clone(), LeaseState::Running));
}

#[tokio::test]
async fn a_paused_lease_ends_after_the_paused_retention_and_its_state_is_discarded() {
    let backend = FakeBackend::with_shape("one", 1);
    backend.set_pausable(true);
    let table =
        table_with(&backend, LeaseSettings { paused_retention: Duration::from_millis(50), ..settings(None) });
    let (lease, _) = table.acquire(params("one", None)).await.unwrap();
    table.pause(&lease.id).await.unwrap();
    eventually("the pause ran out", || lease.state() == LeaseState::Ended).await;
    let view = table.view(&lease.id).unwrap();
    assert_eq!(view.end_reason, Some(EndReason::TtlExpired));
    assert!(view.end_detail.unwrap().contains("paused_retention"));
    assert_eq!(backend.paused("one"), 0);
}

#[tokio::test]
async fn a_vm_that_exits_ends_its_lease_with_how() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let (lease, _) = table.acquire(params("one", None)).await.unwrap();
    backend.kill_vm(&lease.vm_id, "QEMU killed by signal 9");
    eventually("the lease ended", || lease.state() == LeaseState::Ended).await;
    let view = table.view(&lease.id).unwrap();
    assert_eq!(
        (view.end_reason, view.end_detail.as_deref()),
        (Some(EndReason::VmExited), Some("QEMU killed by signal 9"))
    );
}

#[tokio::test]
async fn a_vm_that_stops_answering_fails_its_health_check() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table_with(
        &backend,
        LeaseSettings { health_check_interval: Duration::from_millis(20), ..settings(None) },
    );
    let (lease, _) = table.acquire(params("one", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lease.state(), LeaseState::Running, "a healthy VM passes");
    backend.make_unreachable(&lease.vm_id);
    eventually("the lease ended", || lease.state() == LeaseState::Ended).await;
    let view = table.view(&lease.id).unwrap();
    assert_eq!(view.end_reason, Some(EndReason::HealthCheckFailed));
    assert!(view.end_detail.unwrap().contains("3 pings"));
}

#[tokio::test]
async fn metadata_over_its_limits_is_refused_before_a_vm_is_taken() {
    let backend = FakeBackend::with_shape("one", 1);
    let table = table(&backend);
    let metadata: Metadata = (0..40).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let options = LeaseOptions { metadata, ..LeaseOptions::default() };
    let error = table.acquire(AcquireParams { options, ..params("one", None) }).await.err().unwrap();
    assert!(matches!(error, LeaseError::BadMetadata(_)), "{error}");
    assert_eq!(backend.leased("one"), 0);
}

#[tokio::test]
async fn a_restart_ends_running_leases_keeps_paused_ones_and_remembers_ended_ones() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("leases");
    let backend = FakeBackend::with_shape("one", 3);
    backend.set_pausable(true);
    let metadata: Metadata = [("owner".to_owned(), "ci".to_owned())].into();
    let (running, paused, ended) = {
        let table = table_with(&backend, settings(Some(&records)));
        let options = LeaseOptions { metadata, ..LeaseOptions::default() };
        let (running, _) = table.acquire(AcquireParams { options, ..params("one", None) }).await.unwrap();
        let (paused, _) = table.acquire(with_ttl("one", 60_000, LeaseOptions::default())).await.unwrap();
        let (ended, _) = table.acquire(params("one", None)).await.unwrap();
        table.pause(&paused.id).await.unwrap();
        table.release(&ended.id, ReleaseReason::Released, None).await.unwrap();
        table.shared.store.as_ref().unwrap().flush().await;
        table.cancel.cancel();
        (running.id.clone(), paused.id.clone(), ended.id.clone())
    };
    // The daemon "died": a new table on the same records.
    let table = table_with(&backend, settings(Some(&records)));
    let view = table.view(&running).unwrap();
    assert_eq!((view.state, view.end_reason), (LeaseState::Ended, Some(EndReason::DaemonRestart)));
    assert_eq!(view.metadata["owner"], "ci");
    assert_eq!(table.view(&ended).unwrap().end_reason, Some(EndReason::Released));
    let lease = table.get(&paused).expect("the paused lease is live again");
    assert_eq!(lease.state(), LeaseState::Paused);
    assert!(lease.view().ttl_remaining_ms.unwrap() > 50_000, "its TTL clock stood still");
    table.resume(&paused).await.unwrap();
    let echoed = lease
        .on_vm(|vm| {
            Box::pin(async move {
                vm.exec(firepit_agent::ExecRequest { argv: vec!["true".into()], ..Default::default() }).await
            })
        })
        .await;
    assert_eq!(echoed.unwrap().unwrap().exit_code, Some(0));
    let events = table.events().subscribe(Some(0)).backlog;
    assert_eq!(events[0].reason, Some(EndReason::DaemonRestart), "the restart is announced");
}
