//! [`AppState`]: what every handler shares — the firepit client, the sandbox registry, the
//! config — and the per-sandbox facts read from the guest on first need.

use std::sync::Arc;

use firepit_client::{Client, ClientError};
use tokio::io::AsyncReadExt;

use crate::config::E2bConfig;
use crate::sandboxes::{Registry, Sandbox};
use crate::snapshot_names::SnapshotNames;
use crate::users::Users;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// firepit's API.
    pub client: Client,
    /// The sandboxes.
    pub registry: Arc<Registry>,
    /// The endpoint's config.
    pub config: Arc<E2bConfig>,
    /// The names clients gave snapshots.
    pub snapshot_names: Arc<SnapshotNames>,
}

/// Largest `/etc/passwd` or `/proc` file read from a guest.
const SMALL_FILE: u64 = 1024 * 1024;

impl AppState {
    /// A guest file read whole (at most 1 MiB).
    pub async fn read_small(&self, sandbox: &str, path: &str) -> Result<String, ClientError> {
        let query = firepit_api::ReadFileQuery { path: path.into(), offset: 0, limit: Some(SMALL_FILE) };
        let mut download = self.client.read_file_range(sandbox, &query).await?;
        let mut text = String::new();
        download
            .read_to_string(&mut text)
            .await
            .map_err(|source| ClientError::Io { what: format!("reading {path}"), source })?;
        Ok(text)
    }

    /// The sandbox's users (read once).
    pub async fn users<'a>(&self, sandbox: &'a Sandbox) -> Result<&'a Users, ClientError> {
        sandbox
            .users
            .get_or_try_init(|| async {
                let passwd = self.read_small(&sandbox.id, "/etc/passwd").await?;
                let group = self.read_small(&sandbox.id, "/etc/group").await.unwrap_or_default();
                Ok(Users::parse(&passwd, &group))
            })
            .await
    }

    /// The sandbox's CPU count and memory in MiB (read once from its `/proc`).
    pub async fn resources(&self, sandbox: &Sandbox) -> (u32, u64) {
        let read = async {
            let cpuinfo = self.read_small(&sandbox.id, "/proc/cpuinfo").await.unwrap_or_default();
            let meminfo = self.read_small(&sandbox.id, "/proc/meminfo").await.unwrap_or_default();
            let cpus = cpuinfo.lines().filter(|line| line.starts_with("processor")).count().max(1);
            let kib = meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            (u32::try_from(cpus).unwrap_or(1), kib / 1024)
        };
        *sandbox.resources.get_or_init(|| read).await
    }
}
