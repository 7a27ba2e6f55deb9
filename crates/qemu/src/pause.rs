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
//! guest-facing operation of [`QemuVm`](crate::QemuVm) wakes a resting VM first (waiting for a
//! wake-up already under way), so no user ever talks to a stopped guest. While it rests, the
//! provider probes it through QMP and its process, never through the agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firepit_agent::{IdentityRequest, Request, Response};

use crate::agent::AgentClient;
use crate::error::{AgentError, QemuError};
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
    pub agent: Arc<AgentClient>,
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
            Err(_) => Err(AgentError::Timeout { request: "wake-up", after }.into()),
        }
    }

    async fn wake_now(&self) -> Result<bool, QemuError> {
        let _one_at_a_time = self.rest.waking.lock().await;
        if !self.rest.is_resting() {
            return Ok(false);
        }
        self.qmp.cont().await?;
        let clock = IdentityRequest { unix_time_ns: Some(unix_time_ns()), ..IdentityRequest::default() };
        match self.agent.request(Request::SetIdentity(clock), self.timeout).await? {
            Response::Identity(applied) if applied.clock_set => {}
            Response::Error { message } => {
                return Err(AgentError::Remote { request: "set-identity", message }.into());
            }
            other => {
                let response = format!("{other:?}");
                return Err(AgentError::UnexpectedResponse { request: "set-identity", response }.into());
            }
        }
        *self.rest.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        self.rest.resting.store(false, Ordering::Release);
        Ok(true)
    }
}

/// The host's wall clock, nanoseconds since the Unix epoch.
fn unix_time_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
