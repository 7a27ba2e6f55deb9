//! Applying one layer to a root file system tree: whiteouts first, then the entries, every path
//! resolved inside the root.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::ImageError;
use crate::oci_error::OciError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Symlinks followed while resolving one path (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// `path` decompressed by what its first bytes say: gzip, zstd, xz, or a plain tar.
pub(super) fn decompressed(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 6];
    let read = std::fs::File::open(path)?.read(&mut magic)?;
    let file = BufReader::new(std::fs::File::open(path)?);
    Ok(match &magic[..read] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(file)?),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(liblzma::read::XzDecoder::new(file)),
        _ => Box::new(file),
    })
}

/// Applies the layer tarball `layer` to `root`.
pub(super) fn apply_layer(root: &Path, layer: &Path, name: &str) -> Result<(), ImageError> {
    let bad = |detail: String| ImageError::from(OciError::BadLayer { layer: name.to_owned(), detail });
    let open = || -> Result<tar::Archive<Box<dyn Read>>, ImageError> {
        Ok(tar::Archive::new(decompressed(layer).map_err(|e| bad(e.to_string()))?))
    };
    // Pass 1: whiteouts remove what lower layers put there, before this layer adds anything.
    let mut archive = open()?;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(file_name) = path.file_name().and_then(OsStr::to_str) else { continue };
        let parent = path.parent().unwrap_or(Path::new(""));
        if file_name == OPAQUE {
            let dir = resolve(root, parent, true).map_err(bad)?;
            if dir.is_dir() {
                for child in std::fs::read_dir(&dir).map_err(ImageError::io("reading", &dir))?.flatten() {
                    remove(&child.path())?;
                }
            }
        } else if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            remove(&resolve(root, &parent.join(hidden), false).map_err(bad)?)?;
        }
    }
    // Pass 2: the entries themselves.
    let mut archive = open()?;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if path.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with(WHITEOUT_PREFIX)) {
            continue;
        }
        if !path.components().any(|c| matches!(c, Component::Normal(_))) {
            continue; // the root itself ("./")
        }
        let target = resolve(root, &path, false).map_err(bad)?;
        add_entry(root, &mut entry, &target).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Creates one entry at `target` (replacing what is there, except a directory over a directory)
/// with its owner, mode, time and extended attributes.
fn add_entry<R: Read>(root: &Path, entry: &mut tar::Entry<'_, R>, target: &Path) -> Result<(), String> {
    use tar::EntryType;
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| e.to_string())? & 0o7777;
    let (uid, gid) = (header.uid().map_err(|e| e.to_string())?, header.gid().map_err(|e| e.to_string())?);
    let mtime = header.mtime().unwrap_or(0);
    if let Some(parent) = target.parent() {
        // Layers may leave out parent directories; they are created as `mkdir -p` would.
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let existing = std::fs::symlink_metadata(target).ok();
    let keep_dir = kind == EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir());
    if existing.is_some() && !keep_dir {
        remove(target).map_err(|e| e.to_string())?;
    }
    match kind {
        EntryType::Directory => {
            if !keep_dir {
                std::fs::create_dir(target).map_err(|e| e.to_string())?;
            }
        }
        EntryType::Regular | EntryType::Continuous => {
            let mut file = std::fs::File::create(target).map_err(|e| e.to_string())?;
            std::io::copy(entry, &mut file).map_err(|e| e.to_string())?;
        }
        EntryType::Symlink => {
            let link = entry.link_name().map_err(|e| e.to_string())?.ok_or("a symlink without a target")?;
            std::os::unix::fs::symlink(link.as_ref(), target).map_err(|e| e.to_string())?;
        }
        EntryType::Link => {
            let link = entry.link_name().map_err(|e| e.to_string())?.ok_or("a hard link without a target")?;
            let source = resolve(root, &link, false)?;
            std::fs::hard_link(&source, target)
                .map_err(|e| format!("hard link to {}: {e}", link.display()))?;
            return Ok(()); // shares the source's inode: owner and mode are already right
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let file_type = match kind {
                EntryType::Char => libc::S_IFCHR,
                EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let c_path = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: mknod with a valid NUL-terminated path; the result is checked.
            let done = unsafe { libc::mknod(c_path.as_ptr(), file_type | mode, libc::makedev(major, minor)) };
            if done != 0 {
                return Err(format!("mknod: {}", std::io::Error::last_os_error()));
            }
        }
        _ => return Ok(()), // PAX and GNU headers are read by the tar crate; nothing else to make
    }
    std::os::unix::fs::lchown(target, Some(uid as u32), Some(gid as u32))
        .map_err(|e| format!("chown: {e}"))?;
    if kind != EntryType::Symlink {
        // After chown, which clears set-uid bits.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod: {e}"))?;
    }
    set_xattrs(entry, target)?;
    if kind != EntryType::Directory {
        set_mtime(target, mtime)?;
    }
    Ok(())
}

/// Extended attributes from PAX `SCHILY.xattr.*` records (file capabilities, for instance).
fn set_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, target: &Path) -> Result<(), String> {
    let Ok(Some(extensions)) = entry.pax_extensions() else { return Ok(()) };
    let c_path = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    for extension in extensions.flatten() {
        let Some(name) = extension.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else { continue };
        let c_name = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        let value = extension.value_bytes();
        // SAFETY: valid NUL-terminated path and name, a value slice with its length; checked.
        let done = unsafe {
            libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0)
        };
        if done != 0 {
            return Err(format!("setting xattr {name}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn set_mtime(target: &Path, mtime: u64) -> Result<(), String> {
    let c_path = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let secs = libc::time_t::try_from(mtime).unwrap_or(0);
    let times = [libc::timespec { tv_sec: secs, tv_nsec: 0 }, libc::timespec { tv_sec: secs, tv_nsec: 0 }];
    // SAFETY: valid path and a two-element timespec array; AT_SYMLINK_NOFOLLOW sets a link's own time.
    let done = unsafe {
        libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    };
    if done != 0 {
        return Err(format!("setting its time: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Removes whatever is at `path` (a file, a link, a whole directory); nothing there is fine.
fn remove(path: &Path) -> Result<(), ImageError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
    result.map_err(ImageError::io("removing", path))
}

/// The host path of `relative` inside `root`, as the guest will see it: `..` stops at the root,
/// and symlinks in the path are followed within the root (an absolute target starts over at the
/// root). The last component is followed only when `follow_last` (a layer replaces a link
/// itself, but an opaque directory is the directory a link points to).
pub(super) fn resolve(root: &Path, relative: &Path, follow_last: bool) -> Result<PathBuf, String> {
    let mut pending: VecDeque<OsString> = components(relative);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&component);
        let is_last = pending.is_empty();
        let link = std::fs::symlink_metadata(&candidate).ok().filter(|m| m.file_type().is_symlink());
        if link.is_none() || (is_last && !follow_last) {
            resolved.push(component);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(format!("too many symlinks resolving {}", relative.display()));
        }
        let target = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
        if target.is_absolute() {
            resolved.clear();
        }
        for part in components(&target).into_iter().rev() {
            pending.push_front(part);
        }
    }
    if resolved.is_empty() && !follow_last {
        return Err(format!("{} names the root itself", relative.display()));
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// The normal and `..` components of `path` (a leading `/` and `.` dropped).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
