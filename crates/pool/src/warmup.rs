//! `build()`'s wait: returns once every shape has its low water ready, or fails.
//!
//! It never hangs: a shape whose creates fail `warmup_max_failures` times in a row fails the wait
//! with the provider's last error, and the whole wait is bounded by `warmup_timeout`. It waits on
//! the pool's `progress` notification (registered before each check, so no fill outcome between
//! the check and the wait is missed), never by polling.

use tokio::time::Instant;

use crate::error::PoolError;
use crate::provider::Provider;
use crate::shared::Shared;

/// Waits until every shape of `shared` is at its low water.
pub(crate) async fn warm_up<P: Provider>(shared: &Shared<P>) -> Result<(), PoolError> {
    let started = Instant::now();
    let deadline = started + shared.settings.warmup_timeout;
    loop {
        let progressed = shared.progress.notified();
        tokio::pin!(progressed);
        progressed.as_mut().enable();
        let mut slowest = None;
        {
            let st = shared.lock();
            for b in st.buckets.values() {
                if b.ready.len() + b.probing >= b.low_water() {
                    continue;
                }
                if b.consecutive_failures >= shared.settings.warmup_max_failures {
                    return Err(PoolError::WarmupFailed {
                        shape: (*b.key).clone(),
                        message: b.last_error.clone().unwrap_or_else(|| "unknown error".to_owned()),
                    });
                }
                slowest = Some(((*b.key).clone(), b.ready.len(), b.low_water()));
            }
        }
        let Some((shape, ready, low_water)) = slowest else { return Ok(()) };
        if tokio::time::timeout_at(deadline, progressed).await.is_err() {
            return Err(PoolError::WarmupTimeout { shape, waited: started.elapsed(), ready, low_water });
        }
    }
}
