//! The daemon under soak: `firepit serve` as a child process (through the one harness,
//! [`crate::child_daemon`]) on a private directory, which the soak can start, `kill -9`, restart on
//! the same state dir and stop with SIGTERM.
//!
//! Layout of the soak directory (mode 0700, removed at the end unless the soak fails or
//! `--keep-dir`):
//!
//! ```text
//! <soak dir>/firepit.toml       the daemon's config (one shape, small depth)
//! <soak dir>/qemu-with-faults   the QEMU binary the config names: a script that fails while
//!                               fail-fills exists and otherwise execs the real QEMU
//! <soak dir>/fail-fills         exists only while a fill-failure window is open
//! <soak dir>/api.sock           the API socket
//! <soak dir>/daemon-<n>.log     stderr of the n-th daemon run
//! <soak dir>/state/             the daemon's state dir: daemon.lock, owned/, vms/
//! ```
//!
//! Fill failures are injected from outside the product: the config's `qemu_binary` points at the
//! wrapper script, so while `fail-fills` exists every QEMU the daemon starts exits at once with an
//! error, exactly as a host out of resources would make it; the engine counts a fill failure,
//! backs off and retries. `exec` keeps the process (pid, parent-death signal, command line) the
//! real QEMU's.
//!
//! Snapshot templates go to a private template dir of the soak's own on tmpfs
//! (`/dev/shm/<soak dir name>-templates`), so a soak never touches the machine's default template
//! dir; the daemon keeps its template there across the restart (reused) and the soak removes the
//! dir at the end with the soak directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_client::Client;

use crate::child_daemon::ChildDaemon;
use crate::daemon_dir::{ChildDaemonError, DaemonDir, DaemonSettings, ShapeSettings};

/// The shape name the soak config declares.
pub const SHAPE: &str = "soak";

/// What the daemon's config says.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    /// Guest image directory.
    pub image: PathBuf,
    /// Ready VMs to keep (depth.high; depth.low is 1).
    pub depth: usize,
    /// `cold` or `snapshot`.
    pub fill: String,
    /// Guest memory per VM, MiB.
    pub memory_mb: u64,
}

/// The soak's private directory and the daemon running on it.
pub struct SoakDaemon {
    /// The daemon's state dir.
    pub state_dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    /// The fault-injection trigger file: fills fail while it exists.
    pub fail_fills_file: PathBuf,
    /// The daemon's snapshot template dir (`snapshots.template_dir`), the soak's own.
    pub template_dir: PathBuf,
    /// VMs the health check refused at hand-out, summed over runs (from `/metrics`).
    pub health_check_rejections: u64,
    child: ChildDaemon,
}

impl SoakDaemon {
    /// Creates the soak directory under `parent`, the QEMU wrapper and the config.
    pub fn prepare(parent: &Path, settings: &SoakSettings) -> Result<Self, ChildDaemonError> {
        let dir = DaemonDir::create(parent, "soak")?;
        let fail_fills_file = dir.path().join("fail-fills");
        let wrapper = dir.path().join("qemu-with-faults");
        let script = format!(
            "#!/bin/sh\n# firepit soak: fail this fill while the trigger file exists.\n\
             if [ -e '{trigger}' ]; then echo 'soak: injected fill failure ({trigger} exists)' >&2; exit 1; fi\n\
             exec '{qemu}' \"$@\"\n",
            trigger = fail_fills_file.display(),
            qemu = real_qemu().display(),
        );
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| ChildDaemonError::Io { what, path, source }
        };
        std::fs::write(&wrapper, script).map_err(io("cannot write", &wrapper))?;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot make executable", &wrapper))?;
        let shm = Path::new("/dev/shm");
        let template_base = if shm.is_dir() { shm } else { dir.path() };
        let name = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let template_dir = template_base.join(format!("{name}-templates"));
        let shape = ShapeSettings {
            memory_mb: settings.memory_mb,
            depth_low: 1,
            depth_high: settings.depth,
            fill: settings.fill.clone(),
            health_check: true,
            ..ShapeSettings::new(SHAPE, &settings.image)
        };
        let config = DaemonSettings {
            template_dir: Some(template_dir.clone()),
            qemu_binary: Some(wrapper),
            ttl_secs: (60, 600),
            shutdown_budget_secs: 5,
            ..DaemonSettings::new(&dir, vec![shape])
        };
        let binary = std::env::current_exe().map_err(io("cannot find", Path::new("/proc/self/exe")))?;
        Ok(Self {
            state_dir: config.state_dir.clone(),
            socket: config.socket.clone(),
            fail_fills_file,
            template_dir,
            health_check_rejections: 0,
            child: ChildDaemon::new(binary, dir, &config)?,
        })
    }

    /// The soak directory.
    pub fn dir(&self) -> &Path {
        self.child.dir().path()
    }

    /// Leaves the soak directory on disk at the end.
    pub fn keep_dir(&mut self) {
        self.child.keep_dir();
    }

    /// A client for the daemon's socket.
    pub fn client(&self) -> Client {
        self.child.client()
    }

    /// Pids of every daemon run so far (their /dev/shm templates are checked at the end).
    pub fn pids(&self) -> &[u32] {
        self.child.pids()
    }

    /// Highest peak RSS (KiB) seen over all runs.
    pub fn max_rss_kib(&self) -> u64 {
        self.child.max_rss_kib()
    }

    /// The daemon log files written so far.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.child.logs()
    }

    /// Starts `firepit serve` and waits until `/healthz` answers (the pool is warm by then).
    pub async fn start(&mut self, ready_within: Duration) -> Result<(), ChildDaemonError> {
        self.child.start(ready_within).await
    }

    /// Records the daemon's peak RSS so far.
    pub fn sample_rss(&mut self) {
        self.child.sample_rss();
    }

    /// Adds this run's `firepit_pool_validation_failures_total` (health-check refusals); call once
    /// per run, right before it ends (counters restart with the daemon).
    async fn count_health_rejections(&mut self) {
        let Ok(text) = self.client().metrics().await else { return };
        let sum: f64 = text
            .lines()
            .filter(|l| l.starts_with("firepit_pool_validation_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        self.health_check_rejections += sum as u64;
    }

    /// `kill -9` the daemon and wait for it to be gone.
    pub async fn kill_hard(&mut self) {
        if self.child.pid().is_some() {
            self.count_health_rejections().await;
        }
        self.child.kill_hard().await;
    }

    /// SIGTERM, then wait up to `within` for a clean exit; true when it exited 0. If it did not
    /// exit in time it is killed and false returned.
    pub async fn stop(&mut self, within: Duration) -> bool {
        self.count_health_rejections().await;
        match self.child.stop(within).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "the soak daemon did not stop cleanly");
                false
            }
        }
    }
}

/// The QEMU the wrapper runs: `qemu-system-x86_64` resolved in `PATH` (the wrapper must not find
/// itself), or the bare name when it is not there (the daemon then reports QEMU missing).
fn real_qemu() -> PathBuf {
    let name = "qemu-system-x86_64";
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}
