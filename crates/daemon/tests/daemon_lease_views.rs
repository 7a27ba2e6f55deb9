//! `GET /v1/leases` and `GET /v1/leases/{id}` over a real Unix socket, with the fake backend:
//! running leases are listed, ended ones stay visible with their end reason.

use std::time::Duration;

use firepit_api::{AcquireRequest, EndReason, LeaseListQuery, LeaseState};
use firepit_client::Method;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

fn acquire(shape: &str, ttl_ms: Option<u64>) -> AcquireRequest {
    AcquireRequest { shape: shape.into(), wait_ms: 1000, ttl_ms, snapshot: None }
}

fn only(state: LeaseState) -> LeaseListQuery {
    LeaseListQuery { state: Some(state), ..LeaseListQuery::default() }
}

#[tokio::test]
async fn leases_are_listed_while_they_run_and_remembered_with_their_end_reason() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    assert!(client.leases(&LeaseListQuery::default()).await.unwrap().is_empty());

    let first = client.acquire(&acquire("small", None), None).await.unwrap();
    let second = client.acquire(&acquire("small", None), None).await.unwrap();
    let running = client.leases(&only(LeaseState::Running)).await.unwrap();
    let ids: Vec<&str> = running.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, [first.lease_id.as_str(), second.lease_id.as_str()], "oldest first");
    let view = client.lease(&first.lease_id).await.unwrap();
    assert_eq!((view.state, view.end_reason, view.shape.as_str()), (LeaseState::Running, None, "small"));
    assert_eq!(view.vm_id, first.vm_id);
    assert_eq!(view.expires_at_unix_ms, first.expires_at_unix_ms);
    assert!(view.created_at_unix_ms <= view.expires_at_unix_ms);

    client.release(&first.lease_id).await.unwrap();
    let view = client.lease(&first.lease_id).await.unwrap();
    assert_eq!((view.state, view.end_reason), (LeaseState::Ended, Some(EndReason::Released)));
    assert!(view.ended_at_unix_ms.is_some() && view.ended_at.is_some());
    let ended = client.leases(&only(LeaseState::Ended)).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(client.leases(&only(LeaseState::Running)).await.unwrap().len(), 1);
    let other_shape = LeaseListQuery { shape: Some("big".into()), ..LeaseListQuery::default() };
    assert!(client.leases(&other_shape).await.unwrap().is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn an_expired_lease_says_ttl_expired() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client.acquire(&acquire("small", Some(50)), None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let view = client.lease(&lease.lease_id).await.unwrap();
        if view.state == LeaseState::Ended {
            assert_eq!(view.end_reason, Some(EndReason::TtlExpired));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the lease did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_leases_and_filters_are_refused() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::GET, "/v1/leases/l-0000000000000000", "").await;
    assert_eq!((response.status.as_u16(), error_code(&response).as_str()), (404, "lease_not_found"));
    let response = daemon.raw(Method::GET, "/v1/leases?state=sleeping", "").await;
    assert_eq!(response.status.as_u16(), 400, "{}", response.text());
    let response = daemon.raw(Method::GET, "/v1/leases?colour=red", "").await;
    assert_eq!(response.status.as_u16(), 400, "{}", response.text());
    daemon.stop().await;
}
