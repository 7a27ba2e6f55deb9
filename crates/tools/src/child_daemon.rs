//! The one harness that runs `firepit serve` as a child process: `bench api`, the soak and the
//! end-to-end tests of the CLI crate all start their daemon through it.
//!
//! A [`DaemonDir`] is a private directory (0700) holding the config, the API socket, the state
//! dir and the daemon's logs, removed on drop. A [`ChildDaemon`] starts `firepit serve --config`
//! on it (any number of times: the soak restarts it on the same state dir), waits until the API
//! answers, and stops it with SIGTERM (graceful: the daemon destroys its VMs) or `kill -9`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), firepit_tools::daemon_dir::ChildDaemonError> {
//! use std::time::Duration;
//! use firepit_tools::child_daemon::ChildDaemon;
//! use firepit_tools::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};
//! let dir = DaemonDir::create(&std::env::temp_dir(), "example")?;
//! let settings = DaemonSettings::new(&dir, vec![ShapeSettings::new("small", "/var/lib/firepit/image")]);
//! let mut daemon = ChildDaemon::new("firepit".into(), dir, &settings)?;
//! daemon.start(Duration::from_secs(120)).await?;
//! println!("{:?}", daemon.client().pools().await);
//! daemon.stop(Duration::from_secs(60)).await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use firepit_client::{Client, Endpoint};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::daemon_dir::{ChildDaemonError, DaemonDir, DaemonSettings, io};

/// `firepit serve` as a child process on a [`DaemonDir`].
#[derive(Debug)]
pub struct ChildDaemon {
    binary: PathBuf,
    dir: DaemonDir,
    config: PathBuf,
    socket: PathBuf,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    runs: usize,
    pids: Vec<u32>,
    max_rss_kib: u64,
}

impl ChildDaemon {
    /// Writes the config for `settings` into `dir`; `binary` is the `firepit` executable
    /// (`std::env::current_exe()` from the CLI, `env!("CARGO_BIN_EXE_firepit")` in tests).
    pub fn new(binary: PathBuf, dir: DaemonDir, settings: &DaemonSettings) -> Result<Self, ChildDaemonError> {
        let config = dir.path().join("firepit.toml");
        std::fs::write(&config, settings.to_toml()).map_err(io("cannot write", &config))?;
        Ok(Self {
            binary,
            dir,
            config,
            socket: settings.socket.clone(),
            extra_args: Vec::new(),
            env: Vec::new(),
            child: None,
            runs: 0,
            pids: Vec::new(),
            max_rss_kib: 0,
        })
    }

    /// Extra arguments for `firepit serve` (e.g. `--log-json`).
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// An environment variable for the daemon (e.g. the TCP token the config names).
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The daemon's directory.
    pub fn dir(&self) -> &DaemonDir {
        &self.dir
    }

    /// Leaves the directory (logs, state) on disk when this is dropped.
    pub fn keep_dir(&mut self) {
        self.dir.keep();
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A client of the daemon's socket.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()))
    }

    /// The running daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Pids of every run so far.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// The log of the current (or last) run.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("daemon-{}.log", self.runs.max(1)))
    }

    /// What the current (or last) run printed on stdout.
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join(format!("daemon-{}.out", self.runs.max(1)))
    }

    /// The logs of every run so far.
    pub fn logs(&self) -> Vec<PathBuf> {
        (1..=self.runs).map(|n| self.dir.path().join(format!("daemon-{n}.log"))).collect()
    }

    /// The last `lines` lines of the current run's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts `firepit serve --config` (logging at `$RUST_LOG`, default `info`, to a log file of
    /// this run) and waits until `/healthz` answers: the daemon binds once its pools are warm.
    pub async fn start(&mut self, ready_within: Duration) -> Result<(), ChildDaemonError> {
        self.spawn()?;
        let deadline = Instant::now() + ready_within;
        let client = self.client();
        loop {
            if let Err(error) = self.check_running() {
                let why = error.to_string();
                return Err(self.not_ready(ready_within, why));
            }
            if client.healthz().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(ready_within, "no answer on /healthz".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spawn(&mut self) -> Result<(), ChildDaemonError> {
        self.runs += 1;
        let log = self.log_path();
        let log_file = std::fs::File::create(&log).map_err(io("cannot create", &log))?;
        let out = self.stdout_path();
        let out_file = std::fs::File::create(&out).map_err(io("cannot create", &out))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(&self.extra_args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(log_file)
            // A last resort: `stop` ends it with SIGTERM so it destroys its VMs itself.
            .kill_on_drop(true)
            .spawn()
            .map_err(io("cannot start", &self.binary))?;
        self.pids.extend(child.id());
        self.child = Some(child);
        Ok(())
    }

    fn not_ready(&self, within: Duration, why: String) -> ChildDaemonError {
        ChildDaemonError::NotReady { secs: within.as_secs(), why, log_tail: self.log_tail(20) }
    }

    /// `Err` when the daemon has exited.
    pub fn check_running(&mut self) -> Result<(), ChildDaemonError> {
        let Some(child) = self.child.as_mut() else { return Ok(()) };
        match child.try_wait() {
            Ok(Some(status)) => Err(ChildDaemonError::Exited { status, log_tail: self.log_tail(20) }),
            Ok(None) => Ok(()),
            Err(source) => {
                Err(ChildDaemonError::Io { what: "cannot wait for", path: self.binary.clone(), source })
            }
        }
    }

    /// Records the running daemon's peak RSS so far.
    pub fn sample_rss(&mut self) {
        if let Some(pid) = self.pid() {
            self.max_rss_kib = self.max_rss_kib.max(crate::procfs::peak_rss_kib(pid));
        }
    }

    /// The highest peak RSS (KiB) sampled over all runs.
    pub fn max_rss_kib(&self) -> u64 {
        self.max_rss_kib
    }

    /// `kill -9` the daemon and wait until it is reaped.
    pub async fn kill_hard(&mut self) {
        self.sample_rss();
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.start_kill() {
                tracing::warn!(%error, "cannot SIGKILL the daemon");
            }
            if let Err(error) = child.wait().await {
                tracing::warn!(%error, "cannot wait for the daemon");
            }
        }
    }

    /// SIGTERM, then waits up to `within` for a clean exit (status 0). A daemon that does not exit
    /// in time is killed and the stop reported as failed.
    pub async fn stop(&mut self, within: Duration) -> Result<(), ChildDaemonError> {
        self.sample_rss();
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let stop_error = |why: String| ChildDaemonError::Stop { why };
        let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            return Err(stop_error("it had already been reaped".into()));
        };
        // SAFETY: kill(2) on our own child, which has not been waited for (its pid is still ours).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(stop_error(format!("kill: {}", std::io::Error::last_os_error())));
        }
        match tokio::time::timeout(within, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(stop_error(format!("it exited with {status}"))),
            Ok(Err(error)) => Err(stop_error(format!("cannot wait for it: {error}"))),
            Err(_) => {
                if let Err(error) = child.start_kill() {
                    tracing::warn!(%error, "cannot SIGKILL the daemon");
                }
                let _reaped = child.wait().await;
                Err(stop_error(format!("no exit within {within:?}; killed")))
            }
        }
    }
}
