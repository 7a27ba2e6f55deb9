//! The reaper: the one place VMs are destroyed.
//!
//! Anything that wants a VM gone (a lease's `Drop`, an eviction, shutdown) sends it down an
//! unbounded channel; sending never blocks and never needs a runtime, which is what makes
//! `PooledVm`'s `Drop` safe anywhere. The reaper destroys each VM in its own task (destroys run in
//! parallel, a batch per task), then frees its memory and wakes the refiller. It stops once the pool is closed and
//! nothing is alive; a VM sent after that is dropped in place and cleans up after itself.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::provider::Provider;
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
        // Take whatever else is queued too: one task destroys the batch concurrently.
        let mut batch = vec![retired];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        tokio::spawn(destroy_batch(Arc::clone(&shared), batch));
    }
    // Anything still queued was sent after the end: drop it in place (it cleans up after itself).
    rx.close();
    while let Ok(Retired { vm, memory_mb }) = rx.try_recv() {
        drop(vm);
        let mut st = shared.lock();
        shared.forget(&mut st, memory_mb);
    }
}

async fn destroy_batch<P: Provider>(shared: Arc<Shared<P>>, batch: Vec<Retired<P::Vm>>) {
    let mut destroys: FuturesUnordered<_> = batch
        .into_iter()
        .map(|Retired { vm, memory_mb }| {
            let provider = &shared.provider;
            async move {
                provider.destroy(vm).await;
                memory_mb
            }
        })
        .collect();
    while let Some(memory_mb) = destroys.next().await {
        let mut st = shared.lock();
        shared.forget(&mut st, memory_mb);
        drop(st);
        shared.refill_wake.notify_one();
    }
}
