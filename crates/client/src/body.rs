//! Request and response bodies that stream: a [`ClientBody`] is either a small buffer (JSON) or
//! bytes read from an [`AsyncRead`] as the connection takes them; a [`Download`] is a response
//! body read as an [`AsyncRead`]. Neither ever holds a whole file.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::{ReaderStream, StreamReader};

use firepit_api::{FILE_KIND_HEADER, FILE_MODE_HEADER, FILE_SIZE_HEADER, FileKind};

/// The body of a request: a buffer or a stream.
pub type ClientBody = UnsyncBoxBody<Bytes, io::Error>;

/// A response body's chunks, with transport errors as I/O errors.
type Chunks = futures_util::stream::MapErr<BodyDataStream<Incoming>, fn(hyper::Error) -> io::Error>;

/// Chunk size of streamed uploads.
const CHUNK: usize = 64 * 1024;

/// A buffered body.
pub(crate) fn full(bytes: Vec<u8>) -> ClientBody {
    Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed_unsync()
}

/// A body streamed from `reader` (read as the connection sends it).
pub(crate) fn streamed<R: AsyncRead + Send + 'static>(reader: R) -> ClientBody {
    let frames = ReaderStream::with_capacity(reader, CHUNK).map_ok(Frame::data);
    StreamBody::new(frames).boxed_unsync()
}

/// A file or archive coming from the guest: read it as an [`AsyncRead`]. A transfer that broke
/// part-way is an error, never a short read (the daemon cuts the response instead of ending it).
///
/// ```no_run
/// # async fn demo(client: &firepit_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let mut download = client.read_file("l-0123", "/etc/hostname").await?;
/// let mut local = tokio::fs::File::create("/tmp/hostname").await?;
/// tokio::io::copy(&mut download, &mut local).await?;
/// # Ok(()) }
/// ```
pub struct Download {
    reader: StreamReader<Chunks, Bytes>,
    size: Option<u64>,
    mode: Option<u32>,
    kind: Option<FileKind>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("size", &self.size).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Download {
    pub(crate) fn new(response: hyper::Response<Incoming>) -> Self {
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let size = header(FILE_SIZE_HEADER).and_then(|v| v.parse().ok());
        let mode = header(FILE_MODE_HEADER).and_then(|v| u32::from_str_radix(&v, 8).ok());
        let kind = header(FILE_KIND_HEADER).and_then(|v| match v.as_str() {
            "file" => Some(FileKind::File),
            "dir" => Some(FileKind::Dir),
            "symlink" => Some(FileKind::Symlink),
            "other" => Some(FileKind::Other),
            _ => None,
        });
        let to_io: fn(hyper::Error) -> io::Error = io::Error::other;
        let chunks = BodyDataStream::new(response.into_body()).map_err(to_io);
        Self { reader: StreamReader::new(chunks), size, mode, kind }
    }

    /// The file's size when the read started (for an archive: the directory's, not the archive's).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The file's permission bits.
    pub fn mode(&self) -> Option<u32> {
        self.mode
    }

    /// What was opened.
    pub fn kind(&self) -> Option<FileKind> {
        self.kind
    }
}

impl AsyncRead for Download {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}
