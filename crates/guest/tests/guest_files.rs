//! Files through a `Guest` whose agent is the real agent's request handling in this process
//! (`InProcessAgent`): streamed writes and reads, the file operations and their failure kinds,
//! tar archives and whole directory trees, each test in a temporary directory of its own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use firepit_agent::{FailureKind, FileKind, MkdirRequest};
use firepit_guest::{Guest, GuestError, InProcessAgent, WriteOptions};
use tokio::io::AsyncReadExt;

fn guest() -> Guest {
    Guest::new(InProcessAgent::new())
}

fn at(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

fn kind(error: GuestError) -> Option<FailureKind> {
    error.failure_kind()
}

#[tokio::test]
async fn a_file_of_several_windows_round_trips_and_ranges_read_back() {
    let (guest, dir) = (guest(), tempfile::tempdir().unwrap());
    let path = at(&dir, "data.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(guest.write_file(&path, data.as_slice()).await.unwrap(), data.len() as u64);
    assert!(std::fs::read(&path).unwrap() == data, "the file on disk differs");

    let mut reader = guest.read_file(&path).await.unwrap();
    assert_eq!((reader.stat().kind, reader.stat().size), (FileKind::File, data.len() as u64));
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "read back {} bytes that differ", back.len());

    let mut range = Vec::new();
    guest.read_file_range(&path, 100, Some(10)).await.unwrap().read_to_end(&mut range).await.unwrap();
    assert_eq!(range, &data[100..110]);
}

#[tokio::test]
async fn write_options_set_the_mode_make_parents_and_append() {
    let (guest, dir) = (guest(), tempfile::tempdir().unwrap());
    let path = at(&dir, "a/b/log");
    let options = WriteOptions { mode: Some(0o600), create_parents: true, append: false };
    guest.write_file_with(&path, &b"one\n"[..], options).await.unwrap();
    let append = WriteOptions { append: true, ..WriteOptions::default() };
    guest.write_file_with(&path, &b"two\n"[..], append).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn file_operations_work_and_fail_with_the_guests_failure_kind() {
    let (guest, dir) = (guest(), tempfile::tempdir().unwrap());
    let tree = at(&dir, "d/e");
    guest.mkdir(&tree).await.unwrap();
    let file = format!("{tree}/f");
    guest.write_file(&file, &b"hi"[..]).await.unwrap();
    let listing = guest.list_dir(&tree).await.unwrap();
    assert_eq!(listing.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["f"]);
    guest.chmod(&file, 0o700).await.unwrap();
    assert_eq!(guest.stat(&file).await.unwrap().mode & 0o777, 0o700);
    guest.chown(&file, None, None).await.unwrap();
    std::os::unix::fs::symlink("f", dir.path().join("d/e/link")).unwrap();
    assert_eq!(guest.lstat(&format!("{tree}/link")).await.unwrap().kind, FileKind::Symlink);
    assert_eq!(guest.stat(&format!("{tree}/link")).await.unwrap().kind, FileKind::File);
    let moved = at(&dir, "d/g");
    guest.rename(&file, &moved).await.unwrap();

    assert_eq!(kind(guest.read_file(&file).await.unwrap_err()), Some(FailureKind::NotFound));
    assert_eq!(kind(guest.read_file(&at(&dir, "d")).await.unwrap_err()), Some(FailureKind::IsADirectory));
    let not_empty = guest.remove(&at(&dir, "d"), false).await.unwrap_err();
    assert_eq!(kind(not_empty), Some(FailureKind::DirectoryNotEmpty));
    assert_eq!(kind(guest.stat("tmp").await.unwrap_err()), Some(FailureKind::InvalidInput));
    let exists = MkdirRequest { path: tree.clone(), parents: false, mode: None };
    assert_eq!(kind(guest.mkdir_request(exists).await.unwrap_err()), Some(FailureKind::AlreadyExists));
    guest.remove(&at(&dir, "d"), true).await.unwrap();
    assert!(!dir.path().join("d").exists());
}

/// A tree with nested directories, modes, a relative symbolic link and an empty directory.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(root.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("bin/data"), (0..200_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>())
        .unwrap();
    std::os::unix::fs::symlink("bin/tool", root.join("run")).unwrap();
}

/// (relative path, mode or link target, contents) of every entry under `root`, sorted.
fn describe(root: &Path) -> Vec<(String, String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if meta.file_type().is_symlink() {
                out.push((name, std::fs::read_link(&path).unwrap().display().to_string(), Vec::new()));
            } else if meta.is_dir() {
                out.push((name, format!("{:o}", meta.permissions().mode() & 0o777), Vec::new()));
                walk(root, &path, out);
            } else {
                let mode = format!("{:o}", meta.permissions().mode() & 0o777);
                out.push((name, mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn a_directory_tree_goes_up_and_comes_back_the_same() {
    let guest = guest();
    let (source, guest_side, back) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_tree(source.path());
    let target = at(&guest_side, "project");
    let sent = guest.upload_dir(source.path(), &target).await.unwrap();
    assert!(sent > 200_000, "{sent} archive bytes");
    assert_eq!(describe(source.path()), describe(Path::new(&target)));
    guest.download_dir(&target, back.path()).await.unwrap();
    assert_eq!(describe(source.path()), describe(back.path()));

    let mut archive = Vec::new();
    guest.download_tar(&target).await.unwrap().read_to_end(&mut archive).await.unwrap();
    let copy = at(&guest_side, "copy");
    assert_eq!(guest.upload_tar(&copy, archive.as_slice()).await.unwrap(), archive.len() as u64);
    assert_eq!(describe(source.path()), describe(Path::new(&copy)));
}

#[tokio::test]
async fn uploading_a_missing_host_directory_is_a_host_error() {
    let (guest, dir) = (guest(), tempfile::tempdir().unwrap());
    let error = guest.upload_dir(&dir.path().join("none"), &at(&dir, "x")).await.unwrap_err();
    assert!(matches!(error, GuestError::HostIo { .. }), "{error:?}");
}
