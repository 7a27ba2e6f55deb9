//! [`Cgroup`]: one VM's cgroup — joined by its process before exec, read cheaply while it runs,
//! removed once the process is gone.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::CgroupError;
use crate::hierarchy::{Controller, Version};

/// One directory of a cgroup and the controllers (of ours) its hierarchy carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dir {
    pub path: PathBuf,
    pub controllers: Vec<Controller>,
}

impl Dir {
    fn has(&self, controller: Controller) -> bool {
        self.controllers.contains(&controller)
    }
}

/// A VM's cgroup: one directory under v2, one per hierarchy under v1 (same name in each).
/// Made by [`Parent::create`](crate::Parent::create); removed when dropped (or by
/// [`remove`](Self::remove)) — which works once no process is left in it.
///
/// ```no_run
/// use firepit_cgroup::{Hierarchy, Limits, Parent};
/// let parent = Parent::open(&Hierarchy::detect()?, "firepit".as_ref())?;
/// let cgroup = parent.create("vm-1", &Limits { cpus: 1, memory_bytes: 512 << 20, pids: 64 })?;
/// let join = cgroup.joiner()?; // before fork: the child calls `join.join_self()` before exec
/// println!("{cgroup}: {:?}", cgroup.usage()?);
/// # Ok::<(), firepit_cgroup::CgroupError>(())
/// ```
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    version: Version,
    dirs: Vec<Dir>,
    removed: AtomicBool,
}

/// What a cgroup has used so far: two small files read (see [`Cgroup::usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used by its processes since it was made (`None`: v1 without `cpuacct`).
    pub cpu: Option<Duration>,
    /// Memory charged to it now, bytes (page cache included).
    pub memory_bytes: u64,
}

/// Open `cgroup.procs` files of one cgroup, for a child to join it between fork and exec
/// ([`join_self`](Self::join_self)). Opened by the parent (with its rights), closed at exec.
#[derive(Debug)]
pub struct Joiner {
    procs: Vec<OwnedFd>,
}

impl Joiner {
    /// Moves the calling process into the cgroup (writes `0`, "myself", to each `cgroup.procs`).
    /// Async-signal-safe: only `write(2)` on descriptors opened earlier, no allocation, so it
    /// may run in a forked child before exec (e.g. in `Command::pre_exec`).
    pub fn join_self(&self) -> std::io::Result<()> {
        for fd in &self.procs {
            // SAFETY: a valid descriptor we own and a one-byte buffer that lives through the call.
            if unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Cgroup {
    pub(crate) fn new(name: String, version: Version, dirs: Vec<Dir>) -> Self {
        Self { name, version, dirs, removed: AtomicBool::new(false) }
    }

    /// Its name in the parent (the VM's id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// v1 or v2.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Its directories: one under v2, one per hierarchy under v1.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    /// The `cgroup.procs` files opened for a child to join before exec (see [`Joiner`]).
    pub fn joiner(&self) -> Result<Joiner, CgroupError> {
        let mut procs = Vec::with_capacity(self.dirs.len());
        for dir in &self.dirs {
            let path = dir.path.join("cgroup.procs");
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
                CgroupError::io("opening", &path)(std::io::Error::from_raw_os_error(libc::EINVAL))
            })?;
            // SAFETY: a NUL-terminated path; a non-negative result is a new descriptor we own.
            let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(CgroupError::io("opening", path)(std::io::Error::last_os_error()));
            }
            // SAFETY: the kernel just returned this descriptor and nothing else owns it.
            procs.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(Joiner { procs })
    }

    /// Moves process `pid` (all its threads) into the cgroup. What a process already allocated
    /// stays charged where it was: prefer [`joiner`](Self::joiner) before exec.
    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let path = dir.path.join("cgroup.procs");
            std::fs::write(&path, pid.to_string()).map_err(CgroupError::io("writing", path))?;
        }
        Ok(())
    }

    /// CPU time and memory used so far: two small files (v1 `cpuacct.usage` and
    /// `memory.usage_in_bytes`, v2 `cpu.stat` and `memory.current`), so sampling hundreds of VMs
    /// every few seconds costs little.
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let Some(memory) = self.dir(Controller::Memory) else {
            return Err(CgroupError::NoControllers { missing: "memory".into() });
        };
        Ok(match self.version {
            Version::V1 => {
                let cpu = match self.dir(Controller::CpuAcct) {
                    Some(dir) => Some(Duration::from_nanos(read_number(&dir.path.join("cpuacct.usage"))?)),
                    None => None,
                };
                Usage { cpu, memory_bytes: read_number(&memory.path.join("memory.usage_in_bytes"))? }
            }
            Version::V2 => {
                let stat_path = memory.path.join("cpu.stat");
                let stat =
                    std::fs::read_to_string(&stat_path).map_err(CgroupError::io("reading", &stat_path))?;
                let usec = stat_field(&stat, "usage_usec")
                    .ok_or_else(|| CgroupError::Parse { path: stat_path.clone(), text: stat.clone() })?;
                let cpu = Some(Duration::from_micros(usec));
                Usage { cpu, memory_bytes: read_number(&memory.path.join("memory.current"))? }
            }
        })
    }

    /// The most memory charged to it at once so far, bytes (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`, which kernels before 5.19 lack: `None`).
    pub fn memory_peak(&self) -> Result<Option<u64>, CgroupError> {
        let Some(memory) = self.dir(Controller::Memory) else { return Ok(None) };
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        let path = memory.path.join(file);
        if self.version == Version::V2 && !path.exists() {
            return Ok(None);
        }
        read_number(&path).map(Some)
    }

    /// Removes its directories. Fails (`EBUSY`) while a process is still in it; an already
    /// removed directory is fine. Done by `Drop` too.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            match std::fs::remove_dir(&dir.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CgroupError::io("removing", &dir.path)(e)),
            }
        }
        self.removed.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn dir(&self, controller: Controller) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.has(controller))
    }
}

impl std::fmt::Display for Cgroup {
    /// Its directories, comma-separated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, dir) in self.dirs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", dir.path.display())?;
        }
        Ok(())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.removed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.remove() {
            // A process still in it (it is removed by the next sweep of stale cgroups).
            tracing::debug!(cgroup = %self, error = %e, "cgroup not removed");
        }
    }
}

/// A file holding one number (`max` reads as `u64::MAX`).
pub(crate) fn read_number(path: &Path) -> Result<u64, CgroupError> {
    let text = std::fs::read_to_string(path).map_err(CgroupError::io("reading", path))?;
    let trimmed = text.trim();
    if trimmed == "max" {
        return Ok(u64::MAX);
    }
    trimmed.parse().map_err(|_| CgroupError::Parse { path: path.to_path_buf(), text })
}

/// `key VALUE` from a flat-keyed file such as `cpu.stat`.
fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_stat_fields_parse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.max");
        std::fs::write(&file, "max\n").unwrap();
        assert_eq!(read_number(&file).unwrap(), u64::MAX);
        std::fs::write(&file, "4096\n").unwrap();
        assert_eq!(read_number(&file).unwrap(), 4096);
        std::fs::write(&file, "lots\n").unwrap();
        assert!(matches!(read_number(&file), Err(CgroupError::Parse { .. })));
        let stat = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(stat_field(stat, "usage_usec"), Some(1500));
        assert_eq!(stat_field(stat, "usage"), None);
    }

    #[test]
    fn usage_reads_v1_and_v2_files_and_remove_takes_every_directory() {
        let root = tempfile::tempdir().unwrap();
        let v1_cpu = root.path().join("cpuacct/vm");
        let v1_memory = root.path().join("memory/vm");
        for dir in [&v1_cpu, &v1_memory] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(v1_cpu.join("cpuacct.usage"), "2000000000\n").unwrap();
        std::fs::write(v1_memory.join("memory.usage_in_bytes"), "1048576\n").unwrap();
        std::fs::write(v1_memory.join("memory.max_usage_in_bytes"), "2097152\n").unwrap();
        let dirs = vec![
            Dir { path: v1_cpu.clone(), controllers: vec![Controller::CpuAcct] },
            Dir { path: v1_memory.clone(), controllers: vec![Controller::Memory] },
        ];
        let v1 = Cgroup::new("vm".into(), Version::V1, dirs);
        assert_eq!(v1.usage().unwrap(), Usage { cpu: Some(Duration::from_secs(2)), memory_bytes: 1 << 20 });
        assert_eq!(v1.memory_peak().unwrap(), Some(2 << 20));
        assert_eq!(v1.to_string(), format!("{},{}", v1_cpu.display(), v1_memory.display()));
        // Plain directories holding files: rmdir fails, as on a cgroup with a process left.
        assert!(v1.remove().is_err());
        for file in [
            "cpuacct/vm/cpuacct.usage",
            "memory/vm/memory.usage_in_bytes",
            "memory/vm/memory.max_usage_in_bytes",
        ] {
            std::fs::remove_file(root.path().join(file)).unwrap();
        }
        drop(v1);
        assert!(!v1_cpu.exists() && !v1_memory.exists(), "dropping removes the directories");

        let v2_dir = root.path().join("unified/vm");
        std::fs::create_dir_all(&v2_dir).unwrap();
        std::fs::write(v2_dir.join("cpu.stat"), "usage_usec 250000\nuser_usec 1\n").unwrap();
        std::fs::write(v2_dir.join("memory.current"), "8192\n").unwrap();
        let all = vec![Controller::Cpu, Controller::Memory, Controller::Pids];
        let v2 = Cgroup::new("vm".into(), Version::V2, vec![Dir { path: v2_dir.clone(), controllers: all }]);
        assert_eq!(v2.usage().unwrap(), Usage { cpu: Some(Duration::from_millis(250)), memory_bytes: 8192 });
        assert_eq!(v2.memory_peak().unwrap(), None, "no memory.peak before Linux 5.19");
        std::mem::forget(v2); // its directory holds files; the temp dir goes with them
    }
}
