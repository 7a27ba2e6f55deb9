//! Idle VMs rest in the pool (vCPUs stopped), cost no CPU, are still watched, and every hand-out
//! path gives the caller a running VM with the host's clock; the first exec after hand-out is fast
//! because the fill warmed the VM up. Real VMs (snapshot clones of one template).
//!
//! The tests of this binary run one at a time (they measure CPU and count QEMU processes of one
//! shared provider); the template is built once and removed at exit.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use firepit_pool::{EvictReason, Pool, PoolVm, Provider, ShapeConfig};
use firepit_qemu::{QemuProvider, QemuVm, agent_health_check};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

/// The shared provider; holding the guard runs a test alone.
async fn provider() -> (&'static QemuProvider, MutexGuard<'static, ()>) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
    static PROVIDER: OnceCell<QemuProvider> = OnceCell::const_new();
    let guard = ONE_AT_A_TIME.lock().await;
    let provider = PROVIDER.get_or_init(|| async { common::shared_provider("pause") }).await;
    (provider, guard)
}

/// A pool of `depth` snapshot clones with the agent health check, idle VMs paused or not.
async fn pool(provider: &QemuProvider, depth: usize, pause_idle: bool) -> Pool<QemuProvider> {
    let config = ShapeConfig {
        depth: depth..=depth,
        probe_interval: Some(Duration::from_secs(1)),
        pause_idle,
        ..ShapeConfig::default()
    };
    Pool::builder(provider.clone())
        .shape_with(common::shape(), common::snapshot_spec(&common::image()), config)
        .health_check(agent_health_check)
        .warmup_timeout(Duration::from_secs(600))
        .build()
        .await
        .unwrap()
}

/// The QEMU processes of the shared provider (its pool's VMs and any lease).
fn qemus() -> Vec<u32> {
    common::qemu_children(&common::runtime_dir_path("pause"))
}

/// CPU time (user + system) of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<u64> = rest.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // After the state field (not numeric): ppid is fields[0], utime and stime are stat fields 14, 15.
    fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0)
}

/// CPU ticks each of `pids` used over `window`.
async fn ticks_over(pids: &[u32], window: Duration) -> Vec<u64> {
    let before: Vec<u64> = pids.iter().map(|&pid| cpu_ticks(pid)).collect();
    tokio::time::sleep(window).await;
    pids.iter().zip(before).map(|(&pid, before)| cpu_ticks(pid).saturating_sub(before)).collect()
}

/// Whether QEMU reports the vCPUs running, asked over QMP (not `QemuVm::status`, which wakes).
async fn qmp_running(vm: &QemuVm) -> bool {
    vm.qmp().query_status().await.unwrap().running
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The guest's wall clock minus the host's, seconds (`date +%s`: whole seconds).
async fn clock_offset(vm: &QemuVm) -> f64 {
    let before = unix_now();
    let out = vm.exec(["date", "+%s"]).await.unwrap();
    let after = unix_now();
    let guest: f64 = out.stdout_lossy().trim().parse().unwrap();
    // The guest's second is somewhere in [before, after]: report the distance to that window.
    if guest + 1.0 < before {
        guest + 1.0 - before
    } else if guest > after {
        guest - after
    } else {
        0.0
    }
}

#[test]
fn a_pooled_vm_is_paused_uses_no_cpu_and_passes_its_probes() {
    common::run(async {
        let (provider, _alone) = provider().await;
        // Straight from the provider: the pool's pause is QMP `stop`.
        let (shape, spec) = (common::shape(), common::snapshot_spec(&common::image()));
        let vm = provider.create(&shape, &spec).await.unwrap();
        assert!(provider.pause(&vm).await.unwrap(), "the QEMU provider pauses");
        assert!(!qmp_running(&vm).await, "QMP reports the resting VM paused");
        provider.resume(&vm).await.unwrap();
        assert!(qmp_running(&vm).await);
        provider.destroy(vm).await;

        let pool = pool(provider, 2, true).await;
        let pids = qemus();
        assert_eq!(pids.len(), 2, "{pids:?}");
        // Probes run every second meanwhile: on a resting VM they must not need the guest.
        let ticks = ticks_over(&pids, Duration::from_secs(4)).await;
        eprintln!("CPU ticks of 2 resting VMs over 4 s: {ticks:?} (ticks/s: 100)");
        assert!(ticks.iter().all(|&t| t <= 2), "resting VMs used CPU: {ticks:?} ticks in 4 s");
        let metrics = pool.metrics();
        assert_eq!(metrics.shapes[0].evicted(EvictReason::ProbeFailed), 0, "a resting VM failed its probe");
        assert_eq!(qemus(), pids, "no VM was replaced");
        pool.shutdown().await;
    });
}

#[test]
fn with_pause_idle_off_pooled_vms_keep_running() {
    common::run(async {
        let (provider, _alone) = provider().await;
        let pool = pool(provider, 2, false).await;
        let pids = qemus();
        // An idle running guest under TCG uses little (≈0.5 % of a core each, measured), so the
        // window is long enough that "some CPU" is certain; resting VMs above use none.
        let ticks = ticks_over(&pids, Duration::from_secs(8)).await;
        eprintln!("CPU ticks of 2 running idle VMs over 8 s: {ticks:?}");
        assert!(ticks.iter().sum::<u64>() >= 1, "idle running guests use some CPU: {ticks:?}");
        let vm = pool.reserve().await.unwrap();
        assert!(qmp_running(&vm).await);
        assert!(vm.exec(["true"]).await.unwrap().success());
        drop(vm);
        pool.shutdown().await;
    });
}

#[test]
fn a_resting_vm_that_is_killed_or_hangs_is_evicted_and_replaced() {
    common::run(async {
        let (provider, _alone) = provider().await;
        let pool = pool(provider, 1, true).await;
        let shape = common::shape();
        let evicted = |reason| pool.metrics().shape(&shape).map_or(0, |m| m.evicted(reason));
        let wait_for = async |what: &str, done: &(dyn Fn() -> bool + Sync)| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done() {
                assert!(Instant::now() < deadline, "{what} did not happen: {:?}", pool.status());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        // Killed: its process exit is seen at once.
        let victim = qemus()[0];
        // SAFETY: kill(2) on a QEMU this test's provider started.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        wait_for("eviction of the killed VM", &|| evicted(EvictReason::Exited) == 1).await;
        wait_for("a replacement", &|| pool.status().shape(&shape).is_some_and(|s| s.ready == 1)).await;
        // Hung (its QEMU stopped): QMP does not answer, and the next probe evicts it.
        let hung = qemus()[0];
        assert_ne!(hung, victim);
        // SAFETY: as above; the pool's destroy SIGKILLs it, which a stopped process receives.
        unsafe { libc::kill(hung as i32, libc::SIGSTOP) };
        wait_for("eviction of the hung VM", &|| evicted(EvictReason::ProbeFailed) == 1).await;
        let vm = pool.reserve().await.unwrap();
        assert_ne!(vm.pid(), hung);
        assert!(vm.exec(["true"]).await.unwrap().success());
        drop(vm);
        pool.shutdown().await;
    });
}

#[test]
fn after_a_long_rest_the_handed_out_guest_has_the_hosts_clock() {
    common::run(async {
        let (provider, _alone) = provider().await;
        let pool = pool(provider, 1, true).await;
        // The guest's clock stops while it rests: without the wake-up's clock it would be ≥ 6 s behind.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let vm = pool.reserve().await.unwrap();
        let offset = clock_offset(&vm).await;
        eprintln!("guest clock offset after a 6 s rest: {offset} s");
        assert!(offset.abs() <= 1.0, "the guest clock is {offset} s off the host's after its rest");
        drop(vm);
        pool.shutdown().await;
    });
}

#[test]
fn try_reserve_and_reserve_now_hand_out_a_running_vm_with_the_hosts_clock() {
    common::run(async {
        let (provider, _alone) = provider().await;
        let pool = pool(provider, 2, true).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        // reserve_now (the daemon's `wait_ms: 0`): woken and checked before it returns.
        let now = pool.reserve_now().await.unwrap();
        assert!(qmp_running(&now).await, "reserve_now handed out a paused VM");
        // try_reserve cannot await: the VM wakes in the background, its first use waits for that.
        let tried = pool.try_reserve().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !qmp_running(&tried).await {
            assert!(Instant::now() < deadline, "the VM try_reserve handed out never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for vm in [&now, &tried] {
            let offset = clock_offset(vm).await;
            assert!(offset.abs() <= 1.0, "{}: guest clock {offset} s off", vm.id());
        }
        drop((now, tried));
        pool.shutdown().await;
    });
}

#[test]
fn the_first_exec_after_hand_out_is_fast() {
    common::run(async {
        let (provider, _alone) = provider().await;
        let pool = pool(provider, 1, true).await;
        let mut firsts = Vec::new();
        for _ in 0..3 {
            // Full and quiet: no fill competing for the CPU.
            let deadline = Instant::now() + Duration::from_secs(300);
            while pool.status().shapes[0].ready < 1 || pool.status().shapes[0].filling > 0 {
                assert!(Instant::now() < deadline, "the pool did not refill: {:?}", pool.status());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let started = Instant::now();
            let vm = pool.reserve().await.unwrap();
            let reserved = started.elapsed();
            assert!(vm.exec(["true"]).await.unwrap().success());
            let first = started.elapsed();
            let before = Instant::now();
            assert!(vm.exec(["true"]).await.unwrap().success());
            eprintln!(
                "{}: reserve {reserved:?}, reserve → first exec {first:?}, second exec {:?}",
                vm.id(),
                before.elapsed()
            );
            firsts.push(first);
            drop(vm);
        }
        // The fastest of three, so a loaded host does not fail it; an unwarmed clone takes ≈200 ms
        // for its first exec at best.
        let best = firsts.iter().min().copied().unwrap();
        assert!(best < Duration::from_millis(100), "reserve → first exec took {firsts:?}");
        pool.shutdown().await;
    });
}

#[test]
fn a_resting_vm_is_woken_by_its_first_guest_facing_use() {
    common::run(async {
        let (provider, _alone) = provider().await;
        let (shape, spec) = (common::shape(), common::snapshot_spec(&common::image()));
        let vm = provider.create(&shape, &spec).await.unwrap();
        assert!(provider.pause(&vm).await.unwrap());
        tokio::time::sleep(Duration::from_secs(3)).await;
        // No resume: the handle wakes it (cont + clock) before the exec reaches the guest.
        assert_eq!(vm.status().await.unwrap(), firepit_qemu::VmStatus::Running);
        let offset = clock_offset(&vm).await;
        assert!(offset.abs() <= 1.0, "guest clock {offset} s off");
        let id = PoolVm::id(&vm).to_owned();
        provider.destroy(vm).await;
        assert!(!common::runtime_dir_path("pause").join(id).exists());
    });
}
