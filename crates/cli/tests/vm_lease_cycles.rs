//! 50 pause/resume cycles of one lease on a real VM (issue 19) leak nothing: after two warm-up
//! cycles the daemon's open fds, its RSS, its QEMU children and the bytes under its state dir are
//! measured, and after 50 more cycles (pause → resume → one exec) they are where they were, give or
//! take noise. While paused the state dir holds one saved copy of the VM and the lease's QEMU is
//! gone; running, the copy is gone again. Prints the p50 of pause and resume (call → answer).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, ExecBody, LeaseState};
use firepit_client::Client;

const CYCLES: usize = 50;
const WARM_UP: usize = 2;

/// Bytes of the files under `dir` (as allocated on disk, sparse files counted by their blocks).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = dir.read_dir() else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[derive(Debug)]
struct Sample {
    fds: usize,
    rss_kib: u64,
    qemu: usize,
    disk_bytes: u64,
}

fn sample(pid: u32, state: &Path) -> Sample {
    Sample {
        fds: open_fds(pid),
        rss_kib: rss_kib(pid),
        qemu: common::procs::qemu_children(pid).len(),
        disk_bytes: disk_bytes(state),
    }
}

/// One pause → resume → exec: the times of pause and resume, and a sample taken while paused.
async fn cycle(
    client: &Client,
    id: &str,
    round: usize,
    state: &Path,
    daemon_pid: u32,
) -> (Duration, Duration, Sample) {
    let started = Instant::now();
    let view = client.pause_lease(id).await.unwrap();
    let pause = started.elapsed();
    assert_eq!(view.state, LeaseState::Paused, "cycle {round}");
    let paused = sample(daemon_pid, state);
    let started = Instant::now();
    let view = client.resume_lease(id).await.unwrap();
    let resume = started.elapsed();
    assert_eq!(view.state, LeaseState::Running, "cycle {round}");
    let out = client.exec(id, &ExecBody::new(["cat", "/root/note"])).await.unwrap();
    assert_eq!(out.stdout.trim(), format!("{round}"), "cycle {round}: the file is kept");
    let out =
        client.exec(id, &ExecBody::new(["sh", "-c", &format!("echo {} > /root/note", round + 1)])).await;
    assert_eq!(out.unwrap().exit_code, Some(0));
    (pause, resume, paused)
}

fn p50(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pause_resume_cycles_leak_no_fds_memory_qemu_or_disk() {
    let (dir, settings) = common::small_shape_settings("lease-cycles");
    let state = settings.state_dir.clone();
    let mut daemon = common::daemon(dir, &settings);
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;
    let daemon_pid = daemon.pid().expect("the daemon runs");
    let client = daemon.client();
    let request =
        AcquireRequest { shape: "small".into(), wait_ms: 60_000, ttl_ms: Some(3_600_000), snapshot: None };
    let id = client.acquire(&request, None).await.unwrap().lease_id;
    let out = client.exec(&id, &ExecBody::new(["sh", "-c", "echo 1 > /root/note"])).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    common::wait_full(&mut daemon).await;

    for round in 1..=WARM_UP {
        cycle(&client, &id, round, &state, daemon_pid).await;
    }
    let before = sample(daemon_pid, &state);
    let lease_qemu = client.lease(&id).await.unwrap().pid.expect("a running lease's VM has a pid");
    assert!(
        common::procs::qemu_children(daemon_pid).contains(&lease_qemu),
        "the lease's QEMU is the daemon's child"
    );

    let mut pauses = Vec::new();
    let mut resumes = Vec::new();
    let started = Instant::now();
    for round in WARM_UP + 1..=WARM_UP + CYCLES {
        let (pause, resume, paused) = cycle(&client, &id, round, &state, daemon_pid).await;
        assert_eq!(paused.qemu + 1, before.qemu, "cycle {round}: the paused lease's QEMU exited: {paused:?}");
        // One saved copy: more than nothing, at most the guest's memory (256 MiB) and its disk's
        // changes, not one copy per cycle.
        let saved = paused.disk_bytes.saturating_sub(before.disk_bytes);
        assert!(saved > 1024 * 1024 && saved < 400 * 1024 * 1024, "cycle {round}: {before:?} → {paused:?}");
        if round == WARM_UP + 1 || round == WARM_UP + CYCLES {
            eprintln!("cycle {round} while paused: {paused:?}");
        }
        pauses.push(pause);
        resumes.push(resume);
    }
    let elapsed = started.elapsed();
    let after = sample(daemon_pid, &state);
    eprintln!("before: {before:?}\nafter:  {after:?}");
    eprintln!(
        "{CYCLES} cycles in {elapsed:?}: pause p50 {:?}, resume p50 {:?}",
        p50(pauses.clone()),
        p50(resumes.clone())
    );
    eprintln!("pause max {:?}, resume max {:?}", pauses.iter().max().unwrap(), resumes.iter().max().unwrap());

    assert!(after.fds.abs_diff(before.fds) <= 2, "open fds: {before:?} → {after:?}");
    assert_eq!(after.qemu, before.qemu, "QEMU children: {before:?} → {after:?}");
    // RSS: allocator noise, not growth per cycle (a leak of a few KiB a cycle would show).
    assert!(after.rss_kib <= before.rss_kib + 8 * 1024, "daemon RSS: {before:?} → {after:?}");
    // On disk: the ended lease records and logs may grow a little; a saved VM copy left behind
    // would be tens of MiB.
    assert!(after.disk_bytes <= before.disk_bytes + 4 * 1024 * 1024, "state dir: {before:?} → {after:?}");
    client.release(&id).await.unwrap();
    daemon.stop(Duration::from_secs(60)).await.unwrap();
}
