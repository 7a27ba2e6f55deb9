use super::*;

/// A gzip'd newc archive holding one file: enough to be told apart as an initramfs.
fn initramfs(path: &Path) {
    let mut archive = firepit_image::cpio::Archive::new();
    archive.add("init", 0o755, firepit_image::cpio::Node::File(b"#!/bin/sh\n".to_vec()));
    let mut bytes = Vec::new();
    firepit_image::initramfs::write_gzipped(&archive, &mut bytes).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A file with an ext4 superblock (4 blocks of 4 KiB).
fn ext4(path: &Path) {
    let mut bytes = vec![0u8; 4 * 4096];
    bytes[1024 + 4] = 4;
    bytes[1024 + 24] = 2;
    bytes[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xEF]);
    std::fs::write(path, bytes).unwrap();
}

/// A directory with a kernel `k`, an initramfs `i` and an ext4 disk `disk.img`.
fn guest_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), b"kernel").unwrap();
    initramfs(&dir.path().join("i"));
    ext4(&dir.path().join("disk.img"));
    dir
}

/// `disk.img` of `dir`, booted with its kernel and initramfs.
fn disk_config(dir: &Path) -> VmConfig {
    let mut config = VmConfig::new(dir.join("k"), dir.join("disk.img"));
    config.initramfs = Some(dir.join("i"));
    config
}

#[test]
fn image_id_is_a_content_hash_when_no_manifest() {
    let dir = guest_files();
    let config = VmConfig::new(dir.path().join("k"), dir.path().join("i"));
    let resolved = config.resolve().unwrap();
    assert_eq!(resolved.image_id.len(), 16);
    assert!(resolved.paths.disk.is_none());
    std::fs::write(dir.path().join("k"), b"other kernel").unwrap();
    assert_ne!(config.resolve().unwrap().image_id, resolved.image_id, "the id must follow the content");
}

#[test]
fn a_disk_boots_with_the_given_initramfs_from_its_absolute_path() {
    let dir = guest_files();
    let resolved = disk_config(dir.path()).resolve().unwrap();
    let disk = resolved.paths.disk.expect("a root disk");
    assert_eq!(
        (disk.base.as_path(), disk.format),
        (dir.path().join("disk.img").canonicalize().unwrap().as_path(), DiskFormat::Raw)
    );
    assert_eq!(resolved.paths.initramfs, dir.path().join("i"));
    assert_ne!(
        resolved.image_id,
        VmConfig::new(dir.path().join("k"), dir.path().join("i")).resolve().unwrap().image_id
    );
}

#[test]
fn anything_else_is_an_error_naming_the_file_and_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), b"kernel").unwrap();
    std::fs::write(dir.path().join("junk"), b"0123456789").unwrap();
    for (image, found) in [("junk", "unknown content"), ("missing", "no such file"), (".", "a directory")] {
        let err =
            VmConfig::new(dir.path().join("k"), dir.path().join(image)).resolve().unwrap_err().to_string();
        assert!(err.contains(&dir.path().join(image).display().to_string()) && err.contains(found), "{err}");
    }
}

#[test]
fn a_vm_config_is_a_shape_with_the_shape_defaults() {
    let config = VmConfig::new("/images/vmlinuz", "/images/initrd");
    assert_eq!(config.shape, ShapeSpec::new(POOL_SHAPE, "/images/initrd"));
    assert!(!config.console_enabled);
    let provider = firepit_qemu::ProviderConfig::default();
    assert_eq!((config.accel, config.boot_timeout), (provider.accel, provider.boot_timeout));
}

#[test]
fn a_missing_kernel_is_an_error_naming_the_path() {
    let dir = guest_files();
    let config = VmConfig::new("/nonexistent/vmlinuz", dir.path().join("i"));
    let err = config.resolve().unwrap_err();
    let source = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(source.contains("/nonexistent/vmlinuz"), "{err}: {source}");
}

#[test]
fn a_disk_id_follows_the_kernel_it_boots_with() {
    let dir = guest_files();
    let config = disk_config(dir.path());
    let first = config.resolve().unwrap().image_id;
    std::fs::write(dir.path().join("k"), b"another kernel").unwrap();
    assert_ne!(config.resolve().unwrap().image_id, first, "a disk's id follows the kernel it boots with");
}
