//! The reaper: the one place VMs are destroyed.
//!
//! Anything that wants a VM gone (a lease's `Drop`, an eviction, shutdown) sends it down an
//! unbounded channel; sending never blocks and never needs a runtime, which is what makes
//! `PooledVm`'s `Drop` safe anywhere. The reaper destroys each VM in its own task (destroys run in
//! parallel), then frees its memory and wakes the refiller. It stops once the pool is closed and
//! nothing is alive; a VM sent after that is dropped in place and cleans up after itself.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::Provider;
use crate::shared::{Retired, Shared};

pub(crate) async fn run<P: Provider>(
    shared: Arc<Shared<P>>,
    mut rx: mpsc::UnboundedReceiver<Retired<P::Vm>>,
) {
    let stop = shared.reaper_stop.clone();
    loop {
        let retired = tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(r) => r,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Retired { vm, memory_mb } = retired;
            shared.provider.destroy(vm).await;
            let mut st = shared.lock();
            shared.forget(&mut st, memory_mb);
            drop(st);
            shared.refill_wake.notify_one();
        });
    }
    // Anything still queued was sent after the end: drop it in place (it cleans up after itself).
    rx.close();
    while let Ok(Retired { vm, memory_mb }) = rx.try_recv() {
        drop(vm);
        let mut st = shared.lock();
        shared.forget(&mut st, memory_mb);
    }
}
