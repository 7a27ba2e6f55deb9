//! Every end reason one host gives, produced on real VMs and read back from `GET /v1/leases/{id}`
//! and from the event stream (`lease.ended`) of `firepit serve` (issue 21): a QEMU killed from
//! outside (`vm_exited`, the signal named), an operator's kill (`killed` with its detail), a TTL
//! that runs out (`ttl_expired`), a frozen VM whose agent stops answering (`health_check_failed`),
//! a graceful stop (`host_shutdown`, read after a restart on the same state dir: the event streams
//! close before a stop ends the leases) and a `kill -9` of the daemon (`daemon_restart`, announced
//! by the next run). The running lease's view names its
//! QEMU's `pid` and its `cgroup`. The same reasons over the fake backend:
//! `crates/daemon/src/leases/table_tests.rs` and `crates/daemon/tests/daemon_events.rs`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use firepit_api::{
    AcquireRequest, EndReason, Event, EventKind, EventQuery, LeaseState, LeaseView, ReleaseQuery,
    ReleaseReason,
};
use firepit_client::{Client, EventFeed};
use firepit_tools::child_daemon::ChildDaemon;
use firepit_tools::procfs::qemu_under;

/// The `lease.ended` events read so far, by lease id.
struct Ends {
    feed: EventFeed,
    seen: HashMap<String, Event>,
}

impl Ends {
    async fn open(client: &Client, after: Option<u64>) -> Self {
        let query = EventQuery { kinds: vec![EventKind::LeaseEnded], lease_id: None, last_event_id: after };
        Self { feed: client.events(&query).await.unwrap(), seen: HashMap::new() }
    }

    /// The `lease.ended` event of `lease` (read from the feed until it comes, 60 s at most).
    async fn of(&mut self, lease: &str) -> Event {
        let reading = tokio::time::timeout(Duration::from_secs(60), async {
            while !self.seen.contains_key(lease) {
                let event = self.feed.next_event().await.unwrap().expect("the feed stays open");
                let id = event.lease_id.clone().expect("lease.ended names its lease");
                self.seen.insert(id, event);
            }
        });
        reading.await.unwrap_or_else(|_| panic!("no lease.ended for {lease}; seen {:?}", self.seen));
        self.seen[lease].clone()
    }
}

async fn acquire(client: &Client, ttl_ms: Option<u64>) -> LeaseView {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 120_000, ttl_ms, snapshot: None };
    let id = client.acquire(&request, None).await.unwrap().lease_id;
    client.lease(&id).await.unwrap()
}

/// The lease's view once it has ended (polled for up to 60 s).
async fn ended(client: &Client, id: &str) -> LeaseView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = client.lease(id).await.unwrap();
        if view.state == LeaseState::Ended {
            return view;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id} did not end: {view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the view and the event agree on `reason` and a detail that `detail` accepts.
fn check_end(view: &LeaseView, event: &Event, reason: EndReason, detail: impl Fn(Option<&str>) -> bool) {
    assert_eq!((view.state, view.end_reason), (LeaseState::Ended, Some(reason)), "{view:?}");
    assert!(detail(view.end_detail.as_deref()), "{reason:?} detail: {view:?}");
    assert_eq!(event.reason, Some(reason), "{event:?}");
    assert_eq!(event.detail, view.end_detail, "the event says what the view says");
    assert!(view.pid.is_none() && view.cgroup.is_none(), "an ended lease has no VM: {view:?}");
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on the QEMU of a VM this test's daemon started (its pid from the lease view,
    // checked against the QEMU processes under the daemon's state dir).
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0, "{}", std::io::Error::last_os_error());
}

/// The running lease's QEMU: the view's `pid` is the QEMU under the VM's runtime dir, and that
/// process sits in the view's `cgroup`.
fn check_vm_shown(view: &LeaseView, state: &std::path::Path) -> u32 {
    assert_eq!(view.state, LeaseState::Running, "{view:?}");
    let pid = view.pid.unwrap_or_else(|| panic!("a running lease names its QEMU's pid: {view:?}"));
    let qemu = qemu_under(&state.join("vms").join(&view.vm_id).join(""));
    assert_eq!(qemu.iter().map(|q| q.pid).collect::<Vec<_>>(), [pid], "the pid is the VM's QEMU");
    let cgroup = view.cgroup.clone().unwrap_or_else(|| panic!("a running lease names its cgroup: {view:?}"));
    // One directory per controller (v1) or one (v2), comma-separated; QEMU is in each.
    for dir in cgroup.split(',') {
        let procs = std::fs::read_to_string(format!("{dir}/cgroup.procs")).unwrap_or_default();
        assert!(procs.lines().any(|line| line == pid.to_string()), "QEMU {pid} is in {dir}: {procs:?}");
    }
    pid
}

/// Whether QEMU `pid` is gone from under `state` within a few seconds.
async fn gone(state: &std::path::Path, pid: u32) -> bool {
    common::eventually(Duration::from_secs(5), || qemu_under(state).iter().all(|q| q.pid != pid)).await
}

fn daemon() -> (ChildDaemon, std::path::PathBuf) {
    let (dir, mut settings) = common::small_shape_settings("end-reasons");
    settings.shapes[0].depth_low = 2;
    settings.shapes[0].depth_high = 2;
    let state = settings.state_dir.clone();
    let daemon = common::daemon(dir, &settings);
    // Ping every second: three misses (2 s timeout each) end a frozen VM's lease in ~10 s.
    let config = std::fs::read_to_string(daemon.config_path()).unwrap();
    let config = config.replacen("[leases]\n", "[leases]\nhealth_check_secs = 1\n", 1);
    assert!(config.contains("health_check_secs = 1"), "{config}");
    std::fs::write(daemon.config_path(), config).unwrap();
    (daemon, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_reason_of_a_real_vm_shows_in_its_view_and_its_event() {
    let (mut daemon, state) = daemon();
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;
    let client = daemon.client();
    let mut ends = Ends::open(&client, None).await;

    // QEMU killed from outside: `vm_exited`, naming the signal.
    let lease = acquire(&client, None).await;
    let pid = check_vm_shown(&lease, &state);
    signal(pid, libc::SIGKILL);
    let view = ended(&client, &lease.id).await;
    check_end(&view, &ends.of(&lease.id).await, EndReason::VmExited, |d| {
        d.is_some_and(|d| d.contains("signal 9"))
    });

    // An operator's kill, with why.
    let lease = acquire(&client, None).await;
    let pid = check_vm_shown(&lease, &state);
    let kill = ReleaseQuery { reason: ReleaseReason::Killed, detail: Some("runaway build".into()) };
    client.end_lease(&lease.id, &kill).await.unwrap();
    let view = ended(&client, &lease.id).await;
    check_end(&view, &ends.of(&lease.id).await, EndReason::Killed, |d| d == Some("runaway build"));
    assert!(gone(&state, pid).await, "the killed lease's QEMU is gone");

    // A TTL of 1.5 s runs out.
    let lease = acquire(&client, Some(1500)).await;
    let pid = check_vm_shown(&lease, &state);
    let view = ended(&client, &lease.id).await;
    check_end(&view, &ends.of(&lease.id).await, EndReason::TtlExpired, |_| true);
    let lived = view.ended_at_unix_ms.unwrap() - view.created_at_unix_ms;
    assert!((1500..10_000).contains(&lived), "ended {lived} ms after its start");
    assert!(gone(&state, pid).await, "the expired lease's QEMU is gone");

    // A frozen QEMU: its agent misses three pings in a row.
    let lease = acquire(&client, None).await;
    let pid = check_vm_shown(&lease, &state);
    signal(pid, libc::SIGSTOP);
    let view = ended(&client, &lease.id).await;
    check_end(&view, &ends.of(&lease.id).await, EndReason::HealthCheckFailed, |d| {
        d.is_some_and(|d| d.contains("3 pings"))
    });
    assert!(gone(&state, pid).await, "the frozen lease's QEMU is destroyed");

    // A graceful stop with a live lease: `host_shutdown`, remembered by the next run on the same
    // state dir. (The event streams end when the stop begins, before the leases end: no reader
    // sees this one.)
    let live = acquire(&client, None).await.id;
    daemon.stop(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_tail(30)));
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    let view = client.lease(&live).await.unwrap();
    assert_eq!((view.state, view.end_reason), (LeaseState::Ended, Some(EndReason::HostShutdown)), "{view:?}");

    // `kill -9` of the daemon with a live lease: the next run reaps its VM and ends it as
    // `daemon_restart`, on its event stream too.
    common::wait_full(&mut daemon).await;
    let orphan = acquire(&client, None).await;
    let pid = check_vm_shown(&orphan, &state);
    daemon.kill_hard().await;
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    let view = client.lease(&orphan.id).await.unwrap();
    let event = Ends::open(&client, Some(0)).await.of(&orphan.id).await;
    assert_eq!(
        (view.state, view.end_reason),
        (LeaseState::Ended, Some(EndReason::DaemonRestart)),
        "{view:?}"
    );
    assert_eq!(event.reason, Some(EndReason::DaemonRestart), "{event:?}");
    assert!(qemu_under(&state).iter().all(|q| q.pid != pid), "the orphaned QEMU was reaped");

    daemon.stop(Duration::from_secs(60)).await.unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || qemu_under(&state).is_empty()).await,
        "no QEMU left under the state dir"
    );
}
