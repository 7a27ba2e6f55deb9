//! Where a child `firepit serve` lives and what its config says: a private [`DaemonDir`] and the
//! [`DaemonSettings`] written into it as TOML. [`crate::child_daemon`] runs the daemon on them.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// Why the child daemon could not be prepared, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChildDaemonError {
    /// A file operation on the daemon's directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The daemon exited, or did not answer in time.
    #[error(
        "`firepit serve` did not become ready within {secs} s ({why}); last lines of its log:\n{log_tail}"
    )]
    NotReady {
        /// The bound.
        secs: u64,
        /// What was seen.
        why: String,
        /// The end of its log.
        log_tail: String,
    },
    /// The daemon exited while it should be running.
    #[error("`firepit serve` exited: {status}; last lines of its log:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// A graceful stop failed (non-zero exit, or no exit within the bound: then it was killed).
    #[error("`firepit serve` did not stop cleanly after SIGTERM: {why}")]
    Stop {
        /// What happened.
        why: String,
    },
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ChildDaemonError {
    let path = path.to_owned();
    move |source| ChildDaemonError::Io { what, path, source }
}

/// A private directory for one child daemon: config, socket, state dir, logs. Removed on drop
/// unless [`keep`](Self::keep) was called.
#[derive(Debug)]
pub struct DaemonDir {
    path: PathBuf,
    keep: bool,
}

impl DaemonDir {
    /// Creates `<parent>/firepit-<label>-<pid>-<random>` with mode 0700.
    pub fn create(parent: &Path, label: &str) -> Result<Self, ChildDaemonError> {
        let name = format!("firepit-{label}-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let path = parent.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(false)
            .create(&path)
            .map_err(io("cannot create", &path))?;
        Ok(Self { path, keep: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The API socket the settings point the daemon at.
    pub fn socket(&self) -> PathBuf {
        self.path.join("api.sock")
    }

    /// The daemon's state dir (records, VM runtime dirs).
    pub fn state_dir(&self) -> PathBuf {
        self.path.join("state")
    }

    /// Leaves the directory on disk when dropped (to inspect logs after a failure).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for DaemonDir {
    fn drop(&mut self) {
        if !self.keep
            && let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {error}", self.path.display());
        }
    }
}

/// One `[[shape]]` of the child's config.
#[derive(Debug, Clone)]
pub struct ShapeSettings {
    /// Shape name.
    pub name: String,
    /// Guest image directory.
    pub image: PathBuf,
    /// Guest memory per VM, MiB.
    pub memory_mb: u64,
    /// Refill below this many ready VMs.
    pub depth_low: usize,
    /// Fill up to this many ready VMs.
    pub depth_high: usize,
    /// `cold` or `snapshot`.
    pub fill: String,
    /// Ping the agent before hand-out.
    pub health_check: bool,
    /// The shape's `warm_up_argv` (empty: none).
    pub warm_up_argv: Vec<String>,
}

impl ShapeSettings {
    /// A shape of 256 MiB, depth 1..=1, snapshot fill, health check on.
    pub fn new(name: impl Into<String>, image: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            memory_mb: 256,
            depth_low: 1,
            depth_high: 1,
            fill: "snapshot".into(),
            health_check: true,
            warm_up_argv: Vec::new(),
        }
    }
}

/// What the child's config file says (the keys tools and tests set; the daemon's defaults for the
/// rest). Paths of socket, state dir and template dir point into the [`DaemonDir`].
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// The API socket.
    pub socket: PathBuf,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The snapshot template dir (`None`: the machine's default).
    pub template_dir: Option<PathBuf>,
    /// The QEMU binary (`None`: `qemu-system-x86_64` from `PATH`).
    pub qemu_binary: Option<PathBuf>,
    /// Run QEMU as this user (`qemu_user`; needs root).
    pub qemu_user: Option<String>,
    /// A TCP listener (`listen.tcp`) and the environment variable holding its token.
    pub tcp: Option<(std::net::SocketAddr, String)>,
    /// VMs filled at once.
    pub parallel_fills: usize,
    /// Default and largest lease TTL, seconds.
    pub ttl_secs: (u64, u64),
    /// Graceful-stop budget, seconds.
    pub shutdown_budget_secs: u64,
    /// Time between two usage samples of a lease, ms (`[usage] interval_ms`; `None`: the
    /// daemon's 5 s).
    pub usage_interval_ms: Option<u64>,
    /// The shapes.
    pub shapes: Vec<ShapeSettings>,
}

impl DaemonSettings {
    /// Settings for `dir` with these shapes and the daemon's defaults otherwise.
    pub fn new(dir: &DaemonDir, shapes: Vec<ShapeSettings>) -> Self {
        Self {
            socket: dir.socket(),
            state_dir: dir.state_dir(),
            template_dir: None,
            qemu_binary: None,
            qemu_user: None,
            tcp: None,
            parallel_fills: 2,
            ttl_secs: (300, 3600),
            shutdown_budget_secs: 10,
            usage_interval_ms: None,
            shapes,
        }
    }

    /// The config file's text (TOML).
    pub fn to_toml(&self) -> String {
        let mut config = toml::Table::new();
        config.insert("state_dir".into(), path_value(&self.state_dir));
        if let Some(binary) = &self.qemu_binary {
            config.insert("qemu_binary".into(), path_value(binary));
        }
        if let Some(user) = &self.qemu_user {
            config.insert("qemu_user".into(), user.clone().into());
        }
        let mut listen = toml::Table::new();
        listen.insert("socket".into(), path_value(&self.socket));
        if let Some((addr, token_env)) = &self.tcp {
            listen.insert("tcp".into(), addr.to_string().into());
            listen.insert("token_env".into(), token_env.clone().into());
        }
        config.insert("listen".into(), toml::Value::Table(listen));
        config.insert("limits".into(), table([("parallel_fills", int(self.parallel_fills as u64))]));
        config.insert(
            "leases".into(),
            table([("default_ttl_secs", int(self.ttl_secs.0)), ("max_ttl_secs", int(self.ttl_secs.1))]),
        );
        config.insert("shutdown".into(), table([("budget_secs", int(self.shutdown_budget_secs))]));
        if let Some(interval) = self.usage_interval_ms {
            config.insert("usage".into(), table([("interval_ms", int(interval))]));
        }
        if let Some(dir) = &self.template_dir {
            config.insert("snapshots".into(), table([("template_dir", path_value(dir))]));
        }
        let shapes = self
            .shapes
            .iter()
            .map(|s| {
                let mut shape = table([
                    ("name", s.name.clone().into()),
                    ("image", path_value(&s.image)),
                    ("memory_mb", int(s.memory_mb)),
                    ("depth", table([("low", int(s.depth_low as u64)), ("high", int(s.depth_high as u64))])),
                    ("fill", s.fill.clone().into()),
                    ("health_check", s.health_check.into()),
                ]);
                if let (false, toml::Value::Table(shape)) = (s.warm_up_argv.is_empty(), &mut shape) {
                    shape.insert("warm_up_argv".into(), s.warm_up_argv.clone().into());
                }
                shape
            })
            .collect();
        config.insert("shape".into(), toml::Value::Array(shapes));
        config.to_string()
    }
}

fn path_value(path: &Path) -> toml::Value {
    path.to_string_lossy().into_owned().into()
}

fn int(value: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn table<const N: usize>(entries: [(&str, toml::Value); N]) -> toml::Value {
    toml::Value::Table(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}
