//! Pools, shapes at run time, metrics, health and the OpenAPI document.

use firepit_api::AcquireRequest;
use firepit_client::Method;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::GET, "/v1/openapi.json", "").await;
    assert_eq!(response.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/leases", "post"),
        ("/v1/leases/{id}/exec", "post"),
        ("/v1/leases/{id}/renew", "post"),
        ("/v1/leases/{id}", "delete"),
        ("/v1/leases/{id}/ports", "post"),
        ("/v1/leases/{id}/ports", "get"),
        ("/v1/leases/{id}/ports/{guest_port}", "delete"),
        ("/v1/pools", "get"),
        ("/v1/shapes/{name}", "put"),
        ("/v1/shapes/{name}", "delete"),
        ("/metrics", "get"),
        ("/healthz", "get"),
        ("/v1/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the document"
        );
    }
    // The acquire body: `AcquireRequest`'s fields plus the lease options.
    assert!(doc["components"]["schemas"]["AcquireBody"]["properties"].get("egress").is_some());
    assert!(doc["components"]["schemas"].get("PortForward").is_some());
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
    daemon.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_shape_labels() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None }, None)
        .await
        .unwrap();
    client.release(&lease.lease_id).await.unwrap();
    let _ = client.acquire(&AcquireRequest { shape: "nope".into(), wait_ms: 0, ttl_ms: None }, None).await;
    let response = daemon.raw(Method::GET, "/metrics", "").await;
    assert_eq!(response.status, 200);
    let content_type = response.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text();
    for series in [
        r#"firepit_daemon_acquires_total{shape="small",outcome="ok"} 1"#,
        r#"firepit_daemon_acquires_total{shape="nope",outcome="unknown_shape"} 1"#,
        r#"firepit_daemon_leases_ended_total{shape="small",outcome="released"} 1"#,
        r#"firepit_daemon_leases_active{shape="small"} 0"#,
        r#"firepit_daemon_acquire_seconds_count{shape="small"} 1"#,
        r#"firepit_pool_ready{shape="small"} 2"#,
    ] {
        assert!(text.contains(series), "missing `{series}` in:\n{text}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn pools_report_ready_and_leased_per_shape() {
    let daemon = TestDaemon::start().await;
    let _lease = daemon
        .client()
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None }, None)
        .await
        .unwrap();
    let pools = daemon.client().pools().await.unwrap();
    assert_eq!(pools.leases, 1);
    let small = pools.shapes.iter().find(|s| s.name == "small").unwrap();
    assert_eq!((small.ready, small.leased, small.accelerator.as_str()), (1, 1, "none"));
    daemon.stop().await;
}

#[tokio::test]
async fn shapes_can_be_registered_and_unregistered_at_run_time() {
    let daemon = TestDaemon::start().await;
    let image = daemon.dir.path().to_str().unwrap().to_owned();
    let body = format!(r#"{{"image":"{image}","cpus":1,"memory_mb":128,"depth":{{"low":1,"high":3}}}}"#);
    let response = daemon.raw(Method::PUT, "/v1/shapes/big", &body).await;
    assert_eq!(response.status, 201, "{}", response.text());
    let response = daemon.raw(Method::PUT, "/v1/shapes/big", &body).await;
    assert_eq!(response.status, 409);
    assert_eq!(error_code(&response), "shape_exists");
    let lease = daemon
        .client()
        .acquire(&AcquireRequest { shape: "big".into(), wait_ms: 0, ttl_ms: None }, None)
        .await
        .unwrap();
    assert_eq!(lease.shape, "big");

    let response = daemon.raw(Method::DELETE, "/v1/shapes/big", "").await;
    assert_eq!(response.status, 204);
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"big"}"#).await;
    assert_eq!(response.status, 404);
    let response = daemon.raw(Method::DELETE, "/v1/shapes/big", "").await;
    assert_eq!(response.status, 404);
    daemon.stop().await;
}

#[tokio::test]
async fn invalid_shapes_are_422_naming_the_field() {
    let daemon = TestDaemon::start().await;
    let image = daemon.dir.path().to_str().unwrap().to_owned();
    let cases = [
        ("Big", format!(r#"{{"image":"{image}"}}"#), "`name` = \\\"Big\\\""),
        ("big", format!(r#"{{"image":"{image}","cpus":0}}"#), "`cpus` = 0"),
        ("big", format!(r#"{{"image":"{image}","depth":{{"low":5,"high":2}}}}"#), "`depth.low` = 5"),
        ("big", r#"{"image":"/nonexistent/image"}"#.to_owned(), "`image` = /nonexistent/image"),
    ];
    for (name, body, key) in cases {
        let response = daemon.raw(Method::PUT, &format!("/v1/shapes/{name}"), &body).await;
        assert_eq!(response.status, 422, "{body}: {}", response.text());
        assert_eq!(error_code(&response), "invalid_shape");
        assert!(response.text().contains(key), "{key} not named in {}", response.text());
    }
    daemon.assert_healthy().await;
    daemon.stop().await;
}

#[tokio::test]
async fn healthz_is_ok_while_serving() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::GET, "/healthz", "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"status":"ok"}"#);
    daemon.stop().await;
}
