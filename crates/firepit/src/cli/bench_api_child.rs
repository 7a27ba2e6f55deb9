//! The scaffolding of `firepit bench api`: a private temporary directory and `firepit serve`
//! started from it as a child process (see `bench_api.rs` for what is measured).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use firepit::daemon::client::{Client, Endpoint};

use super::bench_api::{ApiBenchArgs, BenchError, REFILL_DEADLINE, SHAPE};

/// A private temporary directory for the child daemon (socket, state dir, config, log) and the
/// in-process pool's runtime dirs; removed on drop.
pub(super) struct Scratch {
    pub(super) dir: PathBuf,
}

impl Scratch {
    pub(super) fn create() -> Result<Self, BenchError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("firepit-bench-api-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir })
    }

    pub(super) fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    pub(super) fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub(super) fn write_config(
        &self,
        args: &ApiBenchArgs,
        image: &firepit::image::Image,
    ) -> Result<PathBuf, BenchError> {
        let depth = args.depth.max(1) as i64;
        let mut shape = toml::Table::new();
        shape.insert("name".into(), SHAPE.into());
        shape.insert("image".into(), path_str(image.dir())?.into());
        shape.insert("cpus".into(), 1.into());
        shape.insert("memory_mb".into(), 256.into());
        shape.insert("fill".into(), args.fill.config_name().into());
        let mut range = toml::Table::new();
        range.insert("low".into(), depth.into());
        range.insert("high".into(), depth.into());
        shape.insert("depth".into(), range.into());
        let mut listen = toml::Table::new();
        listen.insert("socket".into(), path_str(&self.socket())?.into());
        let mut config = toml::Table::new();
        config.insert("state_dir".into(), path_str(&self.dir.join("state"))?.into());
        config.insert("listen".into(), listen.into());
        config.insert("shape".into(), toml::Value::Array(vec![shape.into()]));
        let path = self.dir.join("firepit.toml");
        std::fs::write(&path, config.to_string())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn path_str(path: &Path) -> Result<String, BenchError> {
    path.to_str().map(str::to_owned).ok_or_else(|| format!("path {} is not UTF-8", path.display()).into())
}

/// `firepit serve` as a child process of this bench.
pub(super) struct ChildDaemon {
    child: tokio::process::Child,
}

impl ChildDaemon {
    pub(super) fn spawn(config: &Path, log: &Path) -> Result<Self, BenchError> {
        let log = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // A last resort only: `stop` ends it with SIGTERM so it destroys its VMs itself.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `firepit serve`: {e}"))?;
        Ok(Self { child })
    }

    pub(super) fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("`firepit serve` exited early: {status}").into()),
        }
    }

    /// Waits until the daemon answers on `socket` (it binds once its pool reached low water).
    pub(super) async fn wait_listening(&mut self, socket: &Path) -> Result<(), BenchError> {
        let client = Client::new(Endpoint::Unix(socket.to_path_buf()));
        let started = Instant::now();
        loop {
            self.check_running()?;
            if socket.exists() && client.pools().await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > REFILL_DEADLINE {
                return Err(format!("`firepit serve` did not listen within {REFILL_DEADLINE:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the graceful stop (the daemon destroys its VMs and its socket).
    pub(super) async fn stop(&mut self) -> Result<(), BenchError> {
        let Some(pid) = self.child.id() else { return Ok(()) };
        let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        // SAFETY: kill(2) on our own child, which has not been reaped yet (`id()` returned it).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) if status.as_ref().is_ok_and(|s| s.success()) => Ok(()),
            Ok(status) => Err(format!("`firepit serve` stopped with {status:?}").into()),
            Err(_) => {
                self.child.kill().await?;
                Err("`firepit serve` did not stop within 60 s of SIGTERM; killed".into())
            }
        }
    }
}

/// Adds the end of the daemon's log to an error.
pub(super) fn daemon_failure(error: BenchError, log: &Path) -> BenchError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    format!("{error}\nlast lines of the daemon's log:\n{tail}").into()
}
