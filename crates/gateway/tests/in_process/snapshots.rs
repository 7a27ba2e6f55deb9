//! Snapshots through a gateway: an acquire from a snapshot goes to the snapshot's host; one that
//! no host has is refused before any host is asked for a lease.

use super::{TwoHosts, two_hosts};

#[tokio::test]
async fn an_acquire_from_a_snapshot_no_host_has_is_refused_without_taking_a_lease() {
    let TwoHosts { a, b, gateway, etcd: _etcd } = two_hosts("/sn1", 2, |_| {}).await;
    let client = gateway.client();
    let body = br#"{"shape":"small","wait_ms":0,"snapshot":"snap-nowhere"}"#.to_vec();
    let answer = client.request(firepit_client::Method::POST, "/v1/leases", Some(body), &[]).await.unwrap();
    assert_eq!(answer.status, 404, "{}", answer.text());
    let error: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(error["error"], "snapshot_not_found", "{error}");
    assert!(error["message"].as_str().unwrap().contains("snap-nowhere"), "{error}");
    assert_eq!((a.daemon.backend.leased("small"), b.daemon.backend.leased("small")), (0, 0));
}

#[tokio::test]
async fn forks_are_routed_and_leases_from_a_snapshot_start_on_its_host() {
    let TwoHosts { a, b, gateway, etcd: _etcd } = two_hosts("/sn2", 4, |_| {}).await;
    a.daemon.backend.set_pausable(true);
    b.daemon.backend.set_pausable(true);
    let client = gateway.client();
    let parent = client.acquire(&super::small(0), None).await.unwrap();
    let host = super::host_of(&client, &parent.lease_id).await;

    // The forks run on the parent's host and answer through the gateway at once.
    let forks = client
        .fork_lease(&parent.lease_id, &firepit_api::ForkRequest { count: 2, ttl_ms: None })
        .await
        .unwrap();
    assert_eq!(forks.forks.len(), 2, "{forks:?}");
    for fork in &forks.forks {
        let lease = fork.result().unwrap();
        assert_eq!(super::host_of(&client, &lease.lease_id).await, host);
        let out =
            client.exec(&lease.lease_id, &firepit_api::ExecBody::new(["echo", "forked"])).await.unwrap();
        assert_eq!(out.stdout, "forked\n");
    }

    // A snapshot: listed with its host; a lease from it starts there.
    let snapshot = client.snapshot_lease(&parent.lease_id).await.unwrap();
    let list = client.request(firepit_client::Method::GET, "/v1/snapshots", None, &[]).await.unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let listed = list["snapshots"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s["snapshot_id"] == snapshot.snapshot_id.as_str() && s["host"] == host.as_str()),
        "{list}"
    );
    // (The fake starts it in a ready VM of the shape: the host has one left.)
    {
        let request =
            firepit_api::AcquireRequest { snapshot: Some(snapshot.snapshot_id.clone()), ..super::small(0) };
        let lease = client.acquire(&request, None).await.unwrap();
        assert_eq!(
            super::host_of(&client, &lease.lease_id).await,
            host,
            "a lease from the snapshot starts on its host"
        );
    }
    client.delete_snapshot(&snapshot.snapshot_id).await.unwrap();
}
