//! What the `vm_sandbox_*` test binaries share: one booted VM per binary, and small guest probes.
//!
//! The VM is booted on first use and shared by the binary's tests (they run as threads of one
//! process); an `atexit` hook kills it and removes its runtime directory (statics are never dropped).

#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use firepit_pool::Provider;
use firepit_qemu::QemuVm;
use tokio::sync::OnceCell;

use crate::common;

static SHARED_PID: AtomicU32 = AtomicU32::new(0);
static SHARED_NAME: OnceLock<&'static str> = OnceLock::new();

extern "C" fn kill_shared_vm() {
    let pid = SHARED_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: plain kill(2) of the QEMU this test binary started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    if let Some(name) = SHARED_NAME.get() {
        let _ = std::fs::remove_dir_all(common::runtime_dir_path(name));
    }
}

/// The binary's VM (`memory_mb` of guest RAM), booted on first use.
pub async fn shared_vm(name: &'static str, memory_mb: u32) -> &'static QemuVm {
    static VM: OnceCell<QemuVm> = OnceCell::const_new();
    VM.get_or_init(|| async move {
        let image = common::image();
        let dir = common::runtime_dir(name);
        let provider = common::provider(&dir, |_| {});
        let mut spec = common::cold_spec(&image);
        spec.memory_mb = u64::from(memory_mb);
        let vm = provider.create(&common::shape(), &spec).await.expect("booting the shared VM");
        SHARED_PID.store(vm.pid(), Ordering::SeqCst);
        let _ = SHARED_NAME.set(name);
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::atexit(kill_shared_vm) };
        eprintln!("shared VM {} booted in {:?} under {}", vm.id(), vm.boot_duration(), vm.accel());
        vm
    })
    .await
}

/// Runs a shell script in the guest and returns its stdout; panics if it fails.
pub async fn sh(vm: &QemuVm, script: &str) -> String {
    let out = vm.exec(["sh", "-c", script]).await.expect("exec through the agent");
    assert!(out.success(), "`{script}` failed: {out:?}");
    out.stdout_lossy()
}

/// Whether guest process `pid` is gone or a zombie (not running any more).
pub async fn guest_pid_not_running(vm: &QemuVm, pid: u32) -> bool {
    let state = sh(vm, &format!("cat /proc/{pid}/stat 2>/dev/null | sed 's/.*) //' | cut -c1")).await;
    matches!(state.trim(), "" | "Z")
}

/// Polls `check` until it holds (panics after `within`).
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The guest agent's pid (found by its command name).
pub async fn agent_pid(vm: &QemuVm) -> u32 {
    let script = "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = firepit-agent ] && echo ${p#/proc/}; done; true";
    let out = sh(vm, script).await;
    out.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no agent in {out:?}"))
}

/// Resident memory of guest process `pid`, KiB (VmRSS).
pub async fn guest_rss_kib(vm: &QemuVm, pid: u32) -> u64 {
    let out = sh(vm, &format!("grep VmRSS /proc/{pid}/status")).await;
    out.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {out:?}"))
}

/// Peak resident memory of this (host) test process, KiB (VmHWM).
pub fn host_peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
