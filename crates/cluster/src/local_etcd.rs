//! [`LocalEtcd`]: an etcd cluster of one or more members on 127.0.0.1, started from Debian's
//! `etcd` binary (package `etcd-server`) with free ports and private data directories, for the
//! tests, the cluster bench and trying a cluster on one machine. Members can be killed and
//! restarted one by one; everything is killed (by pid) and removed when it is dropped.
//!
//! It is not how to run etcd in production (see the README: a 3-member cluster on three hosts,
//! or an existing one).

use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::keys::Keys;
use crate::store::Etcd;

/// Why a local etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    /// A file, port or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `etcd` is not installed.
    #[error("`etcd` not found: run `apt-get install etcd-server` (scripts/setup does)")]
    NotInstalled,
    /// The cluster did not answer in time.
    #[error("the local etcd did not answer within {secs} s; last lines of member 0's log:\n{log_tail}")]
    NotReady {
        /// The bound.
        secs: u64,
        /// The end of a member's log.
        log_tail: String,
    },
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A local etcd cluster (see the module docs).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut etcd = firepit_cluster::LocalEtcd::start(3, &std::env::temp_dir()).await?;
/// println!("{:?}", etcd.endpoints());
/// etcd.kill(0);                        // one member down: the other two keep quorum
/// etcd.restart(0)?;
/// # Ok(()) }
/// ```
pub struct LocalEtcd {
    dir: PathBuf,
    members: Vec<Member>,
}

impl LocalEtcd {
    /// Starts `members` members under a new private directory in `parent` and waits until the
    /// cluster answers.
    pub async fn start(members: usize, parent: &Path) -> Result<Self, LocalEtcdError> {
        let io = |what: String| move |source| LocalEtcdError::Io { what, source };
        let dir = parent.join(format!("firepit-etcd-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io(format!("cannot create {}", dir.display())))?;
        let mut etcd = Self { dir, members: Vec::new() };
        for i in 0..members.max(1) {
            let client_port = free_port().map_err(io("cannot find a free port".into()))?;
            let peer_port = free_port().map_err(io("cannot find a free port".into()))?;
            etcd.members.push(Member { name: format!("m{i}"), client_port, peer_port, child: None });
        }
        for i in 0..etcd.members.len() {
            etcd.spawn(i)?;
        }
        etcd.wait_ready(Duration::from_secs(30)).await?;
        Ok(etcd)
    }

    /// The client URLs, one per member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect()
    }

    /// The pid of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members.get(i)?.child.as_ref().map(Child::id)
    }

    /// `kill -9` member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            if let Err(error) = child.kill() {
                tracing::warn!(%error, "cannot kill an etcd member");
            }
            let _status = child.wait();
        }
    }

    /// `kill -9` every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its data directory (it rejoins the cluster).
    pub fn restart(&mut self, i: usize) -> Result<(), LocalEtcdError> {
        self.kill(i);
        self.spawn(i)
    }

    /// Restarts every member and waits until the cluster answers.
    pub async fn restart_all(&mut self) -> Result<(), LocalEtcdError> {
        for i in 0..self.members.len() {
            self.restart(i)?;
        }
        self.wait_ready(Duration::from_secs(30)).await
    }

    fn spawn(&mut self, i: usize) -> Result<(), LocalEtcdError> {
        let cluster: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let log_path = self.dir.join(format!("{}.log", member.name));
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|source| {
                LocalEtcdError::Io { what: format!("cannot open {}", log_path.display()), source }
            })?;
        let child = Command::new("etcd")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.dir.join(&member.name))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new", "--initial-cluster-token"])
            .arg(self.dir.file_name().unwrap_or_default())
            .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => LocalEtcdError::NotInstalled,
                _ => LocalEtcdError::Io { what: "cannot start etcd".into(), source },
            })?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until a read through the client URLs succeeds (a quorum is up).
    pub async fn wait_ready(&self, within: Duration) -> Result<(), LocalEtcdError> {
        let deadline = Instant::now() + within;
        let not_ready =
            || LocalEtcdError::NotReady { secs: within.as_secs(), log_tail: self.log_tail(0, 15) };
        let etcd = Etcd::connect(&self.endpoints(), Keys::default()).await.map_err(|_| not_ready())?;
        while Instant::now() < deadline {
            if etcd.probe().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(not_ready())
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Some(member) = self.members.get(i) else { return String::new() };
        let text = std::fs::read_to_string(self.dir.join(format!("{}.log", member.name))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.kill_all();
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove the local etcd's directory");
        }
    }
}

/// A port no one listens on right now (the kernel's pick for port 0).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
