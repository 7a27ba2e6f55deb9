//! Running the external tools the disk builders use, and turning a root file system tree into a
//! raw ext4 image with `mkfs.ext4 -d` (e2fsprogs: no root, no loop device, no mount).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::ImageError;

/// Lines of a failed tool's stderr quoted in the error.
const STDERR_TAIL: usize = 15;

/// Runs `tool` with `args`, handing each line it writes to stderr to `on_line`; fails with the
/// end of its stderr when it exits unsuccessfully.
pub(crate) fn run(
    tool: &'static str,
    package: &'static str,
    args: &[OsString],
    on_line: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let mut child = Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ImageError::ToolMissing { tool, package },
            _ => ImageError::Io { action: "running", path: tool.into(), source: error },
        })?;
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            tail.push(line);
            if tail.len() > STDERR_TAIL {
                tail.remove(0);
            }
        }
    }
    let status =
        child.wait().map_err(|source| ImageError::Io { action: "waiting for", path: tool.into(), source })?;
    if status.success() {
        return Ok(());
    }
    let shown: Vec<String> = args.iter().take(6).map(|a| a.to_string_lossy().into_owned()).collect();
    Err(ImageError::ToolFailed {
        command: format!("{tool} {}{}", shown.join(" "), if args.len() > 6 { " ..." } else { "" }),
        status: status.to_string(),
        stderr: tail.join("\n"),
    })
}

/// Whether this process runs as root (building a root file system with the right owners needs it).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Bytes and inodes a tree needs: file sizes rounded up to 4 KiB blocks, one inode per entry.
fn tree_usage(root: &Path) -> Result<(u64, u64), ImageError> {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(ImageError::io("reading", &dir))? {
            let entry = entry.map_err(ImageError::io("reading", &dir))?;
            let meta =
                entry.path().symlink_metadata().map_err(ImageError::io("inspecting", &entry.path()))?;
            inodes += 1;
            bytes += meta.size().div_ceil(4096) * 4096;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

/// Writes `tree` as a raw ext4 image `out` with `free_mb` MiB to spare (for the guest's writes);
/// returns the image's size in bytes. No journal: every VM writes to its own throw-away overlay,
/// so there is nothing to recover after a crash.
pub(crate) fn make_ext4(tree: &Path, out: &Path, free_mb: u64, label: &str) -> Result<u64, ImageError> {
    let (bytes, inodes) = tree_usage(tree)?;
    // Metadata (inode tables, bitmaps, directories) on top of the data, then the free space.
    let mib = (bytes + inodes * 256).div_ceil(1 << 20) * 11 / 10 + free_mb + 16;
    let inode_count = (inodes * 3 / 2).max(16_384) + free_mb * 64;
    let args: Vec<OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-b".into(),
        "4096".into(),
        "-O".into(),
        "^has_journal".into(),
        "-m".into(),
        "1".into(),
        "-N".into(),
        inode_count.to_string().into(),
        "-L".into(),
        label.into(),
        "-d".into(),
        tree.as_os_str().to_owned(),
        out.as_os_str().to_owned(),
        format!("{mib}M").into(),
    ];
    run("mkfs.ext4", "e2fsprogs", &args, &mut |_| {})?;
    Ok(std::fs::metadata(out).map_err(ImageError::io("inspecting", out))?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_becomes_an_ext4_image_with_room_to_spare() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), b"guest\n").unwrap();
        let out = dir.path().join("disk.img");
        let bytes = make_ext4(&tree, &out, 8, "test").unwrap();
        assert_eq!(bytes % (1 << 20), 0);
        assert!(bytes >= 24 << 20, "16 MiB of metadata slack and 8 MiB free: {bytes}");
        assert_eq!(crate::ImageKind::detect(&out).unwrap(), crate::ImageKind::RawExt4);
    }

    #[test]
    fn a_failing_tool_is_an_error_with_its_stderr_and_a_missing_one_says_what_to_install() {
        let err = run("mkfs.ext4", "e2fsprogs", &["-q".into(), "/nonexistent/dir/x.img".into()], &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, ImageError::ToolFailed { .. }), "{err}");
        let err = run("firepit-no-such-tool", "firepit-tools", &[], &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("apt-get install firepit-tools"), "{err}");
    }
}
