//! The real daemon (`firepit serve`, real VMs) across the end of a lease and the end of a daemon:
//! an expired lease's VM is destroyed and replaced; after `kill -9` the next daemon on the same
//! state dir reaps what the previous run left, and nothing of another daemon's state dir.
//!
//! Each test starts its own daemons (depth 1) in its own temporary directory and only looks at
//! QEMU processes whose command line names that directory, so the tests run in parallel.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use firepit::daemon::api::types::{AcquireRequest, ExecBody};
use firepit::daemon::client::{Client, ClientError, Endpoint};

/// Cold boots under a loaded TCG host take up to 30 s; warm-up and refill get generous deadlines.
const BOOT_DEADLINE: Duration = Duration::from_secs(180);

/// One `firepit serve` child with its own socket and state dir under `dir`.
struct ServeChild {
    child: tokio::process::Child,
    socket: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl ServeChild {
    /// Starts `firepit serve` (JSON logs to `<dir>/<name>.log`) for one shape `small` of depth 1.
    fn spawn(dir: &Path, name: &str) -> Self {
        let image = common::image();
        let socket = dir.join(format!("{name}.sock"));
        let state = dir.join(format!("{name}-state"));
        let config = dir.join(format!("{name}.toml"));
        let text = format!(
            "state_dir = {state:?}\n[listen]\nsocket = {socket:?}\n[[shape]]\nname = \"small\"\n\
             image = {image:?}\ndepth = {{ low = 1, high = 1 }}\nfill = \"cold\"\n",
            image = image.dir()
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("{name}-{}.log", std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"))
            .args(["serve", "--log-json", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self { child, socket, state, log }
    }

    fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    fn pid(&self) -> i32 {
        self.child.id().expect("the daemon has not been reaped yet") as i32
    }

    /// Waits until the daemon answers and its shape is full with no fill in flight.
    async fn wait_full(&mut self) {
        let started = std::time::Instant::now();
        loop {
            assert!(self.child.try_wait().unwrap().is_none(), "the daemon exited: {}", self.log_text());
            if let Ok(pools) = self.client().pools().await
                && pools.shapes.iter().all(|s| s.ready >= s.depth_high && s.filling == 0)
            {
                return;
            }
            assert!(started.elapsed() < BOOT_DEADLINE, "pool not full in time: {}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and a graceful exit: no QEMU left under its state dir.
    async fn stop(mut self) {
        // SAFETY: kill(2) on the daemon this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "graceful stop exits 0: {status:?}\n{}", self.log_text());
        assert!(
            common::eventually(Duration::from_secs(10), || qemu_under(&self.state).is_empty()).await,
            "no QEMU left under {}",
            self.state.display()
        );
    }
}

/// Running (not zombie) QEMU processes whose command line mentions `dir`, with their start times.
fn qemu_under(dir: &Path) -> Vec<(u32, u64)> {
    let mut found: Vec<(u32, u64)> =
        common::qemu_under(dir).into_iter().filter_map(|pid| Some((pid, running_since(pid)?))).collect();
    found.sort_unstable();
    found
}

/// Start time (field 22 of `/proc/<pid>/stat`) of a process that exists and is not a zombie.
fn running_since(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn exec_true() -> ExecBody {
    ExecBody::new(["true"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_destroys_its_vm_and_the_pool_refills_to_depth() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = ServeChild::spawn(dir.path(), "ttl");
    daemon.wait_full().await;
    let client = daemon.client();

    let ttl = Duration::from_secs(4);
    let request =
        AcquireRequest { shape: "small".into(), wait_ms: 30_000, ttl_ms: Some(ttl.as_millis() as u64) };
    let lease = client.acquire(&request, None).await.unwrap();
    let acquired = std::time::Instant::now();
    // The VM's runtime dir is `<state>/vms/<vm_id>`: its QEMU names files in it on its command line
    // (the trailing `/`, from joining "", keeps `fp-1-1` from matching `fp-1-10`).
    let vm_dir = daemon.state.join("vms").join(&lease.vm_id).join("");
    let leased = qemu_under(&vm_dir);
    assert_eq!(leased.len(), 1, "one QEMU runs the leased VM {}: {leased:?}", lease.vm_id);

    // Before the TTL the lease works.
    let out = client.exec(&lease.lease_id, &exec_true()).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(acquired.elapsed() < ttl, "the exec took longer than the TTL; raise the TTL");

    // After it, the lease is gone and its QEMU process with it.
    assert!(
        common::eventually(ttl + Duration::from_secs(30), || qemu_under(&vm_dir).is_empty()).await,
        "the expired lease's QEMU {leased:?} still runs"
    );
    assert!(acquired.elapsed() >= ttl, "the VM was destroyed before its TTL ran out");
    match client.exec(&lease.lease_id, &exec_true()).await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status.as_u16(), 404),
        other => panic!("exec on an expired lease must answer 404, got {other:?}"),
    }
    let pools = client.pools().await.unwrap();
    assert_eq!(pools.leases, 0, "the expired lease is out of the table");
    let metrics = client.request(hyper::Method::GET, "/metrics", None, &[]).await.unwrap().text();
    assert!(
        metrics.contains("firepit_daemon_leases_ended_total{shape=\"small\",outcome=\"expired\"} 1"),
        "the expiry is counted: {metrics}"
    );

    // The pool boots a replacement: back to depth 1 with another VM.
    daemon.wait_full().await;
    let now = qemu_under(&daemon.state);
    assert_eq!(now.len(), 1, "depth 1 again: {now:?}");
    assert!(!now.contains(&leased[0]), "the replacement is a new QEMU process");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_next_daemon_reaps_the_previous_run_and_not_another_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut crashing = ServeChild::spawn(dir.path(), "a");
    let mut other = ServeChild::spawn(dir.path(), "b");
    crashing.wait_full().await;
    other.wait_full().await;
    let crashed_qemu = qemu_under(&crashing.state);
    let other_qemu = qemu_under(&other.state);
    assert_eq!((crashed_qemu.len(), other_qemu.len()), (1, 1), "depth 1 each");
    let crashed_records = names_in(&crashing.state.join("owned"));
    let crashed_vm_dirs = names_in(&crashing.state.join("vms"));
    assert_eq!(crashed_records.len(), 1, "one ownership record per VM: {crashed_records:?}");
    assert_eq!(crashed_vm_dirs.len(), 1, "one runtime dir per VM: {crashed_vm_dirs:?}");

    // kill -9: the daemon gets no chance to clean up.
    // SAFETY: kill(2) on the daemon this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(crashing.pid(), libc::SIGKILL) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(30), crashing.child.wait()).await.unwrap().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    // Observed behaviour: QEMU is spawned with PR_SET_PDEATHSIG(SIGKILL), so the kernel kills the
    // VMs with the daemon; what stays behind is the records and the runtime dirs.
    assert!(
        common::eventually(Duration::from_secs(10), || qemu_under(&crashing.state).is_empty()).await,
        "PDEATHSIG kills the crashed daemon's QEMU: {:?}",
        qemu_under(&crashing.state)
    );
    assert_eq!(names_in(&crashing.state.join("owned")), crashed_records, "records survive kill -9");
    assert_eq!(names_in(&crashing.state.join("vms")), crashed_vm_dirs, "runtime dirs survive kill -9");
    assert!(crashing.socket.exists(), "a killed daemon leaves its socket file");

    // A new daemon on the same state dir reaps the previous run before it fills again.
    let mut restarted = ServeChild::spawn(dir.path(), "a");
    restarted.wait_full().await;
    let log: Vec<serde_json::Value> =
        restarted.log_text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let position = |message: &str| log.iter().position(|l| l["fields"]["message"] == message);
    let reaped = position("reaped VMs left by a previous run").expect("the restart logs what it reaped");
    let ready = position("daemon ready").expect("the restart logs that it is ready");
    assert!(reaped < ready, "reaped before serving");
    let fields = &log[reaped]["fields"];
    assert_eq!(fields["gone"], 1, "the recorded VM was found dead: {fields}");
    assert_eq!(fields["killed"], 0, "{fields}");
    assert_eq!(fields["dirs_removed"], 1, "its runtime dir was removed: {fields}");
    let records = names_in(&restarted.state.join("owned"));
    assert_eq!(records.len(), 1, "one record, for the new VM: {records:?}");
    assert!(records.iter().all(|r| !crashed_records.contains(r)), "the old record is gone: {records:?}");
    let vm_dirs = names_in(&restarted.state.join("vms"));
    assert!(vm_dirs.iter().all(|d| !crashed_vm_dirs.contains(d)), "the old runtime dir is gone: {vm_dirs:?}");
    assert_eq!(qemu_under(&restarted.state).len(), 1, "filled again to depth 1");

    // The other daemon's VM is the same process as before, and that daemon still serves.
    assert_eq!(qemu_under(&other.state), other_qemu, "another state dir's QEMU is left alone");
    let lease = other
        .client()
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 30_000, ttl_ms: None }, None)
        .await
        .unwrap();
    assert_eq!(other.client().exec(&lease.lease_id, &exec_true()).await.unwrap().exit_code, Some(0));
    other.client().release(&lease.lease_id).await.unwrap();

    restarted.stop().await;
    other.stop().await;
}
