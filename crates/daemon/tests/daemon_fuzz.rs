//! Property tests of the API's request handling: random and mutated JSON bodies, random paths,
//! methods and headers, and raw random bytes, sent as raw HTTP over the daemon's Unix socket (so
//! nothing is filtered by a well-behaved client) to a real daemon over the fake backend.
//!
//! What must hold for every request: the daemon answers (or closes a connection whose bytes are not
//! HTTP), never with a 5xx other than `503 exhausted` (the pool of 2 can run dry when a random body
//! happens to be a valid acquire), every error is a JSON `{error, message}` with a message, and the
//! daemon is healthy afterwards.
//!
//! Default: 64 cases per property (CI). Longer campaign:
//! `PROPTEST_CASES=20000 cargo test --release -p firepit --test daemon_fuzz`.

use std::time::Duration;

use firepit_daemon::test_daemon::TestDaemon;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default_cases);
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// A parsed HTTP response (status and body only).
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Writes `request` as is and reads the whole answer (a well-formed request says
/// `Connection: close`). `None`: closed without an answer.
async fn send_raw(daemon: &TestDaemon, request: &[u8]) -> Option<Answer> {
    send(daemon, request, false).await
}

/// Like [`send_raw`], then half-closes, so that a request which is not HTTP ends too.
async fn send_garbage(daemon: &TestDaemon, request: &[u8]) -> Option<Answer> {
    send(daemon, request, true).await
}

async fn send(daemon: &TestDaemon, request: &[u8], half_close: bool) -> Option<Answer> {
    let mut stream = UnixStream::connect(&daemon.socket).await.expect("connecting to the daemon");
    // The daemon may close early (bad request line) while we still write: not an error.
    let _ = stream.write_all(request).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut raw = Vec::new();
    // A daemon that answers before reading a whole (oversized) body then resets the connection:
    // what it sent before the reset is the answer.
    let _reset_after_answer_is_fine =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("the daemon answers or closes within 10 s");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Answer { status, head, body: raw[split + 4..].to_vec() })
}

fn http_request(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: firepit\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The invariant every answer must satisfy. Returns the lease id of a 201 acquire, if any.
fn check(answer: &Answer) -> Result<Option<String>, TestCaseError> {
    let status = answer.status;
    let text = String::from_utf8_lossy(&answer.body);
    if (200..300).contains(&status) {
        let lease = serde_json::from_slice::<serde_json::Value>(&answer.body).ok();
        return Ok(lease.and_then(|v| v["lease_id"].as_str().map(str::to_owned)));
    }
    prop_assert!((400..500).contains(&status) || status == 503, "status {status}: {}\n{text}", answer.head);
    let is_json = answer.head.to_ascii_lowercase().contains("content-type: application/json");
    prop_assert!(is_json, "error without a JSON content type: {}\n{text}", answer.head);
    let body: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    let code = body["error"].as_str().unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default();
    prop_assert!(!code.is_empty() && !message.is_empty(), "error body without code or message: {text}");
    if status == 503 {
        prop_assert!(code == "exhausted", "503 that is not `exhausted`: {text}");
    }
    Ok(None)
}

/// Releases a lease a random body happened to acquire, so the pool does not run dry.
async fn release(daemon: &TestDaemon, lease: Option<String>) {
    if let Some(id) = lease {
        let request = http_request("DELETE", &format!("/v1/leases/{id}"), &[], b"");
        let answer = send_raw(daemon, &request).await.expect("release answered");
        assert!(answer.status < 300, "release of a fuzz-acquired lease: {answer:?}");
    }
}

/// An arbitrary JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        prop_oneof![Just("small"), Just("argv"), Just("cat"), Just("shape")].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("shape".to_owned()),
            Just("wait_ms".to_owned()),
            Just("ttl_ms".to_owned()),
            Just("argv".to_owned()),
            Just("env".to_owned()),
            Just("stdin".to_owned()),
            Just("stdin_encoding".to_owned()),
            Just("timeout_ms".to_owned()),
            Just("max_output_bytes".to_owned()),
            Just("image".to_owned()),
            Just("cpus".to_owned()),
            Just("memory_mb".to_owned()),
            Just("depth".to_owned()),
            Just("low".to_owned()),
            Just("high".to_owned()),
            Just("fill".to_owned()),
            ".{0,12}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(key, inner, 0..6)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A valid body of some endpoint, then edited at random (bytes replaced, removed, inserted).
fn mutated_body() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        Just(r#"{"shape":"small","wait_ms":10,"ttl_ms":5000}"#),
        Just(
            r#"{"argv":["echo","hi"],"env":{"A":"b"},"stdin":"aGk=","stdin_encoding":"base64","timeout_ms":1000}"#
        ),
        Just(r#"{"ttl_ms":1000}"#),
        Just(
            r#"{"image":"/","cpus":1,"memory_mb":128,"depth":{"low":1,"high":2},"max_age_secs":60,"fill":"cold"}"#
        ),
    ];
    let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6);
    (valid, edits).prop_map(|(valid, edits)| {
        let mut body = valid.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at % (body.len() + 1);
            match kind {
                0 if at < body.len() => body[at] = byte,
                1 if at < body.len() => {
                    body.remove(at);
                }
                _ => body.insert(at, byte),
            }
        }
        body
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        mutated_body(),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Runs `property` for each generated value against one daemon; stops the daemon at the end.
fn run_against_daemon<S: Strategy>(
    default_cases: u32,
    strategy: S,
    property: impl for<'a> Fn(&'a TestDaemon, &'a str, S::Value) -> futures_lite::BoxedCase<'a>,
) where
    S::Value: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let daemon = runtime.block_on(TestDaemon::start());
    let lease = runtime.block_on(async {
        let answer =
            send_raw(&daemon, &http_request("POST", "/v1/leases", &[], br#"{"shape":"small"}"#)).await;
        let answer = answer.expect("acquire answered");
        assert_eq!(answer.status, 201, "{answer:?}");
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        value["lease_id"].as_str().unwrap().to_owned()
    });
    let result =
        runner(default_cases).run(&strategy, |value| runtime.block_on(property(&daemon, &lease, value)));
    runtime.block_on(async {
        daemon.assert_healthy().await;
        daemon.stop().await;
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

mod futures_lite {
    /// A boxed future of one test case.
    pub type BoxedCase<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), proptest::test_runner::TestCaseError>> + 'a>,
    >;
}

#[test]
fn random_bodies_on_every_body_endpoint_get_2xx_or_a_4xx_json_error() {
    let endpoints = prop_oneof![Just(0usize), Just(1), Just(2), Just(3)];
    let content_type = prop_oneof![
        Just(Some("application/json")),
        Just(None),
        Just(Some("text/plain")),
        Just(Some("application/merge-patch+json; charset=utf-8")),
    ];
    run_against_daemon(64, (endpoints, body(), content_type), |daemon, lease, (endpoint, body, kind)| {
        Box::pin(async move {
            let (method, path) = match endpoint {
                0 => ("POST", "/v1/leases".to_owned()),
                1 => ("POST", format!("/v1/leases/{lease}/exec")),
                2 => ("POST", format!("/v1/leases/{lease}/renew")),
                _ => ("PUT", "/v1/shapes/fuzzed".to_owned()),
            };
            let headers: Vec<(String, String)> =
                kind.map(|k| ("Content-Type".to_owned(), k.to_owned())).into_iter().collect();
            let answer = send_raw(daemon, &http_request(method, &path, &headers, &body))
                .await
                .ok_or_else(|| TestCaseError::fail("no answer to a well-formed HTTP request"))?;
            let acquired = check(&answer)?;
            release(daemon, acquired).await;
            Ok(())
        })
    });
}

#[test]
fn random_paths_methods_and_headers_never_get_a_5xx() {
    let method = prop_oneof![
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("PUT"),
            Just("DELETE"),
            Just("PATCH"),
            Just("OPTIONS"),
            Just("HEAD")
        ]
        .prop_map(str::to_owned),
        "[A-Z]{1,8}",
    ];
    let segment = prop_oneof![
        Just("v1".to_owned()),
        Just("leases".to_owned()),
        Just("shapes".to_owned()),
        Just("exec".to_owned()),
        Just("renew".to_owned()),
        Just("..".to_owned()),
        Just("%00".to_owned()),
        Just("%ff%fe".to_owned()),
        Just("%2F".to_owned()),
        "[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,16}",
    ];
    let path = (proptest::collection::vec(segment, 0..6), "(\\?[a-z=&%0-9]{0,16})?")
        .prop_map(|(segments, query)| format!("/{}{query}", segments.join("/")));
    let header = ("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,40}");
    let headers = proptest::collection::vec(header, 0..5);
    let idempotency = proptest::option::of("[ -~]{0,300}");
    run_against_daemon(
        64,
        (method, path, headers, idempotency, body()),
        |daemon, _lease, (method, path, headers, idempotency, body)| {
            Box::pin(async move {
                let mut headers: Vec<(String, String)> = headers
                    .into_iter()
                    .filter(|(name, _)| {
                        let name = name.to_ascii_lowercase();
                        !matches!(
                            name.as_str(),
                            "content-length" | "transfer-encoding" | "host" | "connection"
                        )
                    })
                    .collect();
                if let Some(key) = idempotency {
                    headers.push(("Idempotency-Key".to_owned(), key));
                }
                let request = http_request(&method, &path, &headers, &body);
                if let Some(answer) = send_garbage(daemon, &request).await {
                    prop_assert!(answer.status < 500 || answer.status == 503, "{method} {path}: {answer:?}");
                    if answer.status != 405 || method != "HEAD" {
                        let acquired = if method == "HEAD" { None } else { check(&answer)? };
                        release(daemon, acquired).await;
                    }
                }
                Ok(())
            })
        },
    );
}

#[test]
fn raw_random_bytes_never_get_a_5xx_and_the_daemon_stays_up() {
    let garbage = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        (proptest::collection::vec(any::<u8>(), 0..512)).prop_map(|tail| [
            b"POST /v1/leases HTTP/1.1\r\n".as_slice(),
            &tail
        ]
        .concat()),
    ];
    run_against_daemon(64, garbage, |daemon, _lease, bytes| {
        Box::pin(async move {
            if let Some(answer) = send_garbage(daemon, &bytes).await {
                prop_assert!(answer.status < 500 || answer.status == 503, "{answer:?}");
            }
            Ok(())
        })
    });
}

#[test]
fn oversized_and_chunked_bodies_are_refused_with_413() {
    let sizes = (64 * 1024 + 1..1024 * 1024usize, any::<bool>());
    run_against_daemon(8, sizes, |daemon, lease, (size, chunked)| {
        Box::pin(async move {
            let path = format!("/v1/leases/{lease}/exec");
            let body = format!(r#"{{"argv":["cat"],"stdin":"{}"}}"#, "x".repeat(size));
            let request = if chunked {
                let mut head = format!(
                    "POST {path} HTTP/1.1\r\nHost: firepit\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                for piece in body.as_bytes().chunks(8192) {
                    head.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    head.extend_from_slice(piece);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(b"0\r\n\r\n");
                head
            } else {
                http_request("POST", &path, &[], body.as_bytes())
            };
            let answer = send_raw(daemon, &request).await.ok_or_else(|| TestCaseError::fail("no answer"))?;
            prop_assert_eq!(answer.status, 413, "{:?}", String::from_utf8_lossy(&answer.body));
            check(&answer)?;
            Ok(())
        })
    });
}
