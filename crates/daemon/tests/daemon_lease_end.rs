//! A lease's end is final whatever its clients do (issue 25, item 1), over the fake backend: a
//! release destroys the VM before it answers, however many requests and streams still run on the
//! lease, and each of them ends with `lease_ended` (a pending exec, a process wait, a streamed
//! exec nobody reads, a download nobody reads, a terminal and an exec WebSocket whose sends are
//! blocked); a stop destroys every VM. The same on real VMs: `crates/cli/tests/vm_lease_end.rs`.

use std::time::{Duration, Instant};

use firepit_api::{
    AcquireRequest, ErrorCode, ExecBody, Program, SpawnBody, StartProcessBody, WriteFileQuery,
};
use firepit_client::{Client, ClientError, ExecWsOptions, PtyEvent, PtyOptions};
use firepit_daemon::test_daemon::TestDaemon;
use tokio::io::AsyncReadExt;

async fn lease(client: &Client) -> String {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None, snapshot: None };
    client.acquire(&request, None).await.unwrap().lease_id
}

/// `leased` of `/v1/pools` (what the pool holds) for shape `small`.
async fn leased(client: &Client) -> usize {
    let pools = client.pools().await.unwrap();
    pools.shapes.iter().find(|s| s.name == "small").unwrap().leased
}

fn code(error: &ClientError) -> ErrorCode {
    error.code().unwrap_or_else(|| panic!("no API error code: {error}"))
}

/// Releases `id`, checks the VM was gone when the release answered, returns when it answered.
async fn release(client: &Client, id: &str) -> Instant {
    client.release(id).await.unwrap();
    let answered = Instant::now();
    assert_eq!(leased(client).await, 0, "the VM is destroyed before the release answers");
    answered
}

#[tokio::test]
async fn a_pending_exec_and_a_process_wait_end_with_lease_ended_when_the_lease_is_released() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    let exec = tokio::spawn({
        let (client, id) = (client.clone(), id.clone());
        async move {
            client.exec(&id, &ExecBody { timeout_ms: 3_600_000, ..ExecBody::new(["sleep", "3600"]) }).await
        }
    });
    let process =
        client.start_process(&id, &StartProcessBody::from(Program::new(["sleep", "3600"]))).await.unwrap();
    let wait = tokio::spawn({
        let (client, id) = (client.clone(), id.clone());
        async move { client.process(&id, &process.id.to_string(), 300_000).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = release(&client, &id).await;
    for call in [exec.await.unwrap().map(drop), wait.await.unwrap().map(drop)] {
        let error = call.unwrap_err();
        assert_eq!(code(&error), ErrorCode::LeaseEnded, "{error}");
        assert!(
            matches!(error, ClientError::Api { status: firepit_client::StatusCode::GONE, .. }),
            "{error}"
        );
    }
    assert!(released.elapsed() < Duration::from_secs(2), "they answered at once");
    daemon.stop().await;
}

#[tokio::test]
async fn a_streamed_exec_and_a_download_nobody_reads_do_not_keep_the_vm() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big").display().to_string();
    let data = vec![7u8; 8 << 20];
    client
        .write_file(
            &id,
            &WriteFileQuery { path: big.clone(), ..Default::default() },
            std::io::Cursor::new(data),
        )
        .await
        .unwrap();
    let mut stream = client.exec_stream(&id, &SpawnBody::new(["yes"])).await.unwrap();
    let mut download = client.read_file(&id, &big).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // both fill their buffers and stall
    release(&client, &id).await;
    // The stream's last event, once read, says why it stopped.
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        let mut last = None;
        while let Some(event) = stream.next_event().await.unwrap() {
            last = Some(event);
        }
        last
    })
    .await
    .unwrap();
    assert!(
        matches!(last, Some(firepit_api::StreamEvent::Error { error: ErrorCode::LeaseEnded, .. })),
        "{last:?}"
    );
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), download.read_to_end(&mut sink)).await.unwrap();
    assert!(read.is_err() && sink.len() < 8 << 20, "the download is cut, never completed short");
    daemon.stop().await;
}

#[tokio::test]
async fn a_terminal_and_an_exec_websocket_whose_sends_are_blocked_end_with_the_lease() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let id = lease(&client).await;
    let options = PtyOptions { argv: vec!["yes".into()], ..PtyOptions::default() };
    let mut pty = client.pty(&id, &options).await.unwrap();
    let mut exec = client.exec_ws(&id, &ExecWsOptions::new(["yes"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // nobody reads: the daemon's sends block
    release(&client, &id).await;
    // Reading now drains what was buffered, then the session ends (with the lease's error when
    // the client got to read it in time, else the connection is simply closed).
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        let mut last = None;
        while let Ok(Some(event)) = pty.next_event().await {
            if !matches!(event, PtyEvent::Output(_)) {
                last = Some(event);
            }
        }
        last
    })
    .await
    .expect("the terminal ended");
    if let Some(PtyEvent::Error { error, .. }) = &ended {
        assert_eq!(error, &ErrorCode::LeaseEnded);
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(_)) = exec.next_event().await {}
    })
    .await;
    assert!(ended.is_ok(), "the exec WebSocket ended");
    daemon.stop().await;
}

#[tokio::test]
async fn a_stop_destroys_every_vm_even_under_a_stalled_stream() {
    let daemon =
        TestDaemon::start_with(firepit_daemon::fake::FakeBackend::with_shape("small", 2), |options| {
            options.shutdown_budget = Duration::from_millis(500);
        })
        .await;
    let client = daemon.client();
    let id = lease(&client).await;
    let _stalled = client.exec_stream(&id, &SpawnBody::new(["yes"])).await.unwrap();
    let backend = daemon.backend.clone();
    assert_eq!(backend.leased("small"), 1);
    let report = daemon.stop().await;
    assert_eq!(report.leases_ended, 1);
    assert_eq!(
        (backend.leased("small"), backend.destroyed("small")),
        (0, 3),
        "the leased VM and the 2 ready ones"
    );
}
