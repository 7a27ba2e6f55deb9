//! The daemon under soak: `firepit serve` as a child process on a private directory, which the soak
//! can start, `kill -9`, restart on the same state dir and stop with SIGTERM.
//!
//! Layout of the soak directory (mode 0700, removed at the end unless `--keep-dir`):
//!
//! ```text
//! <soak dir>/firepit.toml     the daemon's config (one shape, small depth, [faults])
//! <soak dir>/api.sock         the API socket
//! <soak dir>/fail-fills       exists only while a fill-failure window is open
//! <soak dir>/daemon-<n>.log   stderr of the n-th daemon run
//! <soak dir>/state/           the daemon's state dir: daemon.lock, owned/, vms/
//! ```
//!
//! Snapshot templates go to a private template dir of the soak's own on tmpfs
//! (`/dev/shm/<soak dir name>-templates`), so a soak never touches the machine's default template
//! dir; the daemon keeps its template there across the restart (reused) and the soak removes the
//! dir at the end with the soak directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use firepit::daemon::client::{Client, Endpoint};
use hyper::Method;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The shape name the soak config declares.
pub const SHAPE: &str = "soak";

/// Why the daemon could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SoakDaemonError {
    /// A file operation on the soak directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The daemon exited or never answered `/healthz` in time.
    #[error("the daemon did not become ready within {secs} s ({why}); see {log}")]
    NotReady {
        /// The bound.
        secs: u64,
        /// What was seen.
        why: String,
        /// Its log file.
        log: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SoakDaemonError {
    let path = path.to_owned();
    move |source| SoakDaemonError::Io { what, path, source }
}

/// What the daemon's config says.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
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
    /// The soak directory.
    pub dir: PathBuf,
    /// The daemon's state dir.
    pub state_dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    /// The fault-injection trigger file (`faults.fail_fills_file`).
    pub fail_fills_file: PathBuf,
    /// The daemon's snapshot template dir (`snapshots.template_dir`), the soak's own.
    pub template_dir: PathBuf,
    config: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    runs: usize,
    /// Pids of every daemon run so far (their /dev/shm templates are checked at the end).
    pub pids: Vec<u32>,
    /// Highest VmHWM (peak RSS, KiB) seen over all runs.
    pub max_rss_kib: u64,
    /// VMs the health check refused at hand-out, summed over runs (from `/metrics`).
    pub health_check_rejections: u64,
}

impl SoakDaemon {
    /// Creates the soak directory under `parent` and writes the config.
    pub fn prepare(parent: &Path, settings: &DaemonSettings) -> Result<Self, SoakDaemonError> {
        let dir = parent.join(format!("firepit-soak-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io("cannot create", &dir))?;
        let state_dir = dir.join("state");
        let socket = dir.join("api.sock");
        let fail_fills_file = dir.join("fail-fills");
        let config = dir.join("firepit.toml");
        let shm = Path::new("/dev/shm");
        let template_base = if shm.is_dir() { shm } else { dir.as_path() };
        let template_dir = template_base.join(format!(
            "{}-templates",
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        let text = format!(
            "state_dir = {state_dir:?}\n\
             [listen]\nsocket = {socket:?}\n\
             [limits]\nparallel_fills = 2\n\
             [leases]\ndefault_ttl_secs = 60\nmax_ttl_secs = 600\n\
             [shutdown]\nbudget_secs = 5\n\
             [faults]\nfail_fills_file = {fail_fills_file:?}\n\
             [snapshots]\ntemplate_dir = {template_dir:?}\n\
             [[shape]]\nname = \"{SHAPE}\"\nimage = {image:?}\nmemory_mb = {memory}\n\
             depth = {{ low = 1, high = {depth} }}\nfill = \"{fill}\"\nhealth_check = true\n",
            image = settings.image,
            memory = settings.memory_mb,
            depth = settings.depth,
            fill = settings.fill,
        );
        std::fs::write(&config, text).map_err(io("cannot write", &config))?;
        let binary = std::env::current_exe().map_err(io("cannot find", Path::new("/proc/self/exe")))?;
        Ok(Self {
            dir,
            state_dir,
            socket,
            fail_fills_file,
            template_dir,
            config,
            binary,
            child: None,
            runs: 0,
            pids: Vec::new(),
            max_rss_kib: 0,
            health_check_rejections: 0,
        })
    }

    /// A client for the daemon's socket.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    /// The running daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts `firepit serve` and waits until `/healthz` answers (the pool is warm by then).
    pub async fn start(&mut self, ready_within: Duration) -> Result<(), SoakDaemonError> {
        self.runs += 1;
        let log = self.dir.join(format!("daemon-{}.log", self.runs));
        let log_file = std::fs::File::create(&log).map_err(io("cannot create", &log))?;
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("cannot start", &self.binary))?;
        self.pids.extend(child.id());
        self.child = Some(child);
        let not_ready = |why: String| SoakDaemonError::NotReady {
            secs: ready_within.as_secs(),
            why,
            log: log.display().to_string(),
        };
        let deadline = Instant::now() + ready_within;
        let client = self.client();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(not_ready(format!("it exited: {status}")));
            }
            if let Ok(response) = client.request(Method::GET, "/healthz", None, &[]).await
                && response.status.is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(not_ready("no answer on /healthz".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Records the daemon's peak RSS so far (VmHWM in /proc/<pid>/status).
    pub fn sample_rss(&mut self) {
        let Some(pid) = self.pid() else { return };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        self.max_rss_kib = self.max_rss_kib.max(hwm);
    }

    /// Adds this run's `firepit_pool_validation_failures_total` (health-check refusals); call once
    /// per run, right before it ends (counters restart with the daemon).
    async fn count_health_rejections(&mut self) {
        let Ok(response) = self.client().request(Method::GET, "/metrics", None, &[]).await else { return };
        let text = response.text();
        let sum: f64 = text
            .lines()
            .filter(|l| l.starts_with("firepit_pool_validation_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        self.health_check_rejections += sum as u64;
    }

    /// `kill -9` the daemon and wait for it to be gone.
    pub async fn kill_hard(&mut self) {
        self.sample_rss();
        if self.child.is_some() {
            self.count_health_rejections().await;
        }
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.start_kill() {
                tracing::warn!(%error, "cannot SIGKILL the daemon");
            }
            if let Err(error) = child.wait().await {
                tracing::warn!(%error, "cannot wait for the daemon");
            }
        }
    }

    /// SIGTERM, then wait up to `within` for a clean exit; true when it exited 0. If it did not
    /// exit in time it is killed and false returned.
    pub async fn stop(&mut self, within: Duration) -> bool {
        self.sample_rss();
        self.count_health_rejections().await;
        let Some(mut child) = self.child.take() else { return false };
        let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else { return false };
        // SAFETY: kill(2) on our own child, which has not been waited for (its pid is still ours).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return false;
        }
        match tokio::time::timeout(within, child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                if let Err(error) = child.start_kill() {
                    tracing::warn!(%error, "cannot SIGKILL the daemon");
                }
                if let Err(error) = child.wait().await {
                    tracing::warn!(%error, "cannot wait for the daemon");
                }
                false
            }
        }
    }

    /// The daemon log files written so far.
    pub fn logs(&self) -> Vec<PathBuf> {
        (1..=self.runs).map(|n| self.dir.join(format!("daemon-{n}.log"))).collect()
    }
}
