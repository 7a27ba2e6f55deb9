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
