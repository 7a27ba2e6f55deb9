//! Local directories as tar streams: packed on a blocking thread into a bounded pipe while the
//! upload reads it, or unpacked from a download on a blocking thread, so a directory of any size
//! crosses with a few chunks in memory.
//!
//! Unpacking what a guest sends is unpacking untrusted input: the `tar` crate refuses entries
//! that would land outside the destination (absolute names, `..`, through symbolic links), and we
//! keep neither owners nor setuid/setgid bits.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncRead;
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use crate::ClientError;
use crate::body::Download;

/// Bytes buffered between the packer and the upload.
const PIPE: usize = 256 * 1024;

fn io_error(what: String) -> impl FnOnce(io::Error) -> ClientError {
    move |source| ClientError::Io { what, source }
}

/// Starts packing `dir`'s contents; returns the archive to read and the packer to finish.
pub(crate) fn pack(
    dir: &Path,
) -> Result<(impl AsyncRead + Send + 'static, JoinHandle<io::Result<()>>), ClientError> {
    let meta = fs::metadata(dir).map_err(io_error(format!("reading {}", dir.display())))?;
    if !meta.is_dir() {
        let source = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
        return Err(ClientError::Io { what: format!("uploading {}", dir.display()), source });
    }
    let (reader, writer) = tokio::io::simplex(PIPE);
    let root = dir.to_path_buf();
    let writer = SyncIoBridge::new(writer);
    let packer = tokio::task::spawn_blocking(move || {
        let mut writer = firepit_agent::pack_dir(&root, writer)?;
        // The reader sees the end only after a shutdown (dropping a simplex's writer is not one).
        writer.shutdown()
    });
    Ok((reader, packer))
}

/// Waits for the packer of an upload that ended with `uploaded`: a packing error is the cause of
/// a failed upload, unless it only says that the upload stopped reading (then the upload's error
/// is the cause).
pub(crate) async fn finish(
    packer: JoinHandle<io::Result<()>>,
    uploaded: Result<u64, ClientError>,
    what: &str,
) -> Result<u64, ClientError> {
    let packed = packer.await.unwrap_or_else(|join| Err(io::Error::other(join.to_string())));
    match packed {
        Err(source) if source.kind() != io::ErrorKind::BrokenPipe || uploaded.is_ok() => {
            Err(ClientError::Io { what: what.to_owned(), source })
        }
        _ => uploaded,
    }
}

/// Unpacks a downloaded archive into `dir` (created if missing); returns the archive's size.
pub(crate) async fn unpack(archive: Download, dir: &Path) -> Result<u64, ClientError> {
    fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    let target: PathBuf = dir.to_path_buf();
    let mut bridge = SyncIoBridge::new(Counted { inner: archive, bytes: 0 });
    let unpacker = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(&mut bridge);
        archive.set_preserve_permissions(false);
        archive.set_preserve_ownerships(false);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        archive.unpack(&target)?;
        // Read to the end: a transfer cut after the archive's end must still fail.
        io::copy(&mut bridge, &mut io::sink())?;
        Ok::<u64, io::Error>(bridge.into_inner().bytes)
    });
    let what = format!("unpacking into {}", dir.display());
    match unpacker.await {
        Ok(result) => result.map_err(io_error(what)),
        Err(join) => Err(ClientError::Io { what, source: io::Error::other(join.to_string()) }),
    }
}

/// Counts what goes through a reader.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes += (buf.filled().len() - before) as u64;
        poll
    }
}
