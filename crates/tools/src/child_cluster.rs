//! A whole cluster on one machine, as child processes: a [`LocalEtcd`] (1 or 3 members), `firepit
//! serve` daemons with `[cluster]` tables and TCP listeners on 127.0.0.1, and `firepit gateway`s.
//! The cluster bench (`firepit bench cluster`) and the CLI crate's cluster tests start their
//! clusters through it. Everything is killed by pid and removed when it is dropped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), firepit_tools::ToolError> {
//! use firepit_tools::child_cluster::{ChildCluster, ClusterSettings};
//! let settings = ClusterSettings::new("firepit".into(), "/var/lib/firepit/image".into());
//! let mut cluster = ChildCluster::start(&settings).await?;
//! let client = cluster.gateway_client(0);
//! println!("{:?}", client.pools().await?);
//! cluster.kill_daemon(1).await;          // kill -9 one host
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use firepit_client::{Client, Endpoint};
use firepit_cluster::LocalEtcd;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::ToolError;
use crate::child_daemon::ChildDaemon;
use crate::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};
use crate::scratch::ScratchDir;

/// The token every daemon and gateway of a child cluster uses.
pub const CLUSTER_TOKEN: &str = "firepit-child-cluster-token-0123456789";
/// The environment variable the daemons read their token from.
const TOKEN_ENV: &str = "FIREPIT_CLUSTER_TOKEN";

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The `firepit` executable.
    pub binary: PathBuf,
    /// The guest image.
    pub image: PathBuf,
    /// etcd members.
    pub etcd_members: usize,
    /// Daemons (hosts `host-0`, `host-1`, ...).
    pub daemons: usize,
    /// Gateways.
    pub gateways: usize,
    /// The shape every daemon serves (`small`).
    pub shape: ShapeSettings,
    /// The hosts' registration TTL (seconds).
    pub ttl_secs: u64,
}

impl ClusterSettings {
    /// One etcd member, two daemons with a snapshot shape `small` of 256 MiB and depth 2, one
    /// gateway, a 5 s TTL.
    pub fn new(binary: PathBuf, image: PathBuf) -> Self {
        let shape = ShapeSettings { depth_low: 2, depth_high: 2, ..ShapeSettings::new("small", &image) };
        Self { binary, image, etcd_members: 1, daemons: 2, gateways: 1, shape, ttl_secs: 5 }
    }
}

/// A `firepit gateway` child.
#[derive(Debug)]
pub struct ChildGateway {
    addr: SocketAddr,
    args: Vec<String>,
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ChildGateway {
    /// The gateway's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client of the gateway.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Tcp { authority: self.addr.to_string(), token: Some(CLUSTER_TOKEN.into()) })
    }

    /// Starts it (again) and waits until `/healthz` answers.
    pub async fn start(&mut self) -> Result<(), ToolError> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("gateway")
            .args(&self.args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.healthz().await.is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "`firepit gateway` did not answer within 30 s; see {}",
                    self.log.display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// `kill -9` and reap it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.start_kill();
            let _reaped = child.wait().await;
        }
    }
}

/// One daemon of the cluster.
#[derive(Debug)]
pub struct ClusterDaemon {
    /// Its host id.
    pub host: String,
    /// Its TCP address.
    pub addr: SocketAddr,
    /// The child process.
    pub daemon: ChildDaemon,
    templates: PathBuf,
}

/// The cluster (see the module docs).
pub struct ChildCluster {
    /// etcd.
    pub etcd: LocalEtcd,
    /// The daemons.
    pub daemons: Vec<ClusterDaemon>,
    /// The gateways.
    pub gateways: Vec<ChildGateway>,
    dir: ScratchDir,
}

impl ChildCluster {
    /// Starts etcd, the daemons (waiting until each pool is full) and the gateways (waiting until
    /// each sees every daemon).
    pub async fn start(settings: &ClusterSettings) -> Result<Self, ToolError> {
        let dir = ScratchDir::create(&std::env::temp_dir(), "cluster")?;
        let etcd = LocalEtcd::start(settings.etcd_members, dir.path()).await?;
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, CLUSTER_TOKEN)?;
        let mut cluster = Self { etcd, daemons: Vec::new(), gateways: Vec::new(), dir };
        for i in 0..settings.daemons {
            let daemon = cluster.prepare_daemon(settings, i)?;
            cluster.daemons.push(daemon);
        }
        // Started together: their template boots overlap.
        let starts = cluster.daemons.iter_mut().map(|d| d.daemon.start(Duration::from_secs(300)));
        for started in futures_util::future::join_all(starts).await {
            started?;
        }
        for i in 0..settings.gateways {
            let args = vec![
                "--listen".into(),
                free_addr()?.to_string(),
                "--etcd".into(),
                cluster.etcd.endpoints().join(","),
                "--token-file".into(),
                token_file.display().to_string(),
                "--prefix".into(),
                "/firepit".into(),
            ];
            let addr: SocketAddr = args[1].parse()?;
            let log = cluster.dir.path().join(format!("gateway-{i}.log"));
            let mut gateway = ChildGateway { addr, args, binary: settings.binary.clone(), log, child: None };
            gateway.start().await?;
            cluster.gateways.push(gateway);
        }
        for i in 0..cluster.gateways.len() {
            cluster.wait_hosts(i, settings.daemons, Duration::from_secs(30)).await?;
        }
        Ok(cluster)
    }

    fn prepare_daemon(&self, settings: &ClusterSettings, i: usize) -> Result<ClusterDaemon, ToolError> {
        let host = format!("host-{i}");
        // Not below the cluster's directory: QEMU's socket paths must stay short.
        let dir = DaemonDir::create(&std::env::temp_dir(), &format!("h{i}"))?;
        let addr = free_addr()?;
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm } else { self.dir.path() };
        let name = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let templates = base.join(format!("{name}-templates"));
        let config = DaemonSettings {
            tcp: Some((addr, TOKEN_ENV.into())),
            template_dir: Some(templates.clone()),
            ..DaemonSettings::new(&dir, vec![settings.shape.clone()])
        };
        let daemon =
            ChildDaemon::new(settings.binary.clone(), dir, &config)?.with_env(TOKEN_ENV, CLUSTER_TOKEN);
        let etcd: Vec<String> = self.etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
        let cluster = format!(
            "\n[cluster]\netcd = [{}]\nadvertise = \"http://{addr}\"\nhost = \"{host}\"\nttl_secs = {}\n",
            etcd.join(", "),
            settings.ttl_secs
        );
        let mut text = std::fs::read_to_string(daemon.config_path())?;
        text.push_str(&cluster);
        std::fs::write(daemon.config_path(), text)?;
        Ok(ClusterDaemon { host, addr, daemon, templates })
    }

    /// A client of gateway `i`.
    pub fn gateway_client(&self, i: usize) -> Client {
        self.gateways[i].client()
    }

    /// A client of daemon `i`'s TCP listener (what a client without a gateway uses).
    pub fn daemon_client(&self, i: usize) -> Client {
        let addr = self.daemons[i].addr;
        Client::new(Endpoint::Tcp { authority: addr.to_string(), token: Some(CLUSTER_TOKEN.into()) })
    }

    /// Host ids gateway `i` lists.
    pub async fn hosts_seen(&self, i: usize) -> Vec<String> {
        let client = self.gateway_client(i);
        let Ok(response) = client.request(firepit_client::Method::GET, "/v1/pools", None, &[]).await else {
            return Vec::new();
        };
        let hosts: firepit_api::ClusterHosts = serde_json::from_slice(&response.body).unwrap_or_default();
        hosts.hosts.into_iter().map(|h| h.host).collect()
    }

    /// Waits until gateway `i` lists `n` hosts.
    pub async fn wait_hosts(&self, i: usize, n: usize, within: Duration) -> Result<(), ToolError> {
        let deadline = Instant::now() + within;
        while self.hosts_seen(i).await.len() != n {
            if Instant::now() > deadline {
                return Err(format!("gateway {i} does not see {n} hosts within {within:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// `kill -9` daemon `i` (its QEMUs die with it).
    pub async fn kill_daemon(&mut self, i: usize) {
        self.daemons[i].daemon.kill_hard().await;
    }

    /// The directory logs are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ChildCluster {
    fn drop(&mut self) {
        for daemon in &self.daemons {
            if let Some(pid) = daemon.daemon.pid().and_then(|p| libc::pid_t::try_from(p).ok()) {
                // SAFETY: kill(2) on our own child, not yet reaped (ChildDaemon reaps on its drop).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if daemon.templates.exists()
                && let Err(error) = std::fs::remove_dir_all(&daemon.templates)
            {
                eprintln!("warning: cannot remove {}: {error}", daemon.templates.display());
            }
        }
    }
}

fn free_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}
