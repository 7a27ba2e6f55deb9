//! `kill -9` of the daemon in the middle of a pause and of a snapshot, on real VMs (issue 19).
//! Pauses and snapshots are timed first; then the daemon is killed at 0.4, 0.8 and 1.5 times that
//! after the call was sent (the last usually just after it answered, so both sides are seen), and
//! started again on the same state dir. Whatever moment the kill hit:
//! - the lease is `paused` (and resumes with its file) or `ended` with a reason, nothing else;
//! - the snapshot is listed (and a lease starts from it) or absent;
//! - no QEMU of the killed daemon lives on, and the paused and snapshots directories hold only
//!   what the daemon lists (no half-written copy, no `.tmp-*` scratch).
//!
//! Each prints which side it saw.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, ExecBody, LeaseState};
use firepit_client::Client;
use firepit_tools::child_daemon::ChildDaemon;

/// When to kill, as a multiple of the timed call (the faster of two).
const KILL_AT: [f64; 3] = [0.4, 0.8, 1.5];

fn small() -> AcquireRequest {
    AcquireRequest { shape: "small".into(), wait_ms: 120_000, ttl_ms: Some(600_000), snapshot: None }
}

async fn sh(client: &Client, lease: &str, script: &str) -> String {
    let out = client.exec(lease, &ExecBody::new(["sh", "-c", script])).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{script}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// `lease` (else a new one) with `kept` in /root/note.
async fn lease_with_note(client: &Client, lease: Option<String>) -> String {
    let id = match lease {
        Some(id) => id,
        None => client.acquire(&small(), None).await.unwrap().lease_id,
    };
    sh(client, &id, "echo kept > /root/note").await;
    id
}

/// The names in `dir` (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = dir.read_dir() else { return Vec::new() };
    let mut names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Kills the daemon `after` from now, starts it again, and checks that no QEMU of the killed run
/// lives on.
async fn kill_and_restart(daemon: &mut ChildDaemon, after: Duration) {
    let daemon_pid = daemon.pid().expect("the daemon runs");
    tokio::time::sleep(after).await;
    let old_qemu = common::procs::qemu_children(daemon_pid);
    daemon.kill_hard().await;
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    let gone = common::eventually(Duration::from_secs(30), || {
        old_qemu.iter().all(|pid| !common::procs::is_live_qemu(*pid))
    })
    .await;
    assert!(gone, "QEMU of the killed daemon still alive: {old_qemu:?}\n{}", daemon.log_tail(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_pause_or_mid_snapshot_leaves_a_whole_result_or_none() {
    let (dir, settings) = common::small_shape_settings("lease-kill9");
    let paused_dir = settings.state_dir.join("paused");
    let snapshots_dir = settings.state_dir.join("snapshots");
    let mut daemon = common::daemon(dir, &settings);
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;

    // The typical pause.
    let client = daemon.client();
    let id = client.acquire(&small(), None).await.unwrap().lease_id;
    let mut pause_time = Duration::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        client.pause_lease(&id).await.unwrap();
        pause_time = pause_time.min(started.elapsed());
        client.resume_lease(&id).await.unwrap();
    }
    let mut lease = Some(id);

    for fraction in KILL_AT {
        let client = daemon.client();
        let id = lease_with_note(&client, lease.take()).await;
        let pausing = tokio::spawn({
            let (client, id) = (client.clone(), id.clone());
            async move { client.pause_lease(&id).await }
        });
        kill_and_restart(&mut daemon, pause_time.mul_f64(fraction)).await;
        let answered = pausing.await.unwrap();
        let client = daemon.client();
        let view = client.lease(&id).await.unwrap();
        eprintln!(
            "killed {:?} into a pause of ~{pause_time:?}: the call answered {}; after restart {:?} ({:?})",
            pause_time.mul_f64(fraction),
            answered.as_ref().map_or("an error".into(), |v| format!("{:?}", v.state)),
            view.state,
            view.end_reason
        );
        match view.state {
            LeaseState::Paused => {
                assert_eq!(names(&paused_dir).len(), 1, "one saved VM: {:?}", names(&paused_dir));
                client.resume_lease(&id).await.unwrap();
                assert_eq!(sh(&client, &id, "cat /root/note").await, "kept");
                client.release(&id).await.unwrap();
            }
            LeaseState::Ended => assert!(view.end_reason.is_some(), "an ended lease says why: {view:?}"),
            LeaseState::Running => panic!("a lease of a killed daemon cannot run on: {view:?}"),
        }
        let empty = common::eventually(Duration::from_secs(10), || names(&paused_dir).is_empty()).await;
        assert!(empty, "nothing left in the paused dir: {:?}", names(&paused_dir));
        common::wait_full(&mut daemon).await;
    }

    // The typical snapshot.
    let client = daemon.client();
    let id = client.acquire(&small(), None).await.unwrap().lease_id;
    let mut snapshot_time = Duration::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        let timed = client.snapshot_lease(&id).await.unwrap();
        snapshot_time = snapshot_time.min(started.elapsed());
        client.delete_snapshot(&timed.snapshot_id).await.unwrap();
    }
    let mut lease = Some(id);

    for fraction in KILL_AT {
        let client = daemon.client();
        let id = lease_with_note(&client, lease.take()).await;
        let snapshotting = tokio::spawn({
            let (client, id) = (client.clone(), id.clone());
            async move { client.snapshot_lease(&id).await }
        });
        kill_and_restart(&mut daemon, snapshot_time.mul_f64(fraction)).await;
        let answered = snapshotting.await.unwrap();
        let client = daemon.client();
        let snapshots = client.list_snapshots().await.unwrap();
        eprintln!(
            "killed {:?} into a snapshot of ~{snapshot_time:?}: the call {}; after restart {} snapshot(s)",
            snapshot_time.mul_f64(fraction),
            if answered.is_ok() { "answered" } else { "failed" },
            snapshots.len()
        );
        let listed: Vec<String> = snapshots.iter().map(|s| s.snapshot_id.clone()).collect();
        assert_eq!(names(&snapshots_dir), listed, "the snapshots dir holds the listed snapshots only");
        assert!(snapshots.len() <= 1, "{snapshots:?}");
        if let Some(snapshot) = snapshots.first() {
            let request = AcquireRequest { snapshot: Some(snapshot.snapshot_id.clone()), ..small() };
            let copy = client.acquire(&request, None).await.unwrap().lease_id;
            assert_eq!(sh(&client, &copy, "cat /root/note").await, "kept");
            client.release(&copy).await.unwrap();
            client.delete_snapshot(&snapshot.snapshot_id).await.unwrap();
        }
        common::wait_full(&mut daemon).await;
    }
    daemon.stop(Duration::from_secs(60)).await.unwrap();
}
