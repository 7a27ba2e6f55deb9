//! `[leases]`: how long a client may keep a VM, and how long the daemon remembers it.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Config;

/// `[leases]`: how long a client may keep a VM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// TTL of a lease whose request names none, in seconds.
    #[serde(default = "default_ttl_secs")]
    pub default_ttl_secs: u64,
    /// Largest TTL a client may ask for (at acquire or renew), in seconds.
    #[serde(default = "default_max_ttl_secs")]
    pub max_ttl_secs: u64,
    /// How long `GET /v1/leases/{id}` still shows an ended lease (and why it ended), in seconds.
    #[serde(default = "default_ended_retention_secs")]
    pub ended_retention_secs: u64,
    /// Most ended leases remembered (the oldest are forgotten first).
    #[serde(default = "default_ended_max")]
    pub ended_max: usize,
    /// How long a lease may stay paused before it ends, in seconds.
    #[serde(default = "default_paused_retention_secs")]
    pub paused_retention_secs: u64,
    /// Seconds between two pings of a running lease's guest agent (0: none); three misses in a
    /// row end the lease (`health_check_failed`).
    #[serde(default = "default_health_check_secs")]
    pub health_check_secs: u64,
    /// Where paused leases' VMs are saved (memory, device state, disk layers): a directory on a
    /// disk, not tmpfs — a paused lease then holds no RAM. Default: `<state_dir>/paused` when
    /// `state_dir` is set, else `paused` in firepit's data dir (`/var/lib/firepit/paused` for
    /// root), because the default state dir is under `/run`, a tmpfs. At start a daemon removes
    /// the half-written VMs in it (a pause cut short by a crash).
    #[serde(default)]
    pub paused_dir: Option<std::path::PathBuf>,
    /// Where snapshots of leases are kept (`POST /v1/leases/{id}/snapshots`): like `paused_dir`, a
    /// directory on a disk. Default: `<state_dir>/snapshots` when `state_dir` is set, else
    /// `snapshots` in firepit's data dir (`/var/lib/firepit/snapshots` for root).
    #[serde(default)]
    pub snapshots_dir: Option<std::path::PathBuf>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            default_ttl_secs: default_ttl_secs(),
            max_ttl_secs: default_max_ttl_secs(),
            ended_retention_secs: default_ended_retention_secs(),
            ended_max: default_ended_max(),
            paused_retention_secs: default_paused_retention_secs(),
            health_check_secs: default_health_check_secs(),
            paused_dir: None,
            snapshots_dir: None,
        }
    }
}

fn default_ttl_secs() -> u64 {
    300
}
fn default_max_ttl_secs() -> u64 {
    3600
}
fn default_ended_retention_secs() -> u64 {
    3600
}
fn default_ended_max() -> usize {
    1024
}
fn default_paused_retention_secs() -> u64 {
    7 * 24 * 3600
}
fn default_health_check_secs() -> u64 {
    30
}

impl Config {
    /// Where paused leases' VMs are saved (see [`LeaseConfig::paused_dir`]).
    pub fn paused_dir(&self) -> std::path::PathBuf {
        match (&self.leases.paused_dir, &self.state_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(state)) => state.join("paused"),
            (None, None) => firepit_image::default_store_dir().with_file_name("paused"),
        }
    }

    /// Where snapshots of leases are kept (see [`LeaseConfig::snapshots_dir`]).
    pub fn snapshots_dir(&self) -> std::path::PathBuf {
        match (&self.leases.snapshots_dir, &self.state_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(state)) => state.join("snapshots"),
            (None, None) => firepit_image::default_store_dir().with_file_name("snapshots"),
        }
    }

    /// How leases live (`[leases]`); their records go to `<state dir>/leases`.
    pub fn lease_settings(&self) -> crate::leases::LeaseSettings {
        let leases = &self.leases;
        crate::leases::LeaseSettings {
            default_ttl: self.default_ttl(),
            max_ttl: self.max_ttl(),
            ended_retention: Duration::from_secs(leases.ended_retention_secs),
            ended_max: leases.ended_max,
            paused_retention: Duration::from_secs(leases.paused_retention_secs),
            health_check_interval: Duration::from_secs(leases.health_check_secs),
            records_dir: Some(self.state_dir().join("leases")),
            snapshots_dir: Some(self.snapshots_dir()),
        }
    }
}
