//! Whole directories between the host and the guest, as tar archives streamed through the agent.
//!
//! Packing and unpacking on the host run on blocking threads connected to the transfer by bounded
//! channels (a few 64 KiB chunks), so a directory of any size crosses with bounded host memory.
//!
//! Unpacking what the guest sends is unpacking untrusted input: the `tar` crate refuses entries
//! that would land outside the destination (absolute names, `..`, through symbolic links, hard
//! links pointing out), writes device entries as plain files, and we do not keep setuid/setgid
//! bits or owners. Nothing bounds the total size: download into a file system with room.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use firepit_agent::ChunkWriter;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use crate::error::GuestError;
use crate::guest::Guest;

/// Chunks in flight between the blocking (un)packer and the transfer.
const PIPE_CHUNKS: usize = 4;

fn host_io(what: String) -> impl FnOnce(io::Error) -> GuestError {
    move |source| GuestError::HostIo { what, source }
}

/// The `Write` a blocking packer writes the archive to: chunks of [`MAX_CHUNK`](firepit_agent::MAX_CHUNK) into `tx`.
fn channel_writer(tx: mpsc::Sender<Vec<u8>>) -> ChunkWriter<impl FnMut(Vec<u8>) -> io::Result<()>> {
    ChunkWriter::new(move |chunk| {
        tx.blocking_send(chunk).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped"))
    })
}

/// The async end of a [`channel_writer`].
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl AsyncRead for ChannelReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.current.len() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => (this.current, this.pos) = (chunk, 0),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.current.len() - this.pos);
        buf.put_slice(&this.current[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// A blocking `Read` fed by an async channel.
struct BlockingReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => (self.current, self.pos) = (chunk, 0),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Packs the contents of `dir` (relative names, links kept as links, sockets skipped).
fn pack(dir: &Path, out: impl Write) -> io::Result<()> {
    firepit_agent::pack_dir(dir, out).map(drop)
}

/// Unpacks an archive from the guest into `dir` (see the module docs for what is refused).
fn unpack(archive: BlockingReader, dir: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    archive.unpack(dir)?;
    // Read to the end so the guest's stream completes.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map(drop)
}

impl Guest {
    /// Copies the host directory `local` into the guest directory `dir` (created if missing):
    /// files with their permission bits and modification times, directories, symbolic links as
    /// links. Returns the archive bytes sent.
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// guest.upload_dir("./project".as_ref(), "/root/project").await?;
    /// let out = guest.exec(["ls", "/root/project"]).await?;
    /// # let _ = out; Ok(()) }
    /// ```
    pub async fn upload_dir(&self, local: &Path, dir: &str) -> Result<u64, GuestError> {
        let meta = fs::metadata(local).map_err(host_io(format!("reading {}", local.display())))?;
        if !meta.is_dir() {
            let source = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
            return Err(GuestError::HostIo { what: format!("uploading {}", local.display()), source });
        }
        let (tx, rx) = mpsc::channel(PIPE_CHUNKS);
        let root = local.to_path_buf();
        let packer = tokio::task::spawn_blocking(move || pack(&root, channel_writer(tx)));
        let uploaded = self.upload_tar(dir, ChannelReader { rx, current: Vec::new(), pos: 0 }).await;
        let packed = packer.await.map_err(|e| io::Error::other(e.to_string())).and_then(|r| r);
        match (packed, uploaded) {
            // A packing error also cut the upload short: report the cause.
            (Err(source), _) => {
                Err(GuestError::HostIo { what: format!("packing {}", local.display()), source })
            }
            (Ok(()), result) => result,
        }
    }

    /// Copies the guest directory `dir` (its contents) into the host directory `local` (created if
    /// missing), keeping permission bits (not setuid/setgid), modification times and symbolic links.
    /// Returns the archive bytes received.
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// guest.download_dir("/root/project", "./project-out".as_ref()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn download_dir(&self, dir: &str, local: &Path) -> Result<u64, GuestError> {
        fs::create_dir_all(local).map_err(host_io(format!("creating {}", local.display())))?;
        let mut archive = self.download_tar(dir).await?;
        let (tx, rx) = mpsc::channel(PIPE_CHUNKS);
        let target: PathBuf = local.to_path_buf();
        let unpacker = tokio::task::spawn_blocking(move || {
            unpack(BlockingReader { rx, current: Vec::new(), pos: 0 }, &target)
        });
        let mut received = 0u64;
        let transfer = loop {
            match archive.next_chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if tx.send(chunk).await.is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        drop(tx);
        let unpacked = unpacker.await.map_err(|e| io::Error::other(e.to_string())).and_then(|r| r);
        transfer?;
        unpacked.map_err(host_io(format!("unpacking into {}", local.display())))?;
        Ok(received)
    }
}
