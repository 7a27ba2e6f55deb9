//! The byte channels a [`Guest`](crate::Guest) talks to its agent over, and how they are opened.
//!
//! The client needs nothing of a channel but bytes both ways: QEMU's virtio-serial port behind a
//! Unix socket ([`UnixSocket`]) is one; an agent serving in this very process over a socket pair
//! (tests, the daemon's fake backend: `InProcessAgent`, feature `in-process`) is another. A
//! [`Connector`] opens one when the first request needs it and again after a channel broke or
//! [`Guest::disconnect`](crate::Guest::disconnect) closed it.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

/// A boxed future, for the object-safe [`Connector`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One open byte channel to an agent, as its two halves.
pub struct ByteChannel {
    pub(crate) read: Box<dyn AsyncRead + Send + Unpin>,
    pub(crate) write: Box<dyn AsyncWrite + Send + Unpin>,
}

impl fmt::Debug for ByteChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ByteChannel")
    }
}

impl ByteChannel {
    /// Any bidirectional byte stream (an in-memory `tokio::io::duplex`, a TCP stream...).
    ///
    /// ```
    /// let (host, _agent) = tokio::io::duplex(64 * 1024);
    /// let channel = firepit_guest::ByteChannel::new(host);
    /// # drop(channel);
    /// ```
    pub fn new<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Self {
        let (read, write) = tokio::io::split(stream);
        Self::from_halves(read, write)
    }

    /// A Unix stream, split into owned halves (no lock between reader and writer).
    pub fn unix(stream: UnixStream) -> Self {
        let (read, write) = stream.into_split();
        Self::from_halves(read, write)
    }

    /// A channel from its reading and writing halves.
    pub fn from_halves(
        read: impl AsyncRead + Send + Unpin + 'static,
        write: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Self {
        Self { read: Box::new(read), write: Box::new(write) }
    }
}

/// Opens channels to one agent. A missing or refusing peer is `NotFound` or `ConnectionRefused`
/// (the guest is not there: requests fail with [`GuestError::Closed`](crate::GuestError::Closed));
/// any other error is the channel's.
pub trait Connector: Send + Sync + fmt::Debug + 'static {
    /// Opens a new channel.
    fn connect(&self) -> BoxFuture<'_, io::Result<ByteChannel>>;
}

/// Connects to the Unix socket at a path: how the host reaches a QEMU VM's agent (QEMU is the
/// socket's server, a `virtserialport` chardev; connecting again is how the host reconnects).
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit_guest::GuestError> {
/// use firepit_guest::{Guest, UnixSocket};
/// let guest = Guest::new(UnixSocket::new("/run/firepit/fp-1-1/agent.sock"));
/// println!("{}", guest.exec(["uname", "-r"]).await?.stdout_lossy());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct UnixSocket {
    path: PathBuf,
}

impl UnixSocket {
    /// The socket at `path` (connected when a request needs it).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Connector for UnixSocket {
    fn connect(&self) -> BoxFuture<'_, io::Result<ByteChannel>> {
        Box::pin(async move { Ok(ByteChannel::unix(UnixStream::connect(&self.path).await?)) })
    }
}
