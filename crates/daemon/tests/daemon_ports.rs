//! Port forwards and per-lease egress over the API, with the fake backend: status codes, error
//! codes, forwards closing with the lease, and a refused narrowing costing no VM.

use std::net::{Ipv4Addr, TcpStream};

use firepit_api::{AcquireBody, AcquireRequest, ErrorCode, NetworkSpec};
use firepit_client::{ClientError, Method};
use firepit_daemon::backend::LeaseBackend;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

/// Shapes `plain` (no network) and `web` (NAT, egress `10.0.0.0/8:443` and `*.example.com`).
async fn daemon() -> TestDaemon {
    let backend = FakeBackend::default();
    backend.register_shape(FakeBackend::spec("plain", 2)).await.unwrap();
    let network = NetworkSpec {
        egress: serde_json::from_str(r#"["10.0.0.0/8:443", "*.example.com"]"#).unwrap(),
        ..NetworkSpec::nat()
    };
    backend.register_shape(firepit_api::ShapeSpec { network, ..FakeBackend::spec("web", 2) }).await.unwrap();
    TestDaemon::start_with(backend, |_| {}).await
}

fn acquire(shape: &str, egress: Option<&str>) -> AcquireBody {
    let request = AcquireRequest { shape: shape.into(), wait_ms: 0, ttl_ms: None, snapshot: None };
    AcquireBody { egress: egress.map(|json| serde_json::from_str(json).unwrap()), ..request.into() }
}

fn api_error(error: ClientError) -> (u16, ErrorCode, String) {
    match error {
        ClientError::Api { status, error, message } => (status.as_u16(), error, message),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn forwards_are_listed_on_loopback_and_close_with_the_lease() {
    let daemon = daemon().await;
    let client = daemon.client();
    let lease = client.acquire_with(&acquire("web", None), None).await.unwrap();
    let addr = client.forward_port(&lease.lease_id, 8000).await.unwrap();
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST, "forwards bind loopback");
    assert_eq!(client.forward_port(&lease.lease_id, 8000).await.unwrap(), addr, "same port, same forward");
    let second = client.forward_port(&lease.lease_id, 9000).await.unwrap();
    let listed: Vec<(u16, std::net::SocketAddr)> =
        client.ports(&lease.lease_id).await.unwrap().iter().map(|f| (f.guest_port, f.host_addr)).collect();
    assert_eq!(listed, [(8000, addr), (9000, second)]);
    // The JSON shape of the answer, as documented.
    let raw = daemon
        .raw(Method::POST, &format!("/v1/leases/{}/ports", lease.lease_id), r#"{"guest_port":8000}"#)
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text(), format!(r#"{{"guest_port":8000,"host_addr":"{addr}"}}"#));

    assert!(TcpStream::connect(addr).is_ok(), "the forward listens while the lease lives");
    // Closing one forward leaves the other.
    client.remove_forward(&lease.lease_id, 9000).await.unwrap();
    assert!(TcpStream::connect(second).is_err(), "a closed forward still listens");
    let listed: Vec<u16> =
        client.ports(&lease.lease_id).await.unwrap().iter().map(|f| f.guest_port).collect();
    assert_eq!(listed, [8000]);
    let (status, code, message) = api_error(client.remove_forward(&lease.lease_id, 9000).await.unwrap_err());
    assert_eq!((status, code), (404, ErrorCode::ForwardNotFound), "{message}");
    assert!(message.contains("9000"), "{message}");
    let raw = daemon.raw(Method::DELETE, &format!("/v1/leases/{}/ports/70000", lease.lease_id), "").await;
    assert_eq!((raw.status.as_u16(), error_code(&raw).as_str()), (400, "bad_request"), "{}", raw.text());
    client.release(&lease.lease_id).await.unwrap();
    assert!(TcpStream::connect(addr).is_err(), "the forward outlived its lease");
    assert!(TcpStream::connect(second).is_err(), "the forward outlived its lease");
    let (status, code, _) = api_error(client.ports(&lease.lease_id).await.unwrap_err());
    assert_eq!((status, code), (404, ErrorCode::LeaseNotFound));
    daemon.stop().await;
}

#[tokio::test]
async fn port_errors_have_their_codes() {
    let daemon = daemon().await;
    let client = daemon.client();
    let (status, code, _) = api_error(client.forward_port("l-0000000000000000", 8000).await.unwrap_err());
    assert_eq!((status, code), (404, ErrorCode::LeaseNotFound));

    let plain = client.acquire_with(&acquire("plain", None), None).await.unwrap();
    let (status, code, message) = api_error(client.forward_port(&plain.lease_id, 8000).await.unwrap_err());
    assert_eq!((status, code), (409, ErrorCode::NetworkDisabled));
    assert!(message.contains("`plain`") && message.contains("network = \"nat\""), "{message}");
    assert!(client.ports(&plain.lease_id).await.unwrap().is_empty());

    let web = client.acquire_with(&acquire("web", None), None).await.unwrap();
    let path = format!("/v1/leases/{}/ports", web.lease_id);
    for (body, status, code) in [
        (r#"{"guest_port":0}"#, 400, "bad_port"),
        (r#"{"guest_port":70000}"#, 400, "bad_json"),
        (r#"{"guest_port":-1}"#, 400, "bad_json"),
        (r#"{"guest_port":"http"}"#, 400, "bad_json"),
        (r#"{"port":8000}"#, 400, "bad_json"),
        ("", 400, "bad_json"),
    ] {
        let response = daemon.raw(Method::POST, &path, body).await;
        assert_eq!((response.status.as_u16(), error_code(&response).as_str()), (status, code), "{body}");
    }
    assert!(client.ports(&web.lease_id).await.unwrap().is_empty(), "no forward from a refused request");
    daemon.stop().await;
}

#[tokio::test]
async fn egress_at_acquire_narrows_and_widening_is_refused_without_taking_a_vm() {
    let daemon = daemon().await;
    let client = daemon.client();
    let narrowed = client
        .acquire_with(&acquire("web", Some(r#"["10.1.0.0/16:443", "api.example.com:443"]"#)), None)
        .await
        .unwrap();
    let applied = daemon.backend.narrowed(&narrowed.vm_id);
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].to_string(), "[10.1.0.0/16:443, api.example.com:443]");
    let plain_lease = client.acquire_with(&acquire("web", None), None).await.unwrap();
    assert!(daemon.backend.narrowed(&plain_lease.vm_id).is_empty(), "no egress: the shape's policy");
    client.release(&plain_lease.lease_id).await.unwrap();

    let (ready, destroyed) = (daemon.backend.status_ready("web"), daemon.backend.destroyed("web"));
    for (egress, entry) in [
        (r#"["10.0.0.0/8"]"#, "10.0.0.0/8"),
        (r#""allow""#, "\"allow\""),
        (r#"["pypi.org:443"]"#, "pypi.org:443"),
    ] {
        let (status, code, message) =
            api_error(client.acquire_with(&acquire("web", Some(egress)), None).await.unwrap_err());
        assert_eq!((status, code), (400, ErrorCode::EgressWidens), "{egress}");
        assert!(message.contains(entry) && message.contains("only narrow"), "{message}");
    }
    assert_eq!(daemon.backend.status_ready("web"), ready, "a refused request took no VM");
    assert_eq!(daemon.backend.destroyed("web"), destroyed);
    assert_eq!(daemon.backend.leased("web"), 1);

    let (status, code, message) = api_error(
        client.acquire_with(&acquire("plain", Some(r#"["10.1.0.0/16"]"#)), None).await.unwrap_err(),
    );
    assert_eq!((status, code), (409, ErrorCode::NetworkDisabled));
    assert!(message.contains("`plain`"), "{message}");
    let denied = client.acquire_with(&acquire("plain", Some(r#""deny""#)), None).await.unwrap();
    assert!(daemon.backend.narrowed(&denied.vm_id).is_empty(), "nothing to narrow without a network");
    let bad = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"web","egress":["10.1.0.1/16"]}"#).await;
    assert_eq!((bad.status.as_u16(), error_code(&bad).as_str()), (400, "bad_json"));
    assert!(bad.text().contains("10.1.0.0/16"), "the parse error says what to write: {}", bad.text());

    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"firepit_daemon_acquires_total{shape="web",outcome="egress_refused"} 3"#),
        "{metrics}"
    );
    let old = client
        .acquire(&AcquireRequest { shape: "web".into(), wait_ms: 0, ttl_ms: None, snapshot: None }, None)
        .await;
    assert!(old.is_ok(), "a body without egress is still accepted");
    daemon.stop().await;
}
