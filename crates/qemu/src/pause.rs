//! Idle VMs rest: their vCPUs are stopped while they wait in the pool, and woken, with the guest's
//! clock set from the host's, as they are handed out.
//!
//! Why: an idle guest under TCG costs 2–8 % of a core (timer ticks, the agent's polling), so a few
//! dozen warm VMs saturate a small host long before its memory runs out. A stopped guest costs
//! nothing; QMP `stop` and `cont` answer in ≈0.6 and ≈0.3 ms (notes/qemu.md). A stopped guest's
//! clocks stop with it, so the wake-up sends the host's wall clock to the agent (`SetIdentity` with
//! only the clock), and that one request is also the proof that the guest answers: the hand-out
//! health check of a VM woken just before costs no extra round trip
//! ([`agent_health_check`](crate::agent_health_check) uses the answer).
//!
//! [`Rest`] is shared by a VM's handle and the futures it hands out; [`Waker`] is what a wake-up
//! needs, detached from the handle, so the pool can spawn it (`try_reserve` cannot await). Every
//! guest-facing operation wakes a resting VM first (waiting for a wake-up already under way), so
//! no user ever talks to a stopped guest: the VM's [`Guest`] passes a [`VmGate`] before each
//! request, and the handle's own operations (console, status) call the waker. While it rests, the
//! provider probes it through QMP and its process, never through the agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firepit_agent::IdentityRequest;
use firepit_guest::{Gate, Guest, GuestError, Wake};
use tokio::sync::watch;

use crate::error::QemuError;
use crate::exit::ExitInfo;
use crate::qmp::QmpClient;

/// How recent a wake-up's answer must be to stand in for the hand-out health check.
const ANSWER_FRESH_FOR: Duration = Duration::from_secs(1);

/// Whether a VM rests, and the wake-up's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Rest {
    resting: AtomicBool,
    /// When the last wake-up's clock request was answered, until a health check uses it.
    answered: Mutex<Option<Instant>>,
    /// Serializes wake-ups: an operation started while a (spawned) wake-up runs waits for it.
    waking: tokio::sync::Mutex<()>,
}

impl Rest {
    /// Whether the VM rests (stopped by [`pause`] and not woken since).
    pub(crate) fn is_resting(&self) -> bool {
        self.resting.load(Ordering::Acquire)
    }

    /// Takes the answer of a wake-up of the last second, if a health check has not used it yet.
    pub(crate) fn take_fresh_answer(&self) -> bool {
        let mut answered = self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        answered.take().is_some_and(|at| at.elapsed() < ANSWER_FRESH_FOR)
    }
}

/// Stops the VM's vCPUs (QMP `stop`) and marks it resting.
pub(crate) async fn pause(rest: &Rest, qmp: &QmpClient) -> Result<(), QemuError> {
    qmp.stop().await?;
    rest.resting.store(true, Ordering::Release);
    Ok(())
}

/// Everything a wake-up needs, without borrowing the VM.
#[derive(Debug, Clone)]
pub(crate) struct Waker {
    pub rest: Arc<Rest>,
    pub qmp: QmpClient,
    /// The VM's guest without its gate (the gate is what calls this), its request deadline the
    /// wake-up's.
    pub guest: Guest,
    /// Deadline of the whole wake-up (the provider's `probe_timeout`, as for the ping it replaces):
    /// a QEMU that stopped answering fails the hand-out check in that time, not QMP's own.
    pub timeout: Duration,
}

impl Waker {
    /// Wakes the VM if it rests: QMP `cont`, then the host's wall clock to the agent, whose answer
    /// shows the guest is alive. `Ok(true)` when this call woke it, `Ok(false)` when it was awake
    /// (or another wake-up finished first). On error the VM still counts as resting, so the next
    /// operation tries again (`cont` on a running VM is harmless).
    pub(crate) async fn wake(&self) -> Result<bool, QemuError> {
        if !self.rest.is_resting() {
            return Ok(false);
        }
        let after = self.timeout;
        match tokio::time::timeout(after, self.wake_now()).await {
            Ok(woke) => woke,
            Err(_) => Err(GuestError::Timeout { request: "wake-up", after }.into()),
        }
    }

    async fn wake_now(&self) -> Result<bool, QemuError> {
        let _one_at_a_time = self.rest.waking.lock().await;
        if !self.rest.is_resting() {
            return Ok(false);
        }
        self.qmp.cont().await?;
        let clock = IdentityRequest { unix_time_ns: Some(unix_time_ns()), ..IdentityRequest::default() };
        let applied = self.guest.set_identity(clock).await?;
        if !applied.clock_set {
            let response = format!("{applied:?}");
            return Err(GuestError::UnexpectedResponse { request: "set-identity", response }.into());
        }
        *self.rest.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        self.rest.resting.store(false, Ordering::Release);
        Ok(true)
    }
}

/// What a QEMU VM's [`Guest`] passes before each request: nothing answers once QEMU exited, and a
/// resting VM is woken first.
#[derive(Debug)]
pub(crate) struct VmGate {
    pub exit: watch::Receiver<Option<ExitInfo>>,
    pub waker: Waker,
}

impl Gate for VmGate {
    fn check(&self) -> Result<Option<Wake>, GuestError> {
        if self.exit.borrow().is_some() {
            return Err(GuestError::Closed);
        }
        if !self.waker.rest.is_resting() {
            return Ok(None);
        }
        let waker = self.waker.clone();
        Ok(Some(Box::pin(async move {
            match waker.wake().await {
                Ok(_) => Ok(()),
                Err(QemuError::Guest(error)) => Err(error),
                Err(other) => Err(GuestError::Wake(Box::new(other))),
            }
        })))
    }
}

/// The host's wall clock, nanoseconds since the Unix epoch.
pub(crate) fn unix_time_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
