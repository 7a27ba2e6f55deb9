//! Root disks through the facade, on real VMs (TCG here): a busybox disk that knows nothing of
//! firepit boots with firepit's kernel and initramfs, its console answers, every VM writes only to
//! its own overlay, and images that are no image fail before anything starts — through the facade's
//! builder and through `PoolShape::open`, the daemon's path, where a shape's `image` may name a disk.
//!
//! The disk is built once per test binary (a busybox root from firepit's own initramfs, written
//! with `mkfs.ext4 -d`); each test runs its own small pool on it (snapshot fill, the facade's
//! default) in a runtime dir of its own, so leftovers are checked per test.

mod common;
mod vm_disk_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use firepit::{FillStrategy, Firepit, PoolShape, ShapeSpec, VmConfig, VmPool};
use vm_disk_support as support;

/// The busybox disk, made once for every test of this binary (removed with the process's temp dir).
fn disk() -> &'static Path {
    static DISK: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DISK
        .get_or_init(|| {
            let work = tempfile::tempdir().unwrap();
            let disk = support::busybox_disk(work.path());
            (work, disk)
        })
        .1
}

fn kernel() -> PathBuf {
    common::image().kernel().to_path_buf()
}

async fn pool_on(image: &Path, runtime: &Path, n: usize) -> Result<VmPool, firepit::Error> {
    Firepit::pool(VmConfig::new(kernel(), image))
        .console_enabled()
        .provider_config(common::provider_config(runtime))
        .boot_timeout(Duration::from_secs(120))
        .build(n)
        .await
}

/// One test as the VM-pool guide runs it: a fresh VM, `./run-test NAME` typed on its console,
/// everything up to `TEST_DONE` read back.
async fn run_test(pool: VmPool, name: &'static str) -> Result<(String, String), firepit::Error> {
    let vm = pool.reserve().await?;
    let console = vm.console().await?;
    console.send(&format!("./run-test {name}\n")).await?;
    let output = console.read_until_timeout("TEST_DONE", Duration::from_secs(60)).await?;
    Ok((name.to_owned(), output))
}

/// The guide's example, as written: `available_count().await`, spawned tests joined with
/// `handle.await??` in a function returning `Result<_, firepit::Error>`.
async fn run_tests(pool: &VmPool) -> Result<Vec<(String, String)>, firepit::Error> {
    assert_eq!(pool.available_count().await, 4, "build(4) returns once all four are ready");
    let handles: Vec<_> = ["alpha", "beta", "gamma"]
        .into_iter()
        .map(|name| tokio::spawn(run_test(pool.clone(), name)))
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await??);
    }
    Ok(results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_a_pool_of_4_on_a_busybox_disk_runs_3_tests_through_the_console() {
    let runtime = tempfile::tempdir().unwrap();
    let pool = pool_on(disk(), runtime.path(), 4).await.unwrap();
    let results = run_tests(&pool).await.unwrap();
    for (name, output) in &results {
        eprintln!("{name}: {output:?}");
        // The disk's own init is PID 1 (switch_root), the shell runs in the disk's root, and the
        // line cannot come from the echo of the typed command.
        assert!(output.contains(&support::run_test_result(name)), "test {name}: console said:\n{output}");
    }
    // The agent runs inside the disk's root too, though nothing of firepit is on the disk.
    let vm = pool.reserve().await.unwrap();
    let out = vm
        .exec(["sh", "-c", "test -x /run-test && ! test -e /sbin/firepit-agent && echo in-disk"])
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy().trim(), "in-disk", "{out:?}");
    drop(vm);
    pool.shutdown().await;
    drop(pool);
    assert!(common::leftovers(runtime.path()).is_empty(), "left: {:?}", common::leftovers(runtime.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_each_lease_writes_only_its_own_overlay_and_the_base_never_changes() {
    let runtime = tempfile::tempdir().unwrap();
    let before = support::sha256(disk());
    let pool = Firepit::pool(VmConfig::new(kernel(), disk()))
        .provider_config(common::provider_config(runtime.path()))
        .boot_timeout(Duration::from_secs(120))
        .fill_strategy(FillStrategy::Snapshot)
        .build(2)
        .await
        .unwrap();
    for lease in 0..20 {
        let vm = pool.reserve().await.unwrap();
        assert_eq!(vm.fill(), firepit::qemu::FillKind::Snapshot, "lease {lease}: a clone of the template");
        let overlay = vm.runtime_dir().join("disk.qcow2");
        assert!(overlay.is_file(), "lease {lease}: the VM writes to its own overlay {}", overlay.display());
        let script = format!(
            "test ! -e /lease-mark || {{ cat /lease-mark; exit 3; }}; echo {lease} > /lease-mark; sync"
        );
        let out = vm.exec(["sh", "-c", script.as_str()]).await.unwrap();
        assert_eq!(
            out.exit_code,
            Some(0),
            "lease {lease} saw an earlier lease's file: {}",
            out.stdout_lossy()
        );
        let back = vm.exec(["cat", "/lease-mark"]).await.unwrap();
        assert_eq!(back.stdout_lossy().trim(), lease.to_string(), "the lease sees its own write");
    }
    pool.shutdown().await;
    drop(pool);
    assert_eq!(support::sha256(disk()), before, "the base image was written to");
    let overlays = support::files_ending(runtime.path(), ".qcow2");
    assert!(overlays.is_empty(), "overlays left after shutdown: {overlays:?}");
    assert!(common::leftovers(runtime.path()).is_empty(), "left: {:?}", common::leftovers(runtime.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_bad_images_fail_clearly_before_a_vm_starts_and_the_pool_stays_up() {
    let runtime = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // The running pool boots a qcow2 copy of the disk (a qcow2 base, not only raw).
    let qcow2 = work.path().join("busybox.qcow2");
    let converted = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(disk())
        .arg(&qcow2)
        .status()
        .expect("qemu-img (qemu-utils) not found: run scripts/setup");
    assert!(converted.success());
    let pool = pool_on(&qcow2, runtime.path(), 1).await.unwrap();

    let random = work.path().join("random.img");
    std::fs::write(
        &random,
        (0..65536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let truncated = work.path().join("truncated.qcow2");
    let whole = std::fs::read(&qcow2).unwrap();
    std::fs::write(&truncated, &whole[..whole.len().min(128 * 1024)]).unwrap();
    let cases = [
        (work.path().to_path_buf(), "a directory"),
        (random, "unknown content"),
        (truncated, "truncated qcow2"),
        // Refused by the shape's validation (it is no file and no store id), as the daemon does.
        (work.path().join("missing.img"), "must be an existing image directory"),
    ];
    let bad_runtime = tempfile::tempdir().unwrap();
    for (image, found) in &cases {
        let Err(err) = pool_on(image, bad_runtime.path(), 1).await else {
            panic!("{}: a bad image must not build a pool", image.display());
        };
        let text = err.to_string();
        assert!(
            text.contains(&image.display().to_string()) && text.contains(found),
            "{}: {text}",
            image.display()
        );
        assert!(
            common::child_qemu_pids(bad_runtime.path()).is_empty(),
            "no VM may start for {}",
            image.display()
        );
        assert!(
            common::leftovers(bad_runtime.path()).is_empty(),
            "nothing may be left for {}",
            image.display()
        );
    }
    // The daemon's path: a shape whose `image` names a file goes through `PoolShape::open`; bad
    // ones are refused the same way, naming the file, and the running pool is untouched.
    for (image, found) in &cases {
        let Err(err) = PoolShape::open(&ShapeSpec::new("bad", image)) else {
            panic!("{}: a bad image must not make a shape", image.display());
        };
        // A directory is meant as a firepit image.
        let found = if *found == "a directory" { "is not a firepit image" } else { found };
        let text = error_chain(&err);
        assert!(
            text.contains(&image.display().to_string()) && text.contains(found),
            "{}: {text}",
            image.display()
        );
    }
    let raw = ShapeSpec {
        fill: FillStrategy::ColdBoot,
        depth: firepit::Depth { low: 1, high: 1 },
        ..ShapeSpec::new("raw-disk", disk())
    };
    let shape = PoolShape::open(&raw).unwrap();
    let base = shape.vm.image.disk.as_ref().map(|disk| disk.base.clone());
    assert_eq!(base, Some(disk().canonicalize().unwrap()), "the file is the shape's root disk");
    shape.register(&pool).unwrap();
    let on_disk = pool.reserve_shape(&"raw-disk".into()).await.unwrap();
    assert!(on_disk.runtime_dir().join("disk.qcow2").is_file(), "a VM of the shape writes to its overlay");
    let out = on_disk.exec(["sh", "-c", "test -x /run-test && echo in-disk"]).await.unwrap();
    assert_eq!(out.stdout_lossy().trim(), "in-disk", "{out:?}");
    drop(on_disk);

    let vm = pool.reserve().await.unwrap();
    assert_eq!(
        vm.exec(["cat", "/proc/1/cmdline"]).await.unwrap().exit_code,
        Some(0),
        "the pool still serves"
    );
    drop(vm);
    pool.shutdown().await;
    assert!(common::leftovers(runtime.path()).is_empty(), "left: {:?}", common::leftovers(runtime.path()));
}

/// An error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_disk_mb_is_the_room_a_vm_has_on_its_disk_and_bounds_its_overlay() {
    let runtime = tempfile::tempdir().unwrap();
    let disks = tempfile::tempdir().unwrap();
    // The test disk has ≈62 MiB free of its own: 24 shrinks it, 64 grows it.
    for disk_mb in [24u64, 64] {
        let config = firepit::qemu::ProviderConfig {
            disk_dir: disks.path().to_path_buf(),
            ..common::provider_config(runtime.path())
        };
        let pool = Firepit::pool(VmConfig::new(kernel(), disk()))
            .provider_config(config)
            .boot_timeout(Duration::from_secs(120))
            .fill_strategy(FillStrategy::ColdBoot)
            .disk_mb(disk_mb)
            .build(1)
            .await
            .unwrap();
        let vm = pool.reserve().await.unwrap();
        // Writing 100 MiB stops with ENOSPC near `disk_mb`.
        let script = "dd if=/dev/zero of=/big bs=1M count=100 2>&1; echo dd=$?; sync; wc -c < /big";
        let out = vm.exec(["sh", "-c", script]).await.unwrap();
        let text = out.stdout_lossy();
        assert!(text.contains("No space left on device") && text.contains("dd=1"), "{text}");
        let written: u64 = text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap();
        let expected = (disk_mb - 4) << 20..=disk_mb << 20;
        assert!(expected.contains(&written), "disk_mb {disk_mb}: wrote {} MiB before ENOSPC", written >> 20);
        // On the host the VM's overlay holds what it wrote and no more (plus metadata).
        let overlay = std::fs::metadata(vm.runtime_dir().join("disk.qcow2")).unwrap().len();
        eprintln!(
            "disk_mb {disk_mb}: the guest wrote {} MiB, its overlay is {} MiB",
            written >> 20,
            overlay >> 20
        );
        assert!(overlay <= (disk_mb + 8) << 20, "overlay {overlay} bytes for disk_mb = {disk_mb}");
        drop(vm);
        pool.shutdown().await;
        drop(pool);
        assert!(
            common::leftovers(runtime.path()).is_empty(),
            "left: {:?}",
            common::leftovers(runtime.path())
        );
    }
    assert_eq!(
        std::fs::read_dir(disks.path()).unwrap().count(),
        2,
        "one sized copy per size, kept for reuse"
    );
}
