use std::io::Write;

use super::*;

fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn found(path: &Path) -> String {
    match ImageKind::detect(path) {
        Err(ImageError::UnusableImage { path: named, found }) => {
            assert_eq!(named, path, "the error names the file");
            found
        }
        other => panic!("expected UnusableImage for {}, got {other:?}", path.display()),
    }
}

/// A superblock-only ext4 image of `blocks` 4 KiB blocks, `len` bytes long.
fn ext4_image(blocks: u32, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    bytes[1024 + 4..1024 + 8].copy_from_slice(&blocks.to_le_bytes());
    bytes[1024 + 24..1024 + 28].copy_from_slice(&2u32.to_le_bytes()); // 1024 << 2 = 4 KiB
    bytes[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xEF]);
    bytes
}

/// A qcow2 v3 header with an L1 table at 0x30000 (1 entry) and a refcount table at 0x10000.
fn qcow2_header(incompatible: u64) -> Vec<u8> {
    let mut h = vec![0u8; 104];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[20..24].copy_from_slice(&16u32.to_be_bytes()); // 64 KiB clusters
    h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    h[36..40].copy_from_slice(&1u32.to_be_bytes());
    h[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
    h[48..56].copy_from_slice(&0x10000u64.to_be_bytes());
    h[56..60].copy_from_slice(&1u32.to_be_bytes());
    h[72..80].copy_from_slice(&incompatible.to_be_bytes());
    h
}

#[test]
fn initramfs_is_recognised_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = crate::cpio::Archive::new();
    archive.add("init", 0o755, crate::cpio::Node::File(b"#!/bin/sh\n".to_vec()));
    let mut plain = Vec::new();
    archive.write(&mut plain).unwrap();
    let mut gz = Vec::new();
    crate::initramfs::write_gzipped(&archive, &mut gz).unwrap();
    assert_eq!(ImageKind::detect(&file(dir.path(), "plain", &plain)).unwrap(), ImageKind::Initramfs);
    assert_eq!(ImageKind::detect(&file(dir.path(), "gz", &gz)).unwrap(), ImageKind::Initramfs);
}

#[test]
fn gzip_that_is_not_a_cpio_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"hello, not a cpio archive").unwrap();
    let path = file(dir.path(), "notcpio.gz", &gz.finish().unwrap());
    assert!(found(&path).contains("gzip-compressed data that is not a cpio archive"));
}

#[test]
fn raw_ext4_is_recognised_and_a_truncated_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let whole = file(dir.path(), "whole.img", &ext4_image(4, 4 * 4096));
    assert_eq!(ImageKind::detect(&whole).unwrap(), ImageKind::RawExt4);
    let cut = file(dir.path(), "cut.img", &ext4_image(1024, 4 * 4096));
    assert!(found(&cut).contains("truncated ext4"), "{}", found(&cut));
}

#[test]
fn qcow2_header_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut whole = qcow2_header(0);
    whole.resize(0x40000, 0);
    assert_eq!(ImageKind::detect(&file(dir.path(), "ok.qcow2", &whole)).unwrap(), ImageKind::Qcow2);
    let mut cut = qcow2_header(0);
    cut.resize(0x20000, 0);
    let why = found(&file(dir.path(), "cut.qcow2", &cut));
    assert!(why.contains("truncated qcow2"), "{why}");
    let why = found(&file(dir.path(), "short.qcow2", &qcow2_header(0)[..40]));
    assert!(why.contains("cut short"), "{why}");
    let mut dirty = qcow2_header(1);
    dirty.resize(0x40000, 0);
    assert!(found(&file(dir.path(), "dirty.qcow2", &dirty)).contains("dirty"));
}

#[test]
fn directories_missing_files_empty_files_and_random_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(found(dir.path()).contains("a directory"));
    assert!(found(&dir.path().join("absent.img")).contains("no such file"));
    assert!(found(&file(dir.path(), "empty", b"")).contains("empty"));
    let random: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let why = found(&file(dir.path(), "random.bin", &random));
    assert!(why.contains("unknown content"), "{why}");
    let elf = found(&file(dir.path(), "prog", b"\x7fELF\x02\x01\x01\0rest"));
    assert!(elf.contains("ELF"), "{elf}");
}
