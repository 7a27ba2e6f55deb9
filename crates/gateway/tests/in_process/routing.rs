//! Placement, routing of every kind of lease request, cluster-wide requests, idempotency, tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use firepit_api::{ExecBody, SpawnBody, StreamEvent, WriteFileQuery};
use firepit_client::{Client, Endpoint, PtyOptions};
use firepit_cluster::LocalEtcd;
use tokio::io::AsyncReadExt;

use super::{TestGateway, host_of, hosts_of, hosts_seen, small, start_host};

#[tokio::test]
async fn acquires_spread_over_the_hosts_and_every_lease_answers_through_the_gateway() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let a = start_host(&etcd, "/r1", "a", 30).await;
    let b = start_host(&etcd, "/r1", "b", 30).await;
    let gateway = TestGateway::start(&etcd, "/r1").await;
    hosts_seen(&gateway, 2).await;
    let client = gateway.client();

    let mut per_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..20 {
        let lease = client.acquire(&small(0), None).await.unwrap();
        per_host.entry(host_of(&client, &lease.lease_id).await).or_default().push(lease.lease_id);
    }
    let counts: Vec<usize> = per_host.values().map(Vec::len).collect();
    assert_eq!(counts.len(), 2, "{per_host:?}");
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(max as f64 / min as f64 <= 1.5, "unbalanced: {counts:?}");
    assert_eq!(
        (a.daemon.backend.leased("small"), b.daemon.backend.leased("small")),
        (per_host["a"].len(), per_host["b"].len())
    );

    for id in per_host.values().flatten() {
        let out = client.exec(id, &ExecBody::new(["echo", id.as_str()])).await.unwrap();
        assert_eq!(out.stdout, format!("{id}\n"));
    }
    // Files both ways, larger than a socket buffer, streamed through the gateway.
    let id = &per_host["b"][0];
    let data: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 253) as u8).collect();
    let query = WriteFileQuery { path: "/tmp/blob".into(), ..Default::default() };
    assert_eq!(
        client.write_file(id, &query, std::io::Cursor::new(data.clone())).await.unwrap(),
        data.len() as u64
    );
    let mut back = Vec::new();
    client.read_file(id, "/tmp/blob").await.unwrap().read_to_end(&mut back).await.unwrap();
    assert!(back == data, "the file came back different");
    // A streamed exec: NDJSON events pass through.
    let mut stream = client
        .exec_stream(id, &SpawnBody { ..serde_json::from_str(r#"{"argv":["echo","streamed"]}"#).unwrap() })
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await.unwrap() {
        events.push(event);
    }
    assert!(matches!(events.first(), Some(StreamEvent::Started { .. })), "{events:?}");
    assert!(matches!(events.last(), Some(StreamEvent::Exit { .. })), "{events:?}");
    // The PTY upgrade goes through the gateway to the host (whose in-process agent opens one).
    let pty = client.pty(id, &PtyOptions::default()).await.unwrap();
    drop(pty);
    // Renew and release go to the host; a released lease is gone from the cluster.
    let renewed = client.renew(id, Some(120_000)).await.unwrap();
    assert_eq!(&renewed.lease_id, id);
    client.release(id).await.unwrap();
    let error = client.exec(id, &ExecBody::new(["true"])).await.unwrap_err();
    assert_eq!(error.code(), Some(firepit_api::ErrorCode::LeaseNotFound), "{error}");

    // The whole cluster: shapes summed, hosts listed.
    let pools = client.pools().await.unwrap();
    let shape = pools.shapes.iter().find(|s| s.name == "small").unwrap();
    assert_eq!((shape.leased, pools.leases, shape.depth_high), (19, 19, 60));
    let hosts: Vec<String> = hosts_of(&client).await.into_iter().map(|h| h.host).collect();
    assert_eq!(hosts, ["a", "b"]);
    // The lease list is every host's, each lease naming its host; the released one is ended.
    let list = client.request(firepit_client::Method::GET, "/v1/leases", None, &[]).await.unwrap();
    assert_eq!(list.status, 200, "{}", list.text());
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let leases = list["leases"].as_array().unwrap();
    let running = leases.iter().filter(|l| l["state"] == "running").count();
    let ended: Vec<&serde_json::Value> = leases.iter().filter(|l| l["state"] == "ended").collect();
    assert_eq!((running, ended.len()), (19, 1), "{list}");
    assert_eq!(ended[0]["id"], id.as_str(), "{list}");
    assert!(leases.iter().all(|l| l["host"] == "a" || l["host"] == "b"), "{list}");

    // A placed lease's answer says where the gateway's time went.
    let body = serde_json::to_vec(&small(0)).unwrap();
    let placed = client.request(firepit_client::Method::POST, "/v1/leases", Some(body), &[]).await.unwrap();
    assert_eq!(placed.status, 201, "{}", placed.text());
    let timing = placed.headers.get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or_default();
    for part in ["host;dur=", "route;dur=", "gateway;dur="] {
        assert!(timing.contains(part), "Server-Timing: {timing:?}");
    }
}

#[tokio::test]
async fn idempotency_keys_tokens_unknown_shapes_and_shape_changes_work_cluster_wide() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let a = start_host(&etcd, "/r2", "a", 4).await;
    let b = start_host(&etcd, "/r2", "b", 4).await;
    let one = TestGateway::start(&etcd, "/r2").await;
    let two = TestGateway::start(&etcd, "/r2").await;
    hosts_seen(&one, 2).await;
    hosts_seen(&two, 2).await;

    let first = one.client().acquire(&small(0), Some("job-42")).await.unwrap();
    let again = two.client().acquire(&small(0), Some("job-42")).await.unwrap();
    assert_eq!(first.lease_id, again.lease_id, "a retry through another gateway replays the lease");
    assert_eq!(a.daemon.backend.leased("small") + b.daemon.backend.leased("small"), 1);

    let wrong = Client::new(Endpoint::Tcp {
        authority: one.addr.to_string(),
        token: Some("wrong-token-0123456789".into()),
    });
    assert_eq!(wrong.pools().await.unwrap_err().code(), Some(firepit_api::ErrorCode::Unauthorized));
    let anonymous = Client::new(Endpoint::Tcp { authority: one.addr.to_string(), token: None });
    assert_eq!(anonymous.healthz().await.unwrap().status, "ok", "health needs no token");
    assert_eq!(
        anonymous.exec(&first.lease_id, &ExecBody::new(["true"])).await.unwrap_err().code(),
        Some(firepit_api::ErrorCode::Unauthorized)
    );

    let unknown =
        one.client().acquire(&firepit_api::AcquireRequest { shape: "nope".into(), ..small(0) }, None).await;
    assert_eq!(unknown.unwrap_err().code(), Some(firepit_api::ErrorCode::UnknownShape));
    let unrouted = one.client().exec("l-0000000000000000", &ExecBody::new(["true"])).await.unwrap_err();
    assert_eq!(unrouted.code(), Some(firepit_api::ErrorCode::LeaseNotFound));

    // A shape registered through a gateway lands on every host.
    let spec = firepit_daemon::fake::FakeBackend::spec("big", 1);
    one.client()
        .register_shape("big", &firepit_api::ShapeSpec { name: String::new(), ..spec })
        .await
        .unwrap();
    assert_eq!((a.daemon.backend.status_ready("big"), b.daemon.backend.status_ready("big")), (1, 1));
    let client = one.client();
    super::eventually(Duration::from_secs(5), "the new shape advertised", || {
        let client = client.clone();
        async move {
            client
                .acquire(&firepit_api::AcquireRequest { shape: "big".into(), ..small(0) }, None)
                .await
                .is_ok()
        }
    })
    .await;
    let twice = one.client().register_shape("big", &firepit_daemon::fake::FakeBackend::spec("big", 1)).await;
    assert_eq!(twice.unwrap_err().code(), Some(firepit_api::ErrorCode::ShapeExists));
}
