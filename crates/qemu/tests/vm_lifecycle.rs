//! Pause and resume with real VMs: files, background processes, the clock and the QEMU process
//! across several pauses; a failed save leaves the VM running.
//!
//! One provider for the binary (its templates and runtime files removed at exit); saved VMs go to
//! a temporary directory per test.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firepit_agent::{Channel, ProcessOutputRequest, ProcessRef, StartProcessRequest};
use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{
    DiskFormat, FillKind, LifecycleError, QemuError, QemuProvider, QemuVm, RootDisk, SavedKind, SavedVm,
};
use tokio::sync::OnceCell;

async fn provider() -> &'static QemuProvider {
    static PROVIDER: OnceCell<QemuProvider> = OnceCell::const_new();
    PROVIDER.get_or_init(|| async { common::shared_provider("lifecycle") }).await
}

async fn sh(vm: &QemuVm, script: &str) -> String {
    let out = vm.exec(["sh", "-c", script]).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout_lossy().trim().to_owned()
}

/// The count a counting background process has printed, read from `offset`.
async fn counted(vm: &QemuVm, offset: u64) -> (u64, Vec<u64>) {
    let request = ProcessOutputRequest {
        process: ProcessRef::Tag("counter".into()),
        channel: Channel::Stdout,
        offset,
        max_bytes: 0,
        wait_ms: 2000,
    };
    let output = vm.process_output(request).await.unwrap();
    assert_eq!(output.offset, offset, "output read on from the same offset");
    let text = String::from_utf8_lossy(&output.bytes).into_owned();
    let numbers = text.lines().filter_map(|line| line.trim().parse().ok()).collect();
    (offset + output.bytes.len() as u64, numbers)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_paused_vm_resumes_three_times_with_its_files_processes_and_clock() {
    common::run(async {
        let provider = provider().await;
        let saves = tempfile::tempdir().unwrap();
        let shape = common::shape();
        let mut vm = provider.create(&shape, &common::snapshot_spec(&common::image())).await.unwrap();
        sh(&vm, "echo kept > /root/note; hostname > /root/hostname").await;
        let hostname = sh(&vm, "hostname").await;
        let counter = StartProcessRequest {
            tag: Some("counter".into()),
            ..StartProcessRequest::new([
                "sh",
                "-c",
                "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done",
            ])
        };
        vm.start_process(counter).await.unwrap();
        let (mut offset, first) = counted(&vm, 0).await;
        let mut last = *first.last().unwrap();
        for round in 1..=3 {
            let dir = saves.path().join(format!("paused-{round}"));
            let pid = vm.pid();
            let paused = provider.pause_to_disk(&vm, &dir).await.unwrap();
            assert_eq!(paused.kind(), SavedKind::Paused);
            assert!(vm.exit_info().is_some() && !common::pid_exists(pid), "round {round}: QEMU is gone");
            assert!(
                paused.state_bytes() > 1 << 20 && paused.state_bytes() < 256 << 20,
                "{}",
                paused.state_bytes()
            );
            provider.destroy(vm).await;
            // The clock stands still while paused: the resume sets it forward.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let reopened = SavedVm::open(&dir).unwrap();
            vm = provider.resume_saved(&reopened).await.unwrap();
            assert_eq!(vm.fill(), FillKind::Saved);
            assert!(!dir.exists(), "round {round}: a resumed pause leaves nothing behind");
            assert_eq!(sh(&vm, "cat /root/note").await, "kept", "round {round}");
            assert_eq!(sh(&vm, "hostname").await, hostname, "round {round}: the same VM");
            let guest_now: u64 = sh(&vm, "date +%s").await.parse().unwrap();
            assert!(guest_now.abs_diff(unix_now()) <= 2, "round {round}: guest clock {guest_now}");
            let (next, numbers) = counted(&vm, offset).await;
            assert!(!numbers.is_empty(), "round {round}: still counting");
            assert_eq!(numbers[0], last + 1, "round {round}: counting on where it stopped");
            (offset, last) = (next, *numbers.last().unwrap());
        }
        provider.destroy(vm).await;
        assert!(common::leftovers(saves.path()).is_empty());
    });
}

#[test]
fn a_cold_booted_vm_pauses_and_resumes() {
    common::run(async {
        let provider = provider().await;
        let saves = tempfile::tempdir().unwrap();
        let vm = provider.create(&common::shape(), &common::cold_spec(&common::image())).await.unwrap();
        sh(&vm, "echo cold > /root/note").await;
        let paused = provider.pause_to_disk(&vm, &saves.path().join("cold")).await.unwrap();
        provider.destroy(vm).await;
        let vm = provider.resume_saved(&paused).await.unwrap();
        assert_eq!(sh(&vm, "cat /root/note").await, "cold");
        provider.destroy(vm).await;
    });
}

#[test]
fn a_vm_on_a_root_disk_pauses_resumes_and_forks_with_what_it_wrote_to_its_disk() {
    common::run(async {
        let provider = provider().await;
        let work = tempfile::tempdir().unwrap();
        let disk = common::busybox_disk(work.path(), &["sh", "cat", "echo", "sync"], &[]);
        let base = std::fs::read(&disk).unwrap();
        let image = common::image();
        let mut spec = common::snapshot_spec(&image);
        spec.image = image.paths.clone().with_disk(RootDisk::new(&disk, DiskFormat::Raw));
        let mut vm = provider.create(&ShapeKey::new("disk"), &spec).await.unwrap();
        let mut expected = String::new();
        for round in 1..=2 {
            sh(&vm, &format!("echo round-{round} >> /written; sync")).await;
            expected = format!("{expected}round-{round}\n");
            let paused =
                provider.pause_to_disk(&vm, &work.path().join(format!("paused-{round}"))).await.unwrap();
            provider.destroy(vm).await;
            assert!(
                paused.total_bytes() > paused.state_bytes(),
                "round {round}: the disk layers are saved too"
            );
            vm = provider.resume_saved(&paused).await.unwrap();
            assert_eq!(sh(&vm, "cat /written").await, expected.trim_end(), "round {round}");
        }
        // A fork's disk is a copy-on-write copy of the parent's at that moment.
        let fork = provider.fork(&vm, 1).await.unwrap().pop().unwrap().unwrap();
        assert_eq!(sh(&fork, "cat /written").await, expected.trim_end(), "the fork has the parent's disk");
        sh(&fork, "echo fork >> /written; sync").await;
        assert_eq!(sh(&vm, "cat /written").await, expected.trim_end(), "the parent's disk is its own");
        provider.destroy(fork).await;
        provider.destroy(vm).await;
        assert!(std::fs::read(&disk).unwrap() == base, "the base disk is never written");
    });
}

#[test]
fn a_save_that_fails_leaves_the_vm_running_and_nothing_behind() {
    common::run(async {
        let provider = provider().await;
        let saves = tempfile::tempdir().unwrap();
        let vm = provider.create(&common::shape(), &common::snapshot_spec(&common::image())).await.unwrap();
        let taken = saves.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        let err = provider.pause_to_disk(&vm, &taken).await.unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        let blocked = saves.path().join("file");
        std::fs::write(&blocked, b"not a directory").unwrap();
        assert!(provider.snapshot(&vm, &blocked.join("snap")).await.is_err());
        assert_eq!(sh(&vm, "echo alive").await, "alive", "the VM runs on");
        assert_eq!(vm.status().await.unwrap(), firepit_qemu::VmStatus::Running);
        let mut left = common::leftovers(saves.path());
        left.sort();
        assert_eq!(left, [blocked, taken], "no scratch left");
        provider.destroy(vm).await;
    });
}

#[test]
fn a_damaged_saved_vm_is_refused_before_it_runs() {
    common::run(async {
        // A provider of its own: no other test's QEMU shares its runtime directory.
        let runtime = common::runtime_dir("damaged");
        let provider = common::provider(&runtime, |_| {});
        let saves = tempfile::tempdir().unwrap();
        let vm = provider.create(&common::shape(), &common::cold_spec(&common::image())).await.unwrap();
        let snapshot = provider.snapshot(&vm, &saves.path().join("snap")).await.unwrap();
        assert_eq!(sh(&vm, "echo running").await, "running", "a snapshot leaves the VM running");
        provider.destroy(vm).await;
        let state = snapshot.dir().join("state.bin");
        let mut bytes = std::fs::read(&state).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&state, &bytes).unwrap();
        let started = std::time::Instant::now();
        let err = provider.start_from_snapshot(&snapshot).await.unwrap_err();
        assert!(matches!(err, QemuError::Lifecycle(LifecycleError::Damaged { .. })), "{err:?}");
        assert!(err.to_string().contains("SHA-256"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(15), "refused, not hung: {:?}", started.elapsed());
        std::fs::write(&state, &bytes[..middle]).unwrap();
        let err = SavedVm::open(snapshot.dir()).unwrap_err();
        assert!(matches!(err, LifecycleError::Damaged { .. }), "{err:?}");
        assert!(err.to_string().contains("truncated"), "{err}");
        std::fs::remove_file(&state).unwrap();
        let err = SavedVm::open(snapshot.dir()).unwrap_err();
        assert!(
            matches!(err, LifecycleError::Damaged { .. }) && err.to_string().contains("state.bin"),
            "{err}"
        );
        let err = SavedVm::open(&saves.path().join("never-saved")).unwrap_err();
        assert!(matches!(err, LifecycleError::NotSaved { .. }), "{err:?}");
        assert!(common::qemu_children(&runtime).is_empty(), "the QEMU that loaded it is gone");
        common::assert_removed_empty(&runtime);
    });
}
