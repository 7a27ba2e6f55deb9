//! Directory watches: inotify in the guest, through Debian's `inotifywait` (package
//! `inotify-tools`, in the `e2b-base` image) run as an attached firepit command as the calling
//! user, its events read from its output and turned into envd's `FilesystemEvent`s.
//!
//! A `WatchDir` stream owns its command (the watch ends with the stream); a watcher made with
//! `CreateWatcher` is kept in the sandbox's [`Watchers`], buffers its events for
//! `GetWatcherEvents` and ends with `RemoveWatcher` or the sandbox. A watch answers only once
//! `inotifywait` says its watches are in place, so nothing done after the answer is missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use firepit_client::{ExecEvent, ExecReceiver, ExecSender};
use tokio_util::sync::CancellationToken;

use crate::connect::ConnectError;
use crate::proto::filesystem::{EventType, FilesystemEvent};
use crate::sync::lock;

/// A running `inotifywait`.
pub struct Watch {
    /// Kept so that the command lives as long as the watch.
    _sender: ExecSender,
    receiver: ExecReceiver,
    parser: Parser,
}

impl Watch {
    /// A watch of `dir` over an `inotifywait` session whose watches are established.
    pub fn new(sender: ExecSender, receiver: ExecReceiver, dir: &str) -> Self {
        Self { _sender: sender, receiver, parser: Parser::new(dir) }
    }

    /// The next events (at least one), `None` when the watch ended.
    pub async fn next(&mut self) -> Option<Vec<FilesystemEvent>> {
        loop {
            match self.receiver.next_event().await {
                Ok(Some(ExecEvent::Stdout(bytes))) => {
                    let events = self.parser.push(&bytes);
                    if !events.is_empty() {
                        return Some(events);
                    }
                }
                Ok(Some(ExecEvent::Started { .. } | ExecEvent::Stderr(_))) => {}
                Ok(Some(ExecEvent::Exit(_) | ExecEvent::Error { .. }) | None) | Err(_) => return None,
            }
        }
    }
}

/// Turns `inotifywait`'s records (`EVENTS path\0`) into envd's events, names relative to the
/// watched directory.
///
/// An upload through firepit lands whole: the agent writes a temporary file (named with
/// [`STAGING_PREFIX`]) and renames it over the target. envd writes in place, so its clients expect
/// `create` and `write` of the file itself: the temporary file's records are left out, and its
/// rename onto the target is reported as the target's `create` and `write`.
#[derive(Debug)]
pub struct Parser {
    root: String,
    pending: Vec<u8>,
    /// The last record moved a temporary upload away (its `MOVED_TO` comes next).
    staged_move: bool,
}

/// How the agent names an upload's temporary file (`firepit-agent`'s `replace::STAGING_PREFIX`).
pub const STAGING_PREFIX: &str = ".firepit-upload-";

impl Parser {
    /// A parser for a watch of `root`.
    pub fn new(root: &str) -> Self {
        Self { root: root.trim_end_matches('/').to_owned(), pending: Vec::new(), staged_move: false }
    }

    /// The complete records in `bytes` (and what was pending), as events.
    ///
    /// ```
    /// use firepit_e2b::proto::filesystem::EventType;
    /// let mut parser = firepit_e2b::watchers::Parser::new("/home/user/dir");
    /// let events = parser.push(b"CREATE /home/user/dir/a.txt\0MODIFY /home/user/dir/a");
    /// assert_eq!(events.len(), 1);
    /// assert_eq!((events[0].name.as_str(), events[0].r#type), ("a.txt", EventType::Create as i32));
    /// let events = parser.push(b".txt\0MOVED_FROM,ISDIR /home/user/dir/sub\0");
    /// assert_eq!(events[0].r#type, EventType::Write as i32);
    /// assert_eq!((events[1].name.as_str(), events[1].r#type), ("sub", EventType::Rename as i32));
    /// // An upload: its temporary file is left out, its rename onto `b.txt` is a create and a write.
    /// let staged = "/home/user/dir/.firepit-upload-1-2-3";
    /// let upload = format!("CREATE {staged}\0MODIFY {staged}\0MOVED_FROM {staged}\0MOVED_TO /home/user/dir/b.txt\0");
    /// let kinds: Vec<(String, i32)> = parser.push(upload.as_bytes()).into_iter().map(|e| (e.name, e.r#type)).collect();
    /// let b = |kind: EventType| ("b.txt".to_string(), kind as i32);
    /// assert_eq!(kinds, [b(EventType::Create), b(EventType::Write)]);
    /// ```
    pub fn push(&mut self, bytes: &[u8]) -> Vec<FilesystemEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == 0) {
            let record: Vec<u8> = self.pending.drain(..=end).collect();
            let record = String::from_utf8_lossy(&record[..record.len() - 1]).into_owned();
            let Some((kinds, path)) = record.split_once(' ') else { continue };
            let Some(kind) = event_type(kinds) else { continue };
            let name = path.strip_prefix(&self.root).unwrap_or(path).trim_start_matches('/').to_owned();
            if name.rsplit('/').next().is_some_and(|last| last.starts_with(STAGING_PREFIX)) {
                self.staged_move = kinds.split(',').any(|k| k == "MOVED_FROM");
                continue;
            }
            let upload = std::mem::take(&mut self.staged_move) && kind == EventType::Create;
            events.push(FilesystemEvent { name: name.clone(), r#type: kind as i32, entry: None });
            if upload {
                events.push(FilesystemEvent { name, r#type: EventType::Write as i32, entry: None });
            }
        }
        events
    }
}

fn event_type(kinds: &str) -> Option<EventType> {
    let kinds: Vec<&str> = kinds.split(',').collect();
    let has = |name: &str| kinds.contains(&name);
    if has("CREATE") || has("MOVED_TO") {
        Some(EventType::Create)
    } else if has("MODIFY") {
        Some(EventType::Write)
    } else if has("DELETE") {
        Some(EventType::Remove)
    } else if has("MOVED_FROM") {
        Some(EventType::Rename)
    } else if has("ATTRIB") {
        Some(EventType::Chmod)
    } else {
        None
    }
}

/// A watcher made with `CreateWatcher`: its events until read.
#[derive(Debug)]
struct Watcher {
    events: Mutex<Vec<FilesystemEvent>>,
    ended: Mutex<bool>,
    stop: CancellationToken,
}

/// The watchers of one sandbox, by id.
#[derive(Debug, Default)]
pub struct Watchers {
    watchers: Mutex<HashMap<String, Arc<Watcher>>>,
}

impl Watchers {
    /// Keeps `watch` running in the background; its id.
    pub fn keep(&self, mut watch: Watch) -> String {
        let id = format!("w-{:016x}", rand::random::<u64>());
        let watcher = Arc::new(Watcher {
            events: Mutex::default(),
            ended: Mutex::new(false),
            stop: CancellationToken::new(),
        });
        lock(&self.watchers).insert(id.clone(), watcher.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = watcher.stop.cancelled() => break,
                    events = watch.next() => match events {
                        Some(events) => lock(&watcher.events).extend(events),
                        None => break,
                    },
                }
            }
            *lock(&watcher.ended) = true;
        });
        id
    }

    /// The events of watcher `id` since the last call.
    pub fn take(&self, id: &str) -> Result<Vec<FilesystemEvent>, ConnectError> {
        let watcher = lock(&self.watchers).get(id).cloned();
        let watcher = watcher.ok_or_else(|| ConnectError::not_found(format!("watcher {id} not found")))?;
        let events = std::mem::take(&mut *lock(&watcher.events));
        if events.is_empty() && *lock(&watcher.ended) {
            lock(&self.watchers).remove(id);
            return Err(ConnectError::not_found(format!("watcher {id} has ended")));
        }
        Ok(events)
    }

    /// Stops and forgets watcher `id`.
    pub fn remove(&self, id: &str) -> Result<(), ConnectError> {
        let watcher = lock(&self.watchers).remove(id);
        watcher.ok_or_else(|| ConnectError::not_found(format!("watcher {id} not found")))?.stop.cancel();
        Ok(())
    }
}
