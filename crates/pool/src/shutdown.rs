//! Shutdown: stop, destroy, wait — bounded.
//!
//! `begin_close` (in `shared.rs`) is the synchronous half, also run by the last `Pool` handle's
//! `Drop`: it refuses new reserves, fails queued ones, stops the background tasks and sends every
//! ready VM to the reaper. `shutdown()` then waits, up to the shutdown budget, until nothing but
//! outstanding leases is alive (fills finished and destroyed, destroys done). Leases still out are
//! destroyed when dropped. Calling it again waits the same way; it never hangs past the budget.

use std::sync::Arc;

use crate::provider::Provider;
use crate::shared::Shared;

pub(crate) async fn shutdown<P: Provider>(shared: &Arc<Shared<P>>) {
    shared.begin_close();
    let settled = async {
        loop {
            let progressed = shared.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            {
                let st = shared.lock();
                if st.alive <= st.leased_total() {
                    return;
                }
            }
            progressed.await;
        }
    };
    if tokio::time::timeout(shared.settings.shutdown_budget, settled).await.is_err() {
        let st = shared.lock();
        tracing::warn!(
            alive = st.alive,
            leased = st.leased_total(),
            budget = ?shared.settings.shutdown_budget,
            "shutdown budget elapsed with VMs still being created or destroyed; they finish in the background"
        );
    }
}
