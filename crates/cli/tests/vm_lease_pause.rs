//! Pause and resume of a lease through the daemon's API, on real VMs (issue 19): a paused lease's
//! QEMU is gone and its state is under the daemon's state directory; calls on it answer
//! `409 lease_paused`; pause and resume are idempotent; after each of three resumes the lease's
//! file is there and its background process counts on, its output read on from the same offset;
//! the lease stays paused across a restart of the daemon and resumes in the new one.

mod common;

use std::time::Duration;

use firepit_api::{
    AcquireRequest, ErrorCode, ExecBody, LeaseState, OutputChannel, OutputQuery, Program, StartProcessBody,
};
use firepit_client::Client;

async fn sh(client: &Client, lease: &str, script: &str) -> String {
    let out = client.exec(lease, &ExecBody::new(["sh", "-c", script])).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{script}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// The numbers the counting process printed from `offset` on; the next offset.
async fn counted(client: &Client, lease: &str, offset: u64) -> (u64, Vec<u64>) {
    let query =
        OutputQuery { channel: OutputChannel::Stdout, offset, wait_ms: 2000, ..OutputQuery::default() };
    let output = client.process_output(lease, "counter", &query).await.unwrap();
    assert_eq!((output.offset, output.missed), (offset, 0), "read on from the same offset");
    let numbers = output.data.lines().filter_map(|line| line.trim().parse().ok()).collect();
    (output.next_offset, numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_pauses_and_resumes_three_times_and_stays_paused_across_a_daemon_restart() {
    let (dir, settings) = common::small_shape_settings("lease-pause");
    let state = settings.state_dir.clone();
    let mut daemon = common::daemon(dir, &settings);
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;
    let client = daemon.client();
    let request = AcquireRequest { shape: "small".into(), wait_ms: 60_000, ttl_ms: None, snapshot: None };
    let lease = client.acquire(&request, None).await.unwrap();
    let id = lease.lease_id.clone();
    sh(&client, &id, "echo kept > /root/note").await;
    let counter = StartProcessBody {
        tag: Some("counter".into()),
        ..Program::new(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"]).into()
    };
    client.start_process(&id, &counter).await.unwrap();
    let (mut offset, first) = counted(&client, &id, 0).await;
    let mut last = *first.last().unwrap();

    for round in 1..=3 {
        let pid = client.lease(&id).await.unwrap().pid.expect("a running lease's VM has a pid");
        let view = client.pause_lease(&id).await.unwrap();
        assert_eq!(view.state, LeaseState::Paused, "round {round}");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "round {round}: QEMU exited");
        assert!(state.join("paused").read_dir().unwrap().next().is_some(), "saved under the state dir");
        assert_eq!(client.pause_lease(&id).await.unwrap().state, LeaseState::Paused, "pausing again is fine");
        let err = client.exec(&id, &ExecBody::new(["true"])).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::LeasePaused), "round {round}: {err}");
        if round == 3 {
            // The daemon stops with the lease paused; the next run adopts it.
            daemon.stop(Duration::from_secs(60)).await.unwrap();
            daemon.start(common::BOOT_DEADLINE).await.unwrap();
            let view = daemon.client().lease(&id).await.unwrap();
            assert_eq!(view.state, LeaseState::Paused, "still paused after the restart");
        }
        let client = daemon.client();
        let view = client.resume_lease(&id).await.unwrap();
        assert_eq!(view.state, LeaseState::Running, "round {round}");
        assert_eq!(
            client.resume_lease(&id).await.unwrap().state,
            LeaseState::Running,
            "resuming again is fine"
        );
        assert_eq!(sh(&client, &id, "cat /root/note").await, "kept", "round {round}");
        let (next, numbers) = counted(&client, &id, offset).await;
        assert!(!numbers.is_empty(), "round {round}: still counting");
        assert_eq!(numbers[0], last + 1, "round {round}: counting on where it stopped");
        (offset, last) = (next, *numbers.last().unwrap());
    }
    let client = daemon.client();
    client.release(&id).await.unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || state
            .join("paused")
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_none()))
        .await,
        "a resumed lease leaves no saved state"
    );
    daemon.stop(Duration::from_secs(60)).await.unwrap();
}
