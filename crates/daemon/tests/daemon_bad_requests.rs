//! Every bad request gets a 4xx with a JSON `{error, message}`, and the daemon stays healthy.

use firepit_client::Method;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

async fn lease_path(daemon: &TestDaemon) -> String {
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"small"}"#).await;
    assert_eq!(response.status, 201, "{}", response.text());
    let lease: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    format!("/v1/leases/{}", lease["lease_id"].as_str().unwrap())
}

#[tokio::test]
async fn malformed_json_is_400_with_a_message() {
    let daemon = TestDaemon::start().await;
    for body in [r#"{"shape": "#, "not json", r#"["small"]"#, r#"{"shape": 5}"#] {
        let response = daemon.raw(Method::POST, "/v1/leases", body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        assert_eq!(error_code(&response), "bad_json");
    }
    daemon.assert_healthy().await;
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_and_missing_fields_are_named_in_the_message() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"small","colour":"red"}"#).await;
    assert_eq!(response.status, 400);
    assert!(response.text().contains("colour"), "{}", response.text());
    let response = daemon.raw(Method::POST, "/v1/leases", r#"{"wait_ms":1}"#).await;
    assert_eq!(response.status, 400);
    assert!(response.text().contains("shape"), "{}", response.text());
    let response = daemon.raw(Method::POST, "/v1/leases", "").await;
    assert_eq!(response.status, 400);
    assert_eq!(error_code(&response), "bad_json");
    daemon.assert_healthy().await;
    daemon.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let daemon = TestDaemon::start().await;
    let path = format!("{}/exec", lease_path(&daemon).await);
    let huge = format!(r#"{{"argv":["cat"],"stdin":"{}"}}"#, "x".repeat(200 * 1024));
    let response = daemon.raw(Method::POST, &path, &huge).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert_eq!(error_code(&response), "body_too_large");
    daemon.assert_healthy().await;
    daemon.stop().await;
}

#[tokio::test]
async fn bad_argv_env_stdin_and_timeout_are_400() {
    let daemon = TestDaemon::start().await;
    let path = format!("{}/exec", lease_path(&daemon).await);
    let cases = [
        (r#"{"argv":[]}"#, "bad_argv"),
        (r#"{"argv":[""]}"#, "bad_argv"),
        (r#"{"argv":["echo","a\u0000b"]}"#, "bad_argv"),
        (r#"{"argv":"echo hi"}"#, "bad_json"),
        (r#"{"argv":["env"],"env":{"A=B":"c"}}"#, "bad_env"),
        (r#"{"argv":["cat"],"stdin":"%%%","stdin_encoding":"base64"}"#, "bad_stdin"),
        (r#"{"argv":["cat"],"stdin_encoding":"rot13"}"#, "bad_json"),
        (r#"{"argv":["true"],"timeout_ms":99999999999}"#, "bad_request"),
        (r#"{"argv":["true"],"max_output_bytes":99999999999}"#, "bad_request"),
    ];
    for (body, code) in cases {
        let response = daemon.raw(Method::POST, &path, body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        assert_eq!(error_code(&response), code, "{body}");
    }
    daemon.assert_healthy().await;
    daemon.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let daemon = TestDaemon::start().await;
    let raw = raw_request(&daemon, "POST /v1/leases HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nshape=small").await;
    assert!(raw.starts_with("HTTP/1.1 415"), "{raw}");
    assert!(raw.contains("\"unsupported_media_type\""), "{raw}");
    daemon.assert_healthy().await;
    daemon.stop().await;
}

async fn raw_request(daemon: &TestDaemon, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(&daemon.socket).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn unknown_route_and_wrong_method_get_json_errors() {
    let daemon = TestDaemon::start().await;
    let response = daemon.raw(Method::GET, "/v2/nothing", "").await;
    assert_eq!(response.status, 404);
    assert_eq!(error_code(&response), "unknown_endpoint");
    let response = daemon.raw(Method::POST, "/v1/leases/%FF%FE/renew", "").await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(error_code(&response), "bad_request", "axum's own rejection is JSON too");
    let response = daemon.raw(Method::GET, "/v1/leases", "").await;
    assert_eq!(response.status, 405);
    assert_eq!(error_code(&response), "method_not_allowed");
    daemon.assert_healthy().await;
    daemon.stop().await;
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_the_daemon() {
    let daemon = TestDaemon::start().await;
    let raw = raw_request(&daemon, "\x00\x01 GARBAGE \r\n\r\n").await;
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 4"), "{raw}");
    daemon.assert_healthy().await;
    daemon.stop().await;
}
