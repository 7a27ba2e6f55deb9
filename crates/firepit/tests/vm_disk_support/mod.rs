//! Test disks for the root-disk tests: a busybox root with no agent in it (made from the busybox
//! inside firepit's own initramfs), written as an ext4 image with `mkfs.ext4 -d`, and the python3
//! image built once per target dir (the store is cached by input hash across runs).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The disk's init: a console shell that comes back when it exits (what a tiny distro's inittab
/// would do), in `/`.
pub const BUSYBOX_INIT: &str = "#!/bin/sh\n\
    export PATH=/bin HOME=/root\n\
    mount -t proc proc /proc 2>/dev/null\n\
    cd /\n\
    while true; do setsid cttyhack sh; sleep 0.1; done\n";

/// `./run-test NAME`: prints a line the typed command cannot contain, then `TEST_DONE`.
pub const RUN_TEST: &str = "#!/bin/sh\n\
    n=$(printf %s \"$1\" | wc -c)\n\
    echo \"test $1 ran in $(pwd) under $(tr '\\0' ' ' < /proc/1/cmdline): $n letters\"\n\
    echo TEST_DONE\n";

/// What `./run-test NAME` prints when it ran on the disk, under the disk's own init.
pub fn run_test_result(name: &str) -> String {
    format!("test {name} ran in / under /bin/sh /sbin/init : {} letters", name.len())
}

/// The static busybox from firepit's initramfs (the default image).
pub fn busybox() -> Vec<u8> {
    let image = firepit::image::Image::open_default().unwrap_or_else(|e| panic!("{e}"));
    firepit::image::initramfs::extract(image.initramfs(), "bin/busybox").unwrap().expect("bin/busybox")
}

/// A busybox root under `root`: `/bin/busybox` with a link per applet, the usual directories.
pub fn busybox_tree(root: &Path) {
    for dir in ["bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let binary = root.join("bin/busybox");
    std::fs::write(&binary, busybox()).unwrap();
    chmod(&binary, 0o755);
    let list = Command::new(&binary).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
}

/// The console test disk: a busybox root with `/sbin/init` and `/run-test`, no agent.
pub fn busybox_disk(work: &Path) -> PathBuf {
    let root = work.join("busybox-root");
    busybox_tree(&root);
    write_exec(&root.join("sbin/init"), BUSYBOX_INIT);
    write_exec(&root.join("run-test"), RUN_TEST);
    let disk = work.join("busybox.img");
    mkfs(&root, &disk, "64M");
    std::fs::remove_dir_all(&root).unwrap();
    disk
}

pub fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    chmod(path, 0o755);
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `mkfs.ext4 -d root disk size`.
pub fn mkfs(root: &Path, disk: &Path, size: &str) {
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(root)
        .arg(disk)
        .arg(size)
        .status()
        .expect("mkfs.ext4 (e2fsprogs) not found: run scripts/setup");
    assert!(status.success());
}

/// `sha256sum FILE`.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// Every file under `dir` whose name ends in `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found
}

/// The image store the tests share: under cargo's target dir, so the python3 image is built
/// once per machine and found by its input hash afterwards.
pub fn test_store() -> firepit::image::ImageStore {
    firepit::image::ImageStore::new(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firepit-image-store"))
}
