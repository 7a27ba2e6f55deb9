//! Pools, shapes at run time, metrics, health and the OpenAPI document.

use firepit_api::AcquireRequest;
use firepit_client::Method;
use firepit_daemon::exposition_lint::{check_openmetrics, promtool_check};
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
        ("/v1/leases", "get"),
        ("/v1/leases/{id}", "get"),
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
async fn metrics_are_openmetrics_with_shape_labels_and_classic_text_promtool_accepts_on_request() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let lease = client
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None, snapshot: None }, None)
        .await
        .unwrap();
    client.release(&lease.lease_id).await.unwrap();
    let _ = client
        .acquire(&AcquireRequest { shape: "nope".into(), wait_ms: 0, ttl_ms: None, snapshot: None }, None)
        .await;
    let response = daemon.raw(Method::GET, "/metrics", "").await;
    assert_eq!(response.status, 200);
    let content_type = response.headers.get("content-type").unwrap().to_str().unwrap();
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let text = response.text();
    check_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
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
    // What a Prometheus server asks for gets OpenMetrics; a client that wants only the classic
    // format gets it, with the same series, and Debian's promtool finds nothing to say about it.
    let scrape = |accept: &'static str| {
        let client = daemon.client();
        async move { client.request(Method::GET, "/metrics", None, &[("accept", accept)]).await.unwrap() }
    };
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let content_type = |response: &firepit_client::RawResponse| {
        response.headers.get("content-type").unwrap().to_str().unwrap().to_owned()
    };
    assert!(content_type(&scrape(prometheus).await).starts_with("application/openmetrics-text"));
    let classic = scrape("text/plain; version=0.0.4").await;
    assert_eq!(content_type(&classic), "text/plain; version=0.0.4; charset=utf-8");
    let classic = classic.text();
    assert!(classic.contains(r#"firepit_daemon_acquires_total{shape="small",outcome="ok"} 1"#), "{classic}");
    assert!(classic.contains("# TYPE firepit_daemon_acquires_total counter\n"), "{classic}");
    promtool_check(&classic).unwrap_or_else(|e| panic!("{e}\n{classic}"));
    assert!(promtool_check(&text).is_err(), "promtool reads only the classic format: OpenMetrics fails it");
    daemon.stop().await;
}

#[tokio::test]
async fn pools_report_ready_and_leased_per_shape() {
    let daemon = TestDaemon::start().await;
    let _lease = daemon
        .client()
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None, snapshot: None }, None)
        .await
        .unwrap();
    let pools = daemon.client().pools().await.unwrap();
    assert_eq!(pools.leases, 1);
    let small = pools.shapes.iter().find(|s| s.name == "small").unwrap();
    assert_eq!((small.ready, small.leased, small.accelerator.as_str()), (1, 1, "none"));
    // The host: its CPUs and memory; the fake backend charges nothing and has no budget.
    let host = pools.host.expect("a daemon's pools name its host");
    assert!(host.cpus >= 1 && host.memory_total_mb > 0, "{host:?}");
    assert_eq!((host.memory_used_mb, host.memory_budget_mb), (0, None));
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
        .acquire(&AcquireRequest { shape: "big".into(), wait_ms: 0, ttl_ms: None, snapshot: None }, None)
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
