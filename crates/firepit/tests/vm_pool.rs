//! The seed API on real QEMU VMs: a pool of 2 serves console and exec, replaces what is dropped or
//! killed, errors when exhausted, and leaves nothing behind on shutdown; the console is there only
//! when the pool enabled it.
//!
//! Each test boots its own small pool (a TCG boot takes ≈3 s here); the checks that can share a pool
//! share it.

mod common;

use std::time::Duration;

use firepit::qemu::{ConfigError, QemuError};
use firepit::{FillStrategy, Firepit, PoolError, VmConfig, VmHandle, VmStatus};

const REFILL_DEADLINE: Duration = Duration::from_secs(90);

/// How many guest processes read the serial console (a shell on it has `/dev/ttyS0` as stdin).
async fn console_readers(vm: &VmHandle) -> usize {
    let script = "for p in /proc/[0-9]*; do readlink $p/fd/0; done; true";
    let out = vm.exec(["sh", "-c", script]).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    out.stdout_lossy().lines().filter(|line| *line == "/dev/ttyS0").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_pool_of_two_serves_console_and_exec_replaces_dropped_vm_and_cleans_up() {
    let runtime = tempfile::tempdir().unwrap();
    let pool = Firepit::pool(VmConfig::from_image(&common::image()))
        .cpus(1)
        .memory_mb(256)
        .console_enabled()
        // Cold boots on purpose: a refill takes seconds, so the exhaustion checks below cannot race
        // it (a snapshot refill can land within 0.1 s). The other tests use the default, snapshot.
        .fill_strategy(FillStrategy::ColdBoot)
        .provider_config(common::provider_config(runtime.path()))
        .build(2)
        .await
        .expect("a pool of 2 real VMs boots");
    assert_eq!(pool.available_now(), 2, "build(2) returns once both VMs are ready");
    assert_eq!(common::child_qemu_pids(runtime.path()).len(), 2, "one QEMU process per VM");

    let vm = pool.reserve().await.unwrap();
    let first_id = vm.id().to_owned();
    let console = vm.console().await.unwrap();
    console.send("echo hello-from-$((20+3))\n").await.unwrap();
    let out = console.read_until("hello-from-23").await.unwrap();
    assert!(out.contains("hello-from-23"), "console output: {out:?}");
    assert!(console_readers(&vm).await >= 1, "an enabled console has a shell on it");

    let uname = vm.exec(["uname", "-r"]).await.unwrap();
    assert_eq!(uname.exit_code, Some(0));
    assert_eq!(uname.stdout_lossy().trim(), common::image().kernel_version());
    assert_eq!(vm.status().await.unwrap(), VmStatus::Running);

    // Exhaust the pool: the second lease empties it, try_reserve fails at once.
    let second = pool.try_reserve().expect("the second VM is ready");
    assert!(matches!(pool.try_reserve(), Err(PoolError::Exhausted)), "third try_reserve must fail");
    let timed = pool.reserve_timeout(Duration::from_millis(50)).await;
    assert!(matches!(timed, Err(PoolError::Timeout)), "got {timed:?}");

    // Dropping a lease destroys the VM and the pool boots a different one in its place.
    let pid = vm.pid();
    drop(vm);
    drop(second);
    assert!(
        common::eventually(REFILL_DEADLINE, || pool.available_now() == 2).await,
        "pool refilled to 2 after two drops: {:?}",
        pool.status()
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the dropped VM's QEMU is gone and reaped"
    );
    let fresh = pool.reserve().await.unwrap();
    assert_ne!(fresh.id(), first_id, "a lease never gets a used VM back");
    assert_eq!(fresh.exec(["true"]).await.unwrap().exit_code, Some(0));
    drop(fresh);

    pool.shutdown().await;
    pool.shutdown().await; // idempotent
    assert!(matches!(pool.reserve().await, Err(PoolError::ShuttingDown)), "reserve after shutdown");
    assert!(
        common::child_qemu_pids(runtime.path()).is_empty(),
        "no QEMU left: {:?}",
        common::child_qemu_pids(runtime.path())
    );
    assert!(
        common::leftovers(runtime.path()).is_empty(),
        "left behind: {:?}",
        common::leftovers(runtime.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_killed_idle_qemu_is_noticed_and_replaced() {
    let runtime = tempfile::tempdir().unwrap();
    let pool = Firepit::pool(VmConfig::from_image(&common::image()))
        .provider_config(common::provider_config(runtime.path()))
        .build(1)
        .await
        .expect("a pool of 1 real VM boots");
    let pids = common::child_qemu_pids(runtime.path());
    assert_eq!(pids.len(), 1);
    let victim = pids[0];
    // SAFETY: kill(2) on a PID we just read as our own child.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);

    let replaced = common::eventually(REFILL_DEADLINE, || {
        let pids = common::child_qemu_pids(runtime.path());
        pool.available_now() == 1 && pids.len() == 1 && pids[0] != victim
    })
    .await;
    assert!(replaced, "the killed VM was evicted and replaced: {:?}", pool.status());
    let vm = pool.reserve().await.unwrap();
    assert_ne!(vm.pid(), victim);
    assert_eq!(vm.exec(["echo", "alive"]).await.unwrap().stdout_lossy().trim(), "alive");
    // This pool did not enable the console: the guest runs no shell on it, and it is not handed out.
    assert_eq!(console_readers(&vm).await, 0, "nothing reads a console nobody enabled");
    let refused = vm.console().await.unwrap_err();
    assert!(matches!(refused, QemuError::Config(ConfigError::ConsoleDisabled { .. })), "{refused}");
    assert!(refused.to_string().contains(".console_enabled()"), "it says how to enable it: {refused}");
    let evicted: u64 = pool.metrics().shapes.iter().map(|s| s.evicted_total()).sum();
    assert!(evicted >= 1, "the eviction is counted: {:?}", pool.metrics());
    drop(vm);
    pool.shutdown().await;
    assert!(common::child_qemu_pids(runtime.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_leased_qemu_killed_reports_exited_status() {
    let runtime = tempfile::tempdir().unwrap();
    let pool = Firepit::pool(VmConfig::from_image(&common::image()))
        .provider_config(common::provider_config(runtime.path()))
        .build(1)
        .await
        .unwrap();
    let vm = pool.reserve().await.unwrap();
    // SAFETY: kill(2) on the PID of a QEMU this test's pool started.
    assert_eq!(unsafe { libc::kill(vm.pid() as i32, libc::SIGKILL) }, 0);
    let mut status = vm.status().await;
    for _ in 0..40 {
        if matches!(status, Ok(VmStatus::Exited(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = vm.status().await;
    }
    assert!(matches!(status, Ok(VmStatus::Exited(_))), "status after kill -9: {status:?}");
    assert!(vm.exec(["true"]).await.is_err(), "exec on a dead VM is an error, not a hang");
    drop(vm);
    pool.shutdown().await;
    assert!(
        common::leftovers(runtime.path()).is_empty(),
        "left behind: {:?}",
        common::leftovers(runtime.path())
    );
}
