//! The daemon's listeners, bound before it serves, and why it could not start or serve.
//!
//! The Unix socket is bound with care: its directory is created 0700 (and refused when another
//! user owns it), a stale socket file is replaced, a live one (another daemon's) refused, and the
//! socket made 0600. A socket that still answers is watched for [`GHOST_GRACE`] before it is taken
//! for another daemon's: a daemon killed with -9 while it forked a QEMU leaves a child (between
//! fork and exec) that holds the socket until its parent-death signal kills it a moment later.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tracing::warn;

use crate::auth::BearerToken;
use crate::leases::store::StoreError;

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A filesystem or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path or address.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process answers on the socket.
    #[error("another daemon is listening on {0}; stop it or set listen.socket to another path")]
    SocketInUse(PathBuf),
    /// Something that is not a socket sits at the socket path.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The lease records could not be read or written.
    #[error(transparent)]
    LeaseRecords(#[from] StoreError),
}

/// The daemon's listeners, bound before its pools warm up: a client that connects meanwhile waits
/// in the listen backlog and is answered once the daemon serves (so `firepit serve &` followed at
/// once by `firepit run` works). Dropped without serving, they remove the socket file.
pub struct Listeners {
    pub(crate) unix: UnixListener,
    pub(crate) socket: SocketFile,
    pub(crate) tcp: Option<(TcpListener, BearerToken)>,
}

impl Listeners {
    /// Binds the Unix socket (see [`ServeOptions::socket`](crate::server::ServeOptions::socket) for its modes) and the TCP listener.
    pub async fn bind(socket: &Path, tcp: Option<(SocketAddr, BearerToken)>) -> Result<Self, ServeError> {
        // A daemon killed with -9 while it was starting a VM leaves a forked child that holds its
        // socket until it dies too (a moment later, by its parent-death signal): a socket that
        // stops answering within GHOST_GRACE was that, not another daemon.
        let deadline = tokio::time::Instant::now() + GHOST_GRACE;
        let unix = loop {
            match bind_unix(socket) {
                Err(ServeError::SocketInUse(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                bound => break bound?,
            }
        };
        let socket = SocketFile(socket.to_owned());
        let tcp = match tcp {
            None => None,
            Some((addr, token)) => {
                let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Io {
                    what: "cannot listen on",
                    path: addr.to_string(),
                    source,
                })?;
                Some((listener, token))
            }
        };
        Ok(Self { unix, socket, tcp })
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket.0
    }
}

/// How long a socket that answers is watched before it is taken for another daemon's.
pub const GHOST_GRACE: Duration = Duration::from_secs(2);

/// The socket file we bound; removed when dropped.
pub(crate) struct SocketFile(pub(crate) PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                warn!(socket = %self.0.display(), %error, "cannot remove the socket");
            }
            _ => {}
        }
    }
}

/// Binds the Unix socket: parent dir 0700 when created, stale socket replaced, socket 0600.
fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let io = |what, source| ServeError::Io { what, path: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| p.exists())
        && let Ok(meta) = std::fs::metadata(parent)
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        // A directory another user owns (e.g. a predictable <tmp>/firepit-<uid> created first by
        // someone else) lets that user swap our socket for theirs: refuse it.
        if meta.uid() != me && meta.uid() != 0 {
            let owner = format!(
                "owned by uid {}, not by this user (uid {me}); remove it or set listen.socket",
                meta.uid()
            );
            return Err(io(
                "refusing the directory of",
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, owner),
            ));
        }
        if meta.permissions().mode() & 0o002 != 0 {
            warn!(dir = %parent.display(), "the socket's directory is world-writable; prefer a 0700 runtime dir");
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io("cannot create the directory of", e))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServeError::NotASocket(path.to_owned()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(|e| io("cannot remove stale socket", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io("cannot bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("cannot chmod", e))?;
    Ok(listener)
}
