//! Telling guest images apart by their content: an initramfs, a raw ext4 disk or a qcow2 disk.
//!
//! # Why
//! A user hands firepit one path (`VmConfig::new(kernel, image)`, a shape's `image`) and firepit
//! must know how to boot it before a VM is started: an initramfs goes to `-initrd`, a disk becomes
//! the read-only base of a per-VM copy-on-write overlay. File names lie (`disk.img` may be a
//! qcow2, `rootfs` may be anything), so [`ImageKind::detect`] reads the first bytes and checks the
//! headers, and anything else — a directory, a missing file, random bytes, a truncated qcow2 — is
//! an [`ImageError::UnusableImage`] naming the file and what was found, before anything starts.
//!
//! # What is checked
//! - initramfs: a newc cpio archive (`070701`/`070702`), plain or gzip/zstd/xz-compressed (the
//!   compressed stream must decompress to a cpio header);
//! - raw ext4 (ext2/3/4 share the layout; the kernel's ext4 driver mounts all three): the
//!   superblock magic `0xEF53` at byte 1080 and a block count that fits in the file. The file
//!   system must fill the image: a partitioned disk (MBR/GPT) is not supported;
//! - qcow2: magic `QFI\xfb`, version 2 or 3, a sane cluster size, no encryption, no "corrupt" or
//!   "dirty" flag, an L1 table and a refcount table that lie inside the file (a truncated copy
//!   fails here), and a backing file that exists when it names one.
//!
//! ```
//! use firepit_image::{ImageError, ImageKind};
//! let dir = tempfile::tempdir()?;
//! let junk = dir.path().join("junk.img");
//! std::fs::write(&junk, b"not an image at all")?;
//! let error = ImageKind::detect(&junk).unwrap_err();
//! assert!(matches!(error, ImageError::UnusableImage { .. }));
//! assert!(error.to_string().contains("junk.img"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::path::Path;

use crate::error::ImageError;

/// What a guest image file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A newc cpio archive (optionally compressed): booted as the initramfs.
    Initramfs,
    /// A raw ext2/3/4 file system image: the base of a qcow2 overlay (`-F raw`).
    RawExt4,
    /// A qcow2 disk image (holding an ext4 file system): the base of a qcow2 overlay (`-F qcow2`).
    Qcow2,
}

impl ImageKind {
    /// `initramfs`, `raw` or `qcow2` (what `firepit image ls` shows).
    ///
    /// ```
    /// assert_eq!(firepit_image::ImageKind::RawExt4.as_str(), "raw");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Initramfs => "initramfs",
            ImageKind::RawExt4 => "raw",
            ImageKind::Qcow2 => "qcow2",
        }
    }

    /// Whether it is a root disk (raw ext4 or qcow2), not an initramfs.
    ///
    /// ```
    /// assert!(firepit_image::ImageKind::Qcow2.is_disk());
    /// ```
    pub fn is_disk(self) -> bool {
        self != ImageKind::Initramfs
    }

    /// Reads the start of `path` and says what it is; anything firepit cannot boot is an
    /// [`ImageError::UnusableImage`] that names the file and what was found.
    ///
    /// ```no_run
    /// let kind = firepit_image::ImageKind::detect("disk.img".as_ref())?;
    /// println!("disk.img is {}", kind.as_str());
    /// # Ok::<(), firepit_image::ImageError>(())
    /// ```
    pub fn detect(path: &Path) -> Result<Self, ImageError> {
        let unusable = |found: String| ImageError::UnusableImage { path: path.to_path_buf(), found };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(unusable("no such file".into()));
            }
            Err(e) => return Err(unusable(format!("a file that cannot be read ({e})"))),
        };
        if meta.is_dir() {
            return Err(unusable(
                "a directory (give an initramfs or a disk image file; build a disk from a root file \
                 system tree with `firepit image import` or `firepit image build --packages`)"
                    .into(),
            ));
        }
        if !meta.is_file() {
            return Err(unusable("not a regular file".into()));
        }
        let len = meta.len();
        let mut head = vec![0u8; 4096];
        let read = std::fs::File::open(path)
            .and_then(|file| read_up_to(file, &mut head))
            .map_err(|e| unusable(format!("a file that cannot be read ({e})")))?;
        head.truncate(read);
        if head.is_empty() {
            return Err(unusable("an empty file".into()));
        }
        if let Some(result) = qcow2(path, &head, len) {
            return result.map(|()| ImageKind::Qcow2).map_err(unusable);
        }
        if let Some(result) = ext4(&head, len) {
            return result.map(|()| ImageKind::RawExt4).map_err(unusable);
        }
        match initramfs(path, &head) {
            Ok(true) => Ok(ImageKind::Initramfs),
            Ok(false) => Err(unusable(describe_unknown(&head))),
            Err(found) => Err(unusable(found)),
        }
    }
}

fn read_up_to(mut file: std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn be32(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 4).map_or(0, |b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

fn le32(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 4).map_or(0, |b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// `None`: not a qcow2 at all; `Some(Err(what))`: a qcow2 firepit cannot use.
fn qcow2(path: &Path, head: &[u8], len: u64) -> Option<Result<(), String>> {
    if !head.starts_with(b"QFI\xfb") {
        return None;
    }
    let check = || -> Result<(), String> {
        if head.len() < 72 {
            return Err(format!("a qcow2 header cut short ({len} bytes): the file is truncated"));
        }
        let version = be32(head, 4);
        if !(2..=3).contains(&version) {
            return Err(format!("a qcow2 image of version {version} (QEMU reads versions 2 and 3)"));
        }
        let cluster_bits = be32(head, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(format!("a qcow2 header with an invalid cluster size (2^{cluster_bits})"));
        }
        if be32(head, 32) != 0 {
            return Err("an encrypted qcow2 image (firepit cannot pass a key)".into());
        }
        if version == 3 {
            let incompatible = be64(head, 72);
            if incompatible & 0b10 != 0 {
                return Err("a qcow2 image marked corrupt: repair it with `qemu-img check -r all`".into());
            }
            if incompatible & 0b1 != 0 {
                return Err("a qcow2 image marked dirty (not closed cleanly): repair it with \
                            `qemu-img check -r all`"
                    .into());
            }
            if incompatible & 0b100 != 0 {
                return Err("a qcow2 image with an external data file (not supported)".into());
            }
        }
        let cluster = 1u64 << cluster_bits;
        let l1_end = be64(head, 40).saturating_add(be32(head, 36).saturating_mul(8));
        let refcount_end = be64(head, 48).saturating_add(be32(head, 56).saturating_mul(cluster));
        let needed = l1_end.max(refcount_end);
        if needed > len {
            return Err(format!(
                "a truncated qcow2 image: its tables reach byte {needed}, the file has {len} bytes"
            ));
        }
        let (backing_at, backing_len) = (be64(head, 8), be32(head, 16));
        if backing_at != 0 && backing_len != 0 {
            let name = usize::try_from(backing_at)
                .ok()
                .and_then(|at| head.get(at..at + usize::try_from(backing_len).ok()?))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| "a qcow2 header whose backing file name lies outside it".to_string())?;
            let backing = path.parent().unwrap_or(Path::new(".")).join(&name);
            if !backing.exists() {
                return Err(format!("a qcow2 image whose backing file {name} is missing"));
            }
        }
        Ok(())
    };
    Some(check())
}

/// `None`: no ext superblock; `Some(Err(what))`: one that does not fit in the file.
fn ext4(head: &[u8], len: u64) -> Option<Result<(), String>> {
    const SB: usize = 1024;
    if head.get(SB + 56..SB + 58) != Some(&[0x53, 0xEF]) {
        return None;
    }
    let log_block = le32(head, SB + 24);
    if log_block > 6 {
        return Some(Err("an ext file system superblock with an invalid block size".into()));
    }
    let block = 1024u64 << log_block;
    let incompat = le32(head, SB + 0x60);
    let high = if incompat & 0x80 != 0 { le32(head, SB + 0x150) } else { 0 };
    let blocks = le32(head, SB + 4) | (high << 32);
    let needed = blocks.saturating_mul(block);
    if needed > len {
        return Some(Err(format!(
            "a truncated ext4 image: its file system spans {needed} bytes, the file has {len}"
        )));
    }
    Some(Ok(()))
}

/// `Ok(true)`: a (compressed) newc cpio; `Ok(false)`: no compression or cpio magic;
/// `Err(what)`: compressed data that is not a cpio archive.
fn initramfs(path: &Path, head: &[u8]) -> Result<bool, String> {
    let is_cpio = |bytes: &[u8]| bytes.starts_with(b"070701") || bytes.starts_with(b"070702");
    if is_cpio(head) {
        return Ok(true);
    }
    let (format, stream): (&str, Box<dyn Read>) = if head.starts_with(&[0x1f, 0x8b]) {
        ("gzip", Box::new(flate2::read::MultiGzDecoder::new(open(path)?)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = zstd::stream::read::Decoder::new(open(path)?).map_err(|e| e.to_string())?;
        ("zstd", Box::new(decoder))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        ("xz", Box::new(liblzma::read::XzDecoder::new(open(path)?)))
    } else {
        return Ok(false);
    };
    let mut start = [0u8; 6];
    match stream.take(6).read_exact(&mut start) {
        Ok(()) if is_cpio(&start) => Ok(true),
        Ok(()) => Err(format!(
            "{format}-compressed data that is not a cpio archive (an initramfs is a newc cpio archive)"
        )),
        Err(e) => Err(format!("{format}-compressed data that does not decompress ({e})")),
    }
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, String> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("a file that cannot be read ({e})"))
}

/// What unknown bytes look like, for the error message.
fn describe_unknown(head: &[u8]) -> String {
    let hint = if head.starts_with(b"\x7fELF") {
        " (an ELF executable)"
    } else if head.get(0x202..0x206) == Some(b"HdrS") {
        " (a Linux kernel: give it as the kernel, not as the image)"
    } else if head.get(257..262) == Some(b"ustar") {
        " (a tar archive: import an OCI or `docker save` archive with `firepit image import`)"
    } else {
        ""
    };
    let first: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "unknown content{hint}, starting {}: not an initramfs (gzip/zstd/xz cpio), a raw ext4 disk or a qcow2 disk",
        first.join(" ")
    )
}

#[cfg(test)]
mod tests;
