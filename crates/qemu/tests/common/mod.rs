//! Shared helpers of the real-VM integration tests.
//!
//! The guest image comes from `FIREPIT_IMAGE_DIR` (a `firepit image build` output directory with
//! `manifest.json`, `vmlinuz`, `initramfs.cpio.gz`). Without it the tests FAIL: they exist to boot
//! real VMs, skipping would hide that nothing was tested.
//!
//! All VM work runs on one multi-thread runtime, *inside spawned tasks*: QEMU gets
//! `PR_SET_PDEATHSIG`, which fires when the thread that forked it exits, and libtest's per-test
//! threads exit as soon as a test ends, while the runtime's workers live for the whole binary.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use firepit_pool::ShapeKey;
use firepit_qemu::{FillStrategy, ImagePaths, ProviderConfig, QemuProvider, VmSpec};

/// The test image: id, version and paths.
pub struct TestImage {
    pub id: String,
    pub version: String,
    pub paths: ImagePaths,
}

/// Reads the image named by `FIREPIT_IMAGE_DIR`; panics with instructions when it is missing.
pub fn image() -> TestImage {
    let dir = std::env::var_os("FIREPIT_IMAGE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "FIREPIT_IMAGE_DIR is not set: these tests boot real VMs. Build the guest image \
             (`firepit image build --out DIR`, see scripts/test) and run with FIREPIT_IMAGE_DIR=DIR"
        )
    });
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; rebuild the image", manifest_path.display()));
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", manifest_path.display()));
    let field = |name: &str, default: &str| {
        manifest.get(name).and_then(|v| v.as_str()).unwrap_or(default).to_string()
    };
    let kernel = dir.join(field("kernel", "vmlinuz"));
    let initramfs = dir.join(field("initramfs", "initramfs.cpio.gz"));
    for path in [&kernel, &initramfs] {
        assert!(path.is_file(), "{} is missing; rebuild the image", path.display());
    }
    TestImage {
        id: field("id", "test-image"),
        version: field("kernel_version", "unknown"),
        paths: ImagePaths::new(kernel, initramfs),
    }
}

/// The runtime every VM of this test binary lives on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the test runtime")
    })
}

/// Runs `future` as a task on the shared runtime (see the module docs for why a task).
pub fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime();
    match rt.block_on(rt.spawn(future)) {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("test task failed: {e}"),
    }
}

/// The path of a test's private runtime directory.
pub fn runtime_dir_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fpq-{}-{name}", std::process::id()))
}

/// A fresh private runtime directory for one test (the provider creates it).
pub fn runtime_dir(name: &str) -> PathBuf {
    let dir = runtime_dir_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A provider with runtime files under `dir`, booting under TCG unless FIREPIT_ACCEL says otherwise.
pub fn provider(dir: &Path, tweak: impl FnOnce(&mut ProviderConfig)) -> QemuProvider {
    let mut config = ProviderConfig {
        runtime_dir: dir.to_path_buf(),
        // Generous: a TCG boot takes ≈3 s on an idle 2-core machine but 30 s and more when other
        // builds load it.
        boot_timeout: Duration::from_secs(180),
        ..Default::default()
    };
    tweak(&mut config);
    QemuProvider::new(config).expect("creating the provider")
}

/// Directories removed when the test process exits (see [`shared_provider`]).
static REMOVE_AT_EXIT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

extern "C" fn remove_at_exit() {
    let dirs = REMOVE_AT_EXIT.lock().map(|dirs| dirs.clone()).unwrap_or_default();
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The snapshot template directory of [`shared_provider`]`(name)`, private to this process.
pub fn shared_template_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/fpq-{}-{name}-templates", std::process::id()))
}

/// A provider the tests of one binary share: runtime files in a fresh [`runtime_dir`]`(name)`,
/// snapshot templates in [`shared_template_dir`]`(name)` (not kept for reuse); both directories
/// are removed when the process exits (a static's `Drop` never runs).
pub fn shared_provider(name: &str) -> QemuProvider {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain extern "C" fn with no captured state, once.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(remove_at_exit);
    });
    if let Ok(mut dirs) = REMOVE_AT_EXIT.lock() {
        dirs.extend([shared_template_dir(name), runtime_dir_path(name)]);
    }
    provider(&runtime_dir(name), |c| {
        c.template_dir = shared_template_dir(name);
        c.keep_templates = false;
    })
}

/// The default test shape's name.
pub fn shape() -> ShapeKey {
    ShapeKey::new("test")
}

/// The test image as a cold-booted shape: 1 vCPU, 256 MiB, the console the test's.
pub fn cold_spec(image: &TestImage) -> VmSpec {
    let mut spec = VmSpec::new(image.id.clone(), image.paths.clone());
    spec.fill = FillStrategy::ColdBoot;
    spec.console = true;
    spec
}

/// The test image as a snapshot shape: 1 vCPU, 256 MiB, clones of a template.
pub fn snapshot_spec(image: &TestImage) -> VmSpec {
    let mut spec = cold_spec(image);
    spec.fill = FillStrategy::Snapshot;
    spec
}

/// Live QEMU children of this test process whose command line mentions `dir` (other tests' VMs,
/// running concurrently, have other directories).
pub fn qemu_children(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // stat: "pid (comm) state ppid ..."; comm may contain spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if head.contains("(qemu") && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Whether `pid` exists at all (a zombie counts as existing).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Entries left in `dir` (empty if the directory is gone).
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect()
}

/// Asserts that a provider's runtime directory holds nothing, then removes it.
pub fn assert_removed_empty(dir: &Path) {
    let left = leftovers(dir);
    assert!(left.is_empty(), "left behind in {}: {left:?}", dir.display());
    let _ = std::fs::remove_dir(dir);
}

/// (RSS, PSS) of a process in KiB, from /proc/PID/smaps_rollup.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    firepit_qemu::process_memory_kib(pid).unwrap_or_default()
}

/// A raw ext4 root disk in `dir` (`mkfs.ext4 -d`, 16 MiB) holding `/bin/busybox` from the test
/// image's initramfs with `applets` linked to it, and `files` (path in the disk, contents,
/// executable). Nothing of firepit is on it.
pub fn busybox_disk(dir: &Path, applets: &[&str], files: &[(&str, &[u8], bool)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = firepit_image::initramfs::extract(&image().paths.initramfs, "bin/busybox")
        .unwrap()
        .expect("the image's initramfs has bin/busybox");
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write(&root.join("bin/busybox"), &busybox, 0o755);
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for (path, bytes, executable) in files {
        write(&root.join(path), bytes, if *executable { 0o755 } else { 0o644 });
    }
    let disk = dir.join("root.img");
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&root)
        .arg(&disk)
        .arg("16M")
        .status()
        .expect("mkfs.ext4 (e2fsprogs) not found: run scripts/setup");
    assert!(status.success());
    disk
}

/// `GET /` through `addr` from the host (HTTP/1.0: the reply ends when the server closes), 20 s
/// at most for the connection and as much for the reply.
pub async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(Duration::from_secs(20), connect).await??;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut reply)).await??;
    Ok(reply)
}
