//! A root disk with almost nothing in it: `/bin/busybox` with six applets linked (`sh`, `ls`,
//! `cat`, `echo`, `mount`, `printf` — no `true`), a `run-test` script, nothing of firepit. The
//! warm-up of every new VM must not need a program from the user's image: the shape fills (a pool
//! of snapshot clones reaches its depth), the VMs serve execs and their console runs `./run-test`,
//! and no warm-up failed. A warm-up the guest does fail (exec defaults naming a missing working
//! directory) is counted for its shape and the VM is handed out all the same.
//!
//! The disk is made in the test from the busybox inside firepit's own initramfs (`mkfs.ext4 -d`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_agent::ExecRequest;
use firepit_guest::ExecDefaults;
use firepit_pool::{Pool, Provider, ShapeKey};
use firepit_qemu::{DiskFormat, FillStrategy, QemuProvider, RootDisk, VmSpec};
use tokio::sync::OnceCell;

/// The applets of the bare root (no `true`).
const APPLETS: [&str; 6] = ["sh", "ls", "cat", "echo", "mount", "printf"];

/// `./run-test NAME`: a line the typed command cannot contain (it is echoed on the console), then
/// `TEST_DONE`; only the applets above and shell built-ins.
const RUN_TEST: &str =
    "#!/bin/sh\nprintf 'ran-%s in %s with %s\\n' \"$1\" \"$PWD\" \"$(echo $(ls /bin))\"\necho TEST_DONE\n";

async fn provider() -> &'static QemuProvider {
    static PROVIDER: OnceCell<QemuProvider> = OnceCell::const_new();
    PROVIDER.get_or_init(|| async { common::shared_provider("minimal") }).await
}

/// The bare disk, made once per test binary (removed with its temp dir at exit).
fn disk() -> &'static Path {
    static DISK: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DISK
        .get_or_init(|| {
            let work = tempfile::tempdir().unwrap();
            let disk =
                common::busybox_disk(work.path(), &APPLETS, &[("run-test", RUN_TEST.as_bytes(), true)]);
            (work, disk)
        })
        .1
}

/// The bare disk as a shape (warm-up on, as by default), with `defaults` for its execs.
fn bare_spec(fill: FillStrategy, defaults: ExecDefaults) -> VmSpec {
    let image = common::image();
    let paths =
        image.paths.clone().with_disk(RootDisk::new(disk(), DiskFormat::Raw)).with_exec_defaults(defaults);
    let mut spec = VmSpec::new(image.id.clone(), paths);
    spec.fill = fill;
    spec.console = true;
    assert!(spec.warm_up);
    spec
}

fn argv(args: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: args.iter().map(|a| a.to_string()).collect(),
        timeout_ms: 30_000,
        ..Default::default()
    }
}

#[test]
fn a_bare_busybox_root_without_true_fills_warms_up_and_runs_its_test_through_the_console() {
    common::run(async {
        let provider = provider().await;
        let shape = ShapeKey::new("bare");
        let pool = Pool::builder(provider.clone())
            .shape(shape.clone(), bare_spec(FillStrategy::Snapshot, ExecDefaults::default()))
            .depth(2..=2)
            .warmup_timeout(Duration::from_secs(600))
            .build()
            .await
            .expect("the shape fills though its root has no `true`");
        let vm = pool.reserve_timeout(Duration::from_secs(300)).await.unwrap();

        // What the old warm-up ran does not exist here; what the user's image has works.
        let missing = vm.exec_request(argv(&["true"])).await.unwrap_err().to_string();
        assert!(missing.contains("cannot start \"true\""), "{missing}");
        let listing = vm.exec_request(argv(&["ls", "/bin"])).await.unwrap();
        let mut expected: Vec<&str> = APPLETS.into_iter().chain(["busybox"]).collect();
        expected.sort_unstable();
        assert_eq!(listing.stdout_lossy().split_whitespace().collect::<Vec<_>>(), expected);

        // The seed's case: `./run-test` from the disk, typed on the console.
        let console = vm.console().await.unwrap();
        console.send("cd / && ./run-test alpha\n").await.unwrap();
        let output = console.read_until_timeout("TEST_DONE", Duration::from_secs(60)).await.unwrap();
        assert!(
            output.contains("ran-alpha in / with busybox cat echo ls mount printf sh"),
            "console said:\n{output}"
        );

        assert!(pool.metrics().shape(&shape).unwrap().filled("snapshot") >= 2);
        let failed = provider.warm_up_failures();
        assert!(failed.iter().all(|(s, _)| *s != shape), "a warm-up failed on the bare root: {failed:?}");
        drop(vm);
        pool.shutdown().await;
    });
}

#[test]
fn a_warm_up_the_guest_fails_is_counted_for_its_shape_and_the_vm_still_serves() {
    common::run(async {
        let provider = provider().await;
        let shape = ShapeKey::new("bad-cwd");
        // Every exec that names no directory runs in one that does not exist: the warm-up too.
        let defaults = ExecDefaults { cwd: Some("/no-such-dir".into()), ..ExecDefaults::default() };
        let spec = bare_spec(FillStrategy::ColdBoot, defaults);
        let count =
            || provider.warm_up_failures().into_iter().find(|(s, _)| *s == shape).map_or(0, |(_, n)| n);
        assert_eq!(count(), 0);
        let vm = provider.create(&shape, &spec).await.expect("a failed warm-up does not fail the create");
        assert_eq!(count(), 1, "the failed warm-up is counted for its shape");
        let request = ExecRequest { cwd: Some("/".into()), ..argv(&["echo", "served"]) };
        let out = vm.exec_request(request).await.unwrap();
        assert_eq!(out.stdout_lossy().trim(), "served");
        provider.destroy(vm).await;
    });
}

#[test]
fn a_shapes_warm_up_command_runs_once_in_each_new_vm_and_a_failing_one_is_counted() {
    common::run(async {
        let provider = provider().await;
        let shape = ShapeKey::new("warm-cmd");
        let mut spec = bare_spec(FillStrategy::Snapshot, ExecDefaults::default());
        spec.shape.warm_up_argv = ["sh", "-c", "echo warmed >> /warm-up.log"].map(String::from).to_vec();
        let count = |key: &ShapeKey| {
            provider.warm_up_failures().into_iter().find(|(s, _)| s == key).map_or(0, |(_, n)| n)
        };
        for _ in 0..2 {
            let vm = provider.create(&shape, &spec).await.unwrap();
            let out = vm.exec_request(argv(&["cat", "/warm-up.log"])).await.unwrap();
            assert_eq!(
                out.stdout_lossy(),
                "warmed\n",
                "the command ran once in this clone, not in its template"
            );
            provider.destroy(vm).await;
        }
        assert_eq!(count(&shape), 0);

        let failing = ShapeKey::new("warm-cmd-missing");
        let mut spec = bare_spec(FillStrategy::ColdBoot, ExecDefaults::default());
        spec.shape.warm_up_argv = vec!["/no-such-program".into()];
        let vm = provider
            .create(&failing, &spec)
            .await
            .expect("a failed warm-up command does not fail the create");
        assert_eq!(count(&failing), 1, "counted for its shape");
        let out = vm.exec_request(argv(&["echo", "served"])).await.unwrap();
        assert_eq!(out.stdout_lossy().trim(), "served");
        provider.destroy(vm).await;
    });
}
