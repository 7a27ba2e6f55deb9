//! Where an uploaded archive is unpacked before it becomes visible, and how it is moved into
//! place: all of it, or nothing.
//!
//! Into a directory that exists, the entries go into a hidden staging directory inside it; once
//! the whole archive is unpacked, they are moved over (files and links replace what is there,
//! directories merge into directories). Into one that does not exist yet, the staging directory
//! is its sibling and is renamed to it at the end. The move is checked for conflicts (a file of
//! the archive where a directory exists) before anything moves, so a conflict changes nothing.
//! A [`Stage`] dropped before [`finish`](Stage::finish) removes what it unpacked and the parent
//! directories it created.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use firepit_agent::{Failure, FailureKind};

use crate::failure;
use crate::replace::staging_name;

/// Where the archive goes, and what to undo if it fails.
pub struct Stage {
    /// The hidden directory the entries are unpacked into.
    root: PathBuf,
    /// The directory the upload names.
    dest: PathBuf,
    /// Whether `dest` existed (merge into it) or not (rename `root` to it).
    merge: bool,
    /// Parent directories of `dest` this upload created, outermost first.
    created: Vec<PathBuf>,
    finished: bool,
}

impl Stage {
    /// Prepares to unpack into `dest`: creates its missing parents and the staging directory.
    pub fn new(dest: &Path) -> Result<Self, Failure> {
        let what = |e: &io::Error| failure::io(format!("unpack into {}", dest.display()), e);
        let merge = match fs::metadata(dest) {
            Ok(meta) if meta.is_dir() => true,
            Ok(_) => {
                let message = format!("unpack into {}: not a directory", dest.display());
                return Err(Failure::new(FailureKind::NotADirectory, message));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(error) => return Err(what(&error)),
        };
        let mut stage = Self {
            root: PathBuf::new(),
            dest: dest.to_path_buf(),
            merge,
            created: Vec::new(),
            finished: false,
        };
        let home = match merge {
            true => dest.to_path_buf(),
            false => {
                let parent = dest.parent().unwrap_or(Path::new("/"));
                stage.created = create_parents(parent).map_err(|e| what(&e))?;
                parent.to_path_buf()
            }
        };
        loop {
            let root = staging_name(&home);
            match fs::DirBuilder::new().mode(0o700).create(&root) {
                Ok(()) => {
                    stage.root = root;
                    return Ok(stage);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(what(&error)),
            }
        }
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Moves what was unpacked into place (see the module docs).
    pub fn finish(mut self) -> Result<(), Failure> {
        let what = |e: &io::Error| failure::io(format!("unpack into {}", self.dest.display()), e);
        if !self.merge {
            // The directory the upload creates gets the usual mode, not the staging area's.
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755)).map_err(|e| what(&e))?;
            match fs::rename(&self.root, &self.dest) {
                Ok(()) => {
                    self.finished = true;
                    return Ok(());
                }
                // Someone made it meanwhile: merge into theirs.
                Err(_) if self.dest.is_dir() => {}
                Err(error) => return Err(what(&error)),
            }
        }
        check_conflicts(&self.root, &self.dest)?;
        move_into(&self.root, &self.dest).map_err(|e| what(&e))?;
        fs::remove_dir(&self.root).map_err(|e| what(&e))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if !self.root.as_os_str().is_empty()
            && let Err(error) = fs::remove_dir_all(&self.root)
            && error.kind() != io::ErrorKind::NotFound
        {
            eprintln!("firepit-agent: removing {}: {error}", self.root.display());
        }
        // Innermost first; a directory someone else filled meanwhile stays.
        for dir in self.created.iter().rev() {
            let _kept_if_not_empty = fs::remove_dir(dir);
        }
    }
}

/// Creates `dir` and its missing parents (0755); the ones created, outermost first.
fn create_parents(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current {
        if fs::symlink_metadata(path).is_ok() {
            break;
        }
        missing.push(path.to_path_buf());
        current = path.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for path in missing {
        match fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => created.push(path),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(error) => {
                for dir in created.iter().rev() {
                    let _kept_if_not_empty = fs::remove_dir(dir);
                }
                return Err(error);
            }
        }
    }
    Ok(created)
}

/// Whether `path` is a directory, or a link to one: an archive's directory merges into what is
/// there, as GNU tar does with the directories leading to its files (a root whose `/lib` links to
/// `/usr/lib` keeps that link). Links the *archive* makes are never followed (see `unpack`).
fn is_dir(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// Fails if moving `from`'s entries into `into` would put a non-directory where a directory is.
fn check_conflicts(from: &Path, into: &Path) -> Result<(), Failure> {
    let what = |e: &io::Error| failure::io(format!("unpack into {}", into.display()), e);
    for entry in fs::read_dir(from).map_err(|e| what(&e))? {
        let entry = entry.map_err(|e| what(&e))?;
        let target = into.join(entry.file_name());
        if !is_dir(&target) {
            continue;
        }
        if entry.file_type().map_err(|e| what(&e))?.is_dir() {
            check_conflicts(&entry.path(), &target)?;
        } else {
            let message = format!(
                "unpack into {}: the archive has a file where the directory {} is (remove it first)",
                into.display(),
                target.display()
            );
            return Err(Failure::new(FailureKind::IsADirectory, message));
        }
    }
    Ok(())
}

/// Moves `from`'s entries into `into`: directories merge, anything else replaces.
fn move_into(from: &Path, into: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = into.join(entry.file_name());
        let staged_dir = entry.file_type()?.is_dir();
        if staged_dir && is_dir(&target) {
            move_into(&entry.path(), &target)?;
            fs::remove_dir(entry.path())?;
            continue;
        }
        if staged_dir && fs::symlink_metadata(&target).is_ok() {
            // A directory replaces a file or a link (which rename cannot do in one step).
            fs::remove_file(&target)?;
        }
        fs::rename(entry.path(), &target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_appears_whole_and_a_dropped_stage_leaves_nothing() {
        let top = tempfile::tempdir().unwrap();
        let dest = top.path().join("a/b/dest");
        let stage = Stage::new(&dest).unwrap();
        fs::write(stage.root().join("f"), "x").unwrap();
        assert!(!dest.exists());
        drop(stage);
        assert!(!top.path().join("a").exists(), "the parents it created are gone too");
        let stage = Stage::new(&dest).unwrap();
        fs::write(stage.root().join("f"), "x").unwrap();
        stage.finish().unwrap();
        assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "x");
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn merging_replaces_files_merges_directories_and_refuses_a_file_over_a_directory() {
        let dest = tempfile::tempdir().unwrap();
        let dest = dest.path();
        fs::create_dir_all(dest.join("d/keep")).unwrap();
        fs::write(dest.join("d/old"), "old").unwrap();
        fs::write(dest.join("f"), "old").unwrap();
        fs::create_dir(dest.join("real")).unwrap();
        std::os::unix::fs::symlink("real", dest.join("link")).unwrap();
        let stage = Stage::new(dest).unwrap();
        fs::create_dir_all(stage.root().join("d")).unwrap();
        fs::write(stage.root().join("d/old"), "new").unwrap();
        fs::write(stage.root().join("f"), "new").unwrap();
        fs::create_dir(stage.root().join("link")).unwrap();
        fs::write(stage.root().join("link/inside"), "new").unwrap();
        stage.finish().unwrap();
        assert_eq!(fs::read_to_string(dest.join("d/old")).unwrap(), "new");
        assert!(dest.join("d/keep").is_dir());
        assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "new");
        assert!(fs::symlink_metadata(dest.join("link")).unwrap().is_symlink(), "the link stays");
        assert_eq!(fs::read_to_string(dest.join("real/inside")).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 4, "{names:?}");

        let stage = Stage::new(dest).unwrap();
        fs::write(stage.root().join("f"), "newer").unwrap();
        fs::write(stage.root().join("d"), "a file").unwrap();
        let refused = stage.finish().unwrap_err();
        assert_eq!(refused.kind, FailureKind::IsADirectory);
        assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "new", "a conflict moves nothing");
        assert_eq!(fs::read_dir(dest).unwrap().count(), 4);
    }
}
