//! The E2B endpoint of a gateway (`--e2b`): E2B's REST API and envd over the whole cluster,
//! spoken here as E2B's SDKs speak it (raw HTTP: create, get, list, a command through envd, kill).

use base64::Engine;
use firepit_daemon::test_daemon::TOKEN;
use serde_json::Value;

use super::{TwoHosts, host_of, send, two_hosts};

/// A Connect envelope: flags, big-endian length, the message.
fn envelope(message: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(message).unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    framed
}

#[tokio::test]
async fn sandboxes_made_through_a_gateways_e2b_endpoint_land_on_every_host_and_run_commands() {
    let TwoHosts { a, b, gateway, etcd: _etcd } = two_hosts("/e2b1", 4, |config| {
        let mut e2b = firepit_e2b::E2bConfig::new("127.0.0.1:0".parse().unwrap(), String::new());
        // The fake backend's guest knows root only (E2B's base template has `user`).
        e2b.default_user = "root".into();
        config.e2b = Some(e2b);
    })
    .await;
    let e2b = gateway.e2b.expect("the gateway serves E2B");
    let key = ("X-API-Key", TOKEN);
    let json = ("Content-Type", "application/json");

    let (status, _, _) = send(e2b, "GET", "/sandboxes", &[("X-API-Key", "wrong-key-0123456789")], "").await;
    assert_eq!(status, 401, "the API key is the gateway's token");

    // Four sandboxes: placed over both hosts, as any lease through the gateway.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (status, _, body) =
            send(e2b, "POST", "/sandboxes", &[key, json], r#"{"templateID":"small","timeout":60}"#).await;
        assert_eq!(status, 201, "{body}");
        let sandbox: Value = serde_json::from_str(&body).unwrap();
        ids.push((sandbox["sandboxID"].as_str().unwrap().to_owned(), sandbox["envdAccessToken"].clone()));
    }
    let client = gateway.client();
    let mut hosts = Vec::new();
    for (id, _) in &ids {
        hosts.push(host_of(&client, id).await);
    }
    hosts.sort();
    assert_eq!(hosts, ["a", "a", "b", "b"], "the sandboxes spread over the hosts");
    assert_eq!((a.daemon.backend.leased("small"), b.daemon.backend.leased("small")), (2, 2));

    let (status, _, body) = send(e2b, "GET", "/v2/sandboxes", &[key], "").await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len(), 4, "{body}");
    let (status, _, body) = send(e2b, "GET", &format!("/sandboxes/{}", ids[0].0), &[key], "").await;
    assert_eq!((status, body.contains("\"running\"")), (200, true), "{body}");
    // Metrics of several sandboxes read the usage of every host (`GET /v1/usage` through the
    // gateway).
    let all: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    let path = format!("/sandboxes/metrics?sandbox_ids={}", all.join(","));
    let (status, _, body) = send(e2b, "GET", &path, &[key], "").await;
    assert_eq!(status, 200, "{body}");

    // A command through envd, on each host's sandbox: its output comes back.
    for (id, token) in &ids {
        let token = token.as_str().unwrap_or_default();
        let start = serde_json::json!({"process": {"cmd": "echo", "args": [format!("hi-{id}")]}});
        let headers = [
            ("E2b-Sandbox-Id", id.as_str()),
            ("X-Access-Token", token),
            ("Content-Type", "application/connect+json"),
            ("Connect-Protocol-Version", "1"),
        ];
        let (status, _, body) = send(e2b, "POST", "/process.Process/Start", &headers, envelope(&start)).await;
        assert_eq!(status, 200, "{body}");
        let stdout = base64::engine::general_purpose::STANDARD.encode(format!("hi-{id}\n"));
        assert!(body.contains(&stdout), "no `hi-{id}` in the output: {body}");
        assert!(body.contains("\"end\""), "{body}");
    }

    // Kill: the lease is released on its host; the sandbox is gone.
    for (id, _) in &ids {
        let (status, _, body) = send(e2b, "DELETE", &format!("/sandboxes/{id}"), &[key], "").await;
        assert_eq!(status, 204, "{body}");
    }
    assert_eq!((a.daemon.backend.leased("small"), b.daemon.backend.leased("small")), (0, 0));
    let (status, _, _) = send(e2b, "GET", &format!("/sandboxes/{}", ids[0].0), &[key], "").await;
    assert_eq!(status, 404);
}
