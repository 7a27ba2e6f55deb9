//! Faults: a host that dies, a host that drains, etcd down and back, a gateway restarted.

use std::collections::BTreeMap;
use std::time::Duration;

use firepit_api::{EndReason, EventKind, EventQuery, ExecBody};
use firepit_client::{Client, Method};
use std::sync::Arc;

use firepit_cluster::{AdvertiseConfig, Advertiser, CapacitySource, Keys, LocalEtcd, ShapeCapacity};
use tokio::time::Instant;

use super::{TestGateway, eventually, host_of, hosts_of, hosts_seen, small, start_host};

#[tokio::test]
async fn a_dead_hosts_leases_answer_host_lost_and_new_acquires_go_elsewhere_without_errors() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let a = start_host(&etcd, "/f1", "a", 20).await;
    let _b = start_host(&etcd, "/f1", "b", 20).await;
    let gateway = TestGateway::start(&etcd, "/f1").await;
    hosts_seen(&gateway, 2).await;
    let client = gateway.client();
    let mut leases: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..6 {
        let id = client.acquire(&small(0), None).await.unwrap().lease_id;
        leases.insert(id.clone(), host_of(&client, &id).await);
    }
    assert!(leases.values().any(|h| h == "a") && leases.values().any(|h| h == "b"), "{leases:?}");

    let ends = EventQuery { kinds: vec![EventKind::LeaseEnded], ..EventQuery::default() };
    let mut feed = client.events(&ends).await.unwrap();
    a.daemon.handle.abort(); // the host dies: nobody keeps its registration alive (TTL 3 s)
    let died = Instant::now();
    let mut errors = 0;
    let mut acquired = Vec::new();
    while hosts_of(&client).await.iter().any(|h| h.host == "a") {
        assert!(died.elapsed() < Duration::from_secs(10), "the dead host is still listed");
        match client.acquire(&small(0), None).await {
            Ok(lease) => {
                // Released at once (through the gateway): the fake pools are small.
                let released = client.release(&lease.lease_id).await;
                acquired.push((lease.lease_id, released.is_ok()));
            }
            Err(_) => errors += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone_after = died.elapsed();
    assert!(gone_after < Duration::from_secs(6), "host gone after {gone_after:?} with a 3 s TTL");
    assert_eq!(errors, 0, "acquires failed while the host was dying");
    eprintln!("host gone after {gone_after:?}; {} acquires meanwhile, no error", acquired.len());
    // The event stream says each of the dead host's leases ended, host_lost, once.
    let mut lost: Vec<String> = leases.iter().filter(|(_, h)| *h == "a").map(|(id, _)| id.clone()).collect();
    lost.sort();
    let mut said = Vec::new();
    while said.len() < lost.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next_event())
            .await
            .unwrap_or_else(|_| panic!("host_lost ends said: {said:?} of {lost:?}"))
            .unwrap()
            .unwrap();
        if event.reason == Some(EndReason::HostLost) {
            said.push(event.lease_id.unwrap());
        }
    }
    said.sort();
    assert_eq!(said, lost);
    for id in &lost {
        let error = client.lease(id).await.unwrap_err();
        assert_eq!(error.code(), Some(firepit_api::ErrorCode::HostLost), "GET of a lost lease: {error}");
    }
    for (id, host) in &leases {
        let result = client.exec(id, &ExecBody::new(["true"])).await;
        match host.as_str() {
            "a" => match result.unwrap_err() {
                firepit_client::ClientError::Api { status, error, message } => {
                    assert_eq!((status.as_u16(), error.as_str()), (410, "host_lost"), "{message}");
                    assert!(message.contains("host a"), "{message}");
                }
                other => panic!("expected 410 host_lost, got {other}"),
            },
            _ => assert_eq!(result.unwrap().exit_code, Some(0)),
        }
    }
    for _ in 0..10 {
        let id = client.acquire(&small(0), None).await.unwrap().lease_id;
        assert_eq!(host_of(&client, &id).await, "b", "a new lease on the dead host");
        client.release(&id).await.unwrap();
    }
}

/// A host that is registered with ready VMs of `small` but does not listen (it died a moment ago).
struct DeadHost;

impl CapacitySource for DeadHost {
    fn shapes(&self) -> Vec<ShapeCapacity> {
        vec![ShapeCapacity { name: "small".into(), ready: 8, filling: 0, leased: 0, depth_high: 8 }]
    }
    fn leases(&self) -> usize {
        0
    }
    fn holds_lease(&self, _lease_id: &str) -> bool {
        false
    }
}

#[tokio::test]
async fn a_waiting_acquire_waits_on_a_host_that_answers_not_on_a_dead_one() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead = Advertiser::start(
        AdvertiseConfig {
            keys: Keys::new("/f5"),
            ..AdvertiseConfig::new(etcd.endpoints(), "dead", &format!("http://{closed}"))
        },
        Arc::new(DeadHost),
    );
    let b = start_host(&etcd, "/f5", "b", 1).await;
    let gateway = TestGateway::start(&etcd, "/f5").await;
    hosts_seen(&gateway, 2).await;
    let client = gateway.client();
    // b's only VM is taken; the dead host advertises 8 ready, so placement asks it first.
    let taken = client.acquire(&small(0), None).await.unwrap().lease_id;
    let releaser = client.clone();
    let freed = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        releaser.release(&taken).await
    });
    let lease = client.acquire(&small(5_000), None).await.expect("the wait went to the dead host");
    assert_eq!(host_of(&client, &lease.lease_id).await, "b");
    freed.await.unwrap().unwrap();

    // With nobody answering at all, the error says so (not that no VM was ready).
    client.release(&lease.lease_id).await.unwrap();
    b.daemon.stop().await;
    eventually(Duration::from_secs(10), "b deregistered", || async { hosts_of(&client).await.len() == 1 })
        .await;
    // (A fresh gateway: this one skips the dead host for a while now.)
    let fresh = TestGateway::start(&etcd, "/f5").await;
    hosts_seen(&fresh, 1).await;
    let error = fresh.client().acquire(&small(1_000), None).await.unwrap_err();
    assert_eq!(error.code(), Some(firepit_api::ErrorCode::HostUnreachable), "{error}");
    dead.stop().await;
}

#[tokio::test]
async fn a_drained_host_gets_no_new_leases_and_keeps_serving_its_old_ones() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let a = start_host(&etcd, "/f2", "a", 20).await;
    let _b = start_host(&etcd, "/f2", "b", 20).await;
    let gateway = TestGateway::start(&etcd, "/f2").await;
    hosts_seen(&gateway, 2).await;
    let client = gateway.client();
    let mut on_a = None;
    while on_a.is_none() {
        let id = client.acquire(&small(0), None).await.unwrap().lease_id;
        if host_of(&client, &id).await == "a" {
            on_a = Some(id);
        }
    }
    let response = a.daemon.raw(Method::POST, "/v1/drain", "").await;
    assert_eq!(response.status, 200);
    eventually(Duration::from_secs(5), "drain seen by the gateway", || {
        let client = client.clone();
        async move { hosts_of(&client).await.iter().any(|h| h.host == "a" && h.draining) }
    })
    .await;
    for _ in 0..10 {
        let id = client.acquire(&small(0), None).await.unwrap().lease_id;
        assert_eq!(host_of(&client, &id).await, "b");
    }
    let id = on_a.unwrap();
    assert_eq!(client.exec(&id, &ExecBody::new(["echo", "hi"])).await.unwrap().stdout, "hi\n");
}

#[tokio::test]
async fn with_etcd_down_existing_leases_work_new_ones_fail_clearly_and_come_back_with_etcd() {
    let mut etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let _a = start_host(&etcd, "/f3", "a", 20).await;
    let _b = start_host(&etcd, "/f3", "b", 20).await;
    let gateway = TestGateway::start(&etcd, "/f3").await;
    hosts_seen(&gateway, 2).await;
    let client = gateway.client();
    let mut leases = Vec::new();
    for _ in 0..6 {
        leases.push(client.acquire(&small(0), None).await.unwrap().lease_id);
    }

    etcd.kill_all();
    eventually(Duration::from_secs(10), "the gateway notices etcd is down", || {
        let client = client.clone();
        async move { health(&client).await["status"] == "degraded" }
    })
    .await;
    for id in &leases {
        assert_eq!(client.exec(id, &ExecBody::new(["true"])).await.unwrap().exit_code, Some(0), "lease {id}");
    }
    let error = client.acquire(&small(0), None).await.unwrap_err();
    assert_eq!(error.code(), Some(firepit_api::ErrorCode::ClusterUnavailable), "{error}");
    assert!(error.to_string().contains("etcd"), "{error}");
    // A gateway that never saw the lease cannot route it while etcd is down, and says why.
    let fresh = TestGateway::start(&etcd, "/f3").await;
    let error = fresh.client().exec(&leases[0], &ExecBody::new(["true"])).await.unwrap_err();
    assert_eq!(error.code(), Some(firepit_api::ErrorCode::ClusterUnavailable), "{error}");

    etcd.restart_all().await.unwrap();
    let took = eventually(Duration::from_secs(20), "acquires succeed again", || {
        let client = client.clone();
        async move { client.acquire(&small(0), None).await.is_ok() }
    })
    .await;
    eprintln!("acquires succeeded again {took:?} after etcd answered");
    assert_eq!(health(&client).await["status"], "ok");
    let fresh_client = fresh.client();
    eventually(Duration::from_secs(10), "the fresh gateway routes the old lease", || {
        let client = fresh_client.clone();
        let id = leases[0].clone();
        async move { client.exec(&id, &ExecBody::new(["true"])).await.is_ok() }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_gateway_routes_every_lease() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let _a = start_host(&etcd, "/f4", "a", 10).await;
    let _b = start_host(&etcd, "/f4", "b", 10).await;
    let first = TestGateway::start(&etcd, "/f4").await;
    hosts_seen(&first, 2).await;
    let mut leases = Vec::new();
    for _ in 0..8 {
        leases.push(first.client().acquire(&small(0), None).await.unwrap().lease_id);
    }
    first.kill();
    let second = TestGateway::start(&etcd, "/f4").await;
    hosts_seen(&second, 2).await;
    for id in &leases {
        let out = second.client().exec(id, &ExecBody::new(["echo", id.as_str()])).await.unwrap();
        assert_eq!(out.stdout, format!("{id}\n"));
    }
}

async fn health(client: &Client) -> serde_json::Value {
    let response = client.request(Method::GET, "/healthz", None, &[]).await.unwrap();
    serde_json::from_slice(&response.body).unwrap()
}
