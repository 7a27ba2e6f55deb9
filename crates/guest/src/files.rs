//! Files in the guest: streamed reads and writes of any size, the usual file operations, and tar
//! archives in and out (see `dirs` for whole directories to and from the host).
//!
//! Paths are absolute guest paths; the agent refuses relative ones. Transfers never hold a whole
//! file in memory on either side: writes send 64 KiB chunks as the agent credits them (one window
//! of 256 KiB in flight), reads hand out chunks as the guest sends them. Failures the guest reports
//! (missing file, a directory where a file is needed...) are [`GuestError::Failed`] with a
//! [`FailureKind`](firepit_agent::FailureKind); the guest stays usable.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use firepit_agent::{
    ChmodRequest, ChownRequest, DirListing, DownloadTarRequest, FileStat, ListDirRequest, MAX_CHUNK,
    MkdirRequest, ReadFileRequest, RemoveRequest, RenameRequest, Request, Response, StatRequest,
    UploadTarRequest, WriteFileRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::GuestError;
use crate::guest::Guest;
use crate::streams::{self, AgentStream, Events, GuestOutput};

/// How [`Guest::write_file_with`] writes.
///
/// ```
/// let options = firepit_guest::WriteOptions { mode: Some(0o755), create_parents: true, ..Default::default() };
/// assert!(!options.append);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Permission bits to set (default: 0o644 for a new file, unchanged for an existing one).
    pub mode: Option<u32>,
    /// Create missing parent directories.
    pub create_parents: bool,
    /// Append instead of truncating.
    pub append: bool,
}

/// A guest file (or tar archive) being read: an [`AsyncRead`], or chunks with
/// [`next_chunk`](Self::next_chunk). It ends with an error, never a short read, if the transfer
/// fails part-way. Dropping it early cancels the transfer in the guest.
#[derive(Debug)]
pub struct GuestFileReader {
    output: GuestOutput,
    stat: FileStat,
}

impl GuestFileReader {
    /// What was opened (the file's metadata when the read started; for an archive, the directory's).
    pub fn stat(&self) -> &FileStat {
        &self.stat
    }

    /// The next chunk (at most 64 KiB), `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, GuestError> {
        self.output.next_chunk().await
    }
}

impl AsyncRead for GuestFileReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().output).poll_read(cx, buf)
    }
}

/// Why a stream whose input could not be sent ended: the guest's failure if it reported one.
async fn end_reason(events: &mut Events, error: GuestError) -> GuestError {
    match error {
        GuestError::Closed => match events.next().await {
            Err(reason) => reason,
            Ok(response) => {
                GuestError::UnexpectedResponse { request: "upload", response: format!("{response:?}") }
            }
        },
        other => other,
    }
}

impl Guest {
    /// Sends everything `data` yields into an input stream, then waits for its `Done`.
    async fn upload_stream<R: AsyncRead + Unpin>(
        &self,
        request: Request,
        mut data: R,
    ) -> Result<u64, GuestError> {
        let stall = self.timeouts.request;
        let AgentStream { mut events, input, .. } = streams::open(self, request, Some(stall)).await?;
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            let n = data
                .read(&mut buf)
                .await
                .map_err(|source| GuestError::HostIo { what: "reading the data to upload".into(), source })?;
            if n == 0 {
                break;
            }
            if let Err(error) = input.write(&buf[..n]).await {
                return Err(end_reason(&mut events, error).await);
            }
        }
        input.close()?;
        match tokio::time::timeout(stall, events.next()).await {
            Ok(Ok(Response::Done(done))) => Ok(done.bytes),
            Ok(Ok(other)) => Err(GuestError::unexpected("upload", other)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(GuestError::Timeout { request: "upload", after: stall }),
        }
    }

    /// Opens an output stream and waits for its `Opened`.
    async fn download_stream(&self, request: Request) -> Result<GuestFileReader, GuestError> {
        let AgentStream { mut events, stdout, .. } = streams::open(self, request, None).await?;
        let timeout = self.timeouts.request;
        match tokio::time::timeout(timeout, events.next()).await {
            Ok(Ok(Response::Opened(stat))) => {
                Ok(GuestFileReader { output: GuestOutput::new(stdout, Some(events)), stat })
            }
            Ok(Ok(other)) => Err(GuestError::unexpected("download", other)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(GuestError::Timeout { request: "download", after: timeout }),
        }
    }

    /// Writes `data` to the guest file `path` (created 0o644 or truncated), streaming it; returns
    /// the bytes written. The host never holds more than one 64 KiB chunk of it.
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// let local = tokio::fs::File::open("Cargo.toml").await.expect("a local file");
    /// let written = guest.write_file("/tmp/Cargo.toml", local).await?;
    /// guest.write_file("/tmp/greeting", &b"hello\n"[..]).await?;
    /// # let _ = written; Ok(()) }
    /// ```
    pub async fn write_file<R: AsyncRead + Unpin>(&self, path: &str, data: R) -> Result<u64, GuestError> {
        self.write_file_with(path, data, WriteOptions::default()).await
    }

    /// [`write_file`](Self::write_file) with a mode, parent creation or appending.
    pub async fn write_file_with<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        data: R,
        options: WriteOptions,
    ) -> Result<u64, GuestError> {
        let WriteOptions { mode, create_parents, append } = options;
        let request = WriteFileRequest { path: path.into(), mode, create_parents, append };
        self.upload_stream(Request::WriteFile(request), data).await
    }

    /// Reads the guest file `path` as a stream (a missing file or a directory fails here, before
    /// any byte).
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// let mut reader = guest.read_file("/etc/hostname").await?;
    /// let mut local = tokio::fs::File::create("/tmp/hostname").await.expect("a local file");
    /// tokio::io::copy(&mut reader, &mut local).await.expect("copied");
    /// # Ok(()) }
    /// ```
    pub async fn read_file(&self, path: &str) -> Result<GuestFileReader, GuestError> {
        self.read_file_range(path, 0, None).await
    }

    /// Reads at most `limit` bytes of `path` from `offset` as a stream.
    pub async fn read_file_range(
        &self,
        path: &str,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<GuestFileReader, GuestError> {
        self.download_stream(Request::ReadFile(ReadFileRequest { path: path.into(), offset, limit })).await
    }

    /// Unpacks the tar archive `archive` yields into the guest directory `dir` (created if
    /// missing); returns the archive's size. Modes, modification times and symbolic links are kept;
    /// entries that would land outside `dir` are refused.
    pub async fn upload_tar<R: AsyncRead + Unpin>(&self, dir: &str, archive: R) -> Result<u64, GuestError> {
        self.upload_stream(Request::UploadTar(UploadTarRequest { path: dir.into() }), archive).await
    }

    /// The guest directory `path` (its contents, relative names) or file as a tar archive stream.
    pub async fn download_tar(&self, path: &str) -> Result<GuestFileReader, GuestError> {
        self.download_stream(Request::DownloadTar(DownloadTarRequest { path: path.into() })).await
    }

    /// Metadata of `path`, following symbolic links.
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// let stat = guest.stat("/etc/hostname").await?;
    /// assert_eq!(stat.kind, firepit_agent::FileKind::File);
    /// # Ok(()) }
    /// ```
    pub async fn stat(&self, path: &str) -> Result<FileStat, GuestError> {
        self.stat_request(StatRequest { path: path.into(), follow_symlinks: true }).await
    }

    /// Metadata of `path` itself (a symbolic link is described, not followed).
    pub async fn lstat(&self, path: &str) -> Result<FileStat, GuestError> {
        self.stat_request(StatRequest { path: path.into(), follow_symlinks: false }).await
    }

    async fn stat_request(&self, request: StatRequest) -> Result<FileStat, GuestError> {
        match self.file_request(Request::Stat(request)).await? {
            Response::Stat(stat) => Ok(stat),
            other => Err(GuestError::unexpected("stat", other)),
        }
    }

    /// The entries of the guest directory `path`, sorted by name (at most
    /// [`MAX_DIR_ENTRIES`](firepit_agent::MAX_DIR_ENTRIES); `truncated` says when there were more).
    pub async fn list_dir(&self, path: &str) -> Result<DirListing, GuestError> {
        match self.file_request(Request::ListDir(ListDirRequest { path: path.into() })).await? {
            Response::Entries(listing) => Ok(listing),
            other => Err(GuestError::unexpected("list-dir", other)),
        }
    }

    /// Creates the directory `path` and its missing parents (0o755); an existing directory is fine.
    pub async fn mkdir(&self, path: &str) -> Result<(), GuestError> {
        self.mkdir_request(MkdirRequest { path: path.into(), parents: true, mode: None }).await
    }

    /// Creates a directory as [`MkdirRequest`] says (without parents, an explicit mode).
    pub async fn mkdir_request(&self, request: MkdirRequest) -> Result<(), GuestError> {
        self.ok_request(Request::Mkdir(request)).await
    }

    /// Removes `path` (a file, a symbolic link, an empty directory; with `recursive`, a directory
    /// and everything in it).
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), GuestError> {
        self.ok_request(Request::Remove(RemoveRequest { path: path.into(), recursive })).await
    }

    /// Sets the permission bits of `path`.
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), GuestError> {
        self.ok_request(Request::Chmod(ChmodRequest { path: path.into(), mode })).await
    }

    /// Sets the owner and/or group of `path` (`None` leaves it unchanged).
    pub async fn chown(&self, path: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), GuestError> {
        self.ok_request(Request::Chown(ChownRequest { path: path.into(), uid, gid })).await
    }

    /// Renames `from` to `to` within the guest.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), GuestError> {
        self.ok_request(Request::Rename(RenameRequest { from: from.into(), to: to.into() })).await
    }

    async fn file_request(&self, request: Request) -> Result<Response, GuestError> {
        self.request(request, self.timeouts.request).await
    }

    async fn ok_request(&self, request: Request) -> Result<(), GuestError> {
        let kind = request.kind();
        match self.file_request(request).await? {
            Response::Ok => Ok(()),
            other => Err(GuestError::unexpected(kind, other)),
        }
    }
}
