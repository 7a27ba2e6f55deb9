//! Stream payloads and flow-control constants (how streams work: see the crate docs, "Streams").
//!
//! ```
//! use firepit_agent::{Channel, MAX_CHUNK, OutputChunk, STREAM_WINDOW};
//! let chunk = OutputChunk { channel: Channel::Stdout, bytes: vec![b'x'; MAX_CHUNK], eof: false };
//! assert!(chunk.bytes.len() <= STREAM_WINDOW as usize);
//! ```

use serde::{Deserialize, Serialize};

/// Bytes a sender may have in flight (sent, not yet credited) per stream, direction and channel.
pub const STREAM_WINDOW: u32 = 512 * 1024;

/// Largest payload of one data frame (well under [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN)).
pub const MAX_CHUNK: usize = 64 * 1024;

/// Which output of a stream a chunk or a credit belongs to. File and archive contents travel on
/// [`Channel::Stdout`]; only processes use [`Channel::Stderr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// Standard output of a process, the bytes of a file or archive, a terminal's output.
    Stdout,
    /// Standard error of a process.
    Stderr,
}

impl Channel {
    /// Both channels, in index order.
    pub const ALL: [Channel; 2] = [Channel::Stdout, Channel::Stderr];

    /// 0 for stdout, 1 for stderr (for per-channel arrays).
    pub fn index(self) -> usize {
        match self {
            Channel::Stdout => 0,
            Channel::Stderr => 1,
        }
    }

    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
        }
    }
}

/// Bytes the host sends into an open stream (within the credit the agent granted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputChunk {
    /// At most [`MAX_CHUNK`] bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// No more input follows (the file is complete, stdin is closed).
    pub eof: bool,
}

/// Bytes the agent sends out of an open stream (within the credit the host granted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// Which output.
    pub channel: Channel,
    /// At most [`MAX_CHUNK`] bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// This channel has ended (the pipe closed, the file was read to its end).
    pub eof: bool,
}

/// The host has consumed `bytes` of a channel's output: the agent may send that many more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// The channel credited.
    pub channel: Channel,
    /// Bytes consumed.
    pub bytes: u32,
}

/// What kind of failure a [`Failure`] is, so that the host can map it (to HTTP statuses, typed
/// exceptions) without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The path (or a parent of it) does not exist.
    NotFound,
    /// The path exists and the operation needs it not to.
    AlreadyExists,
    /// The guest refused access.
    PermissionDenied,
    /// A directory was given where a file is needed.
    IsADirectory,
    /// A file was given where a directory is needed (or a path goes through a file).
    NotADirectory,
    /// A directory to remove is not empty (and `recursive` was not set).
    DirectoryNotEmpty,
    /// The request itself is invalid (relative path, empty argv, bad size...).
    InvalidInput,
    /// No background process with that id or tag.
    NoSuchProcess,
    /// A limit was reached (too many streams or processes).
    LimitReached,
    /// The peer broke the stream protocol (sent beyond its credit, input on an output-only stream).
    Protocol,
    /// The host cancelled the stream.
    Cancelled,
    /// Any other I/O error.
    Io,
    /// A path, or one name in it, is longer than the guest allows ([`MAX_NAME_BYTES`] a name,
    /// [`MAX_PATH_BYTES`] a path).
    ///
    /// [`MAX_NAME_BYTES`]: crate::MAX_NAME_BYTES
    /// [`MAX_PATH_BYTES`]: crate::MAX_PATH_BYTES
    NameTooLong,
    /// The guest's file system is full (no space or no inodes left, or a quota reached).
    NoSpace,
    /// An uploaded archive is not a tar archive: garbage, truncated, or compressed.
    BadArchive,
    /// An uploaded archive goes past one of the unpacker's limits (entries, depth, metadata).
    ArchiveLimit,
    /// An entry of an uploaded archive that the unpacker does not make: a path leading out of the
    /// directory or through a symbolic link, a hard link to something not in the archive, a
    /// device node.
    ArchiveEntryRefused,
}

/// A typed failure of a request or stream (terminal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// What failed, for people (names the path or process).
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with `message`.
    ///
    /// ```
    /// use firepit_agent::{Failure, FailureKind};
    /// let failure = Failure::new(FailureKind::NotFound, "/tmp/x: no such file");
    /// assert_eq!(failure.kind, FailureKind::NotFound);
    /// ```
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}
