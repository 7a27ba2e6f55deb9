//! Watching idle VMs die: one task awaits `PoolVm::exited` of every ready VM.
//!
//! A VM that dies while ready is evicted (reason `exited`) the moment its future resolves, so it is
//! never counted as depth nor handed out, and the refiller replaces it at once. The watch of a VM
//! ends when it leaves the bucket (its entry's `DropGuard` cancels it). One task with a
//! `FuturesUnordered` instead of a task per VM keeps the fill path cheap.
//!
//! This module knows nothing of the pool's state: the refiller sends it watch requests over a
//! channel, and the pool hands it what to do with a dead VM as a closure (evict it), so the
//! watcher sits below everything that uses it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::provider::PoolVm;
use crate::shape::ShapeKey;

type Died = Pin<Box<dyn Future<Output = Option<(Arc<ShapeKey>, String)>> + Send>>;

/// A watch request for the watcher task.
pub(crate) struct Watch(Died);

/// Starts watching `vm` (the request goes to the watcher task through `watches`); the returned
/// guard ends the watch when dropped.
pub(crate) fn watch_exit<V: PoolVm>(
    watches: &mpsc::UnboundedSender<Watch>,
    shape: &Arc<ShapeKey>,
    vm: &V,
) -> DropGuard {
    let token = CancellationToken::new();
    let guard = token.clone().drop_guard();
    let exited = vm.exited();
    let id = vm.id().to_owned();
    let shape = Arc::clone(shape);
    let died: Died = Box::pin(async move {
        tokio::select! {
            () = token.cancelled() => None,
            () = exited => Some((shape, id)),
        }
    });
    // If the watcher is gone (pool closing), there is nothing to watch for.
    let _ = watches.send(Watch(died));
    guard
}

/// The watcher task: collects watch requests from `rx` and calls `died(shape, vm id)` for every
/// watched VM that exits while still watched, until `stop` fires or every sender is gone.
pub(crate) async fn run(
    mut rx: mpsc::UnboundedReceiver<Watch>,
    stop: CancellationToken,
    died: impl Fn(&ShapeKey, &str),
) {
    let mut watches: FuturesUnordered<Died> = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(Watch(died)) => watches.push(died),
                None => break,
            },
            Some(done) = watches.next(), if !watches.is_empty() => {
                if let Some((shape, id)) = done {
                    died(&shape, &id);
                }
            }
        }
    }
}
