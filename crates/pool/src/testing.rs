//! An in-memory [`Provider`] with fault injection, for the engine's tests and benchmarks.
//!
//! VMs are plain values; "booting" is a `tokio::time::sleep` of the configured fill latency (so
//! paused-time tests are exact). Faults: a failure rate and scripted failures of `create`, failing
//! health checks, probes and resumes, and "VM dies" (`kill`) which resolves the VM's
//! [`PoolVm::exited`](crate::PoolVm::exited). With [`FaultPlan::pause`] idle VMs rest
//! ([`Provider::pause`]); a resting VM fails its health check, so a test sees a VM handed out or
//! checked without its wake-up.
//! The provider counts what matters to leak tests: VMs alive, creates, destroys, and VMs dropped
//! without `destroy`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), firepit_pool::PoolError> {
//! use std::time::Duration;
//! use firepit_pool::{Pool, ShapeKey, testing::{MemoryProvider, MemorySpec, MemoryVm}};
//! let provider = MemoryProvider::new();
//! let pool = Pool::builder(provider.clone())
//!     .shape(ShapeKey::new("small"), MemorySpec::new(64))
//!     .health_check(|vm: &MemoryVm| vm.health())
//!     .build()
//!     .await?;
//! provider.fail_next_health_checks(1);    // the next check fails: that VM is destroyed, not handed out
//! let vm = pool.reserve().await?;
//! assert_eq!(pool.metrics().shapes[0].validation_failures, 1);
//! # drop(vm); pool.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

mod vm;

pub use vm::MemoryVm;

use crate::memory::MemoryAccounting;
use crate::provider::{Provider, Unhealthy};
use crate::shape::ShapeKey;

/// What a [`MemoryProvider`] VM of a shape looks like: only its memory, which the pool charges
/// against its budget (unless the [`FaultPlan`] says otherwise).
///
/// ```
/// use firepit_pool::testing::MemorySpec;
/// assert_eq!(MemorySpec::new(256).memory_mb, 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySpec {
    /// Guest memory per VM, MiB.
    pub memory_mb: u64,
}

impl MemorySpec {
    /// A spec of `memory_mb` MiB per VM.
    pub fn new(memory_mb: u64) -> Self {
        Self { memory_mb }
    }
}

/// Faults and timings of a [`MemoryProvider`].
///
/// ```
/// use std::time::Duration;
/// use firepit_pool::testing::FaultPlan;
/// let plan = FaultPlan { fill_latency: Duration::from_millis(5), ..FaultPlan::default() };
/// assert_eq!(plan.failure_rate, 0.0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// How long `create` takes.
    pub fill_latency: Duration,
    /// How long `destroy` takes.
    pub destroy_latency: Duration,
    /// Probability that a `create` fails.
    pub failure_rate: f64,
    /// The next N creates fail.
    pub fail_next: u32,
    /// The next N health checks ([`MemoryVm::health`]) fail.
    pub fail_health_next: u32,
    /// Every health check fails.
    pub always_unhealthy: bool,
    /// Every probe fails.
    pub probes_fail: bool,
    /// What new VMs report as [`PoolVm::fill_kind`](crate::PoolVm::fill_kind) (e.g. `Some("snapshot")`; default `None`).
    pub fill_kind: Option<&'static str>,
    /// What new VMs are charged ([`MemoryAccounting::charge_mb`]; default `None`: the spec's
    /// memory).
    pub memory_charge_mb: Option<u64>,
    /// What the provider answers to [`MemoryAccounting::estimate_mb`] (default `None`: the spec's).
    pub memory_estimate_mb: Option<u64>,
    /// What the provider answers to [`MemoryAccounting::shared_mb`].
    pub shared_memory_mb: u64,
    /// VMs rest while idle: [`Provider::pause`] pauses them (default `false`: it declines).
    pub pause: bool,
    /// The next N [`Provider::resume`] calls fail.
    pub fail_next_resumes: u32,
}

/// The error of a failed in-memory `create`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("injected create failure #{0}")]
pub struct InjectedFailure(pub u64);

#[derive(Default)]
struct Inner {
    plan: Mutex<FaultPlan>,
    alive: Mutex<HashMap<String, CancellationToken>>,
    next_id: AtomicU64,
    create_calls: AtomicU64,
    created: AtomicU64,
    destroyed: AtomicU64,
    dropped_undestroyed: AtomicU64,
    health_checks: AtomicU64,
    /// VMs alive and paused right now.
    resting: AtomicU64,
    pauses: AtomicU64,
    resumes: AtomicU64,
    unregistered: Mutex<Vec<ShapeKey>>,
}

impl Inner {
    fn plan(&self) -> std::sync::MutexGuard<'_, FaultPlan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn alive(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.alive.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// In-memory provider; clones share state, so a test keeps one clone to inject faults and count.
///
/// ```
/// use firepit_pool::testing::MemoryProvider;
/// let provider = MemoryProvider::new();
/// provider.fail_next_creates(2);
/// assert_eq!(provider.alive(), 0);
/// ```
#[derive(Clone, Default)]
pub struct MemoryProvider {
    inner: Arc<Inner>,
}

impl MemoryProvider {
    /// A provider with instant, always-successful creates.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider with the given faults.
    pub fn with_plan(plan: FaultPlan) -> Self {
        let p = Self::new();
        *p.inner.plan() = plan;
        p
    }

    /// Changes the faults.
    pub fn update_plan(&self, f: impl FnOnce(&mut FaultPlan)) {
        f(&mut self.inner.plan());
    }

    /// Sets how long `create` takes.
    pub fn set_fill_latency(&self, latency: Duration) {
        self.update_plan(|p| p.fill_latency = latency);
    }

    /// Sets the probability that a `create` fails.
    pub fn set_failure_rate(&self, rate: f64) {
        self.update_plan(|p| p.failure_rate = rate);
    }

    /// The next `n` creates fail.
    pub fn fail_next_creates(&self, n: u32) {
        self.update_plan(|p| p.fail_next = n);
    }

    /// The next `n` health checks fail.
    pub fn fail_next_health_checks(&self, n: u32) {
        self.update_plan(|p| p.fail_health_next = n);
    }

    /// The next `n` resumes fail.
    pub fn fail_next_resumes(&self, n: u32) {
        self.update_plan(|p| p.fail_next_resumes = n);
    }

    /// VMs alive and paused ([`Provider::pause`]) right now.
    pub fn paused(&self) -> u64 {
        self.inner.resting.load(Ordering::SeqCst)
    }

    /// Calls to [`Provider::pause`] that paused a VM.
    pub fn pauses(&self) -> u64 {
        self.inner.pauses.load(Ordering::SeqCst)
    }

    /// Calls to [`Provider::resume`], failed ones included.
    pub fn resumes(&self) -> u64 {
        self.inner.resumes.load(Ordering::SeqCst)
    }

    /// Every probe fails (or not).
    pub fn set_probes_fail(&self, fail: bool) {
        self.update_plan(|p| p.probes_fail = fail);
    }

    /// Kills VM `id` ("the VM died"): its `exited()` resolves. `false` if no such VM is alive.
    pub fn kill(&self, id: &str) -> bool {
        match self.inner.alive().get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Ids of the VMs alive, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.alive().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// VMs alive (created, neither destroyed nor dropped).
    pub fn alive(&self) -> usize {
        self.inner.alive().len()
    }

    /// Calls to `create`, failed ones included.
    pub fn create_calls(&self) -> u64 {
        self.inner.create_calls.load(Ordering::SeqCst)
    }

    /// Successful creates.
    pub fn created(&self) -> u64 {
        self.inner.created.load(Ordering::SeqCst)
    }

    /// Calls to `destroy`.
    pub fn destroyed(&self) -> u64 {
        self.inner.destroyed.load(Ordering::SeqCst)
    }

    /// VMs dropped without `destroy` (they cleaned up after themselves).
    pub fn dropped_without_destroy(&self) -> u64 {
        self.inner.dropped_undestroyed.load(Ordering::SeqCst)
    }

    /// Health checks run.
    pub fn health_checks(&self) -> u64 {
        self.inner.health_checks.load(Ordering::SeqCst)
    }

    /// Shapes the pool told the provider it unregistered ([`Provider::shape_unregistered`]), in order.
    pub fn unregistered_shapes(&self) -> Vec<ShapeKey> {
        self.inner.unregistered.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Provider for MemoryProvider {
    type Vm = MemoryVm;
    type Spec = MemorySpec;
    type Error = InjectedFailure;

    async fn create(&self, shape: &ShapeKey, spec: &MemorySpec) -> Result<MemoryVm, InjectedFailure> {
        let n = self.inner.create_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let (latency, fail, fill_kind, memory_charge_mb) = {
            let mut plan = self.inner.plan();
            let fail = if plan.fail_next > 0 {
                plan.fail_next -= 1;
                true
            } else {
                plan.failure_rate > 0.0 && rand::random::<f64>() < plan.failure_rate
            };
            (plan.fill_latency, fail, plan.fill_kind, plan.memory_charge_mb)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if fail {
            return Err(InjectedFailure(n));
        }
        let id = format!("mem-{}", self.inner.next_id.fetch_add(1, Ordering::SeqCst) + 1);
        let died = CancellationToken::new();
        self.inner.alive().insert(id.clone(), died.clone());
        self.inner.created.fetch_add(1, Ordering::SeqCst);
        Ok(MemoryVm {
            id,
            shape: shape.clone(),
            spec: *spec,
            died,
            paused: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            destroyed: false,
            fill_kind,
            memory_charge_mb,
            inner: Arc::clone(&self.inner),
        })
    }

    async fn probe(&self, vm: &MemoryVm) -> Result<(), Unhealthy> {
        if vm.died.is_cancelled() {
            return Err(Unhealthy::new(format!("{} is dead", vm.id)));
        }
        if self.inner.plan().probes_fail {
            return Err(Unhealthy::new(format!("{}: injected probe failure", vm.id)));
        }
        Ok(())
    }

    async fn pause(&self, vm: &MemoryVm) -> Result<bool, Unhealthy> {
        if !self.inner.plan().pause {
            return Ok(false);
        }
        if !vm.paused.swap(true, Ordering::SeqCst) {
            self.inner.resting.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.pauses.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    fn resume(
        &self,
        vm: &MemoryVm,
    ) -> impl std::future::Future<Output = Result<(), Unhealthy>> + Send + 'static {
        let (inner, paused, id) = (Arc::clone(&self.inner), Arc::clone(&vm.paused), vm.id.clone());
        async move {
            inner.resumes.fetch_add(1, Ordering::SeqCst);
            {
                let mut plan = inner.plan();
                if plan.fail_next_resumes > 0 {
                    plan.fail_next_resumes -= 1;
                    return Err(Unhealthy::new(format!("{id}: injected resume failure")));
                }
            }
            if paused.swap(false, Ordering::SeqCst) {
                inner.resting.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    async fn destroy(&self, mut vm: MemoryVm) {
        let latency = self.inner.plan().destroy_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        vm.destroyed = true;
        self.inner.alive().remove(&vm.id);
        self.inner.destroyed.fetch_add(1, Ordering::SeqCst);
    }

    fn shape_unregistered(&self, shape: &ShapeKey) {
        self.inner.unregistered.lock().unwrap_or_else(PoisonError::into_inner).push(shape.clone());
    }

    fn memory(&self) -> &dyn MemoryAccounting<MemorySpec, MemoryVm> {
        self
    }
}

/// Charges what the [`FaultPlan`] says, else the spec's memory.
impl MemoryAccounting<MemorySpec, MemoryVm> for MemoryProvider {
    fn full_mb(&self, spec: &MemorySpec) -> u64 {
        spec.memory_mb
    }

    fn estimate_mb(&self, _shape: &ShapeKey, spec: &MemorySpec) -> u64 {
        self.inner.plan().memory_estimate_mb.unwrap_or(spec.memory_mb)
    }

    fn charge_mb(&self, _shape: &ShapeKey, spec: &MemorySpec, vm: &MemoryVm) -> u64 {
        vm.memory_charge_mb.unwrap_or(spec.memory_mb)
    }

    fn shared_mb(&self) -> u64 {
        self.inner.plan().shared_memory_mb
    }
}
