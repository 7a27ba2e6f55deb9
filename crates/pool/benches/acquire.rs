//! Acquire latency: firepit-pool vs microvm-warm-pool, same scenarios, same process.
//!
//! Prints one JSON object per line:
//! `{"system","scenario","tasks","p50_us","p99_us","ops_per_s","empty_pct","ready_p99_us"}`, where
//! `empty_pct` is the share of requests that found no ready VM (they wait for a fill; the peer's
//! caller retries) and `ready_p99_us` the p99 of the others: the hand-out of a ready VM alone.
//! - `warm`: the pool holds enough VMs (fill latency 0); 1 and 64 tasks reserve + release in a loop,
//!   each task yielding to the scheduler after a release (as any caller that awaits its VM does),
//!   so the refiller keeps up and the pool never runs dry: this is the hand-out of a ready VM.
//! - `burst`: the same 64 tasks without the yield: a task runs its 300 requests back to back
//!   without giving the refiller a worker, drains the 256 ready VMs, and later requests wait for
//!   fills (see `empty_pct`): what callers that outrun the refill get.
//! - `churn`: 64 tasks, depth 16, fill latency 5 ms, each task holds its VM 1 ms; the latency is
//!   request → VM in hand.
//!
//! The peer is synchronous: its `acquire` returns `None` when empty, so its caller retries every
//! 1 ms; its refill thread runs every 10 ms. Its provider is `microvm-runtime`'s in-memory one,
//! wrapped to sleep the same fill latency in `create`.
//!
//! Run: `cargo bench -p firepit-pool --bench acquire`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firepit_pool::testing::{MemoryProvider, MemorySpec};
use firepit_pool::{Pool, ShapeKey};
use microvm_runtime::model::{SnapshotRef, VmSpec, VmView};
use microvm_runtime::{InMemoryVmProvider, VmProvider, VmQuery, VmRuntimeResult};
use microvm_warm_pool::{EntryValidator, StackKey, ValidationResult, WarmPool, WarmPoolConfig};

struct Scenario {
    name: &'static str,
    /// Yield to the scheduler after each release (outside the timed part).
    yield_after: bool,
    tasks: usize,
    ops_per_task: usize,
    depth: usize,
    fill_latency: Duration,
    hold: Duration,
}

fn report(system: &str, s: &Scenario, samples: Vec<(u64, bool)>, wall: Duration) {
    let empty = samples.iter().filter(|(_, empty)| *empty).count();
    let empty_pct = empty as f64 * 100.0 / samples.len().max(1) as f64;
    let mut ready_ns: Vec<u64> = samples.iter().filter(|(_, empty)| !*empty).map(|(ns, _)| *ns).collect();
    let mut lat_ns: Vec<u64> = samples.into_iter().map(|(ns, _)| ns).collect();
    lat_ns.sort_unstable();
    ready_ns.sort_unstable();
    let pick_in = |sorted: &[u64], q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let pick = |q: f64| pick_in(&lat_ns, q);
    println!(
        r#"{{"system":"{system}","scenario":"{}","tasks":{},"p50_us":{:.2},"p99_us":{:.2},"ops_per_s":{:.0},"empty_pct":{:.2},"ready_p99_us":{:.2}}}"#,
        s.name,
        s.tasks,
        pick(0.50),
        pick(0.99),
        lat_ns.len() as f64 / wall.as_secs_f64(),
        empty_pct,
        pick_in(&ready_ns, 0.99)
    );
}

// ---------------------------------------------------------------- firepit

async fn bench_firepit(s: &Scenario) {
    let provider = MemoryProvider::new();
    provider.set_fill_latency(s.fill_latency);
    let pool = Pool::builder(provider)
        .shape(ShapeKey::new("bench"), MemorySpec::new(128))
        .depth(s.depth..=s.depth)
        .max_parallel_fills(s.depth)
        .probe_interval(Duration::from_secs(3600))
        .pause_idle(std::env::var_os("PAUSE").is_some())
        .build()
        .await
        .expect("firepit pool builds");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..s.tasks {
        let pool = pool.clone();
        let (ops, hold, yield_after) = (s.ops_per_task, s.hold, s.yield_after);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ops);
            for _ in 0..ops {
                let empty = pool.available_count().await == 0;
                let t = Instant::now();
                let vm = pool.reserve().await.expect("reserve");
                lat.push((t.elapsed().as_nanos() as u64, empty));
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                drop(vm);
                if yield_after {
                    tokio::task::yield_now().await;
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let wall = started.elapsed();
    report("firepit", s, all, wall);
    pool.shutdown().await;
}

// ---------------------------------------------------------------- peer

/// `microvm-runtime`'s in-memory provider with a fill latency.
#[derive(Clone, Default)]
struct SlowInMemory {
    inner: InMemoryVmProvider,
    latency: Duration,
}

impl VmProvider for SlowInMemory {
    fn create_vm(&self, vm_id: &str) -> VmRuntimeResult<()> {
        std::thread::sleep(self.latency);
        self.inner.create_vm(vm_id)
    }
    fn create_vm_with_spec(&self, vm_id: &str, spec: &VmSpec) -> VmRuntimeResult<()> {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        self.inner.create_vm_with_spec(vm_id, spec)
    }
    fn start_vm(&self, vm_id: &str) -> VmRuntimeResult<()> {
        self.inner.start_vm(vm_id)
    }
    fn stop_vm(&self, vm_id: &str) -> VmRuntimeResult<()> {
        self.inner.stop_vm(vm_id)
    }
    fn snapshot_vm(&self, vm_id: &str, snapshot_id: &str) -> VmRuntimeResult<()> {
        self.inner.snapshot_vm(vm_id, snapshot_id)
    }
    fn destroy_vm(&self, vm_id: &str) -> VmRuntimeResult<()> {
        self.inner.destroy_vm(vm_id)
    }
}

impl VmQuery for SlowInMemory {
    fn list_vms(&self) -> VmRuntimeResult<Vec<VmView>> {
        self.inner.list_vms()
    }
    fn get_vm(&self, vm_id: &str) -> VmRuntimeResult<Option<VmView>> {
        self.inner.get_vm(vm_id)
    }
    fn list_snapshots(&self, vm_id: &str) -> VmRuntimeResult<Option<Vec<String>>> {
        self.inner.list_snapshots(vm_id)
    }
}

struct AlwaysHealthy;
impl EntryValidator for AlwaysHealthy {
    fn validate(&self, _vm_id: &str) -> ValidationResult {
        ValidationResult::Healthy
    }
}

async fn bench_peer(s: &Scenario) {
    let provider = SlowInMemory { inner: InMemoryVmProvider::default(), latency: s.fill_latency };
    let config = WarmPoolConfig {
        min_depth: s.depth,
        max_depth: s.depth,
        refill_interval: Duration::from_millis(10),
        entry_max_age: Duration::from_secs(3600),
    };
    let pool = Arc::new(WarmPool::start(provider.clone(), config, Arc::new(AlwaysHealthy)));
    let stack =
        StackKey { stack_name: "bench".into(), version: "1".into(), vcpu_count: 1, mem_size_mib: 128 };
    pool.register(
        stack.clone(),
        SnapshotRef {
            vm_id: "template".into(),
            snapshot_id: "snap".into(),
            resume_immediately: true,
            network_overrides: Vec::new(),
        },
    );
    // Warm-up: wait until the first fill pass is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.metrics().created_total < s.depth as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..s.tasks {
        let pool = Arc::clone(&pool);
        let provider = provider.clone();
        let stack = stack.clone();
        let (ops, hold, yield_after) = (s.ops_per_task, s.hold, s.yield_after);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ops);
            for _ in 0..ops {
                let t = Instant::now();
                let mut empty = false;
                let handle = loop {
                    match pool.acquire(&stack) {
                        Some(h) => break h,
                        None => {
                            empty = true;
                            tokio::time::sleep(Duration::from_millis(1)).await
                        }
                    }
                };
                lat.push((t.elapsed().as_nanos() as u64, empty));
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                // Release: the caller owns the VM and destroys it.
                let _ = provider.destroy_vm(&handle.source_vm_id);
                if yield_after {
                    tokio::task::yield_now().await;
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let wall = started.elapsed();
    report("microvm-warm-pool", s, all, wall);
    // `shutdown` needs `&mut`; dropping the last Arc runs it (Drop calls shutdown).
    drop(pool);
}

fn main() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let scenarios = [
        Scenario {
            name: "warm",
            yield_after: true,
            tasks: 1,
            ops_per_task: 20_000,
            depth: 64,
            fill_latency: Duration::ZERO,
            hold: Duration::ZERO,
        },
        Scenario {
            name: "warm",
            yield_after: true,
            tasks: 64,
            ops_per_task: 300,
            depth: 256,
            fill_latency: Duration::ZERO,
            hold: Duration::ZERO,
        },
        Scenario {
            name: "burst",
            yield_after: false,
            tasks: 64,
            ops_per_task: 300,
            depth: 256,
            fill_latency: Duration::ZERO,
            hold: Duration::ZERO,
        },
        Scenario {
            name: "churn",
            yield_after: false,
            tasks: 64,
            ops_per_task: 20,
            depth: 16,
            fill_latency: Duration::from_millis(5),
            hold: Duration::from_millis(1),
        },
    ];
    for s in &scenarios {
        rt.block_on(bench_firepit(s));
        rt.block_on(bench_peer(s));
    }
}
