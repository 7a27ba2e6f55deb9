//! TCP requires a bearer token; the Unix socket does not.

use firepit_api::AcquireRequest;
use firepit_client::Method;
use firepit_daemon::test_daemon::{TOKEN, TestDaemon, error_code};

#[tokio::test]
async fn tcp_without_a_token_is_401() {
    let daemon = TestDaemon::start_tcp().await;
    for path in ["/healthz", "/v1/pools", "/metrics", "/nothing"] {
        let response = daemon.tcp_client(None).request(Method::GET, path, None, &[]).await.unwrap();
        assert_eq!(response.status, 401, "{path}");
        assert_eq!(error_code(&response), "unauthorized");
        assert_eq!(response.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let response = daemon
        .tcp_client(None)
        .request(Method::POST, "/v1/leases", Some(br#"{"shape":"small"}"#.to_vec()), &[])
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(daemon.backend.leased("small"), 0, "no VM handed out without a token");
    daemon.stop().await;
}

#[tokio::test]
async fn tcp_with_a_wrong_token_is_401() {
    let daemon = TestDaemon::start_tcp().await;
    for wrong in ["test-token-0123456789abcdeX", "test-token", "", &format!("{TOKEN}x")] {
        let response =
            daemon.tcp_client(Some(wrong)).request(Method::GET, "/v1/pools", None, &[]).await.unwrap();
        assert_eq!(response.status, 401, "token {wrong:?}");
    }
    let response = daemon
        .tcp_client(None)
        .request(Method::GET, "/v1/pools", None, &[("authorization", "Basic dXNlcjpwYXNz")])
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    daemon.stop().await;
}

#[tokio::test]
async fn tcp_with_the_token_serves_the_api() {
    let daemon = TestDaemon::start_tcp().await;
    let client = daemon.tcp_client(Some(TOKEN));
    let lease = client
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None, snapshot: None }, None)
        .await
        .unwrap();
    client.release(&lease.lease_id).await.unwrap();
    assert_eq!(client.pools().await.unwrap().shapes.len(), 1);
    // The Unix socket needs no token.
    assert_eq!(daemon.client().pools().await.unwrap().shapes.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn unix_socket_is_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = TestDaemon::start().await;
    let mode = std::fs::metadata(&daemon.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(daemon.socket.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the runtime dir the daemon created");
    daemon.stop().await;
}
