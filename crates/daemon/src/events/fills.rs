//! `shape.fill_failed` and `shape.fill_recovered`, from the backend's shape status.
//!
//! The pool counts every failed fill of a shape (`fill_failures`) and the failures in a row since
//! the last good one (`consecutive_failures`, with the last error); [`watch`] reads that status
//! every [`PERIOD`] and emits `shape.fill_failed` when the count grew (one event per look, with
//! the failures in a row and the last error) and `shape.fill_recovered` when a shape that was
//! failing made a VM again. Reading the status is a lock and a copy per shape: cheap enough to
//! poll, and it needs no hook inside the pool. An event is at most [`PERIOD`] late.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use firepit_api::EventKind;
use tokio_util::sync::CancellationToken;

use crate::backend::LeaseBackend;
use crate::events::EventBus;

/// How often the shapes are looked at.
pub const PERIOD: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    failures: u64,
    in_a_row: u64,
}

/// Emits fill events for `backend`'s shapes on `events` until `stop` fires.
pub async fn watch(backend: Arc<dyn LeaseBackend>, events: EventBus, stop: CancellationToken) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut first = true;
    loop {
        let mut now = HashMap::new();
        for shape in backend.status() {
            let current = Seen { failures: shape.fill_failures, in_a_row: shape.consecutive_failures };
            let before = seen.get(&shape.name).copied().unwrap_or_default();
            // At start, a shape already failing is news; one that failed long ago is not.
            let grew = current.failures > before.failures && (!first || current.in_a_row > 0);
            if grew {
                events.emit(EventKind::ShapeFillFailed, |event| {
                    event.shape = Some(shape.name.clone());
                    event.failures = Some(current.in_a_row.max(1));
                    event.detail = shape.last_error.clone();
                });
            }
            // Failing before (or in between two looks), making VMs now.
            if (before.in_a_row > 0 || grew) && current.in_a_row == 0 {
                events.emit(EventKind::ShapeFillRecovered, |event| {
                    event.shape = Some(shape.name.clone());
                    event.failures =
                        Some(before.in_a_row.max(current.failures.saturating_sub(before.failures)).max(1));
                });
            }
            now.insert(shape.name, current);
        }
        seen = now;
        first = false;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}
