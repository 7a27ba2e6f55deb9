//! A hostile guest on a confined QEMU: the guest floods its serial console, then kills its agent
//! and writes garbage on the agent channel. The host's memory must stay bounded, the VM must keep
//! answering while it floods, and be declared unhealthy (so a pool replaces it) once its agent
//! channel carries garbage.
//!
//! Run as root, the VM runs as `nobody` (`ProviderConfig::run_as`), so the same VM also proves the
//! confinement: QEMU's uid, its seccomp filter, its empty environment, the directory modes.
//!
//! One VM for the whole binary, and one test: the steps are destructive and must run in order.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use firepit_agent::ExecRequest;
use firepit_pool::Provider;
use firepit_qemu::QemuVm;

const NOBODY: u32 = 65534;
/// A small console ring, so the flood overruns it many times over in a few seconds of TCG.
const CONSOLE_BUFFER: usize = 64 * 1024;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// This test process's resident set, in KiB.
fn own_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_owned()
}

fn sh(script: &str, timeout_ms: u64) -> ExecRequest {
    ExecRequest { argv: vec!["sh".into(), "-c".into(), script.into()], timeout_ms, ..ExecRequest::default() }
}

/// QEMU runs as `nobody` with a seccomp filter and no environment; its directories are private.
fn assert_confined(vm: &QemuVm, runtime_dir: &std::path::Path) {
    let pid = vm.pid();
    let uid_line = status_field(pid, "Uid:");
    let seccomp = status_field(pid, "Seccomp:");
    eprintln!(
        "qemu {pid}: Uid {uid_line}; Seccomp {seccomp}; NoNewPrivs {}",
        status_field(pid, "NoNewPrivs:")
    );
    assert_eq!(seccomp, "2", "QEMU runs under a seccomp filter (-sandbox on)");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).split('=').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, ["PATH"], "QEMU's environment is PATH only");
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).into_owned();
    assert!(cmdline.contains("spawn=deny"), "cold-boot QEMU may not spawn: {cmdline}");
    let vm_dir = std::fs::metadata(vm.runtime_dir()).unwrap();
    assert_eq!(vm_dir.mode() & 0o777, 0o700, "VM directory mode");
    let base = std::fs::metadata(runtime_dir).unwrap();
    if is_root() {
        let uids: Vec<u32> = uid_line.split_whitespace().filter_map(|u| u.parse().ok()).collect();
        assert_eq!(uids, [NOBODY; 4], "real, effective, saved and fs uid of QEMU");
        assert_eq!(vm_dir.uid(), NOBODY, "the VM directory belongs to QEMU's user");
        assert_eq!(base.mode() & 0o777, 0o711, "runtime dir: pass-through only for QEMU's user");
        for socket in ["console.sock", "qmp.sock", "agent.sock"] {
            let meta = std::fs::symlink_metadata(vm.runtime_dir().join(socket)).unwrap();
            assert_eq!(meta.uid(), NOBODY, "{socket} belongs to QEMU's user");
        }
    } else {
        eprintln!("not root: QEMU runs as this user; uid checks skipped");
        assert_eq!(base.mode() & 0o777, 0o700, "runtime dir mode");
    }
}

#[test]
fn confined_vm_survives_a_console_flood_and_agent_garbage_makes_it_unhealthy() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("hostile");
        let provider = common::provider(&dir, |c| {
            c.console_buffer_bytes = CONSOLE_BUFFER;
            c.probe_timeout = Duration::from_secs(5);
            if is_root() {
                c.run_as = Some("nobody".into());
            }
        });
        let vm = provider.create(&common::shape(), &common::cold_spec(&image)).await.expect("booting the VM");
        eprintln!("VM {} booted in {:?} under {}", vm.id(), vm.boot_duration(), vm.accel());
        assert_confined(&vm, &dir);

        // 1. Console flood: the guest writes to its serial port as fast as it can for 10 s.
        let console = vm.console().await.unwrap();
        let rss_before = own_rss_kib();
        let flood = "yes firepit-console-flood-0123456789abcdef > /dev/ttyS0 & sleep 10; kill $!";
        let started = Instant::now();
        let exec = vm.exec_request(sh(flood, 60_000));
        let mut max_rss = rss_before;
        let mut pings = 0;
        let mut exec = Box::pin(exec);
        let result = loop {
            tokio::select! {
                result = &mut exec => break result,
                () = tokio::time::sleep(Duration::from_secs(2)) => {
                    max_rss = max_rss.max(own_rss_kib());
                    vm.ping().await.expect("the agent answers while the console floods");
                    pings += 1;
                }
            }
        };
        drop(exec);
        result.expect("the flood exec returns");
        let flooded = console.peek().len();
        let received = vm.console_bytes_received();
        eprintln!(
            "console flood: {received} bytes in {:?} ({:.1} MB/s), {pings} pings answered, kept {flooded} bytes, \
             test RSS {rss_before} -> max {max_rss} KiB",
            started.elapsed(),
            received as f64 / started.elapsed().as_secs_f64() / 1e6
        );
        assert!(
            received > 16 * CONSOLE_BUFFER as u64,
            "the flood overran the ring many times ({received} bytes)"
        );
        assert!(flooded <= CONSOLE_BUFFER, "the console kept {flooded} bytes, more than its ring");
        assert!(max_rss < rss_before + 32 * 1024, "host memory grew from {rss_before} to {max_rss} KiB");
        assert!(pings >= 2, "the VM was pinged while flooding");
        provider.probe(&vm).await.expect("a VM that flooded its console is still healthy");

        // 2. Agent garbage: a guest process kills the agent and writes random bytes to its port.
        let garbage = "(sleep 1; kill -9 $(pidof firepit-agent); \
                       while :; do cat /dev/urandom > /dev/vport0p1; done) </dev/null >/dev/null 2>&1 &";
        vm.exec_request(sh(garbage, 10_000)).await.expect("the agent answers before it is killed");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_garbage = own_rss_kib();
        let started = Instant::now();
        let verdict = provider.probe(&vm).await;
        eprintln!("after agent garbage: probe {verdict:?} in {:?}", started.elapsed());
        assert!(vm.exit_info().is_none(), "QEMU still runs: the garbage, not an exit, made the VM unhealthy");
        let unhealthy = verdict.expect_err("a VM whose agent channel carries garbage is unhealthy");
        assert!(unhealthy.to_string().contains("agent"), "{unhealthy}");
        for _ in 0..5 {
            let _ = vm.ping_timeout(Duration::from_secs(1)).await;
        }
        let rss_after = own_rss_kib();
        eprintln!("agent garbage: test RSS {rss_garbage} -> {rss_after} KiB");
        // The frame decoder keeps at most one 16 MiB frame per connection.
        assert!(rss_after < rss_before + 48 * 1024, "host memory grew from {rss_before} to {rss_after} KiB");

        // 3. Destroying it leaves nothing behind.
        let pid = vm.pid();
        provider.destroy(vm).await;
        assert!(!common::pid_exists(pid), "qemu {pid} survived destroy");
        common::assert_removed_empty(&dir);
    });
}
