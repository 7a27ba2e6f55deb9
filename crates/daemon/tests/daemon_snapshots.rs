//! Snapshots and forks over a real Unix socket, with the fake backend: the routes, their errors
//! (bad count, unknown ids, a paused lease, too little room, a backend that cannot) and the
//! leases they make. The VMs themselves are tested on QEMU in the CLI's `vm_lease_snapshots`.

use firepit_api::{
    AcquireRequest, ErrorCode, EventKind, EventQuery, ForkRequest, LeaseListQuery, LeaseState,
};
use firepit_client::Method;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

fn small() -> AcquireRequest {
    AcquireRequest { shape: "small".into(), wait_ms: 1000, ..AcquireRequest::default() }
}

async fn pausable(depth: usize) -> TestDaemon {
    let backend = FakeBackend::with_shape("small", depth);
    backend.set_pausable(true);
    TestDaemon::start_with(backend, |_| {}).await
}

#[tokio::test]
async fn a_snapshot_is_listed_starts_leases_and_is_deleted_with_its_files() {
    let daemon = pausable(3).await;
    let client = daemon.client();
    let lease = client.acquire(&small(), None).await.unwrap();
    let snapshot = client.snapshot_lease(&lease.lease_id).await.unwrap();
    assert!(snapshot.snapshot_id.starts_with("s-"), "{snapshot:?}");
    assert_eq!(
        (snapshot.source_lease_id.as_str(), snapshot.shape.as_str()),
        (lease.lease_id.as_str(), "small")
    );
    assert_eq!(client.lease(&lease.lease_id).await.unwrap().state, LeaseState::Running, "the lease runs on");
    let dir = daemon.dir.path().join("state").join("snapshots").join(&snapshot.snapshot_id);
    assert!(dir.join("info.json").is_file() && dir.join("vm").is_dir());

    assert_eq!(client.list_snapshots().await.unwrap(), std::slice::from_ref(&snapshot));
    assert_eq!(client.get_snapshot(&snapshot.snapshot_id).await.unwrap(), snapshot);
    let from = AcquireRequest { snapshot: Some(snapshot.snapshot_id.clone()), ..AcquireRequest::default() };
    let copy = client.acquire(&from, None).await.unwrap();
    assert_eq!(copy.shape, "small");
    assert_ne!(copy.vm_id, lease.vm_id);
    let wrong_shape = AcquireRequest { shape: "big".into(), ..from.clone() };
    let error = client.acquire(&wrong_shape, None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::BadRequest), "{error}");

    // The raw body: `shape` may be left out.
    let body = format!(r#"{{"snapshot":"{}","ttl_ms":60000}}"#, snapshot.snapshot_id);
    let response = daemon.raw(Method::POST, "/v1/leases", &body).await;
    assert_eq!(response.status, 201, "{}", response.text());

    client.delete_snapshot(&snapshot.snapshot_id).await.unwrap();
    assert!(!dir.exists(), "its files are gone");
    assert!(client.list_snapshots().await.unwrap().is_empty());
    for error in [
        client.get_snapshot(&snapshot.snapshot_id).await.unwrap_err(),
        client.delete_snapshot(&snapshot.snapshot_id).await.unwrap_err(),
        client.acquire(&from, None).await.unwrap_err(),
    ] {
        assert_eq!(error.code(), Some(ErrorCode::SnapshotNotFound), "{error}");
    }
    let response = daemon.raw(Method::GET, "/v1/snapshots/s-nope", "").await;
    assert_eq!((response.status.as_u16(), error_code(&response).as_str()), (404, "snapshot_not_found"));
    assert_eq!(client.lease(&copy.lease_id).await.unwrap().state, LeaseState::Running, "its leases run on");
    daemon.stop().await;
}

#[tokio::test]
async fn a_fork_makes_normal_leases_each_on_its_own_and_announces_them() {
    let daemon = pausable(3).await;
    let client = daemon.client();
    let lease = client.acquire(&small(), None).await.unwrap();
    for count in [0, 17] {
        let body = format!(r#"{{"count":{count}}}"#);
        let response = daemon.raw(Method::POST, &format!("/v1/leases/{}/fork", lease.lease_id), &body).await;
        assert_eq!(
            (response.status.as_u16(), error_code(&response).as_str()),
            (400, "bad_request"),
            "count {count}"
        );
    }
    let response = daemon.raw(Method::POST, "/v1/leases/l-nope/fork", r#"{"count":1}"#).await;
    assert_eq!((response.status.as_u16(), error_code(&response).as_str()), (404, "lease_not_found"));

    let mut events = client.events(&EventQuery::default()).await.unwrap();
    // Two VMs are ready: of three forks, two are made and one fails on its own.
    let forks =
        client.fork_lease(&lease.lease_id, &ForkRequest { count: 3, ttl_ms: Some(30_000) }).await.unwrap();
    assert_eq!(forks.forks.len(), 3);
    let made: Vec<String> =
        forks.forks.iter().filter_map(|f| f.result().ok()).map(|l| l.lease_id.clone()).collect();
    assert_eq!(made.len(), 2, "{forks:?}");
    let failed = forks.forks.iter().find_map(|f| f.result().err()).unwrap();
    assert_eq!(failed.error, ErrorCode::BackendError);
    assert!(failed.message.contains("no ready VM"), "{}", failed.message);
    let running = client.leases(&LeaseListQuery::default()).await.unwrap();
    for id in &made {
        assert!(running.iter().any(|view| &view.id == id && view.state == LeaseState::Running), "{id}");
    }
    assert_eq!(client.lease(&lease.lease_id).await.unwrap().state, LeaseState::Running, "the parent runs on");
    client.release(&made[0]).await.unwrap();

    let mut kinds = Vec::new();
    while !kinds.contains(&EventKind::LeaseForked) {
        let event = events.next_event().await.unwrap().unwrap();
        if event.kind == EventKind::LeaseForked {
            assert_eq!(event.lease_id.as_deref(), Some(lease.lease_id.as_str()));
            assert_eq!(event.leases, made);
        }
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::LeaseCreated).count(),
        2,
        "one per fork made: {kinds:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_paused_lease_is_not_snapshotted_or_forked_and_no_room_is_507_with_the_lease_running() {
    let daemon = pausable(2).await;
    let client = daemon.client();
    let lease = client.acquire(&small(), None).await.unwrap();

    daemon.backend.set_no_room(true);
    let snapshots = daemon.dir.path().join("state").join("snapshots");
    for error in [
        client.pause_lease(&lease.lease_id).await.unwrap_err(),
        client.snapshot_lease(&lease.lease_id).await.unwrap_err(),
        client.fork_lease(&lease.lease_id, &ForkRequest { count: 1, ttl_ms: None }).await.unwrap_err(),
    ] {
        assert_eq!(error.code(), Some(ErrorCode::InsufficientStorage), "{error}");
        assert!(error.to_string().contains("no room"), "{error}");
    }
    assert_eq!(client.lease(&lease.lease_id).await.unwrap().state, LeaseState::Running);
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0, "nothing half-written is left");
    daemon.backend.set_no_room(false);

    client.pause_lease(&lease.lease_id).await.unwrap();
    for error in [
        client.snapshot_lease(&lease.lease_id).await.unwrap_err(),
        client.fork_lease(&lease.lease_id, &ForkRequest { count: 1, ttl_ms: None }).await.unwrap_err(),
    ] {
        assert_eq!(error.code(), Some(ErrorCode::LeasePaused), "{error}");
    }
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);
    daemon.stop().await;
}

#[tokio::test]
async fn a_backend_that_cannot_save_answers_unsupported() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client.acquire(&small(), None).await.unwrap();
    for error in [
        client.snapshot_lease(&lease.lease_id).await.unwrap_err(),
        client.fork_lease(&lease.lease_id, &ForkRequest { count: 1, ttl_ms: None }).await.unwrap_err(),
        client.list_snapshots().await.unwrap_err(),
    ] {
        assert_eq!(error.code(), Some(ErrorCode::Unsupported), "{error}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_shape_on_an_unknown_snapshot_is_404_and_a_snapshot_a_shape_uses_is_not_deleted() {
    let daemon = pausable(1).await;
    let client = daemon.client();
    let warm = |id: &str| firepit_api::ShapeSpec::new("warm", format!("snapshot:{id}"));
    let error = client.register_shape("warm", &warm("s-none")).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SnapshotNotFound), "{error}");
    assert!(client.pools().await.unwrap().shapes.iter().all(|s| s.name != "warm"), "nothing registered");

    let lease = client.acquire(&small(), None).await.unwrap();
    let snapshot = client.snapshot_lease(&lease.lease_id).await.unwrap().snapshot_id;
    client.register_shape("warm", &warm(&snapshot)).await.unwrap();
    let error = client.delete_snapshot(&snapshot).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SnapshotInUse), "{error}");
    assert!(error.to_string().contains("`warm`"), "the shape is named: {error}");
    client.unregister_shape("warm").await.unwrap();
    client.delete_snapshot(&snapshot).await.unwrap();
}
