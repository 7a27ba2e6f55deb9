//! A lease's end is final whatever its clients do (issue 25, item 1), on the real daemon and real
//! VMs: a client that stops reading an exec stream does not keep the VM. A release destroys the
//! QEMU within about a second, the stream ends with `lease_ended`, `/v1/pools` shows no leased
//! VM, and the ended lease says `released`; a SIGTERM under another stalled stream destroys that
//! VM too and the daemon exits. The same over the fake backend, with more kinds of stalled
//! requests: `crates/daemon/tests/daemon_lease_end.rs`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, EndReason, ErrorCode, LeaseState, SpawnBody, StreamEvent};
use firepit_client::{Client, EventStream};
use firepit_tools::procfs::qemu_under;

/// Acquires a lease of `small` and starts `yes` in it, streamed, that nobody reads; waits until
/// the stream has stalled. Returns the lease id, its VM's runtime dir and the stream.
async fn stalled_stream(client: &Client, state: &Path) -> (String, std::path::PathBuf, EventStream) {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 60_000, ttl_ms: None, snapshot: None };
    let lease = client.acquire(&request, None).await.unwrap();
    // Its QEMU names `<state>/vms/<vm_id>/` on its command line.
    let vm_dir = state.join("vms").join(&lease.vm_id).join("");
    assert_eq!(qemu_under(&vm_dir).len(), 1, "one QEMU runs the leased VM");
    let stream = client.exec_stream(&lease.lease_id, &SpawnBody::new(["yes"])).await.unwrap();
    // `yes` fills the socket and the daemon's buffers in well under this; then its sends block.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (lease.lease_id, vm_dir, stream)
}

/// Reads what the stream buffered up to its end; its last event.
async fn last_event(stream: &mut EventStream) -> Option<StreamEvent> {
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut last = None;
        while let Ok(Some(event)) = stream.next_event().await {
            last = Some(event);
        }
        last
    })
    .await
    .expect("the stream ends once its lease does")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_exec_stream_does_not_keep_a_released_or_stopped_lease_vm() {
    let (dir, settings) = common::small_shape_settings("lease-end");
    let state = settings.state_dir.clone();
    let mut daemon = common::daemon(dir, &settings);
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;
    let client = daemon.client();

    let (id, vm_dir, mut stream) = stalled_stream(&client, &state).await;
    let released = Instant::now();
    client.release(&id).await.unwrap();
    let answered = released.elapsed();
    assert!(
        common::eventually(Duration::from_secs(2), || qemu_under(&vm_dir).is_empty()).await,
        "the released lease's QEMU is gone within ~1 s, stream or not"
    );
    let gone = released.elapsed();
    let pools = client.pools().await.unwrap();
    let small = pools.shapes.iter().find(|s| s.name == "small").unwrap();
    assert_eq!((pools.leases, small.leased), (0, 0), "the leased gauge counts live leases only");
    let last = last_event(&mut stream).await;
    assert!(
        matches!(last, Some(StreamEvent::Error { error: ErrorCode::LeaseEnded, .. })),
        "the stream ends with lease_ended: {last:?}"
    );
    let view = client.lease(&id).await.unwrap();
    assert_eq!((view.state, view.end_reason), (LeaseState::Ended, Some(EndReason::Released)));
    println!("release answered in {answered:?}, QEMU gone after {gone:?}");

    // SIGTERM under another stalled stream: the daemon destroys that VM and exits.
    common::wait_full(&mut daemon).await;
    let (_id, vm_dir, _stalled) = stalled_stream(&client, &state).await;
    let stopping = Instant::now();
    daemon.stop(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_tail(30)));
    assert!(qemu_under(&vm_dir).is_empty(), "the stopped daemon's leased QEMU is gone");
    assert!(
        common::eventually(Duration::from_secs(10), || qemu_under(&state).is_empty()).await,
        "no QEMU left under the state dir"
    );
    println!("SIGTERM with a stalled stream: the daemon exited in {:?}", stopping.elapsed());
}
