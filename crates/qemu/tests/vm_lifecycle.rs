//! A VM's life: status, pause/resume, unexpected death, destroy, drop, failed boots.
//! Each test boots its own VM (they change its state); nothing may be left behind.

mod common;

use std::time::{Duration, Instant};

use firepit_pool::{PoolVm, Provider};
use firepit_qemu::{BootError, QemuError, VmStatus};

#[test]
fn status_follows_pause_and_resume() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("status");
        let provider = common::provider(&dir, |_| {});
        let vm = provider.create(&common::shape(), &common::cold_spec(&image)).await.unwrap();
        assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
        vm.pause().await.unwrap();
        assert_eq!(vm.status().await.unwrap(), VmStatus::Paused);
        vm.resume().await.unwrap();
        assert_eq!(vm.status().await.unwrap(), VmStatus::Running);
        assert!(vm.exec(["true"]).await.unwrap().success(), "guest works after resume");
        provider.destroy(vm).await;
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn sigkill_of_qemu_is_noticed_at_once() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("kill9");
        let provider = common::provider(&dir, |_| {});
        let vm = provider.create(&common::shape(), &common::cold_spec(&image)).await.unwrap();
        let pid = vm.pid();
        let exited = vm.exited();
        // SAFETY: kill(2) of the QEMU we just started, as an outside `kill -9` would.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), exited).await.expect("exited() did not resolve");
        eprintln!("exit noticed after {:?}", started.elapsed());
        assert_eq!(vm.status().await.unwrap(), VmStatus::Exited(None));
        assert!(!common::pid_exists(pid), "qemu {pid} left as a zombie");
        assert!(provider.probe(&vm).await.is_err());
        assert!(vm.exec(["true"]).await.is_err());
        provider.destroy(vm).await;
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn destroy_leaves_no_process_socket_or_directory() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("destroy");
        let provider = common::provider(&dir, |_| {});
        let vm = provider.create(&common::shape(), &common::cold_spec(&image)).await.unwrap();
        let (pid, vm_dir) = (vm.pid(), vm.runtime_dir().to_path_buf());
        assert!(vm_dir.join("qmp.sock").exists());
        assert!(provider.probe(&vm).await.is_ok());
        let started = Instant::now();
        provider.destroy(vm).await;
        eprintln!("destroy took {:?}", started.elapsed());
        assert!(!common::pid_exists(pid), "qemu {pid} still exists");
        assert!(!vm_dir.exists(), "{} left behind", vm_dir.display());
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn dropping_a_vm_kills_qemu_and_removes_its_directory() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("drop");
        let provider = common::provider(&dir, |_| {});
        let vm = provider.create(&common::shape(), &common::cold_spec(&image)).await.unwrap();
        let (pid, vm_dir) = (vm.pid(), vm.runtime_dir().to_path_buf());
        drop(vm);
        assert!(!vm_dir.exists());
        let deadline = Instant::now() + Duration::from_secs(5);
        while common::pid_exists(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!common::pid_exists(pid), "qemu {pid} survived its handle (or was not reaped)");
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn boot_timeout_kills_the_vm_and_reports_the_console_tail() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("timeout");
        // A shell as init never prints the readiness line; a verbose kernel (loglevel overrides
        // `quiet`) leaves console output to report.
        let provider = common::provider(&dir, |c| {
            c.boot_timeout = Duration::from_secs(15);
            c.extra_kernel_args =
                vec!["rdinit=/bin/sh".into(), "loglevel=7".into(), "earlyprintk=ttyS0".into()];
        });
        let started = Instant::now();
        let err = provider.create(&common::shape(), &common::cold_spec(&image)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
        match &err {
            QemuError::Boot(BootError::Timeout { console_tail, .. }) => {
                assert!(
                    console_tail.contains("Linux") || console_tail.contains("]"),
                    "no console tail in {err}"
                );
            }
            other => panic!("expected a boot timeout, got {other}"),
        }
        eprintln!("{err}");
        assert!(
            common::qemu_children(&dir).is_empty(),
            "qemu left running: {:?}",
            common::qemu_children(&dir)
        );
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn guest_that_panics_during_boot_is_reported_with_its_console() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("panic");
        // No such init: the kernel panics, `panic=-1` reboots, `-no-reboot` makes QEMU exit.
        let provider = common::provider(&dir, |c| {
            c.extra_kernel_args = vec!["rdinit=/nonexistent-init".into(), "loglevel=7".into()];
        });
        let err = provider.create(&common::shape(), &common::cold_spec(&image)).await.unwrap_err();
        match &err {
            QemuError::Boot(BootError::Exited { console_tail, .. }) => {
                assert!(console_tail.contains("Kernel panic"), "{err}");
            }
            other => panic!("expected the guest to exit during boot, got {other}"),
        }
        assert!(common::qemu_children(&dir).is_empty());
        common::assert_removed_empty(&dir);
    });
}
