//! A running lease's VM, watched: when its QEMU exits on its own (a crash, a guest panic, a kill
//! from outside), the lease ends as `vm_exited` with how it exited; when its guest agent misses
//! [`HEALTH_MISSES`] pings in a row (`leases.health_check_secs` apart), it ends as
//! `health_check_failed`. The watch belongs to one run of the lease: a pause or the lease's end
//! stops it, a resume starts a new one.

use std::sync::Arc;
use std::time::Duration;

use firepit_api::EndReason;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{BoxFuture, VmExit};
use crate::leases::lease::Lease;

/// Failed pings in a row that end a lease.
pub const HEALTH_MISSES: u32 = 3;

/// Ends a lease (the table's `end`, as a closure: the watch sits below the table).
pub(crate) type EndLease =
    Arc<dyn Fn(Arc<Lease>, EndReason, Option<String>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Watches `lease`'s VM for this run (`run`): `exited` is the VM's exit, `interval` the health
/// check's period (zero: none).
pub(crate) fn start(
    lease: Arc<Lease>,
    exited: BoxFuture<'static, VmExit>,
    run: CancellationToken,
    interval: Duration,
    end: EndLease,
) {
    let span = lease.span.clone();
    tokio::spawn(
        async move {
            let health = unhealthy(&lease, interval);
            let (reason, detail) = tokio::select! {
                biased;
                () = run.cancelled() => return,
                exit = exited => (EndReason::VmExited, exit.detail),
                detail = health => (EndReason::HealthCheckFailed, detail),
            };
            // The run may have stopped (a pause stops QEMU) while we woke up: then it is no exit.
            if run.is_cancelled() {
                return;
            }
            tracing::warn!(reason = reason.as_str(), %detail, "the lease's VM is gone; ending the lease");
            end(lease, reason, Some(detail)).await;
        }
        .instrument(span),
    );
}

/// Resolves when the VM missed [`HEALTH_MISSES`] pings in a row (never with a zero interval),
/// with what the last miss said.
async fn unhealthy(lease: &Arc<Lease>, interval: Duration) -> String {
    if interval.is_zero() {
        return std::future::pending().await;
    }
    let mut misses = 0;
    loop {
        tokio::time::sleep(interval).await;
        match lease.on_vm(|vm| Box::pin(async move { vm.guest().ping().await })).await {
            Ok(Ok(_pong)) => misses = 0,
            Ok(Err(error)) => {
                misses += 1;
                tracing::debug!(misses, %error, "health check missed");
                if misses >= HEALTH_MISSES {
                    return format!(
                        "the guest agent missed {misses} pings in a row, {} ms apart; the last: {error}",
                        interval.as_millis()
                    );
                }
            }
            // The run stopped: the select above sees it.
            Err(_) => return std::future::pending().await,
        }
    }
}
