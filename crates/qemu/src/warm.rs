//! Warming a fresh VM during its fill, so the user's first command is as fast as their second.
//!
//! Why: under TCG every QEMU process translates the guest's code afresh, and a snapshot clone
//! copies each template page it writes on first touch. A fresh VM's first command paid for both:
//! 180–290 ms for `uname -r` in the demo against ≈10 ms for the next one. One trivial command run
//! through the same agent exec path while the VM is still being filled moves that cost into the
//! pool, off the user's clock: the guest kernel's fork, exec, pipe and exit paths and the agent's
//! exec code are translated (and the pages they write copied) before the VM is handed out.
//!
//! What runs: the agent executes *itself* ([`firepit_agent::WARM_UP_ARGV`]: `/proc/self/exe
//! warm-up`), through the exec path every command takes. So the warm-up needs nothing from the
//! VM's root: a root disk without `true` (a bare busybox with a handful of applets, a distroless
//! image) warms up like firepit's own image. Where the root is firepit's initramfs, the agent then
//! becomes its busybox `true`, so busybox's code is translated too, as the old `true` warm-up did
//! (measured here: the first `true` after the warm-up 24–27 ms p50 either way, ≈250 ms without;
//! the warm-up itself takes ≈100 ms more of the fill than `true` alone did).
//!
//! A shape may add a command of its own image ([`ShapeSpec::warm_up_argv`](firepit_shape::ShapeSpec),
//! e.g. `bash -lc true` where every user command starts as a login shell, as E2B's SDKs start
//! them): it runs after the agent's warm-up, with the image's exec defaults, so the programs it
//! runs are translated before the user's first command too.
//!
//! A warm-up that fails does not fail the fill. When the agent answers with an error or the
//! program fails (an image whose exec defaults name a missing working directory, say), the VM is
//! handed out as it is — its first command pays the translation — with a warning in the log and
//! one more in [`QemuProvider::warm_up_failures`](crate::QemuProvider::warm_up_failures) for its
//! shape (the daemon's `firepit_vm_warm_up_failures_total{shape}`). An agent that does not answer
//! at all is another matter: that VM is unfit, and its create fails like any whose agent is silent.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use firepit_agent::ExecRequest;
use firepit_pool::ShapeKey;

use firepit_guest::GuestError;

use crate::error::QemuError;
use crate::vm::QemuVm;

/// The guest's part of the warm-up runs at most this long (the host adds its agent timeout).
const WARM_UP_TIMEOUT_MS: u64 = 10_000;

/// Failed warm-ups per shape, since the provider started (counters only grow).
#[derive(Debug, Default)]
pub(crate) struct WarmUpFailures(Mutex<BTreeMap<ShapeKey, u64>>);

impl WarmUpFailures {
    fn count(&self, shape: &ShapeKey) {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry(shape.clone()).or_default() += 1;
    }

    /// Every shape that has had a failed warm-up, with how many.
    pub(crate) fn snapshot(&self) -> Vec<(ShapeKey, u64)> {
        let counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.iter().map(|(shape, n)| (shape.clone(), *n)).collect()
    }
}

/// Warms `vm` (of `shape`) up. `Err` only when the agent did not answer (the VM is unfit); a
/// warm-up the guest failed is logged and counted in `failures`, and the VM is fine to hand out.
pub(crate) async fn warm_up(
    vm: &QemuVm,
    shape: &ShapeKey,
    shape_argv: &[String],
    failures: &WarmUpFailures,
) -> Result<(), QemuError> {
    let own = firepit_agent::WARM_UP_ARGV.iter().map(|arg| (*arg).to_owned()).collect();
    if run(vm, shape, own, "the agent's warm-up", failures).await? && !shape_argv.is_empty() {
        run(vm, shape, shape_argv.to_vec(), "the shape's warm_up_argv", failures).await?;
    }
    Ok(())
}

/// Runs one warm-up command (`what` names it in the log): `Ok(true)` when it succeeded,
/// `Ok(false)` when the guest failed it (logged and counted).
async fn run(
    vm: &QemuVm,
    shape: &ShapeKey,
    argv: Vec<String>,
    what: &str,
    failures: &WarmUpFailures,
) -> Result<bool, QemuError> {
    let started = Instant::now();
    let request = ExecRequest { argv, timeout_ms: WARM_UP_TIMEOUT_MS, ..Default::default() };
    let why = match vm.exec_request(request).await {
        Ok(out) if out.success() => {
            tracing::debug!(vm = %vm.id(), took = ?started.elapsed(), "{what} ran");
            return Ok(true);
        }
        Ok(out) => format!(
            "{what} exited with {:?} (signal {:?}): {}",
            out.exit_code,
            out.signal,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e @ (GuestError::Remote { .. } | GuestError::Failed { .. })) => e.to_string(),
        Err(e) => return Err(e.into()),
    };
    failures.count(shape);
    tracing::warn!(
        vm = %vm.id(),
        shape = %shape,
        took = ?started.elapsed(),
        "warm-up failed: {why}; the VM is handed out anyway (its first command will be slower)"
    );
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_shape() {
        let failures = WarmUpFailures::default();
        let (a, b) = (ShapeKey::new("a"), ShapeKey::new("b"));
        failures.count(&a);
        failures.count(&b);
        failures.count(&a);
        assert_eq!(failures.snapshot(), [(a, 2), (b, 1)]);
    }
}
