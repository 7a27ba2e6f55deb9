//! Lease records on disk: one small JSON file per lease under `<state dir>/leases/`, so that a
//! daemon started again on the same state dir still knows its leases.
//!
//! A record is the lease's view ([`LeaseView`]) plus, for a paused lease, what the backend needs to
//! find its saved state ([`PausedVm::saved`](crate::backend::PausedVm::saved)). It is written when
//! the lease is created, renewed, paused, resumed and when it ends, and removed when the daemon
//! forgets the ended lease (retention). Writes are atomic (a temporary file renamed over the
//! record) and done by one writer thread in the order they were asked for, so a request never
//! waits for the disk; a paused lease's record is also synced to disk before it counts. At start
//! ([`LeaseStore::open`]) the records are read back: a lease that was running has lost its VM with
//! the previous run (recovery reaped it) and ends as `daemon_restart`; a paused one stays paused.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use firepit_api::{LeaseState, LeaseView};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// Format version of a record.
pub(crate) const VERSION: u32 = 1;

/// One lease's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Format version (1).
    pub version: u32,
    /// The lease as it was last seen.
    pub view: LeaseView,
    /// A paused lease's saved state, as the backend described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<serde_json::Value>,
}

/// Why the record directory could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct StoreError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl StoreError {
    /// `what` failed on `path`.
    pub(crate) fn new(what: &'static str, path: PathBuf, source: std::io::Error) -> Self {
        Self { what, path, source }
    }
}

enum Op {
    Write { id: String, bytes: Vec<u8>, sync: bool },
    Remove(String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The record directory and its writer thread.
#[derive(Debug)]
pub struct LeaseStore {
    dir: PathBuf,
    ops: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Write { id, .. } => write!(f, "Write({id})"),
            Op::Remove(id) => write!(f, "Remove({id})"),
            Op::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl LeaseStore {
    /// Opens (creates, mode 0700) the record directory `dir` and reads every record in it
    /// (temporary files of an interrupted write are removed; a record that does not read is
    /// logged and set aside as `<name>.corrupt`).
    ///
    /// ```
    /// use firepit_daemon::leases::store::LeaseStore;
    /// let dir = tempfile::tempdir()?;
    /// let (_store, records) = LeaseStore::open(&dir.path().join("leases"))?;
    /// assert!(records.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: &Path) -> Result<(Self, Vec<LeaseRecord>), StoreError> {
        let io = |what, source| StoreError { what, path: dir.to_owned(), source };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("cannot create", e))?;
        let mut records = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io("cannot read", e))?.filter_map(Result::ok) {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => {
                    let _gone_or_not = std::fs::remove_file(&path);
                }
                Some("json") => match read_record(&path) {
                    Ok(record) => records.push(record),
                    Err(error) => {
                        warn!(path = %path.display(), %error, "a lease record does not read; set aside as .corrupt");
                        let _moved_or_not = std::fs::rename(&path, path.with_extension("corrupt"));
                    }
                },
                _ => {}
            }
        }
        records.sort_by_key(|record| record.view.created_at_unix_ms);
        let (ops, queue) = mpsc::channel();
        let writer_dir = dir.to_owned();
        std::thread::Builder::new()
            .name("firepit-lease-records".into())
            .spawn(move || write_loop(&writer_dir, &queue))
            .map_err(|e| io("cannot start the record writer for", e))?;
        Ok((Self { dir: dir.to_owned(), ops }, records))
    }

    /// The record directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `record` (replacing the lease's earlier one), in the background.
    pub fn save(&self, record: &LeaseRecord) {
        if !safe_id(&record.view.id) {
            return warn!(id = %record.view.id, "not recording a lease whose id is not a file name");
        }
        match serde_json::to_vec_pretty(record) {
            Ok(bytes) => {
                let sync = record.view.state == LeaseState::Paused;
                self.send(Op::Write { id: record.view.id.clone(), bytes, sync });
            }
            Err(error) => warn!(id = %record.view.id, %error, "cannot encode a lease record"),
        }
    }

    /// Removes a lease's record, in the background.
    pub fn remove(&self, id: &str) {
        if safe_id(id) {
            self.send(Op::Remove(id.to_owned()));
        }
    }

    /// Resolves once every write asked for so far is done.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Op::Flush(done));
        // The writer ends only with the store: an error means there is nothing left to wait for.
        let _done_or_gone = wait.await;
    }

    fn send(&self, op: Op) {
        if let Err(mpsc::SendError(op)) = self.ops.send(op) {
            warn!(?op, "the lease record writer is gone; the record is not written");
        }
    }
}

fn read_record(path: &Path) -> Result<LeaseRecord, Box<dyn std::error::Error + Send + Sync>> {
    let record: LeaseRecord = serde_json::from_slice(&std::fs::read(path)?)?;
    if record.version != VERSION || !safe_id(&record.view.id) {
        return Err(format!(
            "version {} of lease {:?} is not one this daemon reads",
            record.version, record.view.id
        )
        .into());
    }
    Ok(record)
}

/// Lease ids become file names: letters, digits and `-` only.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn write_loop(dir: &Path, queue: &mpsc::Receiver<Op>) {
    while let Ok(op) = queue.recv() {
        match op {
            Op::Write { id, bytes, sync } => {
                let path = dir.join(format!("{id}.json"));
                if let Err(error) = write_atomically(&path, &bytes, sync) {
                    warn!(path = %path.display(), %error, "cannot write a lease record");
                }
            }
            Op::Remove(id) => {
                let path = dir.join(format!("{id}.json"));
                match std::fs::remove_file(&path) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        warn!(path = %path.display(), %error, "cannot remove a lease record");
                    }
                    _ => {}
                }
            }
            Op::Flush(done) => {
                let _caller_may_be_gone = done.send(());
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, path)?;
    if sync && let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// A record for a lease the previous run left running: it ended with that run.
pub fn ended_by_restart(mut view: LeaseView, now_ms: u64) -> LeaseView {
    view.state = LeaseState::Ended;
    view.end_reason = Some(firepit_api::EndReason::DaemonRestart);
    view.end_detail = Some(
        "the daemon stopped without ending the lease (a crash or kill -9); its VM was reaped at the next start"
            .into(),
    );
    view.ended_at = Some(firepit_api::rfc3339_ms(now_ms));
    view.ended_at_unix_ms = Some(now_ms);
    view.pid = None;
    view.cgroup = None;
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, state: &str) -> LeaseView {
        serde_json::from_value(serde_json::json!({
            "id": id, "vm_id": "vm", "shape": "small", "state": state, "created_at": "",
            "created_at_unix_ms": 1, "expires_at": "", "expires_at_unix_ms": 2,
            "metadata": {"owner": "ci"},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn records_are_written_atomically_read_back_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join("leases");
        let (store, records) = LeaseStore::open(&leases).unwrap();
        assert!(records.is_empty());
        let paused =
            LeaseRecord { version: VERSION, view: view("l-1", "paused"), saved: Some("state-1".into()) };
        store.save(&paused);
        store.save(&LeaseRecord { version: VERSION, view: view("l-2", "running"), saved: None });
        store.save(&LeaseRecord { version: VERSION, view: view("../evil", "running"), saved: None });
        store.flush().await;
        std::fs::write(leases.join("l-3.json"), b"{not json").unwrap();
        std::fs::write(leases.join("l-4.tmp"), b"half").unwrap();
        drop(store);
        let (store, records) = LeaseStore::open(&leases).unwrap();
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(records.contains(&paused));
        assert!(leases.join("l-3.corrupt").exists() && !leases.join("l-4.tmp").exists());
        store.remove("l-1");
        store.flush().await;
        assert!(!leases.join("l-1.json").exists());
    }

    #[test]
    fn a_running_record_reads_back_as_ended_by_the_restart() {
        let ended = ended_by_restart(view("l-1", "running"), 5_000);
        assert_eq!(ended.state, LeaseState::Ended);
        assert_eq!(ended.end_reason, Some(firepit_api::EndReason::DaemonRestart));
        assert_eq!(ended.ended_at_unix_ms, Some(5_000));
        assert_eq!(ended.metadata["owner"], "ci");
    }
}
