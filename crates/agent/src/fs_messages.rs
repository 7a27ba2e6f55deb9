//! File-system requests and their answers.
//!
//! Every path is absolute (the agent refuses relative ones: there is no meaningful working directory
//! between requests). One-shot operations ([`StatRequest`], [`ListDirRequest`], [`MkdirRequest`],
//! [`RemoveRequest`], [`ChmodRequest`], [`ChownRequest`], [`RenameRequest`]) answer with one frame.
//! Transfers are streams (see the crate docs, "Streams"): [`WriteFileRequest`] and
//! [`UploadTarRequest`] take [`InputChunk`](crate::InputChunk)s and end with
//! [`Response::Done`](crate::Response::Done); [`ReadFileRequest`] and [`DownloadTarRequest`] answer
//! [`Response::Opened`](crate::Response::Opened), then [`OutputChunk`](crate::OutputChunk)s, then
//! `Done`.
//!
//! ```
//! use firepit_agent::{Request, WriteFileRequest};
//! let request = Request::WriteFile(WriteFileRequest { path: "/tmp/a".into(), mode: Some(0o600), ..Default::default() });
//! assert!(matches!(request, Request::WriteFile(_)));
//! ```

use serde::{Deserialize, Serialize};

/// Most entries one [`ListDirRequest`] returns; the listing says when it stopped there.
pub const MAX_DIR_ENTRIES: usize = 10_000;

/// Longest name (one component of a path) a guest file system takes, in bytes (Linux's
/// `NAME_MAX`). A longer one fails with [`FailureKind::NameTooLong`](crate::FailureKind).
pub const MAX_NAME_BYTES: usize = 255;

/// Longest path the agent takes, in bytes (Linux's `PATH_MAX` less its terminating NUL). A longer
/// one fails with [`FailureKind::NameTooLong`](crate::FailureKind).
pub const MAX_PATH_BYTES: usize = 4095;

/// Most entries (files, directories, links) one uploaded archive may hold; more fail with
/// [`FailureKind::ArchiveLimit`](crate::FailureKind).
pub const MAX_ARCHIVE_ENTRIES: u64 = 1_000_000;

/// Most names in the path of one entry of an uploaded archive (`a/b/c` is 3); deeper fails with
/// [`FailureKind::ArchiveLimit`](crate::FailureKind).
pub const MAX_ARCHIVE_DEPTH: usize = 128;

/// Most bytes of archive metadata (headers, long names, PAX records) before one entry's data;
/// more fails with [`FailureKind::ArchiveLimit`](crate::FailureKind). Bounds what the unpacker
/// holds in memory for one entry's name.
pub const MAX_ARCHIVE_HEADER_BYTES: u64 = 1024 * 1024;

/// What a path is (`file`, `dir`, `symlink` or `other` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only when not followed).
    Symlink,
    /// Anything else (device, socket, FIFO).
    Other,
}

impl FileKind {
    /// `file`, `dir`, `symlink` or `other` (as in JSON and the daemon's `x-firepit-file-kind`
    /// header).
    ///
    /// ```
    /// assert_eq!(firepit_agent::FileKind::Symlink.as_str(), "symlink");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
}

/// Metadata of one path: the agent's answer to a [`StatRequest`], and the body of the daemon's
/// `GET /v1/leases/{id}/files/stat` as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileStat {
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`, as a number: 0o644 is 420).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last modification, milliseconds since the Unix epoch (the guest's clock).
    pub modified_unix_ms: i64,
    /// Where a symbolic link points (only for `symlink`).
    pub symlink_target: Option<String>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirEntry {
    /// File name (not the full path; invalid UTF-8 replaced).
    pub name: String,
    /// Its metadata (symbolic links not followed).
    pub stat: FileStat,
}

/// A directory's entries, sorted by name (also `GET /v1/leases/{id}/files/list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirListing {
    /// The entries (at most 10,000: [`MAX_DIR_ENTRIES`]).
    pub entries: Vec<DirEntry>,
    /// True when the directory has more entries than were returned.
    pub truncated: bool,
}

/// Metadata of a path; answered with [`Response::Stat`](crate::Response::Stat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRequest {
    /// Absolute path.
    pub path: String,
    /// Describe a symbolic link's target instead of the link.
    pub follow_symlinks: bool,
}

/// List a directory; answered with [`Response::Entries`](crate::Response::Entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDirRequest {
    /// Absolute path of a directory.
    pub path: String,
}

/// Create a directory; answered with [`Response::Ok`](crate::Response::Ok).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRequest {
    /// Absolute path.
    pub path: String,
    /// Create missing parents and accept an existing directory (`mkdir -p`).
    pub parents: bool,
    /// Permission bits of the new directory (default 0o755; the umask does not apply).
    pub mode: Option<u32>,
}

/// Remove a file, symbolic link or directory; answered with [`Response::Ok`](crate::Response::Ok).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// Absolute path (a symbolic link is removed, not its target).
    pub path: String,
    /// Remove a directory with everything in it (otherwise only an empty one).
    pub recursive: bool,
}

/// Change permission bits; answered with [`Response::Ok`](crate::Response::Ok).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChmodRequest {
    /// Absolute path (symbolic links are followed).
    pub path: String,
    /// New permission bits (`& 0o7777`).
    pub mode: u32,
}

/// Change owner and/or group; answered with [`Response::Ok`](crate::Response::Ok).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChownRequest {
    /// Absolute path (symbolic links are followed).
    pub path: String,
    /// New owner (unchanged if `None`).
    pub uid: Option<u32>,
    /// New group (unchanged if `None`).
    pub gid: Option<u32>,
}

/// Rename (move) a path within the guest; answered with [`Response::Ok`](crate::Response::Ok).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameRequest {
    /// Absolute source path.
    pub from: String,
    /// Absolute destination path (replaced if it is a file).
    pub to: String,
}

/// Write a file from the stream's input; a stream ending with [`Response::Done`](crate::Response::Done)
/// (bytes written) once the input's end-of-file has been written.
///
/// A regular file is replaced whole: the bytes go to a hidden temporary file in the same
/// directory, renamed over the path once complete (keeping the old file's owner, and its mode
/// unless `mode` is given). A transfer cut short leaves the old file as it was and no temporary
/// file behind. Appends go to the file in place; an append cut short is cut back to the file's
/// old length. Anything else (a device, a FIFO, a file of `/proc` or `/sys`) is written in place.
/// A symbolic link is followed: its target is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFileRequest {
    /// Absolute path; an existing file is replaced (or appended to).
    pub path: String,
    /// Permission bits to set (default: 0o644 for a new file, unchanged for an existing one).
    pub mode: Option<u32>,
    /// Create missing parent directories (0o755).
    pub create_parents: bool,
    /// Append instead of truncating.
    pub append: bool,
}

/// Read a file as a stream: [`Response::Opened`](crate::Response::Opened), output chunks, then
/// [`Response::Done`](crate::Response::Done) (bytes sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFileRequest {
    /// Absolute path of a regular file (or a device that can be read).
    pub path: String,
    /// Start reading here.
    pub offset: u64,
    /// Read at most this many bytes (`None`: to the end).
    pub limit: Option<u64>,
}

/// Unpack a tar archive sent as the stream's input into a directory; ends with
/// [`Response::Done`](crate::Response::Done) (archive bytes consumed).
///
/// Entries keep their permission bits, modification times, symbolic links, hard links (to
/// earlier entries) and FIFOs; owners are not kept (files belong to the agent's user, root).
/// Leading `/`s are dropped from names. The upload is all or nothing: entries are unpacked into
/// a hidden staging directory beside them and moved into place once the whole archive was
/// unpacked, so an archive that fails (or a transfer cut short) leaves the directory as it was.
///
/// Refused, failing the whole upload: a name with `..` or one leading through a symbolic link
/// of the archive ([`ArchiveEntryRefused`]), a hard link to anything but an earlier entry, a
/// device node; a name longer than [`MAX_NAME_BYTES`] / [`MAX_PATH_BYTES`] ([`NameTooLong`]);
/// more than [`MAX_ARCHIVE_ENTRIES`] entries, paths deeper than [`MAX_ARCHIVE_DEPTH`], more than
/// [`MAX_ARCHIVE_HEADER_BYTES`] of metadata for one entry ([`ArchiveLimit`]); a body that is not
/// an uncompressed tar archive ([`BadArchive`]).
///
/// [`ArchiveEntryRefused`]: crate::FailureKind::ArchiveEntryRefused
/// [`NameTooLong`]: crate::FailureKind::NameTooLong
/// [`ArchiveLimit`]: crate::FailureKind::ArchiveLimit
/// [`BadArchive`]: crate::FailureKind::BadArchive
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTarRequest {
    /// Absolute path of the destination directory (created with its parents if missing).
    pub path: String,
}

/// Pack a directory (or one file) as a tar archive streamed out: [`Response::Opened`]
/// (the path's metadata), output chunks, then [`Response::Done`](crate::Response::Done).
///
/// A directory's archive holds its *contents* with relative names (not the directory itself); a
/// file's holds that file under its own name. Symbolic links are stored as links.
///
/// [`Response::Opened`]: crate::Response::Opened
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadTarRequest {
    /// Absolute path of a directory or file.
    pub path: String,
}

/// End of a transfer stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Payload bytes transferred (written, read, or archive bytes).
    pub bytes: u64,
}
