//! The lease API over a real Unix socket, with the fake backend (whose guests are the agent's
//! request handling in this process: the programs run are the host's).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use firepit_api::{AcquireRequest, Encoding, ExecBody, Stdin};
use firepit_client::ClientError;
use firepit_client::Method;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

fn acquire(shape: &str, wait_ms: u64) -> AcquireRequest {
    AcquireRequest { shape: shape.into(), wait_ms, ttl_ms: None, snapshot: None }
}

fn exec_body(argv: &[&str]) -> ExecBody {
    ExecBody::new(argv.iter().copied())
}

fn status_of(error: ClientError) -> u16 {
    match error {
        ClientError::Api { status, .. } => status.as_u16(),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn acquire_exec_release_over_unix_socket() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client.acquire(&acquire("small", 0), None).await.unwrap();
    assert_eq!(lease.shape, "small");
    assert!(lease.lease_id.starts_with("l-"));
    assert!(lease.vm_id.starts_with("fake-small-"));
    assert!(lease.expires_at.ends_with('Z'), "{}", lease.expires_at);
    assert_eq!(daemon.backend.leased("small"), 1);

    let out = client.exec(&lease.lease_id, &exec_body(&["echo", "hello", "world"])).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.encoding),
        (Some(0), "hello world\n", Encoding::Utf8)
    );
    let out = client.exec(&lease.lease_id, &exec_body(&["sh", "-c", "exit 7"])).await.unwrap();
    assert_eq!(out.exit_code, Some(7));

    client.release(&lease.lease_id).await.unwrap();
    assert_eq!(daemon.backend.leased("small"), 0);
    assert_eq!(daemon.backend.destroyed("small"), 1, "release destroys the VM");
    assert_eq!(status_of(client.release(&lease.lease_id).await.unwrap_err()), 404);
    assert_eq!(status_of(client.exec(&lease.lease_id, &exec_body(&["true"])).await.unwrap_err()), 404);
    daemon.stop().await;
}

#[tokio::test]
async fn acquire_unknown_shape_is_404() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"huge","wait_ms":0}"#).await;
    assert_eq!(response.status, 404);
    assert_eq!(error_code(&response), "unknown_shape");
    daemon.stop().await;
}

#[tokio::test]
async fn acquire_on_empty_pool_is_503_with_retry_after_after_waiting() {
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("one", 1), |_| {}).await;
    let _held = daemon.client().acquire(&acquire("one", 0), None).await.unwrap();
    let started = Instant::now();
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"one","wait_ms":200}"#).await;
    assert_eq!(response.status, 503);
    assert!(started.elapsed() >= Duration::from_millis(190), "waited only {:?}", started.elapsed());
    assert_eq!(error_code(&response), "exhausted");
    assert_eq!(response.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    daemon.stop().await;
}

#[tokio::test]
async fn waiting_acquire_gets_the_vm_a_release_refills() {
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("one", 1), |_| {}).await;
    let client = daemon.client();
    let first = client.acquire(&acquire("one", 0), None).await.unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire(&acquire("one", 5_000), None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.release(&first.lease_id).await.unwrap();
    let second = waiter.await.unwrap().unwrap();
    assert_ne!(second.vm_id, first.vm_id);
    daemon.stop().await;
}

#[tokio::test]
async fn idempotent_acquire_returns_the_same_lease() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let first = client.acquire(&acquire("small", 0), Some("job-42")).await.unwrap();
    let retry = client.acquire(&acquire("small", 0), Some("job-42")).await.unwrap();
    assert_eq!(first.lease_id, retry.lease_id);
    assert_eq!(daemon.backend.leased("small"), 1, "a retry must not take a second VM");
    let raw = client
        .request(
            Method::POST,
            "/v1/leases",
            Some(br#"{"shape":"small"}"#.to_vec()),
            &[("idempotency-key", "job-42")],
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 201);
    assert_eq!(raw.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let other = client.acquire(&acquire("small", 0), Some("job-43")).await.unwrap();
    assert_ne!(other.lease_id, first.lease_id);
    daemon.stop().await;
}

#[tokio::test]
async fn concurrent_retries_with_one_key_take_one_vm() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let tries: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.acquire(&acquire("small", 0), Some("same")).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tries {
        ids.push(t.await.unwrap().unwrap().lease_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(daemon.backend.leased("small"), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn idempotency_key_reused_for_another_shape_is_422() {
    let backend = FakeBackend::with_shape("small", 1);
    let daemon = TestDaemon::start_with(backend, |_| {}).await;
    daemon.backend.clone().insert_for_tests("big", 1);
    let client = daemon.client();
    client.acquire(&acquire("small", 0), Some("k")).await.unwrap();
    let error = client.acquire(&acquire("big", 0), Some("k")).await.unwrap_err();
    assert_eq!(status_of(error), 422);
    daemon.stop().await;
}

#[tokio::test]
async fn expired_lease_is_reclaimed_and_refilled() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client
        .acquire(
            &AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: Some(150), snapshot: None },
            None,
        )
        .await
        .unwrap();
    assert_eq!(daemon.backend.leased("small"), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(daemon.backend.leased("small"), 0, "the expired VM was released");
    assert_eq!(daemon.backend.destroyed("small"), 1);
    assert_eq!(daemon.backend.status_ready("small"), 2, "and the pool refilled");
    assert_eq!(status_of(client.exec(&lease.lease_id, &exec_body(&["true"])).await.unwrap_err()), 404);
    daemon.stop().await;
}

#[tokio::test]
async fn renew_pushes_expiry_back() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client
        .acquire(
            &AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: Some(300), snapshot: None },
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let renewed = client.renew(&lease.lease_id, Some(5_000)).await.unwrap();
    assert!(renewed.expires_at_unix_ms > lease.expires_at_unix_ms + 4_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.exec(&lease.lease_id, &exec_body(&["true"])).await.unwrap();
    // An empty body renews for the default TTL.
    let raw = daemon.raw(Method::POST, &format!("/v1/leases/{}/renew", lease.lease_id), "").await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    daemon.stop().await;
}

#[tokio::test]
async fn ttl_over_the_maximum_is_400() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"small","ttl_ms":999999999}"#).await;
    assert_eq!(response.status, 400);
    assert_eq!(error_code(&response), "bad_ttl");
    assert_eq!(daemon.backend.leased("small"), 0);
    daemon.stop().await;
}

#[tokio::test]
async fn exec_carries_binary_output_as_base64_and_stdin_and_env() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client.acquire(&acquire("small", 0), None).await.unwrap();
    let out = client.exec(&lease.lease_id, &exec_body(&["printf", "\\377\\376\\000\\200"])).await.unwrap();
    assert_eq!(out.encoding, Encoding::Base64);
    assert_eq!(BASE64.decode(out.stdout).unwrap(), vec![0xff, 0xfe, 0x00, 0x80]);

    let mut body = exec_body(&["cat"]);
    body.input = Stdin::base64(BASE64.encode(b"piped\n"));
    assert_eq!(client.exec(&lease.lease_id, &body).await.unwrap().stdout, "piped\n");

    let mut body = exec_body(&["sh", "-c", "echo GREETING=$GREETING"]);
    body.program.env.insert("GREETING".into(), "hi".into());
    assert_eq!(client.exec(&lease.lease_id, &body).await.unwrap().stdout, "GREETING=hi\n");
    daemon.stop().await;
}

#[tokio::test]
async fn exec_on_an_unreachable_vm_is_502() {
    let daemon = TestDaemon::start().await;
    let lease = daemon.client().acquire(&acquire("small", 0), None).await.unwrap();
    daemon.backend.make_unreachable(&lease.vm_id);
    let path = format!("/v1/leases/{}/exec", lease.lease_id);
    let response = daemon.raw(Method::POST, &path, r#"{"argv":["true"]}"#).await;
    assert_eq!(response.status, 502);
    assert_eq!(error_code(&response), "vm_unreachable");
    daemon.stop().await;
}

#[tokio::test]
async fn sizes_instead_of_a_shape_lease_the_smallest_shape_covering_them() {
    let daemon = TestDaemon::start().await; // `small`: 1 vCPU, 128 MiB, no disk bound
    let big = firepit_daemon::backend::ShapeSpec {
        cpus: 2,
        memory_mb: 1024,
        disk_mb: Some(2048),
        ..FakeBackend::spec("big", 1)
    };
    daemon.client().register_shape("big", &big).await.unwrap();
    let pools = daemon.client().pools().await.unwrap();
    let sizes: Vec<_> =
        pools.shapes.iter().map(|s| (s.name.as_str(), s.cpus, s.memory_mb, s.disk_mb)).collect();
    assert!(sizes.contains(&("big", 2, 1024, Some(2048))), "the pools show each shape's size: {sizes:?}");
    let shape_of = |body: &'static str| {
        let daemon = &daemon;
        async move {
            let response = daemon.raw(Method::POST, "/v1/leases", body).await;
            assert_eq!(response.status, 201, "{body}: {}", response.text());
            let lease: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            let shape = lease["shape"].as_str().unwrap().to_owned();
            let path = format!("/v1/leases/{}", lease["lease_id"].as_str().unwrap());
            assert_eq!(daemon.raw(Method::DELETE, &path, "").await.status, 204);
            shape
        }
    };
    assert_eq!(shape_of(r#"{"memory_mb": 100, "wait_ms": 5000}"#).await, "small");
    assert_eq!(shape_of(r#"{"cpus": 2, "wait_ms": 5000}"#).await, "big");
    assert_eq!(shape_of(r#"{"disk_mb": 1, "wait_ms": 5000}"#).await, "big", "only big declares a disk");
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"cpus": 4, "memory_mb": 512}"#).await;
    assert_eq!(
        (response.status.as_u16(), error_code(&response).as_str()),
        (400, "no_shape_fits"),
        "{}",
        response.text()
    );
    assert!(
        response.text().contains("cpus >= 4, memory_mb >= 512") && response.text().contains("\\\"big\\\""),
        "{}",
        response.text()
    );
    let both = daemon.raw(Method::POST, "/v1/leases", r#"{"shape": "small", "cpus": 1}"#).await;
    assert_eq!((both.status.as_u16(), error_code(&both).as_str()), (400, "bad_request"), "{}", both.text());
    daemon.assert_healthy().await;
    daemon.stop().await;
}
