//! A private scratch directory for a benchmark's VM runtime dirs and snapshot templates: created
//! 0700 with a name no other run uses, removed (with everything in it) when dropped.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A private directory, removed on drop.
///
/// ```
/// let dir = firepit_tools::scratch::ScratchDir::create(&std::env::temp_dir(), "doc").unwrap();
/// let path = dir.path().to_owned();
/// assert!(path.is_dir());
/// drop(dir);
/// assert!(!path.exists());
/// ```
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/firepit-<label>-<pid>-<random>` with mode 0700 (`parent` must exist).
    pub fn create(parent: &Path, label: &str) -> std::io::Result<Self> {
        let name = format!("firepit-{label}-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let path = parent.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the files under the directory occupy (allocated blocks: what a tmpfs file costs in
    /// memory), 0 for what cannot be read.
    pub fn allocated_bytes(&self) -> u64 {
        allocated(&self.path)
    }
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.flatten().map(|e| allocated(&e.path())).sum()
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {error}", self.path.display());
        }
    }
}
