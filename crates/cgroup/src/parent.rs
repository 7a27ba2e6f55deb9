//! [`Parent`]: the cgroup every VM's cgroup is made under — prepared once, swept of stale
//! children, removed when empty.

use std::path::{Path, PathBuf};

use crate::cgroup::{Cgroup, Dir};
use crate::error::CgroupError;
use crate::hierarchy::{Controller, Hierarchy, Version};
use crate::limits::{Limits, v1_shares, v2_weight};

/// The parent cgroup of firepit's VMs: one directory per hierarchy (see [`Hierarchy::resolve`]).
///
/// When [`open`](Self::open) creates it, its CPU weight is set to as many busy tasks as the host
/// has CPUs (v1 `cpu.shares` = 1024 × CPUs, v2 `cpu.weight` = 100 × CPUs): all VMs together then
/// compete with the host's other processes like that many busy processes would, and among
/// themselves by their own weights (their sizes). Left at the default, a whole pool would weigh
/// as much as one shell loop. A parent that already exists keeps its weight (an operator's
/// setting, or ours from an earlier run).
///
/// ```no_run
/// use firepit_cgroup::{Hierarchy, Limits, Parent};
/// let parent = Parent::open(&Hierarchy::detect()?, "firepit".as_ref())?;
/// let vm = parent.create("fp-1-1", &Limits { cpus: 1, memory_bytes: 768 << 20, pids: 128 })?;
/// drop(vm); // removed (it holds no process)
/// let sweep = parent.remove_stale(|name| name.starts_with("fp-"));
/// println!("{} stale cgroups removed", sweep.removed);
/// # Ok::<(), firepit_cgroup::CgroupError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Parent {
    version: Version,
    dirs: Vec<Dir>,
    /// The mount point of each directory's hierarchy.
    roots: Vec<PathBuf>,
}

/// What [`Parent::remove_stale`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Directories removed (one per hierarchy: a v1 cgroup counts once per hierarchy).
    pub removed: usize,
    /// Stale directories that still hold a process (left alone).
    pub busy: Vec<PathBuf>,
}

impl Parent {
    /// Creates the parent `path` (see [`Hierarchy::resolve`]) in every hierarchy as needed and,
    /// under v2, hands the cpu, memory and pids controllers down to it and to its children.
    pub fn open(hierarchy: &Hierarchy, path: &Path) -> Result<Self, CgroupError> {
        let paths = hierarchy.resolve(path)?;
        let dirs = paths
            .into_iter()
            .zip(hierarchy.mounts())
            .map(|(path, mount)| Dir { path, controllers: mount.controllers.clone() })
            .collect();
        let roots = hierarchy.mounts().iter().map(|m| m.root.clone()).collect();
        let parent = Self { version: hierarchy.version(), dirs, roots };
        parent.prepare()?;
        Ok(parent)
    }

    /// v1 or v2.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Its directories.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    fn prepare(&self) -> Result<(), CgroupError> {
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        for (dir, root) in self.dirs.iter().zip(&self.roots) {
            let created = !dir.path.is_dir();
            std::fs::create_dir_all(&dir.path).map_err(CgroupError::io("creating", &dir.path))?;
            if self.version == Version::V2 {
                enable_controllers(root, &dir.path)?;
            }
            if created && dir.controllers.contains(&Controller::Cpu) {
                let (file, weight) = match self.version {
                    Version::V1 => ("cpu.shares", v1_shares(host_cpus)),
                    Version::V2 => ("cpu.weight", v2_weight(host_cpus)),
                };
                write(&dir.path, file, &weight.to_string())?;
            }
        }
        Ok(())
    }

    /// Makes the cgroup `name` with `limits` (a leftover of that name is replaced when empty).
    /// Nothing is left behind when it fails. If the parent has vanished (removed by another
    /// process when it was empty), it is made again.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(CgroupError::InvalidParent { parent: PathBuf::from(name) });
        }
        let mut made = Vec::with_capacity(self.dirs.len());
        for dir in &self.dirs {
            let path = dir.path.join(name);
            let result = match make_dir(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.prepare().and_then(|()| make_dir(&path).map_err(CgroupError::io("creating", &path)))
                }
                other => other.map_err(CgroupError::io("creating", &path)),
            };
            // Dropping `made` (a `Cgroup`) removes what was made so far.
            let partial = |made: Vec<Dir>| Cgroup::new(name.to_owned(), self.version, made);
            if let Err(e) = result {
                drop(partial(made));
                return Err(e);
            }
            made.push(Dir { path: path.clone(), controllers: dir.controllers.clone() });
            for (file, value) in limits.files(self.version, &dir.controllers) {
                if let Err(e) = write(&path, file, &value) {
                    drop(partial(made));
                    return Err(e);
                }
            }
        }
        Ok(Cgroup::new(name.to_owned(), self.version, made))
    }

    /// Removes the child cgroups for which `is_stale(name)` holds and that hold no process: what
    /// a process that died without cleaning up (a crash, `kill -9`) left. A child with a process
    /// in it is never touched (the kernel refuses), only reported.
    pub fn remove_stale(&self, is_stale: impl Fn(&str) -> bool) -> Sweep {
        let mut sweep = Sweep::default();
        for dir in &self.dirs {
            for entry in std::fs::read_dir(&dir.path).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !entry.path().is_dir() || !is_stale(&name) {
                    continue;
                }
                match std::fs::remove_dir(entry.path()) {
                    Ok(()) => sweep.removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::debug!(cgroup = %entry.path().display(), error = %e, "stale cgroup not removed");
                        sweep.busy.push(entry.path());
                    }
                }
            }
        }
        sweep
    }

    /// Removes the parent's directories if no cgroup is left in them (best effort: another
    /// process's VMs may still be there). What an owner does when it stops, so that nothing of
    /// firepit's is left in a cgroup tree it was given.
    pub fn remove_if_empty(&self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(&dir.path); // refused while a child cgroup is left
        }
    }
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(path) {
        // A leftover of the same name (ids are unique per process, so it is ours): an empty one is
        // replaced, a busy one is an error.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_dir(path)?;
            std::fs::create_dir(path)
        }
        other => other,
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(CgroupError::io("writing", path))
}

/// Under v2, makes `cpu`, `memory` and `pids` available in `dir` and its children: every
/// directory from the hierarchy's `root` down to `dir` must list them in `cgroup.subtree_control`.
fn enable_controllers(root: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(below) = dir.strip_prefix(root) else { return Ok(()) };
    let mut current = root.to_path_buf();
    let mut chain = vec![current.clone()];
    for part in below.components() {
        current.push(part);
        chain.push(current.clone());
    }
    for step in chain {
        let control = step.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control).map_err(CgroupError::io("reading", &control))?;
        let missing: Vec<String> = ["cpu", "memory", "pids"]
            .into_iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            std::fs::write(&control, missing.join(" "))
                .map_err(|source| CgroupError::Delegation { dir: step.clone(), source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parent over plain directories (what the kernel would refuse, these accept).
    fn fake_parent(root: &Path, version: Version) -> Parent {
        let dirs = match version {
            Version::V1 => vec![
                Dir { path: root.join("cpu/firepit"), controllers: vec![Controller::Cpu] },
                Dir { path: root.join("memory/firepit"), controllers: vec![Controller::Memory] },
            ],
            Version::V2 => vec![Dir {
                path: root.join("firepit"),
                controllers: vec![Controller::Cpu, Controller::Memory, Controller::Pids],
            }],
        };
        for dir in &dirs {
            std::fs::create_dir_all(&dir.path).unwrap();
        }
        let roots = dirs.iter().map(|_| root.to_path_buf()).collect();
        Parent { version, dirs, roots }
    }

    #[test]
    fn create_writes_the_limits_and_a_bad_name_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let parent = fake_parent(root.path(), Version::V1);
        let limits = Limits { cpus: 2, memory_bytes: 300 << 20, pids: 50 };
        let cgroup = parent.create("fp-1-1", &limits).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("cpu/firepit/fp-1-1/cpu.cfs_quota_us"), "200000");
        assert_eq!(read("cpu/firepit/fp-1-1/cpu.shares"), "2048");
        assert_eq!(read("memory/firepit/fp-1-1/memory.limit_in_bytes"), (300u64 << 20).to_string());
        assert_eq!(cgroup.paths().count(), 2);
        std::mem::forget(cgroup); // plain directories with files: rmdir would fail
        for bad in ["", "a/b", ".."] {
            assert!(matches!(parent.create(bad, &limits), Err(CgroupError::InvalidParent { .. })), "{bad:?}");
        }
    }

    #[test]
    fn stale_children_are_removed_and_others_kept() {
        let root = tempfile::tempdir().unwrap();
        let parent = fake_parent(root.path(), Version::V2);
        let base = root.path().join("firepit");
        for name in ["fp-999-1", "fp-999-2", "fp-1-1", "other"] {
            std::fs::create_dir(base.join(name)).unwrap();
        }
        std::fs::write(base.join("fp-999-2/busy"), b"").unwrap(); // a "process" left in it
        let sweep = parent.remove_stale(|name| name.starts_with("fp-999-"));
        assert_eq!(sweep.removed, 1);
        assert_eq!(sweep.busy, [base.join("fp-999-2")]);
        assert!(base.join("fp-1-1").is_dir() && base.join("other").is_dir());
        parent.remove_if_empty();
        assert!(base.is_dir(), "children left: the parent stays");
    }

    #[test]
    fn v2_controllers_are_enabled_down_the_chain_and_a_refusal_says_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/firepit");
        std::fs::create_dir_all(&dir).unwrap();
        for step in [root.path(), &root.path().join("a"), &dir] {
            std::fs::write(step.join("cgroup.subtree_control"), "cpu io\n").unwrap();
        }
        enable_controllers(root.path(), &dir).unwrap();
        // A plain file keeps what was written last: the missing ones, named.
        assert_eq!(std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap(), "+memory +pids");
        std::fs::remove_file(root.path().join("a/cgroup.subtree_control")).unwrap();
        std::fs::create_dir(root.path().join("a/cgroup.subtree_control")).unwrap();
        let err = enable_controllers(root.path(), &dir).unwrap_err();
        assert!(err.to_string().contains("a/cgroup.subtree_control"), "{err}");
    }
}
