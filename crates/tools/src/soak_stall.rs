//! The soak's stalled-client fault (issue 25): a client acquires a lease, starts an exec stream
//! (`yes`), a download of a file larger than every buffer on the way, and a terminal running
//! `yes`, reads none of them, and then releases the lease or lets its 3 s TTL run out.
//!
//! What must hold, whatever the client does: the lease's QEMU is gone within
//! [`VM_GONE_WITHIN`] of the release (or of the TTL), its ownership record with it; the stalled
//! exec stream ends (with `lease_ended`) instead of streaming on; and the pool's `leased` gauge
//! equals the daemon's live leases again (checked on one `/v1/pools` answer; the other clients'
//! cycles can make them differ for an instant, so it is polled for a few seconds). A miss is a
//! failure no fault explains (unless a daemon restart overlapped it), so the soak does not pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use firepit_api::{AcquireRequest, ExecBody, SpawnBody};
use firepit_client::{Download, EventStream, PtyOptions, PtySession};
use tokio::time::Instant;

use crate::procfs::qemu_under;
use crate::soak_clients::{Sent, SoakShared, send};
use crate::soak_daemon::SHAPE;
use crate::soak_leaks::owned_vms;
use crate::soak_report::{Failure, FaultKind};

/// The stalled lease's QEMU and record must be gone this long after its end.
const VM_GONE_WITHIN: Duration = Duration::from_secs(5);
/// TTL of a stalled lease left to expire.
const STALLED_TTL_MS: u64 = 3_000;
/// The download's file: larger than the socket buffers, the daemon's and the client's.
const BIG_FILE: &str = "/tmp/soak-stall.bin";

/// What the stalled client holds and never reads.
struct Stalled {
    stream: Option<EventStream>,
    _download: Option<Download>,
    _pty: Option<PtySession>,
}

/// Runs one stalled-client fault; `expire`: let the TTL end the lease instead of a release.
pub async fn stalled_client(shared: Arc<SoakShared>, state_dir: PathBuf, expire: bool) {
    let log = &shared.log;
    let began = Instant::now();
    let fail = |what: &'static str, message: String, vm_id: Option<String>| {
        log.failed(Failure {
            what,
            message,
            cycle_start: began,
            start: began,
            end: Instant::now(),
            vm_id,
            after_own_drop: false,
        });
    };
    let ttl_ms = expire.then_some(STALLED_TTL_MS);
    let request = AcquireRequest { shape: SHAPE.into(), wait_ms: 90_000, ttl_ms, snapshot: None };
    let lease = match send(log, None, shared.client.acquire(&request, None)).await {
        Sent::Ok(lease) => lease,
        // No VM for it now (the pool is under chaos too): nothing was injected.
        Sent::Failed(_) | Sent::Hung | Sent::Aborted => return,
    };
    let vm_id = lease.vm_id.clone();
    shared.abandoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(vm_id.clone());
    log.fault(FaultKind::StalledClient, Some(vm_id.clone()));
    let vm_dir = state_dir.join("vms").join(&vm_id).join("");
    let stalled = stall(&shared, &lease.lease_id).await;
    let Some(mut stalled) = stalled else { return }; // the lease ended under another fault
    tokio::time::sleep(Duration::from_secs(2)).await; // every buffer fills; sends block
    let ended_at = if expire {
        let expires = Duration::from_millis(STALLED_TTL_MS);
        tokio::time::sleep(expires.saturating_sub(began.elapsed())).await;
        Instant::now()
    } else {
        // A release that fails (404: another fault ended it first) is fine: the checks still hold.
        let _released = send(log, None, shared.client.release(&lease.lease_id)).await;
        Instant::now()
    };
    let vm_gone =
        || qemu_under(&vm_dir).is_empty() && !owned_vms(&state_dir).iter().any(|o| o.vm_id == vm_id);
    while !vm_gone() {
        if ended_at.elapsed() > VM_GONE_WITHIN {
            let how = if expire { "its TTL ran out" } else { "it was released" };
            let message = format!("a stalled client's lease ended ({how}) but its VM still runs");
            return fail("stalled client", message, Some(vm_id));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(stream) = stalled.stream.as_mut()
        && !ends(stream).await
    {
        fail(
            "stalled client",
            "the stalled exec stream went on after its lease ended".into(),
            Some(vm_id.clone()),
        );
    }
    drop(stalled);
    if !gauge_matches_leases(&shared).await {
        fail("stalled client", "the pool's leased gauge stayed above the live leases".into(), Some(vm_id));
    }
}

/// Writes the big file and opens the three requests nobody will read; `None` when the lease is
/// gone already (another fault ended it).
async fn stall(shared: &SoakShared, lease_id: &str) -> Option<Stalled> {
    let client = &shared.client;
    let log = &shared.log;
    let write = ExecBody::new(["dd", "if=/dev/zero", &format!("of={BIG_FILE}"), "bs=1M", "count=24"]);
    if !matches!(send(log, None, client.exec(lease_id, &write)).await, Sent::Ok(_)) {
        return None;
    }
    let stream = match send(log, None, client.exec_stream(lease_id, &SpawnBody::new(["yes"]))).await {
        Sent::Ok(stream) => Some(stream),
        _ => None,
    };
    let download = match send(log, None, client.read_file(lease_id, BIG_FILE)).await {
        Sent::Ok(download) => Some(download),
        _ => None,
    };
    let options = PtyOptions { argv: vec!["yes".into()], ..PtyOptions::default() };
    let pty = match send(log, None, client.pty(lease_id, &options)).await {
        Sent::Ok(pty) => Some(pty),
        _ => None,
    };
    Some(Stalled { stream, _download: download, _pty: pty })
}

/// Whether the stream, read from now on, ends within 30 s (`yes` never ends on its own).
async fn ends(stream: &mut EventStream) -> bool {
    let drained = async { while let Ok(Some(_event)) = stream.next_event().await {} };
    tokio::time::timeout(Duration::from_secs(30), drained).await.is_ok()
}

/// Whether one `/v1/pools` answer within 10 s has the pool's `leased` equal to the live leases.
async fn gauge_matches_leases(shared: &SoakShared) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(pools) = shared.client.pools().await {
            let leased: usize = pools.shapes.iter().map(|s| s.leased).sum();
            if leased == pools.leases {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
