//! Warming a fresh VM during its fill, so the user's first command is as fast as their second.
//!
//! Why: under TCG every QEMU process translates the guest's code afresh, and a snapshot clone
//! copies each template page it writes on first touch. A fresh VM's first command paid for both:
//! 180–290 ms for `uname -r` in the demo against ≈10 ms for the next one. One trivial command run
//! through the same agent exec path while the VM is still being filled moves that cost into the
//! pool, off the user's clock: the guest kernel's fork, exec and exit paths, the agent's exec code
//! and busybox are translated (and the pages they write copied) before the VM is handed out.

use std::time::{Duration, Instant};

use firepit_agent::ExecRequest;

use crate::error::QemuError;
use crate::vm::QemuVm;

/// The guest's part of the warm-up runs at most this long (the host adds its agent timeout).
const WARM_UP_TIMEOUT_MS: u64 = 10_000;

/// Runs `true` in the guest through the agent's exec path; returns how long it took. An agent
/// that does not answer is an error (the VM is not fit); a failing `true` only a warning.
pub(crate) async fn warm_up(vm: &QemuVm) -> Result<Duration, QemuError> {
    let started = Instant::now();
    let request =
        ExecRequest { argv: vec!["true".into()], timeout_ms: WARM_UP_TIMEOUT_MS, ..Default::default() };
    let out = vm.exec_request(request).await?;
    if !out.success() {
        tracing::warn!(vm = %vm.id(), ?out, "the warm-up command failed; the VM is handed out anyway");
    }
    Ok(started.elapsed())
}
