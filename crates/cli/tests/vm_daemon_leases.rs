//! The real daemon (`firepit serve`, real VMs) across the end of a lease and the end of a daemon:
//! an expired lease's VM is destroyed and replaced; after `kill -9` the next daemon on the same
//! state dir reaps what the previous run left, and nothing of another daemon's state dir.
//!
//! Each test starts its own daemons (depth 1) in its own temporary directory and only looks at
//! QEMU processes whose command line names that directory, so the tests run in parallel.

mod common;

use std::path::Path;
use std::time::Duration;

use firepit_api::{AcquireRequest, ExecBody};
use firepit_client::ClientError;
use firepit_tools::child_daemon::ChildDaemon;
use firepit_tools::procfs::{QemuProcess, qemu_under};

/// One `firepit serve` child (JSON logs) for one shape `small` of depth 1, with its state dir.
fn serve_child(label: &str) -> (ChildDaemon, std::path::PathBuf) {
    let (dir, settings) = common::small_shape_settings(label);
    let state = settings.state_dir.clone();
    (common::daemon(dir, &settings).with_args(&["--log-json"]), state)
}

/// Running QEMU processes under `dir`, sorted.
fn qemus(dir: &Path) -> Vec<QemuProcess> {
    let mut found = qemu_under(dir);
    found.sort_unstable_by_key(|p| (p.pid, p.start_time));
    found
}

/// SIGTERM and a graceful exit: no QEMU left under its state dir.
async fn stop(daemon: &mut ChildDaemon, state: &Path) {
    daemon.stop(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_tail(30)));
    assert!(
        common::eventually(Duration::from_secs(10), || qemus(state).is_empty()).await,
        "no QEMU left under {}",
        state.display()
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The cgroup directories of the VMs of firepit process `pid` under the default parent (none
/// where this host has no usable cgroups).
fn vm_cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    let Ok(parents) = firepit_cgroup::Hierarchy::detect().and_then(|h| h.resolve(Path::new("firepit")))
    else {
        return Vec::new();
    };
    let prefix = format!("fp-{pid}-");
    let mut found: Vec<_> = parents
        .iter()
        .flat_map(|parent| std::fs::read_dir(parent).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn exec_true() -> ExecBody {
    ExecBody::new(["true"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_destroys_its_vm_and_the_pool_refills_to_depth() {
    let (mut daemon, state) = serve_child("ttl");
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;
    let client = daemon.client();

    let ttl = Duration::from_secs(4);
    let request = AcquireRequest {
        shape: "small".into(),
        wait_ms: 30_000,
        ttl_ms: Some(ttl.as_millis() as u64),
        snapshot: None,
    };
    let lease = client.acquire(&request, None).await.unwrap();
    let acquired = std::time::Instant::now();
    // The VM's runtime dir is `<state>/vms/<vm_id>`: its QEMU names files in it on its command line
    // (the trailing `/`, from joining "", keeps `fp-1-1` from matching `fp-1-10`).
    let vm_dir = state.join("vms").join(&lease.vm_id).join("");
    let leased = qemus(&vm_dir);
    assert_eq!(leased.len(), 1, "one QEMU runs the leased VM {}: {leased:?}", lease.vm_id);

    // Before the TTL the lease works.
    let out = client.exec(&lease.lease_id, &exec_true()).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(acquired.elapsed() < ttl, "the exec took longer than the TTL; raise the TTL");

    // After it, the lease is gone and its QEMU process with it.
    assert!(
        common::eventually(ttl + Duration::from_secs(30), || qemus(&vm_dir).is_empty()).await,
        "the expired lease's QEMU {leased:?} still runs"
    );
    assert!(acquired.elapsed() >= ttl, "the VM was destroyed before its TTL ran out");
    match client.exec(&lease.lease_id, &exec_true()).await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status.as_u16(), 404),
        other => panic!("exec on an expired lease must answer 404, got {other:?}"),
    }
    let pools = client.pools().await.unwrap();
    assert_eq!(pools.leases, 0, "the expired lease is out of the table");
    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.contains("firepit_daemon_leases_ended_total{shape=\"small\",outcome=\"expired\"} 1"),
        "the expiry is counted: {metrics}"
    );

    // The pool boots a replacement: back to depth 1 with another VM.
    common::wait_full(&mut daemon).await;
    let now = qemus(&state);
    assert_eq!(now.len(), 1, "depth 1 again: {now:?}");
    assert!(!now.contains(&leased[0]), "the replacement is a new QEMU process");
    stop(&mut daemon, &state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_next_daemon_reaps_the_previous_run_and_not_another_state_dir() {
    let (mut crashing, crashing_state) = serve_child("a");
    let (mut other, other_state) = serve_child("b");
    let (a, b) = tokio::join!(crashing.start(common::BOOT_DEADLINE), other.start(common::BOOT_DEADLINE));
    a.unwrap();
    b.unwrap();
    common::wait_full(&mut crashing).await;
    common::wait_full(&mut other).await;
    let crashed_qemu = qemus(&crashing_state);
    let other_qemu = qemus(&other_state);
    assert_eq!((crashed_qemu.len(), other_qemu.len()), (1, 1), "depth 1 each");
    let crashed_records = names_in(&crashing_state.join("owned"));
    let crashed_vm_dirs = names_in(&crashing_state.join("vms"));
    assert_eq!(crashed_records.len(), 1, "one ownership record per VM: {crashed_records:?}");
    assert_eq!(crashed_vm_dirs.len(), 1, "one runtime dir per VM: {crashed_vm_dirs:?}");

    let crashed_pid = crashing.pid().expect("the daemon runs");
    let crashed_cgroups = vm_cgroups_of(crashed_pid);

    // kill -9: the daemon gets no chance to clean up.
    crashing.kill_hard().await;
    // Observed behaviour: QEMU is spawned with PR_SET_PDEATHSIG(SIGKILL), so the kernel kills the
    // VMs with the daemon; what stays behind is the records and the runtime dirs.
    assert!(
        common::eventually(Duration::from_secs(10), || qemus(&crashing_state).is_empty()).await,
        "PDEATHSIG kills the crashed daemon's QEMU: {:?}",
        qemus(&crashing_state)
    );
    assert_eq!(names_in(&crashing_state.join("owned")), crashed_records, "records survive kill -9");
    assert_eq!(names_in(&crashing_state.join("vms")), crashed_vm_dirs, "runtime dirs survive kill -9");
    assert!(crashing.socket().exists(), "a killed daemon leaves its socket file");
    // Its VM's cgroup too (where this host has cgroups): nobody was left to remove it.
    assert_eq!(vm_cgroups_of(crashed_pid), crashed_cgroups, "cgroups survive kill -9");
    if crashed_cgroups.is_empty() {
        eprintln!("no usable cgroups here: the cgroup part of this test checks nothing");
    }

    // A new daemon on the same state dir reaps the previous run before it fills again.
    let mut restarted = crashing;
    restarted.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut restarted).await;
    let log_text = std::fs::read_to_string(restarted.log_path()).unwrap();
    let log: Vec<serde_json::Value> =
        log_text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let position = |message: &str| log.iter().position(|l| l["fields"]["message"] == message);
    let reaped = position("reaped VMs left by a previous run").expect("the restart logs what it reaped");
    let ready = position("daemon ready").expect("the restart logs that it is ready");
    assert!(reaped < ready, "reaped before serving");
    let fields = &log[reaped]["fields"];
    assert_eq!(fields["gone"], 1, "the recorded VM was found dead: {fields}");
    assert_eq!(fields["killed"], 0, "{fields}");
    assert_eq!(fields["dirs_removed"], 1, "its runtime dir was removed: {fields}");
    assert!(vm_cgroups_of(crashed_pid).is_empty(), "the crashed run's VM cgroups were reaped");
    let records = names_in(&crashing_state.join("owned"));
    assert_eq!(records.len(), 1, "one record, for the new VM: {records:?}");
    assert!(records.iter().all(|r| !crashed_records.contains(r)), "the old record is gone: {records:?}");
    let vm_dirs = names_in(&crashing_state.join("vms"));
    assert!(vm_dirs.iter().all(|d| !crashed_vm_dirs.contains(d)), "the old runtime dir is gone: {vm_dirs:?}");
    assert_eq!(qemus(&crashing_state).len(), 1, "filled again to depth 1");

    // The other daemon's VM is the same process as before, and that daemon still serves.
    assert_eq!(qemus(&other_state), other_qemu, "another state dir's QEMU is left alone");
    let lease = other
        .client()
        .acquire(
            &AcquireRequest { shape: "small".into(), wait_ms: 30_000, ttl_ms: None, snapshot: None },
            None,
        )
        .await
        .unwrap();
    assert_eq!(other.client().exec(&lease.lease_id, &exec_true()).await.unwrap().exit_code, Some(0));
    other.client().release(&lease.lease_id).await.unwrap();

    stop(&mut restarted, &crashing_state).await;
    stop(&mut other, &other_state).await;
}
