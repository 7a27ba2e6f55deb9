//! Images firepit builds, on real VMs: a root disk from Debian packages (`python3`, built once
//! per target dir and found by its input hash afterwards) answers on a snapshot clone, and an OCI
//! image of two layers (the second deleting a file with a whiteout and replacing a directory with
//! an opaque whiteout) boots with its layers applied and its config's Env, WorkingDir and User as
//! the defaults of exec.

mod common;
mod vm_disk_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use firepit::image::{DiskImage, Image, OciImporter, PackageDiskBuilder};
use firepit::qemu::FillKind;
use firepit::{Channel, ProcessOutputRequest, SpawnRequest, StartProcessRequest};
use firepit::{FillStrategy, Firepit, PoolShape, ShapeSpec, VmConfig};
use sha2::{Digest, Sha256};
use vm_disk_support as support;

fn pool_builder(disk: &DiskImage, runtime: &Path) -> firepit::VmPoolBuilder {
    let image = Image::open_default().unwrap_or_else(|e| panic!("{e}"));
    Firepit::pool(VmConfig::from_disk(&image, disk))
        .provider_config(common::provider_config(runtime))
        .boot_timeout(Duration::from_secs(120))
}

fn pss_mib(pid: u32) -> f64 {
    firepit::qemu::process_memory_kib(pid).map(|(_, pss)| pss as f64 / 1024.0).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_a_python3_package_disk_answers_42_on_a_snapshot_clone() {
    let store = support::test_store();
    let started = Instant::now();
    let builder = PackageDiskBuilder::new(&store, ["python3"]);
    let disk = tokio::task::spawn_blocking(move || {
        builder.build(&mut |p| eprintln!("[{}/{}] {}", p.step, p.total, p.message))
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    let first_build = started.elapsed();
    let started = Instant::now();
    let again = PackageDiskBuilder::new(&store, ["python3"]).build(&mut |_| {}).unwrap();
    let cached_build = started.elapsed();
    assert_eq!(again.id(), disk.id(), "the same inputs find the same image");
    assert!(disk.record().packages.iter().any(|p| p.name == "python3"), "{:?}", disk.record().packages);

    let runtime = tempfile::tempdir().unwrap();
    let pool =
        pool_builder(&disk, runtime.path()).fill_strategy(FillStrategy::Snapshot).build(2).await.unwrap();
    let vm = pool.reserve().await.unwrap();
    assert_eq!(vm.fill(), FillKind::Snapshot, "a clone of the template");
    let restore = vm.boot_duration();
    // Memory of a warm VM, as the pool keeps it (idle, 2 s after it was made).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clone_pss = pss_mib(vm.pid());
    let out = vm.exec(["python3", "-c", "print(6*7)"]).await.unwrap();
    assert_eq!((out.exit_code, out.stdout_lossy().trim()), (Some(0), "42"), "{out:?}");
    let clone_pss_used = pss_mib(vm.pid());

    // The same disk cold-booted, for comparison.
    let cold_runtime = tempfile::tempdir().unwrap();
    let cold_pool = pool_builder(&disk, cold_runtime.path())
        .fill_strategy(FillStrategy::ColdBoot)
        .build(1)
        .await
        .unwrap();
    let cold = cold_pool.reserve().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cold_boot, cold_pss) = (cold.boot_duration(), pss_mib(cold.pid()));
    assert_eq!(cold.exec(["python3", "-c", "print(6*7)"]).await.unwrap().stdout_lossy().trim(), "42");
    let cold_pss_used = pss_mib(cold.pid());
    let ratio = cold_boot.as_secs_f64() / restore.as_secs_f64();
    let pss_share = clone_pss / cold_pss;
    eprintln!(
        "python3 image {}: build {:.1} s (cached {:.3} s); cold boot {:.2} s, restore {:.3} s ({ratio:.1}x); \
         idle PSS clone {clone_pss:.1} MiB, cold {cold_pss:.1} MiB ({:.0} %); after python3 clone \
         {clone_pss_used:.1} MiB, cold {cold_pss_used:.1} MiB",
        disk.id(),
        first_build.as_secs_f64(),
        cached_build.as_secs_f64(),
        cold_boot.as_secs_f64(),
        restore.as_secs_f64(),
        pss_share * 100.0
    );
    // Loose bounds (the machine is shared and noisy); the report gives the measured numbers.
    assert!(ratio >= 5.0, "a restore must stay far faster than a cold boot: {ratio:.1}x");
    assert!(pss_share <= 0.25, "a clone must cost a fraction of a cold VM: {:.0} %", pss_share * 100.0);
    drop((vm, cold));
    pool.shutdown().await;
    cold_pool.shutdown().await;
}

/// An OCI image layout of two uncompressed layers made with GNU tar (names sorted, owners kept).
struct Layout {
    dir: std::path::PathBuf,
}

impl Layout {
    fn blob(&self, bytes: &[u8]) -> String {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::create_dir_all(self.dir.join("blobs/sha256")).unwrap();
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    }

    fn layer(&self, tree: &Path) -> (String, usize) {
        let tarball = self.dir.with_extension("layer.tar");
        let status = Command::new("tar")
            .args(["--sort=name", "--numeric-owner", "--mtime=@1700000000", "-cf"])
            .arg(&tarball)
            .arg("-C")
            .arg(tree)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&tarball).unwrap();
        std::fs::remove_file(&tarball).unwrap();
        (self.blob(&bytes), bytes.len())
    }
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// Layer 1: a busybox root with user `app`, `/etc/remove-me`, `/data/{old-a,sub/old-b}`, `/app`.
/// Layer 2: deletes `/etc/remove-me` (`.wh.`), replaces `/data` (`.wh..wh..opq` + `data/new`),
/// adds `/app/hello.txt`. Config: Env, WorkingDir `/app`, User `app`.
fn two_layer_layout(work: &Path) -> std::path::PathBuf {
    let lower = work.join("lower");
    support::busybox_tree(&lower);
    std::fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(lower.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    std::fs::write(lower.join("etc/remove-me"), "lower layer\n").unwrap();
    std::fs::create_dir_all(lower.join("data/sub")).unwrap();
    std::fs::write(lower.join("data/old-a"), "old\n").unwrap();
    std::fs::write(lower.join("data/sub/old-b"), "old\n").unwrap();
    std::fs::create_dir(lower.join("app")).unwrap();
    chown(&lower.join("app"), 1000);
    let upper = work.join("upper");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::create_dir_all(upper.join("data")).unwrap();
    std::fs::create_dir_all(upper.join("app")).unwrap();
    chown(&upper.join("app"), 1000);
    std::fs::write(upper.join("etc/.wh.remove-me"), "").unwrap();
    std::fs::write(upper.join("data/.wh..wh..opq"), "").unwrap();
    std::fs::write(upper.join("data/new"), "from layer 2\n").unwrap();
    std::fs::write(upper.join("app/hello.txt"), "hello from the image\n").unwrap();
    chown(&upper.join("app/hello.txt"), 1000);
    support::chmod(&upper.join("app/hello.txt"), 0o640);

    let layout = Layout { dir: work.join("app-oci") };
    let (lower_digest, lower_size) = layout.layer(&lower);
    let (upper_digest, upper_size) = layout.layer(&upper);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin","GREETING=hello-from-oci"],"WorkingDir":"/app","User":"app","Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{lower_digest}","{upper_digest}"]}}}}"#
    );
    let config_digest = layout.blob(config.as_bytes());
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{layer}","digest":"{lower_digest}","size":{lower_size}}},{{"mediaType":"{layer}","digest":"{upper_digest}","size":{upper_size}}}]}}"#,
        config.len()
    );
    let manifest_digest = layout.blob(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"app:1"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(layout.dir.join("index.json"), index).unwrap();
    std::fs::write(layout.dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layout.dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_an_imported_two_layer_oci_image_shows_its_layers_whiteouts_and_config() {
    let work = tempfile::tempdir().unwrap();
    let layout = two_layer_layout(work.path());
    let store = firepit::image::ImageStore::new(work.path().join("store"));
    let disk = OciImporter::new(&store)
        .import(&layout, &mut |p| eprintln!("[{}/{}] {}", p.step, p.total, p.message))
        .unwrap();
    let exec = &disk.record().exec;
    assert_eq!((exec.user.as_deref(), exec.working_dir.as_deref()), (Some("1000:1000"), Some("/app")));
    // The same image as an oci-archive tarball is the same image (same manifest digest).
    let archive = work.path().join("app-oci.tar");
    assert!(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&layout)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(OciImporter::new(&store).import(&archive, &mut |_| {}).unwrap().id(), disk.id());
    // A shape naming the stored image (by id, as a daemon's `[[shape]]` may, or by directory) is
    // wired to the same files and exec defaults as `VmConfig::from_disk`.
    let image = Image::open_default().unwrap_or_else(|e| panic!("{e}"));
    let expected = VmConfig::from_disk(&image, &disk).resolve().unwrap();
    for name in [std::path::PathBuf::from(disk.id()), disk.dir().to_path_buf()] {
        let shape = PoolShape::open_in(&ShapeSpec::new("app", &name), &store).unwrap();
        assert_eq!((&shape.vm.image_id, &shape.vm.image), (&expected.image_id, &expected.paths), "{name:?}");
    }
    assert_eq!(expected.paths.exec_defaults.cwd.as_deref(), Some("/app"));

    let runtime = tempfile::tempdir().unwrap();
    let pool = pool_builder(&disk, runtime.path()).build(1).await.unwrap();
    let vm = pool.reserve().await.unwrap();
    let script = "ls /data; test -e /etc/remove-me && echo remove-me-still-there; cat hello.txt; \
                  echo \"$GREETING\"; pwd; id -u; id -g; stat -c '%u %a' /app/hello.txt";
    let out = vm.exec(["sh", "-c", script]).await.unwrap();
    assert_eq!(
        out.stdout_lossy(),
        "new\nhello from the image\nhello-from-oci\n/app\n1000\n1000\n1000 640\n",
        "stderr: {}",
        out.stderr_lossy()
    );
    // A request's own settings win over the image's.
    let root = firepit::ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "id -u; pwd".into()],
        user: Some("0".into()),
        cwd: Some("/".into()),
        ..Default::default()
    };
    assert_eq!(vm.exec_request(root).await.unwrap().stdout_lossy(), "0\n/\n");
    // Attached and background processes get the image's environment and working directory too.
    let env_and_cwd = ["sh", "-c", "echo \"$GREETING\"; pwd"];
    let attached = vm.spawn(SpawnRequest::new(env_and_cwd)).await.unwrap().output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&attached.stdout), "hello-from-oci\n/app\n");
    let background = vm.start_process(StartProcessRequest::new(env_and_cwd)).await.unwrap();
    let exited = vm.wait_process(background.id, std::time::Duration::from_secs(30)).await.unwrap();
    assert!(exited.exit.is_some(), "{exited:?}");
    let read = ProcessOutputRequest {
        process: background.id.into(),
        channel: Channel::Stdout,
        offset: 0,
        max_bytes: 0,
        wait_ms: 0,
    };
    assert_eq!(
        String::from_utf8_lossy(&vm.process_output(read).await.unwrap().bytes),
        "hello-from-oci\n/app\n"
    );
    drop(vm);
    pool.shutdown().await;
}
