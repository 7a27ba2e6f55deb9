//! A minimal writer (and reader, for checks) of the `newc` cpio format the kernel unpacks as its
//! initramfs.
//!
//! Why our own and not the `cpio` crate: we need byte-for-byte reproducible archives (fixed
//! mtime 0, owner root, inode numbers assigned in path order) so the image id — a hash of the
//! output — only changes when the content does, parent directories emitted before their children
//! (the kernel does not create missing parents), symlinks, and a reader for round-trip tests. The
//! format is a 110-byte ASCII header per entry; the whole thing is about 100 lines.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Why an archive could not be written or read back.
///
/// [`Archive::write`] writes to an [`io::Write`], so it returns an [`io::Error`]; one caused by the
/// archive itself (not by the writer) carries a `CpioError` inside, which
/// [`io::Error::get_ref`] and `downcast` give back.
///
/// ```
/// let err = firepit_image::cpio::read(b"not an archive").unwrap_err();
/// assert!(matches!(err, firepit_image::cpio::CpioError::BadMagic { offset: 0 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpioError {
    /// More entries than newc's 32-bit inode numbers can count.
    #[error("too many cpio entries (newc numbers them with 32 bits)")]
    TooManyEntries,
    /// A file over newc's 4 GiB size limit.
    #[error("{path} is over 4 GiB, the newc size limit")]
    FileTooLarge {
        /// The file's path in the archive.
        path: String,
    },
    /// No `070701` magic where an entry header should start.
    #[error("no newc magic at offset {offset}: not a newc cpio archive (or not decompressed)")]
    BadMagic {
        /// Byte offset of the header.
        offset: usize,
    },
    /// The archive ends inside an entry.
    #[error("archive truncated in the {part} of the entry at offset {offset}")]
    Truncated {
        /// Byte offset of the entry's header.
        offset: usize,
        /// `header`, `name` or `data`.
        part: &'static str,
    },
    /// A header field is not 8 hex digits.
    #[error("header field {index} of the entry at offset {offset} is not 8 hex digits")]
    BadHeaderField {
        /// Byte offset of the entry's header.
        offset: usize,
        /// The field's position in the header (0 is the inode).
        index: usize,
    },
    /// A path or symlink target is not UTF-8.
    #[error("the {part} of the entry at offset {offset} is not UTF-8")]
    NotUtf8 {
        /// Byte offset of the entry's header.
        offset: usize,
        /// `name` or `symlink target`.
        part: &'static str,
    },
    /// An entry that is not a directory, regular file or symlink (a device node, say).
    #[error("{path}: unsupported file type {kind:o} (only directories, files and symlinks)")]
    UnsupportedType {
        /// The entry's path.
        path: String,
        /// The file-type bits of its mode.
        kind: u32,
    },
}

/// What a path in the archive is.
///
/// ```
/// use firepit_image::cpio::Node;
/// let init = Node::File(b"#!/bin/sh\nexec /sbin/firepit-agent\n".to_vec());
/// let sh = Node::Symlink("busybox".into());
/// assert_ne!(init, sh);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file.
    File(Vec<u8>),
    /// A symbolic link to the given target.
    Symlink(String),
}

/// An archive being assembled: entries are kept sorted by path, parents are added automatically.
///
/// ```
/// use firepit_image::cpio::{Archive, Node};
/// let mut archive = Archive::new();
/// archive.add("bin/busybox", 0o755, Node::File(b"\x7fELF".to_vec()));
/// archive.add("bin/sh", 0o777, Node::Symlink("busybox".into()));
/// let mut bytes = Vec::new();
/// archive.write(&mut bytes).unwrap();
/// let back = firepit_image::cpio::read(&bytes).unwrap();
/// assert_eq!(back["bin/sh"].1, Node::Symlink("busybox".into()));
/// ```
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, (u32, Node)>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const TRAILER: &str = "TRAILER!!!";

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `path` (relative, `/`-separated) with permission bits `perm`; missing parent
    /// directories are added with mode 0755.
    pub fn add(&mut self, path: &str, perm: u32, node: Node) {
        let path = path.trim_matches('/');
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, dirs)| dirs) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            self.entries.entry(parent.clone()).or_insert((0o755, Node::Dir));
        }
        self.entries.insert(path.to_owned(), (perm & 0o7777, node));
    }

    /// The paths in the archive, in the order they are written.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the archive (newc, with the trailer) to `out`.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut offset = 0usize;
        for (index, (path, (perm, node))) in self.entries.iter().enumerate() {
            let (kind, data, nlink): (u32, &[u8], u32) = match node {
                Node::Dir => (S_IFDIR, &[], 2),
                Node::File(bytes) => (S_IFREG, bytes, 1),
                Node::Symlink(target) => (S_IFLNK, target.as_bytes(), 1),
            };
            let ino = u32::try_from(index + 1).map_err(|_| io::Error::other(CpioError::TooManyEntries))?;
            offset += write_entry(out, ino, kind | perm, nlink, path, data)?;
        }
        offset += write_entry(out, 0, 0, 1, TRAILER, &[])?;
        // Pad the archive to a multiple of 512 bytes like GNU cpio does.
        out.write_all(&vec![0u8; (512 - offset % 512) % 512])
    }
}

fn write_entry(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
) -> io::Result<usize> {
    let size = u32::try_from(data.len())
        .map_err(|_| io::Error::other(CpioError::FileTooLarge { path: name.to_owned() }))?;
    let name_size = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{name_size:08x}{:08x}",
        0, 0, 0, 0, 0, 0, 0, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    let head_len = header.len() + name_size;
    out.write_all(&[0u8; 4][..1 + (4 - head_len % 4) % 4])?;
    out.write_all(data)?;
    let data_pad = (4 - data.len() % 4) % 4;
    out.write_all(&[0u8; 4][..data_pad])?;
    Ok(head_len + (4 - head_len % 4) % 4 + data.len() + data_pad)
}

/// Parses a newc archive back into `path -> (permission bits, node)` (used to check images).
///
/// ```
/// let mut archive = firepit_image::cpio::Archive::new();
/// archive.add("etc/hostname", 0o644, firepit_image::cpio::Node::File(b"fp\n".to_vec()));
/// let mut bytes = Vec::new();
/// archive.write(&mut bytes).unwrap();
/// assert_eq!(firepit_image::cpio::read(&bytes).unwrap().len(), 2); // etc/ and etc/hostname
/// ```
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, (u32, Node)>, CpioError> {
    let mut entries = BTreeMap::new();
    let mut pos = 0usize;
    loop {
        let offset = pos;
        if bytes.get(pos..pos + 6) != Some(b"070701") {
            return Err(CpioError::BadMagic { offset });
        }
        let field = |index: usize| -> Result<u32, CpioError> {
            let start = offset + 6 + index * 8;
            let text = bytes.get(start..start + 8).ok_or(CpioError::Truncated { offset, part: "header" })?;
            std::str::from_utf8(text)
                .ok()
                .and_then(|text| u32::from_str_radix(text, 16).ok())
                .ok_or(CpioError::BadHeaderField { offset, index })
        };
        let (mode, size, name_size) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let name_start = pos + 110;
        // The name size counts the terminating NUL: 0 is not a valid header.
        let name_end = (name_start + name_size).checked_sub(1).filter(|&end| end >= name_start);
        let name = name_end
            .and_then(|end| bytes.get(name_start..end))
            .ok_or(CpioError::Truncated { offset, part: "name" })?;
        let name =
            String::from_utf8(name.to_vec()).map_err(|_| CpioError::NotUtf8 { offset, part: "name" })?;
        let data_start = (name_start + name_size).next_multiple_of(4);
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or(CpioError::Truncated { offset, part: "data" })?
            .to_vec();
        pos = (data_start + size).next_multiple_of(4);
        if name == TRAILER {
            return Ok(entries);
        }
        let node = match mode & 0o170000 {
            S_IFDIR => Node::Dir,
            S_IFREG => Node::File(data),
            S_IFLNK => Node::Symlink(
                String::from_utf8(data).map_err(|_| CpioError::NotUtf8 { offset, part: "symlink target" })?,
            ),
            kind => return Err(CpioError::UnsupportedType { path: name, kind }),
        };
        entries.insert(name, (mode & 0o7777, node));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_files_dirs_symlinks_and_modes() {
        let mut archive = Archive::new();
        archive.add("/init", 0o755, Node::File(b"#!/bin/sh\n".to_vec()));
        archive.add("lib/modules/6.1/virtio.ko", 0o644, Node::File(vec![1, 2, 3]));
        archive.add("bin/sh", 0o777, Node::Symlink("busybox".into()));
        archive.add("tmp", 0o1777, Node::Dir);
        let mut bytes = Vec::new();
        archive.write(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let back = read(&bytes).unwrap();
        assert_eq!(back["init"], (0o755, Node::File(b"#!/bin/sh\n".to_vec())));
        assert_eq!(back["lib"], (0o755, Node::Dir));
        assert_eq!(back["lib/modules/6.1"], (0o755, Node::Dir));
        assert_eq!(back["lib/modules/6.1/virtio.ko"].1, Node::File(vec![1, 2, 3]));
        assert_eq!(back["bin/sh"], (0o777, Node::Symlink("busybox".into())));
        assert_eq!(back["tmp"], (0o1777, Node::Dir));
    }

    #[test]
    fn parents_are_written_before_children() {
        let mut archive = Archive::new();
        archive.add("a/b/c", 0o644, Node::File(Vec::new()));
        archive.add("a/a", 0o644, Node::File(Vec::new()));
        let paths: Vec<_> = archive.paths().collect();
        assert_eq!(paths, ["a", "a/a", "a/b", "a/b/c"]);
    }

    #[test]
    fn damaged_archives_are_refused_with_what_is_wrong() {
        let mut archive = Archive::new();
        archive.add("etc/hostname", 0o644, Node::File(b"firepit\n".to_vec()));
        let mut bytes = Vec::new();
        archive.write(&mut bytes).unwrap();
        // Entries: `etc` at 0 (header, name, padding: 116 bytes), `etc/hostname` at 116 (data 240..248).
        assert_eq!(read(&bytes[..244]), Err(CpioError::Truncated { offset: 116, part: "data" }));
        assert_eq!(read(&bytes[..112]), Err(CpioError::Truncated { offset: 0, part: "name" }));
        let mut zero_name = bytes.clone();
        zero_name[94..102].copy_from_slice(b"00000000");
        assert_eq!(read(&zero_name), Err(CpioError::Truncated { offset: 0, part: "name" }));
        let mut garbled = bytes.clone();
        garbled[14..16].copy_from_slice(b"zz");
        assert_eq!(read(&garbled), Err(CpioError::BadHeaderField { offset: 0, index: 1 }));
        let mut device = bytes;
        device[14..22].copy_from_slice(b"00002180"); // a character device, 0600
        assert!(matches!(read(&device), Err(CpioError::UnsupportedType { kind: 0o020000, .. })));
    }

    #[test]
    fn writing_twice_gives_identical_bytes() {
        let mut archive = Archive::new();
        archive.add("etc/hostname", 0o644, Node::File(b"firepit\n".to_vec()));
        let (mut one, mut two) = (Vec::new(), Vec::new());
        archive.write(&mut one).unwrap();
        archive.clone().write(&mut two).unwrap();
        assert_eq!(one, two);
    }
}
