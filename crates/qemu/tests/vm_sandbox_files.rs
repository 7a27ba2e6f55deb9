//! Files through the guest agent on a real VM: a 100 MiB round trip, directory trees with modes and
//! symbolic links, the file operations, and bad input that must fail clearly and leave the VM usable.
//!
//! One 512 MiB VM is shared by these tests (the 100 MiB file lives in the guest's tmpfs); each test
//! works in its own guest directory.

mod common;
mod vm_sandbox_common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use firepit_agent::{FailureKind, FileKind};
use firepit_guest::{GuestError, WriteOptions};
use firepit_qemu::QemuVm;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use vm_sandbox_common::{host_peak_rss_kib, sh};

async fn vm() -> &'static QemuVm {
    vm_sandbox_common::shared_vm("sandbox-files", 512).await
}

fn kind(error: &GuestError) -> Option<FailureKind> {
    error.failure_kind()
}

/// Writes `size` pseudo-random bytes to `path`; returns their SHA-256.
fn random_file(path: &Path, size: usize) -> String {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        hasher.update(&block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    hex::encode(hasher.finalize())
}

#[test]
fn file_of_100_mib_round_trips_with_the_same_sha256() {
    common::run(async {
        let vm = vm().await;
        let size = 100 * 1024 * 1024;
        let local = tempfile::tempdir().unwrap();
        let source = local.path().join("big.bin");
        let sent_hash = random_file(&source, size);
        let peak_before = host_peak_rss_kib();

        let started = Instant::now();
        let file = tokio::fs::File::open(&source).await.unwrap();
        let written = vm.write_file("/tmp/big.bin", file).await.unwrap();
        let upload = started.elapsed();
        assert_eq!(written, size as u64);

        let guest_hash = sh(vm, "sha256sum /tmp/big.bin").await;
        assert_eq!(
            guest_hash.split_whitespace().next(),
            Some(sent_hash.as_str()),
            "the guest got other bytes"
        );

        let started = Instant::now();
        let mut reader = vm.read_file("/tmp/big.bin").await.unwrap();
        assert_eq!(reader.stat().size, size as u64);
        let mut hasher = Sha256::new();
        let mut received = 0usize;
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            received += chunk.len();
            hasher.update(&chunk);
        }
        let download = started.elapsed();
        assert_eq!(received, size);
        assert_eq!(hex::encode(hasher.finalize()), sent_hash, "downloaded bytes differ");

        let growth_mib = host_peak_rss_kib().saturating_sub(peak_before) / 1024;
        let mb = size as f64 / 1e6;
        eprintln!(
            "100 MiB: upload {upload:?} ({:.1} MB/s), download {download:?} ({:.1} MB/s), host peak RSS +{growth_mib} MiB",
            mb / upload.as_secs_f64(),
            mb / download.as_secs_f64()
        );
        assert!(growth_mib < 32, "host memory grew by {growth_mib} MiB moving 100 MiB: something buffers it");
        vm.remove("/tmp/big.bin", false).await.unwrap();
    });
}

/// A host tree: nested directories, modes, a relative symlink, an empty directory.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool says hi\n").unwrap();
    std::fs::set_permissions(root.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("a/b/c/secret"), b"only me").unwrap();
    std::fs::set_permissions(root.join("a/b/c/secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(root.join("a/data.bin"), (0..200_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>())
        .unwrap();
    std::os::unix::fs::symlink("bin/tool", root.join("run")).unwrap();
}

/// (relative path, kind, mode, contents or link target) of every entry under `root`, sorted.
fn describe(root: &Path) -> Vec<(String, &'static str, u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, &'static str, u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap().to_string_lossy().into_owned().into_bytes();
                out.push((name, "link", 0, target));
            } else if meta.is_dir() {
                out.push((name, "dir", mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.push((name, "file", mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn directory_round_trip_keeps_files_modes_and_symlinks() {
    common::run(async {
        let vm = vm().await;
        let local = tempfile::tempdir().unwrap();
        let (source, back) = (local.path().join("src"), local.path().join("back"));
        make_tree(&source);
        vm.upload_dir(&source, "/tmp/tree").await.unwrap();

        // Seen from inside the guest.
        assert_eq!(sh(vm, "/tmp/tree/run").await, "tool says hi\n");
        assert_eq!(sh(vm, "stat -c %a /tmp/tree/a/b/c/secret").await.trim(), "600");
        let link = vm.lstat("/tmp/tree/run").await.unwrap();
        assert_eq!((link.kind, link.symlink_target.as_deref()), (FileKind::Symlink, Some("bin/tool")));

        vm.download_dir("/tmp/tree", &back).await.unwrap();
        assert_eq!(describe(&back), describe(&source));
        vm.remove("/tmp/tree", true).await.unwrap();
    });
}

#[test]
fn file_operations_do_what_they_say() {
    common::run(async {
        let vm = vm().await;
        vm.mkdir("/tmp/ops/deep/er").await.unwrap();
        let options = WriteOptions { mode: Some(0o640), create_parents: true, append: false };
        vm.write_file_with("/tmp/ops/new/file.txt", &b"hello "[..], options).await.unwrap();
        let append = WriteOptions { append: true, ..WriteOptions::default() };
        vm.write_file_with("/tmp/ops/new/file.txt", &b"world"[..], append).await.unwrap();
        let mut text = String::new();
        vm.read_file("/tmp/ops/new/file.txt").await.unwrap().read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello world");
        let mut slice = String::new();
        vm.read_file_range("/tmp/ops/new/file.txt", 6, Some(3))
            .await
            .unwrap()
            .read_to_string(&mut slice)
            .await
            .unwrap();
        assert_eq!(slice, "wor");

        let stat = vm.stat("/tmp/ops/new/file.txt").await.unwrap();
        assert_eq!((stat.kind, stat.size, stat.mode), (FileKind::File, 11, 0o640));
        vm.chmod("/tmp/ops/new/file.txt", 0o604).await.unwrap();
        vm.chown("/tmp/ops/new/file.txt", Some(1234), Some(99)).await.unwrap();
        let stat = vm.stat("/tmp/ops/new/file.txt").await.unwrap();
        assert_eq!((stat.mode, stat.uid, stat.gid), (0o604, 1234, 99));

        vm.rename("/tmp/ops/new/file.txt", "/tmp/ops/deep/moved.txt").await.unwrap();
        let listing = vm.list_dir("/tmp/ops/deep").await.unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| (e.name.as_str(), e.stat.kind)).collect();
        assert_eq!(names, [("er", FileKind::Dir), ("moved.txt", FileKind::File)]);
        assert!(!listing.truncated);

        vm.remove("/tmp/ops", true).await.unwrap();
        assert_eq!(kind(&vm.stat("/tmp/ops").await.unwrap_err()), Some(FailureKind::NotFound));
    });
}

#[test]
fn bad_input_fails_clearly_and_the_vm_stays_usable() {
    common::run(async {
        let vm = vm().await;
        let missing = vm.read_file("/tmp/no/such/file").await.unwrap_err();
        assert_eq!(kind(&missing), Some(FailureKind::NotFound), "{missing}");
        assert!(missing.to_string().contains("/tmp/no/such/file"), "the error names the path: {missing}");

        let dir = vm.read_file("/tmp").await.unwrap_err();
        assert_eq!(kind(&dir), Some(FailureKind::IsADirectory), "{dir}");

        let relative = vm.stat("tmp/x").await.unwrap_err();
        assert_eq!(kind(&relative), Some(FailureKind::InvalidInput), "{relative}");
        assert!(relative.to_string().contains("absolute"), "{relative}");

        let no_parent = vm.write_file("/tmp/missing-parent/file", &b"x"[..]).await.unwrap_err();
        assert_eq!(kind(&no_parent), Some(FailureKind::NotFound), "{no_parent}");

        let onto_dir = vm.write_file("/tmp", &vec![7u8; 1 << 20][..]).await.unwrap_err();
        assert_eq!(kind(&onto_dir), Some(FailureKind::IsADirectory), "{onto_dir}");

        vm.mkdir("/tmp/full/inner").await.unwrap();
        let not_empty = vm.remove("/tmp/full", false).await.unwrap_err();
        assert_eq!(kind(&not_empty), Some(FailureKind::DirectoryNotEmpty), "{not_empty}");
        vm.remove("/tmp/full", true).await.unwrap();

        let list_file = vm.list_dir("/etc/hostname").await.unwrap_err();
        assert_eq!(kind(&list_file), Some(FailureKind::NotADirectory), "{list_file}");

        let missing_dir = vm.download_dir("/tmp/none", &tempfile::tempdir().unwrap().path().join("x")).await;
        assert_eq!(kind(&missing_dir.unwrap_err()), Some(FailureKind::NotFound));

        // The channel and the VM are fine after all of that.
        let out = tokio::time::timeout(Duration::from_secs(30), vm.exec(["echo", "still here"]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.stdout_lossy(), "still here\n");
    });
}
