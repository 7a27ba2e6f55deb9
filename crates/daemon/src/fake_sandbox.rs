//! The fake backend's [`Sandbox`]: an in-memory file system and two programs, enough to test the
//! HTTP layer's framing, limits and error mapping without VMs.
//!
//! Files and directories live in a map (`/` and `/tmp` exist); uploads are read in chunks as a
//! real guest would take them. `spawn` knows `echo ARGS..` (stdout), `warn ARGS..` (stderr) and
//! `sleep MS`; any other program fails as not found. Archives, terminals and background
//! processes are not faked ([`SandboxError::Unsupported`]): the real-VM tests cover them.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use firepit_agent::{
    DirEntry, DirListing, ExitStatus, FailureKind, FileKind, FileStat, MkdirRequest, ProcessInfo,
    ProcessOutput, ProcessOutputRequest, ProcessRef, PtyRequest, SpawnRequest, StartProcessRequest,
    WindowSize,
};
use tokio::io::AsyncReadExt;

use crate::backend::BoxFuture;
use crate::sandbox::{Attached, ByteStream, Control, Download, Sandbox, SandboxError, WriteOptions};

#[derive(Debug, Clone)]
enum Node {
    File { bytes: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
}

/// One fake VM's files.
#[derive(Debug)]
pub struct FakeSandbox {
    nodes: Mutex<BTreeMap<String, Node>>,
}

impl Default for FakeSandbox {
    fn default() -> Self {
        let nodes = [("/", 0o755), ("/tmp", 0o1777)].map(|(p, mode)| (p.to_owned(), Node::Dir { mode }));
        Self { nodes: Mutex::new(nodes.into_iter().collect()) }
    }
}

fn guest(kind: FailureKind, message: String) -> SandboxError {
    SandboxError::Guest { kind, message }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

fn stat_of(node: &Node) -> FileStat {
    let (kind, size, mode) = match node {
        Node::File { bytes, mode } => (FileKind::File, bytes.len() as u64, *mode),
        Node::Dir { mode } => (FileKind::Dir, 0, *mode),
    };
    FileStat { kind, size, mode, uid: 0, gid: 0, modified_unix_ms: 0, symlink_target: None }
}

impl FakeSandbox {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check(path: &str) -> Result<&str, SandboxError> {
        if !path.starts_with('/') {
            return Err(guest(FailureKind::InvalidInput, format!("path {path:?} is not absolute")));
        }
        Ok(if path.len() > 1 { path.trim_end_matches('/') } else { path })
    }

    fn node(&self, path: &str) -> Result<Node, SandboxError> {
        let path = Self::check(path)?;
        self.lock()
            .get(path)
            .cloned()
            .ok_or_else(|| guest(FailureKind::NotFound, format!("{path}: not found")))
    }

    fn make_dirs(nodes: &mut BTreeMap<String, Node>, path: &str) {
        if path != "/" && !nodes.contains_key(path) {
            Self::make_dirs(nodes, parent(path));
            nodes.insert(path.to_owned(), Node::Dir { mode: 0o755 });
        }
    }
}

impl Sandbox for FakeSandbox {
    fn write_file<'a>(
        &'a self,
        path: &'a str,
        options: WriteOptions,
        mut data: ByteStream,
    ) -> BoxFuture<'a, Result<u64, SandboxError>> {
        Box::pin(async move {
            let path = Self::check(path)?;
            let mut bytes = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = data.read(&mut chunk).await.map_err(|e| SandboxError::Body(e.into()))?;
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
            let mut nodes = self.lock();
            if options.create_parents {
                Self::make_dirs(&mut nodes, parent(path));
            }
            match nodes.get(parent(path)) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File { .. }) => {
                    return Err(guest(
                        FailureKind::NotADirectory,
                        format!("{}: not a directory", parent(path)),
                    ));
                }
                None => return Err(guest(FailureKind::NotFound, format!("{}: not found", parent(path)))),
            }
            let written = bytes.len() as u64;
            match nodes.get_mut(path) {
                Some(Node::Dir { .. }) => {
                    return Err(guest(FailureKind::IsADirectory, format!("{path}: is a directory")));
                }
                Some(Node::File { bytes: old, mode }) => {
                    if options.append {
                        old.extend(bytes);
                    } else {
                        *old = bytes;
                    }
                    *mode = options.mode.unwrap_or(*mode);
                }
                None => {
                    nodes.insert(path.to_owned(), Node::File { bytes, mode: options.mode.unwrap_or(0o644) });
                }
            }
            Ok(written)
        })
    }

    fn read_file<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        limit: Option<u64>,
    ) -> BoxFuture<'a, Result<Download, SandboxError>> {
        Box::pin(async move {
            let node = self.node(path)?;
            let Node::File { bytes, .. } = &node else {
                return Err(guest(FailureKind::IsADirectory, format!("{path}: is a directory")));
            };
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
            let end = limit.map_or(bytes.len(), |l| start.saturating_add(l as usize).min(bytes.len()));
            let data: ByteStream = Box::pin(Cursor::new(bytes[start..end].to_vec()));
            Ok(Download { stat: stat_of(&node), data })
        })
    }

    fn stat<'a>(&'a self, path: &'a str, _follow: bool) -> BoxFuture<'a, Result<FileStat, SandboxError>> {
        Box::pin(async move { Ok(stat_of(&self.node(path)?)) })
    }

    fn list_dir<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<DirListing, SandboxError>> {
        Box::pin(async move {
            let Node::Dir { .. } = self.node(path)? else {
                return Err(guest(FailureKind::NotADirectory, format!("{path}: not a directory")));
            };
            let dir = Self::check(path)?;
            let entries = self
                .lock()
                .iter()
                .filter(|(p, _)| p.as_str() != "/" && parent(p) == dir)
                .map(|(p, node)| DirEntry {
                    name: p[p.rfind('/').map_or(0, |i| i + 1)..].to_owned(),
                    stat: stat_of(node),
                })
                .collect();
            Ok(DirListing { entries, truncated: false })
        })
    }

    fn mkdir(&self, request: MkdirRequest) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(async move {
            let path = Self::check(&request.path)?.to_owned();
            let mut nodes = self.lock();
            if request.parents {
                Self::make_dirs(&mut nodes, &path);
                return Ok(());
            }
            if nodes.contains_key(&path) {
                return Err(guest(FailureKind::AlreadyExists, format!("{path}: exists")));
            }
            nodes.insert(path, Node::Dir { mode: request.mode.unwrap_or(0o755) });
            Ok(())
        })
    }

    fn remove<'a>(&'a self, path: &'a str, recursive: bool) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let path = Self::check(path)?;
            let mut nodes = self.lock();
            let prefix = format!("{path}/");
            let children = nodes.keys().any(|p| p.starts_with(&prefix));
            if children && !recursive {
                return Err(guest(FailureKind::DirectoryNotEmpty, format!("{path}: directory not empty")));
            }
            nodes.remove(path).ok_or_else(|| guest(FailureKind::NotFound, format!("{path}: not found")))?;
            nodes.retain(|p, _| !p.starts_with(&prefix));
            Ok(())
        })
    }

    fn chmod<'a>(&'a self, path: &'a str, new_mode: u32) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let path = Self::check(path)?;
            match self.lock().get_mut(path) {
                Some(Node::File { mode, .. } | Node::Dir { mode }) => *mode = new_mode & 0o7777,
                None => return Err(guest(FailureKind::NotFound, format!("{path}: not found"))),
            }
            Ok(())
        })
    }

    fn chown<'a>(
        &'a self,
        path: &'a str,
        _: Option<u32>,
        _: Option<u32>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { self.node(path).map(drop) })
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let node = self.node(from)?;
            let to = Self::check(to)?;
            let mut nodes = self.lock();
            nodes.remove(Self::check(from)?);
            nodes.insert(to.to_owned(), node);
            Ok(())
        })
    }

    fn upload_tar<'a>(&'a self, _: &'a str, _: ByteStream) -> BoxFuture<'a, Result<u64, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("archives")) })
    }

    fn download_tar<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Download, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("archives")) })
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<Attached, SandboxError>> {
        Box::pin(async move { fake_spawn(request) })
    }

    fn pty(&self, _: PtyRequest) -> BoxFuture<'_, Result<Attached, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("terminals")) })
    }

    fn start_process(&self, _: StartProcessRequest) -> BoxFuture<'_, Result<ProcessInfo, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("background processes")) })
    }

    fn processes(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("background processes")) })
    }

    fn signal_process(&self, _: ProcessRef, _: i32) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("background processes")) })
    }

    fn wait_process(&self, _: ProcessRef, _: Duration) -> BoxFuture<'_, Result<ProcessInfo, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("background processes")) })
    }

    fn process_output(&self, _: ProcessOutputRequest) -> BoxFuture<'_, Result<ProcessOutput, SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("background processes")) })
    }

    fn remove_process(&self, _: ProcessRef) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(async { Err(SandboxError::Unsupported("background processes")) })
    }
}

struct NoControl;

impl Control for NoControl {
    fn signal(&self, _: i32) -> Result<(), SandboxError> {
        Ok(())
    }

    fn resize(&self, _: WindowSize) -> Result<(), SandboxError> {
        Ok(())
    }
}

fn fake_spawn(request: SpawnRequest) -> Result<Attached, SandboxError> {
    let (program, args) =
        request.argv.split_first().ok_or_else(|| guest(FailureKind::InvalidInput, "empty argv".into()))?;
    let line = format!("{}\n", args.join(" ")).into_bytes();
    let (stdout, stderr, sleep_ms) = match program.as_str() {
        "echo" => (line, Vec::new(), 0),
        "warn" => (Vec::new(), line, 0),
        "sleep" => (Vec::new(), Vec::new(), args.first().and_then(|a| a.parse().ok()).unwrap_or(0)),
        other => return Err(guest(FailureKind::NotFound, format!("cannot run {other:?}: not found"))),
    };
    let exit = async move {
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        Ok(ExitStatus { exit_code: Some(0), signal: None, timed_out: false, duration_ms: sleep_ms })
    };
    Ok(Attached {
        pid: 1000,
        stdout: Box::pin(Cursor::new(stdout)),
        stderr: Some(Box::pin(Cursor::new(stderr))),
        stdin: None,
        control: Arc::new(NoControl),
        exit: Box::pin(exit),
    })
}
