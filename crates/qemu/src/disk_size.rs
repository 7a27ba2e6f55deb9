//! A root disk sized for a shape's `disk_mb`: the base's ext4 file system with exactly that much
//! free space, so a VM writing past it gets `ENOSPC` and its overlay never holds more.
//!
//! # Why on the host, once per image and size
//! A VM writes to a qcow2 overlay over a shared, read-only base (see [`crate::disk`]); the overlay
//! can only grow as far as the guest's file system lets the guest write, so bounding the file
//! system bounds the overlay. The guest cannot be trusted to bound itself (quotas and reserved
//! blocks do not hold root), and growing a file system from inside would need e2fsprogs in every
//! image. So the host makes, once per (base, `disk_mb`), a raw copy of the base (`qemu-img
//! convert`, which also turns a qcow2 base into raw), checks it (`e2fsck -f`) and resizes it
//! (`resize2fs`) to its content plus `disk_mb`, measured with `dumpe2fs -h`; every VM of the
//! shape then gets its overlay over that copy. The copy is content-addressed in
//! `ProviderConfig::disk_dir` (by the base's stamp and the size), so later fills and later
//! providers reuse it; a snapshot template records the copy's own stamp, so a copy made again
//! makes the template stale rather than wrong.
//!
//! Limitation: only ext2/3/4 bases (what `firepit image` builds and imports); another file system
//! is refused with [`DiskError::NotExt4`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::disk::run_tool;
use crate::root_disk::{DiskError, DiskFormat, RootDisk};

/// How long one tool may run on one copy (converting a large base takes a while on a busy host).
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

/// What `dumpe2fs -h` says about a file system's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    block_size: u64,
    blocks: u64,
    free_blocks: u64,
}

impl Geometry {
    fn parse(dumpe2fs: &str) -> Option<Self> {
        let field = |name: &str| {
            dumpe2fs
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok())
        };
        Some(Self {
            block_size: field("Block size")?,
            blocks: field("Block count")?,
            free_blocks: field("Free blocks")?,
        })
    }

    fn used_blocks(&self) -> u64 {
        self.blocks.saturating_sub(self.free_blocks)
    }
}

/// The copy of `base` whose file system has `disk_mb` MiB free, in `dir`: made on first use
/// (blocking the caller for as long as that takes: seconds for a large base), reused after.
pub(crate) async fn sized_base(
    qemu_img: &Path,
    base: &RootDisk,
    disk_mb: u64,
    dir: &Path,
) -> Result<RootDisk, DiskError> {
    let stamp = crate::disk::base_stamp(&base.base)?;
    let key = crate::snapshot::store::sha256_hex(
        format!("{stamp}\n{}\n{disk_mb}", base.format.as_str()).as_bytes(),
    );
    let sized = dir.join(format!("{}-{disk_mb}m.img", &key[..16]));
    if sized.is_file() {
        return Ok(RootDisk::new(sized, DiskFormat::Raw));
    }
    std::fs::create_dir_all(dir).map_err(|source| DiskError::Base { base: dir.to_path_buf(), source })?;
    let scratch = dir.join(format!(".{}-{}.tmp", &key[..16], std::process::id()));
    let result = make(qemu_img, base, disk_mb, &scratch).await.and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        // Read-only from now on: it is the base of every overlay of the shape.
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o444))
            .and_then(|()| std::fs::rename(&scratch, &sized))
            .map_err(|source| DiskError::Base { base: sized.clone(), source })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&scratch);
    }
    result?;
    tracing::info!(base = %base.base.display(), disk_mb, sized = %sized.display(), "root disk sized for the shape's disk_mb");
    Ok(RootDisk::new(sized, DiskFormat::Raw))
}

async fn make(qemu_img: &Path, base: &RootDisk, disk_mb: u64, out: &Path) -> Result<(), DiskError> {
    let failed = |step: &str| {
        let (base, step) = (base.base.clone(), step.to_owned());
        move |(status, stderr): (String, String)| DiskError::Sizing { base, disk_mb, step, status, stderr }
    };
    let (format, out_text) = (base.format.as_str(), out.as_os_str());
    let convert = [
        "convert".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        format.as_ref(),
        "-O".as_ref(),
        "raw".as_ref(),
        base.base.as_os_str(),
        out_text,
    ];
    run_tool(qemu_img, &convert, &[0], TOOL_TIMEOUT).await?.map_err(failed("qemu-img convert"))?;
    let geometry =
        match run_tool(&e2fs_tool("dumpe2fs"), &["-h".as_ref(), out_text], &[0], TOOL_TIMEOUT).await? {
            Ok(text) => Geometry::parse(&text),
            Err(_) => None,
        };
    let Some(geometry) = geometry else {
        return Err(DiskError::NotExt4 { base: base.base.clone() });
    };
    // 0: clean, 1: errors corrected (a base made by `mkfs.ext4 -d` is clean).
    run_tool(&e2fs_tool("e2fsck"), &["-f".as_ref(), "-y".as_ref(), out_text], &[0, 1], TOOL_TIMEOUT)
        .await?
        .map_err(failed("e2fsck"))?;
    let wanted_free = disk_mb * (1 << 20) / geometry.block_size;
    let mut target = geometry.used_blocks() + wanted_free;
    // Resizing adds or drops block groups, whose metadata moves the free count: measure and
    // correct once.
    for _ in 0..2 {
        let size = format!("{}K", target * geometry.block_size / 1024);
        let resize = [out_text, size.as_ref()];
        run_tool(&e2fs_tool("resize2fs"), &resize, &[0], TOOL_TIMEOUT).await?.map_err(failed("resize2fs"))?;
        let text = run_tool(&e2fs_tool("dumpe2fs"), &["-h".as_ref(), out_text], &[0], TOOL_TIMEOUT)
            .await?
            .map_err(failed("dumpe2fs"))?;
        let now = Geometry::parse(&text).ok_or_else(|| DiskError::NotExt4 { base: base.base.clone() })?;
        if now.free_blocks.abs_diff(wanted_free) <= wanted_free / 100 {
            break;
        }
        target = (target + wanted_free).saturating_sub(now.free_blocks);
    }
    Ok(())
}

/// An e2fsprogs tool: from `PATH`, else Debian's `/usr/sbin` or `/sbin` (not in a non-root
/// user's `PATH`).
fn e2fs_tool(name: &str) -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    in_path
        .or_else(|| ["/usr/sbin", "/sbin"].iter().map(|dir| Path::new(dir).join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumpe2fs_geometry_parses() {
        let text = "Filesystem volume name:   firepit\nBlock count:              25600\nReserved block count:     256\n\
                    Free blocks:              20000\nBlock size:               4096\n";
        let geometry = Geometry::parse(text).unwrap();
        assert_eq!(geometry, Geometry { block_size: 4096, blocks: 25600, free_blocks: 20000 });
        assert_eq!(geometry.used_blocks(), 5600);
        assert_eq!(Geometry::parse("Block count: 1\n"), None);
    }

    #[tokio::test]
    async fn an_ext4_base_is_resized_to_its_content_plus_disk_mb_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("data"), vec![7u8; 3 << 20]).unwrap();
        let base = dir.path().join("base.img");
        let mkfs = std::process::Command::new(e2fs_tool("mkfs.ext4"))
            .args(["-q", "-F", "-b", "4096", "-O", "^has_journal", "-d"])
            .arg(&tree)
            .arg(&base)
            .arg("200M")
            .status()
            .unwrap();
        assert!(mkfs.success());
        let cache = dir.path().join("disks");
        let base = RootDisk::new(&base, DiskFormat::Raw);
        for disk_mb in [64, 300] {
            let sized = sized_base(Path::new("qemu-img"), &base, disk_mb, &cache).await.unwrap();
            let text = std::process::Command::new(e2fs_tool("dumpe2fs"))
                .arg("-h")
                .arg(&sized.base)
                .output()
                .unwrap();
            let geometry = Geometry::parse(&String::from_utf8_lossy(&text.stdout)).unwrap();
            let free_mb = (geometry.free_blocks * geometry.block_size) >> 20;
            assert!(
                free_mb.abs_diff(disk_mb) <= disk_mb / 50 + 1,
                "{free_mb} MiB free for disk_mb {disk_mb}"
            );
            assert_eq!(
                std::fs::metadata(&sized.base).unwrap().len(),
                geometry.blocks * geometry.block_size,
                "the file is the file system's size"
            );
            let again = sized_base(Path::new("qemu-img"), &base, disk_mb, &cache).await.unwrap();
            assert_eq!(again, sized, "reused");
        }
        let not_ext4 = dir.path().join("zeros.img");
        std::fs::write(&not_ext4, vec![0u8; 1 << 20]).unwrap();
        let err = sized_base(Path::new("qemu-img"), &RootDisk::new(&not_ext4, DiskFormat::Raw), 64, &cache)
            .await
            .unwrap_err();
        assert!(matches!(err, DiskError::NotExt4 { .. }), "{err}");
        let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "two sized copies, no scratch left: {left:?}");
    }
}
