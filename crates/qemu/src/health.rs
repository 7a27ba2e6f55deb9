//! The pool health check of QEMU VMs: the guest agent answers a ping.
//!
//! It lives above [`QemuVm`] (it pings through the VM's handle) and below the provider, whose
//! `probe` runs the same check on idle VMs that run; a VM resting in the pool (vCPUs stopped, see
//! [`crate::pause`]) is probed from the outside instead ([`probe_resting`]): its QEMU answers QMP
//! and reports it paused.

use std::future::Future;

use firepit_pool::Unhealthy;

use crate::vm::QemuVm;

/// Health check for `PoolBuilder::health_check`: the agent answers a ping within the provider's
/// `probe_timeout`. The future does not borrow the VM, so the function fits the pool's closure form
/// `Fn(&Vm) -> impl Future + 'static` as it is.
///
/// A VM that rested in the pool is woken by the check itself (`cont`, then the host's clock to
/// the agent), and a VM woken within the last second (the pool wakes a resting VM right before
/// its hand-out check) counts that wake-up's answer as its pong: either way one agent round trip.
///
/// ```no_run
/// # async fn demo(provider: firepit_qemu::QemuProvider, spec: firepit_qemu::VmSpec) -> Result<(), firepit_pool::PoolError> {
/// use firepit_pool::{Pool, ShapeKey};
/// let pool = Pool::builder(provider)
///     .shape(ShapeKey::new("small"), spec)
///     .health_check(firepit_qemu::agent_health_check)
///     .build()
///     .await?;
/// # drop(pool); Ok(()) }
/// ```
pub fn agent_health_check(vm: &QemuVm) -> impl Future<Output = Result<(), Unhealthy>> + Send + use<> {
    let answered = vm.waker.rest.take_fresh_answer();
    let waker = vm.waker.rest.is_resting().then(|| vm.waker());
    let guest = vm.guest().clone();
    async move {
        if answered {
            return Ok(());
        }
        if let Some(waker) = waker {
            match waker.wake().await {
                Ok(true) => {
                    waker.rest.take_fresh_answer();
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => return Err(Unhealthy::new(format!("waking the VM failed: {e}"))),
            }
        }
        guest.ping().await.map(drop).map_err(|e| Unhealthy::new(format!("agent ping failed: {e}")))
    }
}

/// The probe of a VM resting in the pool: its QEMU answers QMP within `timeout` and reports the
/// guest paused (a guest that panicked, shut down or runs again is not fit). The guest itself is
/// not woken.
pub(crate) async fn probe_resting(vm: &QemuVm, timeout: std::time::Duration) -> Result<(), Unhealthy> {
    if let Some(info) = vm.exit_info() {
        return Err(Unhealthy::new(format!("qemu exited ({info})")));
    }
    match tokio::time::timeout(timeout, vm.qmp.query_status()).await {
        Ok(Ok(status)) if !status.running && status.status == "paused" => Ok(()),
        Ok(Ok(status)) => Err(Unhealthy::new(format!("a resting VM is {:?}, not paused", status.status))),
        Ok(Err(e)) => Err(Unhealthy::new(format!("QMP query-status of a resting VM failed: {e}"))),
        Err(_) => Err(Unhealthy::new(format!("QMP did not answer within {timeout:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts_pool_closure_form<F, Fut>(_check: F)
    where
        F: Fn(&QemuVm) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Unhealthy>> + Send + 'static,
    {
    }

    #[test]
    fn agent_health_check_fits_the_pool_closure_form() {
        accepts_pool_closure_form(agent_health_check);
    }
}
