//! QEMU must die with the process that owns it, even when that process is SIGKILLed (no destructor
//! runs then: only `PR_SET_PDEATHSIG` acts), and a later provider cleans up the files it left.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firepit_pool::Provider;

const HELPER_ENV: &str = "FIREPIT_OWNER_HELPER_DIR";

/// Not a test: the owner process of `qemu_dies_when_its_owner_is_sigkilled`.
#[test]
#[ignore = "helper process, started by qemu_dies_when_its_owner_is_sigkilled"]
fn owner_helper() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else { return };
    common::run(async move {
        let image = common::image();
        let provider = common::provider(std::path::Path::new(&dir), |_| {});
        let _vm = provider.create(&common::shape(), &common::cold_spec(&image)).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

/// Pids of QEMU VM processes (not `qemu -help` and friends) whose parent is `parent`.
fn qemu_children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_vm = String::from_utf8_lossy(&cmdline).contains("-kernel");
        if head.contains("(qemu") && ppid == Some(parent) && is_vm {
            pids.push(pid);
        }
    }
    pids
}

/// Gone, or a zombie (dead; reaping it is its new parent's job).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn qemu_dies_when_its_owner_is_sigkilled() {
    // Fails at once, with instructions, when no guest image is set (the owner boots from it).
    let _image = common::image();
    let dir = common::runtime_dir("orphan");
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "owner_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, &dir)
        .env("FIREPIT_IMAGE_DIR", std::env::var_os("FIREPIT_IMAGE_DIR").unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let qemu = loop {
        if let Some(pid) = qemu_children_of(owner.id()).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the owner never started qemu");
        std::thread::sleep(Duration::from_millis(50));
    };
    owner.kill().unwrap(); // SIGKILL: no destructor, no atexit in the owner
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_dead(qemu) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(is_dead(qemu), "qemu {qemu} outlived its SIGKILLed owner");

    // The owner had no chance to clean up; the next provider on that directory does.
    assert!(!common::leftovers(&dir).is_empty(), "expected the dead owner's runtime directory");
    let provider = common::provider(&dir, |_| {});
    drop(provider);
    common::assert_removed_empty(&dir);
}
