//! The sandbox endpoints' HTTP side over the fake backend (no VMs): streamed uploads past the
//! JSON body limit, downloads, file operations and their error codes, the NDJSON framing of a
//! streamed exec, a stream ending with its lease, and the guide's table against the OpenAPI
//! document. The real-VM behaviour is tested in `crates/cli/tests/vm_sandbox_api.rs`.

use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, ErrorCode, FileKind, MkdirBody, SpawnBody, StreamEvent, WriteFileQuery};
use firepit_client::{Client, ClientError, Method, PtyOptions, decode_chunk};
use firepit_daemon::test_daemon::TestDaemon;
use tokio::io::AsyncReadExt;

async fn lease(client: &Client) -> String {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None };
    client.acquire(&request, None).await.unwrap().lease_id
}

fn code(error: &ClientError) -> ErrorCode {
    error.code().unwrap_or_else(|| panic!("no API error code: {error}"))
}

#[tokio::test]
async fn uploads_are_not_bound_by_the_json_body_limit_and_round_trip() {
    let daemon = TestDaemon::start().await; // max_body_bytes = 64 KiB
    let client = daemon.client();
    let id = lease(&client).await;
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let query = WriteFileQuery { path: "/tmp/a.bin".into(), mode: Some("600".into()), ..Default::default() };
    let written = client.write_file(&id, &query, std::io::Cursor::new(data.clone())).await.unwrap();
    assert_eq!(written, data.len() as u64);

    let mut download = client.read_file(&id, "/tmp/a.bin").await.unwrap();
    assert_eq!(
        (download.size(), download.mode(), download.kind()),
        (Some(1 << 20), Some(0o600), Some(FileKind::File))
    );
    let mut back = Vec::new();
    download.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "the file came back different");

    // JSON bodies stay bounded.
    let huge = format!(r#"{{"path":"/tmp/{}"}}"#, "x".repeat(100 * 1024));
    let response = client
        .request(Method::POST, &format!("/v1/leases/{id}/files/mkdir"), Some(huge.into_bytes()), &[])
        .await
        .unwrap();
    assert_eq!(response.status, 413, "{}", response.text());
    daemon.stop().await;
}

#[tokio::test]
async fn file_operations_answer_typed_error_codes() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    client.mkdir(&id, &MkdirBody { path: "/tmp/d/e".into(), parents: true, mode: None }).await.unwrap();
    let query = WriteFileQuery { path: "/tmp/d/e/f".into(), ..Default::default() };
    client.write_file(&id, &query, std::io::Cursor::new(b"hi".to_vec())).await.unwrap();
    let listing = client.list_dir(&id, "/tmp/d/e").await.unwrap();
    assert_eq!(listing.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["f"]);
    client.chmod(&id, "/tmp/d/e/f", 0o700).await.unwrap();
    assert_eq!(client.stat(&id, "/tmp/d/e/f", true).await.unwrap().mode, 0o700);
    client.rename(&id, "/tmp/d/e/f", "/tmp/d/g").await.unwrap();

    let missing = client.read_file(&id, "/tmp/d/e/f").await.unwrap_err();
    assert_eq!(code(&missing), ErrorCode::NotFound);
    let dir = client.read_file(&id, "/tmp/d").await.unwrap_err();
    assert_eq!(code(&dir), ErrorCode::IsADirectory);
    let full = client.remove(&id, "/tmp/d", false).await.unwrap_err();
    assert_eq!(code(&full), ErrorCode::DirectoryNotEmpty);
    client.remove(&id, "/tmp/d", true).await.unwrap();
    assert_eq!(code(&client.stat(&id, "/tmp/d", true).await.unwrap_err()), ErrorCode::NotFound);
    let relative = client.stat(&id, "tmp", true).await.unwrap_err();
    assert_eq!(code(&relative), ErrorCode::InvalidInput);
    let bad_mode = WriteFileQuery { path: "/tmp/x".into(), mode: Some("rwx".into()), ..Default::default() };
    let error = client.write_file(&id, &bad_mode, std::io::Cursor::new(Vec::new())).await.unwrap_err();
    assert_eq!(code(&error), ErrorCode::BadRequest);
    assert_eq!(code(&client.stat("l-nope", "/", true).await.unwrap_err()), ErrorCode::LeaseNotFound);
    // Not faked: a clear 501, not a hang or a crash.
    assert_eq!(code(&client.download_tar(&id, "/tmp").await.unwrap_err()), ErrorCode::Unsupported);
    assert_eq!(code(&client.pty(&id, &PtyOptions::default()).await.unwrap_err()), ErrorCode::Unsupported);
    daemon.stop().await;
}

#[tokio::test]
async fn streamed_exec_is_ndjson_started_chunks_exit() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    let response = client
        .request(
            Method::POST,
            &format!("/v1/leases/{id}/exec/stream"),
            Some(br#"{"argv":["echo","hi"]}"#.to_vec()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/x-ndjson");
    let lines: Vec<serde_json::Value> =
        response.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["type"], "started");
    assert_eq!((lines[1]["type"].as_str(), lines[1]["data"].as_str()), (Some("stdout"), Some("hi\n")));
    assert_eq!(lines[1]["encoding"], "utf8");
    assert_eq!((lines[2]["type"].as_str(), lines[2]["exit_code"].as_i64()), (Some("exit"), Some(0)));
    assert_eq!(lines.len(), 3);

    let mut events = client.exec_stream(&id, &SpawnBody::new(["warn", "oops"])).await.unwrap();
    let mut stderr = Vec::new();
    while let Some(event) = events.next_event().await.unwrap() {
        if let StreamEvent::Stderr(chunk) = event {
            stderr.extend(decode_chunk(&chunk).unwrap());
        }
    }
    assert_eq!(stderr, b"oops\n");

    let refused = client.exec_stream(&id, &SpawnBody::new(["no-such-program"])).await.unwrap_err();
    assert_eq!(code(&refused), ErrorCode::ExecRefused);
    let empty = client.exec_stream(&id, &SpawnBody::new(Vec::<String>::new())).await.unwrap_err();
    assert_eq!(code(&empty), ErrorCode::BadArgv);
    daemon.stop().await;
}

#[tokio::test]
async fn a_stream_ends_with_an_error_event_when_its_lease_is_released() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    let mut events = client.exec_stream(&id, &SpawnBody::new(["sleep", "30000"])).await.unwrap();
    assert!(matches!(events.next_event().await.unwrap(), Some(StreamEvent::Started { .. })));
    let released = Instant::now();
    client.release(&id).await.unwrap();
    let last = tokio::time::timeout(Duration::from_secs(5), events.next_event()).await.unwrap().unwrap();
    match last {
        Some(StreamEvent::Error { error, .. }) => assert_eq!(error, ErrorCode::LeaseEnded),
        other => panic!("expected lease_ended, got {other:?}"),
    }
    assert!(events.next_event().await.unwrap().is_none());
    assert!(released.elapsed() < Duration::from_secs(5));
    assert_eq!(daemon.backend.leased("small"), 0, "the stream let go of the VM");
    daemon.stop().await;
}

#[tokio::test]
async fn the_guides_api_table_and_the_openapi_document_list_the_same_endpoints() {
    let daemon = TestDaemon::start().await;
    let doc: serde_json::Value = serde_json::from_str(&daemon.client().openapi().await.unwrap()).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let guide = include_str!("../GUIDE.md");
    let mut table: Vec<String> = Vec::new();
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    for line in guide.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if !cells[1].split('/').all(|m| METHODS.contains(&m.trim().trim_matches('`'))) {
            continue; // another table (metrics)
        }
        let path =
            cells[2].trim_matches('`').split(' ').next().unwrap().split('?').next().unwrap().to_owned();
        for method in cells[1].split('/').map(|m| m.trim().trim_matches('`')) {
            table.push(format!("{method} {path}"));
        }
    }
    table.sort();
    assert_eq!(table, documented, "GUIDE.md's API table and the OpenAPI document differ");
    daemon.stop().await;
}
