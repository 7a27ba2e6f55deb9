//! Waiting for an in-process pool to be full and quiet, and the first exec a benchmark times on a
//! fresh VM: what `bench vm` and `bench density` share.

use std::time::{Duration, Instant};

use firepit_pool::{Pool, Provider};

use crate::ToolError;

/// Waits until the pool's first shape holds at least `ready` ready VMs and fills none (no boot or
/// restore competing for the CPU), at most `within`; returns how long that took.
pub async fn wait_quiet<P: Provider>(
    pool: &Pool<P>,
    ready: usize,
    within: Duration,
) -> Result<Duration, ToolError> {
    let started = Instant::now();
    loop {
        let status = pool.status();
        if status.shapes.first().is_some_and(|s| s.ready >= ready && s.filling == 0) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(format!(
                "the pool did not hold {ready} ready VMs, none filling, within {within:?}: {status:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `true` in the VM through its agent; an error unless it exits 0.
pub async fn run_true(vm: &firepit::VmHandle) -> Result<(), ToolError> {
    let out = vm.exec(["true"]).await?;
    if out.success() { Ok(()) } else { Err(format!("`true` failed in the guest: {out:?}").into()) }
}
