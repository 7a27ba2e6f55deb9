//! The pool health check of QEMU VMs: the guest agent answers a ping.
//!
//! It lives above [`QemuVm`] (it pings through the VM's handle) and below the provider, whose
//! `probe` runs the same check on idle VMs.

use std::future::Future;

use firepit_pool::Unhealthy;

use crate::vm::QemuVm;

/// Health check for `PoolBuilder::health_check`: the agent answers a ping within the provider's
/// `probe_timeout`. The future does not borrow the VM, so the function fits the pool's closure form
/// `Fn(&Vm) -> impl Future + 'static` as it is.
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
    let ping = vm.ping_detached();
    async move { ping.await.map(drop).map_err(|e| Unhealthy::new(format!("agent ping failed: {e}"))) }
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
