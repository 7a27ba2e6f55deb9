//! The sandbox endpoints' HTTP side over the fake backend (no VMs; its guests are the agent's
//! request handling in this process, on this host's files, so each test works in a temporary
//! directory of its own): streamed uploads past the JSON body limit, downloads, file operations and
//! their error codes, archives and terminals, the NDJSON framing of a streamed exec, a stream
//! ending with its lease, and the guide's table against the OpenAPI document. The real-VM
//! behaviour is tested in `crates/cli/tests/vm_sandbox_api.rs`.

use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, ErrorCode, FileKind, MkdirBody, SpawnBody, StreamEvent, WriteFileQuery};
use firepit_client::{Client, ClientError, Method, PtyEvent, PtyOptions, decode_chunk};
use firepit_daemon::test_daemon::TestDaemon;
use tokio::io::AsyncReadExt;

/// `name` inside `dir`, as the guest path (the fake backend's guest is this host).
fn at(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

async fn lease(client: &Client) -> String {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None, snapshot: None };
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
    let dir = tempfile::tempdir().unwrap();
    let file = at(&dir, "a.bin");
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let query = WriteFileQuery { path: file.clone(), mode: Some("600".into()), ..Default::default() };
    let written = client.write_file(&id, &query, std::io::Cursor::new(data.clone())).await.unwrap();
    assert_eq!(written, data.len() as u64);

    let mut download = client.read_file(&id, &file).await.unwrap();
    assert_eq!(
        (download.size(), download.mode(), download.kind()),
        (Some(1 << 20), Some(0o600), Some(FileKind::File))
    );
    let mut back = Vec::new();
    download.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "the file came back different");

    // JSON bodies stay bounded.
    let huge = format!(r#"{{"path":"{}/{}"}}"#, dir.path().display(), "x".repeat(100 * 1024));
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
    let dir = tempfile::tempdir().unwrap();
    let (d, e, f, g) = (at(&dir, "d"), at(&dir, "d/e"), at(&dir, "d/e/f"), at(&dir, "d/g"));
    client.mkdir(&id, &MkdirBody { path: e.clone(), parents: true, mode: None }).await.unwrap();
    let query = WriteFileQuery { path: f.clone(), ..Default::default() };
    client.write_file(&id, &query, std::io::Cursor::new(b"hi".to_vec())).await.unwrap();
    let listing = client.list_dir(&id, &e).await.unwrap();
    assert_eq!(listing.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["f"]);
    client.chmod(&id, &f, 0o700).await.unwrap();
    assert_eq!(client.stat(&id, &f, true).await.unwrap().mode & 0o777, 0o700);
    client.rename(&id, &f, &g).await.unwrap();

    let missing = client.read_file(&id, &f).await.unwrap_err();
    assert_eq!(code(&missing), ErrorCode::NotFound);
    let is_dir = client.read_file(&id, &d).await.unwrap_err();
    assert_eq!(code(&is_dir), ErrorCode::IsADirectory);
    let full = client.remove(&id, &d, false).await.unwrap_err();
    assert_eq!(code(&full), ErrorCode::DirectoryNotEmpty);
    client.remove(&id, &d, true).await.unwrap();
    assert_eq!(code(&client.stat(&id, &d, true).await.unwrap_err()), ErrorCode::NotFound);
    let relative = client.stat(&id, "tmp", true).await.unwrap_err();
    assert_eq!(code(&relative), ErrorCode::InvalidInput);
    let bad_mode = WriteFileQuery { path: at(&dir, "x"), mode: Some("rwx".into()), ..Default::default() };
    let error = client.write_file(&id, &bad_mode, std::io::Cursor::new(Vec::new())).await.unwrap_err();
    assert_eq!(code(&error), ErrorCode::BadRequest);
    assert_eq!(code(&client.stat("l-nope", "/", true).await.unwrap_err()), ErrorCode::LeaseNotFound);
    daemon.stop().await;
}

#[tokio::test]
async fn archives_and_terminals_go_through_the_same_endpoints() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let query = WriteFileQuery { path: at(&dir, "tree/a/b.txt"), create_parents: true, ..Default::default() };
    client.write_file(&id, &query, std::io::Cursor::new(b"inside".to_vec())).await.unwrap();
    let mut archive = Vec::new();
    client.download_tar(&id, &at(&dir, "tree")).await.unwrap().read_to_end(&mut archive).await.unwrap();
    let copy = at(&dir, "copy");
    client.upload_tar(&id, &copy, std::io::Cursor::new(archive)).await.unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("copy/a/b.txt")).unwrap(), "inside");

    let mut terminal = client.pty(&id, &PtyOptions::default()).await.unwrap();
    terminal.send_input(b"echo $((6*7)); exit 4\n").await.unwrap();
    let mut screen = Vec::new();
    let exit = loop {
        match terminal.next_event().await.unwrap() {
            Some(PtyEvent::Output(bytes)) => screen.extend(bytes),
            Some(PtyEvent::Exit(status)) => break status.exit_code,
            Some(_) => {}
            None => panic!("the terminal ended without an exit: {}", String::from_utf8_lossy(&screen)),
        }
    };
    assert!(String::from_utf8_lossy(&screen).contains("42"), "{}", String::from_utf8_lossy(&screen));
    assert_eq!(exit, Some(4));
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

    let mut events = client.exec_stream(&id, &SpawnBody::new(["sh", "-c", "echo oops >&2"])).await.unwrap();
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
    let mut events = client.exec_stream(&id, &SpawnBody::new(["sleep", "30"])).await.unwrap();
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
