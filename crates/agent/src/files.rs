//! One-shot file-system operations: stat, list, mkdir, remove, chmod, chown, rename.

use std::fs::{self, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path};

use firepit_agent::{
    ChmodRequest, ChownRequest, DirEntry, DirListing, Failure, FileKind, FileStat, ListDirRequest,
    MAX_DIR_ENTRIES, MkdirRequest, RemoveRequest, RenameRequest, StatRequest,
};

use crate::failure::{self, absolute};

/// Metadata as the protocol describes it (`path` only to read a symbolic link's target).
pub fn file_stat(path: &Path, meta: &Metadata) -> FileStat {
    let file_type = meta.file_type();
    let kind = if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    let symlink_target = (kind == FileKind::Symlink)
        .then(|| fs::read_link(path).ok().map(|t| t.to_string_lossy().into_owned()))
        .flatten();
    FileStat {
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        modified_unix_ms: meta.mtime().saturating_mul(1000).saturating_add(meta.mtime_nsec() / 1_000_000),
        symlink_target,
    }
}

/// [`StatRequest`].
pub fn stat(request: &StatRequest) -> Result<FileStat, Failure> {
    let path = absolute(&request.path)?;
    let meta = if request.follow_symlinks { fs::metadata(path) } else { fs::symlink_metadata(path) };
    let meta = meta.map_err(|e| failure::io(format!("stat {}", path.display()), &e))?;
    Ok(file_stat(path, &meta))
}

/// [`ListDirRequest`]: entries sorted by name, at most [`MAX_DIR_ENTRIES`].
pub fn list_dir(request: &ListDirRequest) -> Result<DirListing, Failure> {
    let path = absolute(&request.path)?;
    let what = || format!("list {}", path.display());
    let reader = fs::read_dir(path).map_err(|e| failure::io(what(), &e))?;
    let mut listing = DirListing::default();
    for entry in reader {
        let entry = entry.map_err(|e| failure::io(what(), &e))?;
        if listing.entries.len() == MAX_DIR_ENTRIES {
            listing.truncated = true;
            break;
        }
        let full = entry.path();
        // An entry removed while listing is skipped, not an error.
        let Ok(meta) = fs::symlink_metadata(&full) else { continue };
        listing.entries.push(DirEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            stat: file_stat(&full, &meta),
        });
    }
    listing.entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

/// [`MkdirRequest`].
pub fn mkdir(request: &MkdirRequest) -> Result<(), Failure> {
    let path = absolute(&request.path)?;
    let mode = request.mode.unwrap_or(0o755) & 0o7777;
    let what = || format!("mkdir {}", path.display());
    let existed = path.is_dir();
    fs::DirBuilder::new()
        .recursive(request.parents)
        .mode(mode)
        .create(path)
        .map_err(|e| failure::io(what(), &e))?;
    if !existed {
        // DirBuilder's mode goes through the umask; the request's mode is meant literally.
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| failure::io(what(), &e))?;
    }
    Ok(())
}

/// [`RemoveRequest`]: a symbolic link is removed, never followed.
pub fn remove(request: &RemoveRequest) -> Result<(), Failure> {
    let path = absolute(&request.path)?;
    if is_root(path) {
        return Err(failure::invalid("refusing to remove /"));
    }
    let what = || format!("remove {}", path.display());
    let meta = fs::symlink_metadata(path).map_err(|e| failure::io(what(), &e))?;
    let result = if !meta.is_dir() {
        fs::remove_file(path)
    } else if request.recursive {
        fs::remove_dir_all(path)
    } else {
        fs::remove_dir(path)
    };
    result.map_err(|e| failure::io(what(), &e))
}

/// [`ChmodRequest`].
pub fn chmod(request: &ChmodRequest) -> Result<(), Failure> {
    let path = absolute(&request.path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(request.mode & 0o7777))
        .map_err(|e| failure::io(format!("chmod {}", path.display()), &e))
}

/// [`ChownRequest`].
pub fn chown(request: &ChownRequest) -> Result<(), Failure> {
    let path = absolute(&request.path)?;
    std::os::unix::fs::chown(path, request.uid, request.gid)
        .map_err(|e| failure::io(format!("chown {}", path.display()), &e))
}

/// Whether `path` names the root directory (`/`, `//`, `/.`).
fn is_root(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::RootDir | Component::CurDir))
}

/// [`RenameRequest`].
pub fn rename(request: &RenameRequest) -> Result<(), Failure> {
    let (from, to) = (absolute(&request.from)?, absolute(&request.to)?);
    if is_root(from) || is_root(to) {
        return Err(failure::invalid(format!(
            "rename {} to {}: / cannot be renamed or replaced",
            from.display(),
            to.display()
        )));
    }
    fs::rename(from, to)
        .map_err(|e| failure::io(format!("rename {} to {}", from.display(), to.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_agent::FailureKind;

    fn s(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn mkdir_stat_list_chmod_remove() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        mkdir(&MkdirRequest { path: s(&nested), parents: true, mode: Some(0o700) }).unwrap();
        let st = stat(&StatRequest { path: s(&nested), follow_symlinks: false }).unwrap();
        assert_eq!((st.kind, st.mode), (FileKind::Dir, 0o700));
        fs::write(nested.join("f"), b"abc").unwrap();
        std::os::unix::fs::symlink("f", nested.join("l")).unwrap();
        let listing = list_dir(&ListDirRequest { path: s(&nested) }).unwrap();
        let names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["f", "l"]);
        assert_eq!(listing.entries[1].stat.symlink_target.as_deref(), Some("f"));
        chmod(&ChmodRequest { path: s(&nested.join("f")), mode: 0o640 }).unwrap();
        assert_eq!(
            stat(&StatRequest { path: s(&nested.join("f")), follow_symlinks: true }).unwrap().mode,
            0o640
        );
        let refused =
            remove(&RemoveRequest { path: s(&dir.path().join("a")), recursive: false }).unwrap_err();
        assert_eq!(refused.kind, FailureKind::DirectoryNotEmpty);
        remove(&RemoveRequest { path: s(&dir.path().join("a")), recursive: true }).unwrap();
        let gone = stat(&StatRequest { path: s(&nested), follow_symlinks: false }).unwrap_err();
        assert_eq!(gone.kind, FailureKind::NotFound);
    }

    #[test]
    fn the_root_cannot_be_renamed_or_replaced() {
        for (from, to) in [("/", "/tmp/x"), ("//.", "/tmp/x"), ("/tmp/nothing", "/")] {
            let refused = rename(&RenameRequest { from: from.into(), to: to.into() }).unwrap_err();
            assert_eq!(refused.kind, FailureKind::InvalidInput, "{from} -> {to}");
        }
    }

    #[test]
    fn mkdir_without_parents_fails_on_a_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let failure =
            mkdir(&MkdirRequest { path: s(&dir.path().join("x/y")), ..Default::default() }).unwrap_err();
        assert_eq!(failure.kind, FailureKind::NotFound);
    }
}
