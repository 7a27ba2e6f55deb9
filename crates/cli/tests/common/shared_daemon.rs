//! One real `firepit serve` (real VMs) shared by every test of a test binary, on one runtime.
//!
//! libtest runs a binary's tests as threads of one process; each test runs its body with [`run`]
//! on the binary's one multi-thread runtime and gets the daemon from [`daemon`] (started on first
//! use). Statics are never dropped, so an `atexit` hook stops the daemon with SIGTERM (it destroys
//! its VMs), reaps it, and removes its directory.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use firepit_tools::child_daemon::ChildDaemon;
use firepit_tools::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};
use tokio::sync::OnceCell;

static PID: AtomicU32 = AtomicU32::new(0);
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The running daemon and where to reach it.
pub struct Shared {
    /// The child (`client()`, `socket()`, `pid()`, `log_tail()`).
    pub daemon: ChildDaemon,
    /// Its state dir.
    pub state_dir: PathBuf,
}

/// The binary's runtime (its workers live as long as the process).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
    })
}

/// Runs a test body on the binary's runtime.
pub fn run<F: Future<Output = ()> + Send + 'static>(body: F) {
    let handle = runtime().spawn(body);
    if let Err(error) = runtime().block_on(handle) {
        std::panic::resume_unwind(error.into_panic());
    }
}

extern "C" fn stop_shared_daemon() {
    let pid = PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: signals and reaps the daemon this test binary started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child, without blocking.
            let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if reaped != 0 {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: as above; the daemon did not stop in time.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The shared daemon: one snapshot shape `default` of `memory_mb` per VM, `depth` VMs ready.
pub async fn daemon(label: &str, memory_mb: u64, depth: usize) -> &'static Shared {
    daemon_with(label, memory_mb, depth, "").await
}

/// [`daemon`] with `extra_toml` appended to its config file (sections the settings lack).
pub async fn daemon_with(label: &str, memory_mb: u64, depth: usize, extra_toml: &str) -> &'static Shared {
    static SHARED: OnceCell<Shared> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async move {
            let mut dir = DaemonDir::create(&std::env::temp_dir(), label).expect("a private temp dir");
            dir.keep(); // removed by the atexit hook
            let shape = ShapeSettings {
                memory_mb,
                depth_low: depth,
                depth_high: depth,
                ..ShapeSettings::new("default", super::image().dir())
            };
            let mut settings = DaemonSettings::new(&dir, vec![shape]);
            settings.template_dir = Some(dir.path().join("templates"));
            let path = dir.path().to_path_buf();
            let state_dir = settings.state_dir.clone();
            let mut daemon = super::daemon(dir, &settings);
            if !extra_toml.is_empty() {
                let mut text = std::fs::read_to_string(daemon.config_path()).expect("the config file");
                text.push_str(extra_toml);
                std::fs::write(daemon.config_path(), text).expect("the config file");
            }
            daemon.start(super::BOOT_DEADLINE).await.unwrap_or_else(|e| panic!("{e}"));
            PID.store(daemon.pid().unwrap_or(0), Ordering::SeqCst);
            let _ = DIR.set(path);
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe { libc::atexit(stop_shared_daemon) };
            super::wait_full(&mut daemon).await;
            Shared { daemon, state_dir }
        })
        .await
}
