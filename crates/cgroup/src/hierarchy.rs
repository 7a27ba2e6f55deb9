//! Where the controllers are: [`Hierarchy::detect`] reads `/proc/self/mountinfo` and
//! `/proc/self/cgroup` once and says which cgroup version to use and in which directories.
//!
//! The rule, in order:
//! 1. **v2** when a `cgroup2` file system is mounted and its root's `cgroup.controllers` lists
//!    `cpu`, `memory` and `pids` (the unified hierarchy owns them);
//! 2. else **v1** when `cgroup` file systems carrying `cpu`, `memory` and `pids` are mounted
//!    (`cpuacct`, for CPU usage, is used when mounted too, with `cpu` or on its own);
//! 3. else none ([`CgroupError::NoControllers`]).
//!
//! A "hybrid" host (systemd's legacy layout: v1 controllers plus a `cgroup2` mount at
//! `/sys/fs/cgroup/unified` that holds no controllers) is v1 by rule 1: a controller bound to a
//! v1 hierarchy is never listed by v2. This is what firepit's development hosts have.
//!
//! Each hierarchy also says which cgroup this process is in, so a relative parent (the default,
//! `firepit`) lands below the process's own cgroup: VMs stay within whatever limits the daemon
//! itself was given (a systemd unit, a container).

use std::path::{Component, Path, PathBuf};

use crate::error::CgroupError;

/// A controller firepit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    /// CPU time: quota and weight.
    Cpu,
    /// CPU accounting (v1 only; v2 reads `cpu.stat`).
    CpuAcct,
    /// Memory limit and usage.
    Memory,
    /// Process count limit.
    Pids,
}

impl Controller {
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::CpuAcct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }
}

/// Controllers without which firepit does not use cgroups at all.
const REQUIRED: [Controller; 3] = [Controller::Cpu, Controller::Memory, Controller::Pids];

/// Which cgroup version is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Legacy hierarchies, one per controller (or a few co-mounted).
    V1,
    /// The unified hierarchy.
    V2,
}

/// One mounted hierarchy: where it is mounted, the controllers (of ours) it carries, and this
/// process's own cgroup directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point, e.g. `/sys/fs/cgroup/memory`.
    pub root: PathBuf,
    /// The controllers of ours it carries (v2: all four roles but `CpuAcct`).
    pub controllers: Vec<Controller>,
    /// This process's cgroup directory in it.
    pub own: PathBuf,
}

/// The cgroup hierarchies firepit uses on this host.
///
/// ```
/// // A hybrid host: v1 controllers, and a cgroup2 mount without controllers.
/// use firepit_cgroup::{Hierarchy, Version};
/// let mountinfo = "\
/// 30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
/// 31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
/// 32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
/// 33 25 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
/// ";
/// let own = "4:memory:/user.slice\n3:pids:/\n2:cpu,cpuacct:/\n0::/\n";
/// let hierarchy = Hierarchy::from_texts(mountinfo, own, |_| Some(String::new()))?;
/// assert_eq!(hierarchy.version(), Version::V1);
/// assert_eq!(hierarchy.mounts()[1].own, std::path::Path::new("/sys/fs/cgroup/memory/user.slice"));
/// # Ok::<(), firepit_cgroup::CgroupError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    version: Version,
    mounts: Vec<Mount>,
}

impl Hierarchy {
    /// Detects the hierarchies of this host and process (see the module docs for the rule).
    pub fn detect() -> Result<Self, CgroupError> {
        let read = |path: &str| std::fs::read_to_string(path).map_err(CgroupError::io("reading", path));
        let controllers = |root: &Path| std::fs::read_to_string(root.join("cgroup.controllers")).ok();
        Self::from_texts(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?, controllers)
    }

    /// [`detect`](Self::detect) on given texts of `/proc/self/mountinfo` and `/proc/self/cgroup`;
    /// `v2_controllers` reads a v2 mount's root `cgroup.controllers`.
    pub fn from_texts(
        mountinfo: &str,
        proc_cgroup: &str,
        v2_controllers: impl Fn(&Path) -> Option<String>,
    ) -> Result<Self, CgroupError> {
        let mounts: Vec<MountLine> = mountinfo.lines().filter_map(MountLine::parse).collect();
        if let Some(v2) = mounts.iter().find(|m| m.fstype == "cgroup2") {
            let listed = v2_controllers(&v2.point).unwrap_or_default();
            let has = |c: Controller| listed.split_whitespace().any(|name| name == c.name());
            if REQUIRED.iter().all(|&c| has(c)) {
                let own = own_path(proc_cgroup, None).unwrap_or("/");
                let mount = Mount {
                    root: v2.point.clone(),
                    controllers: REQUIRED.to_vec(),
                    own: join_own(&v2.point, &v2.root, own),
                };
                return Ok(Self { version: Version::V2, mounts: vec![mount] });
            }
        }
        let mut v1: Vec<Mount> = Vec::new();
        for line in mounts.iter().filter(|m| m.fstype == "cgroup") {
            let carried: Vec<Controller> =
                [Controller::Cpu, Controller::CpuAcct, Controller::Memory, Controller::Pids]
                    .into_iter()
                    .filter(|c| line.super_options.split(',').any(|o| o == c.name()))
                    .filter(|c| !v1.iter().any(|m| m.controllers.contains(c)))
                    .collect();
            let Some(first) = carried.first() else { continue };
            let own = own_path(proc_cgroup, Some(first.name())).unwrap_or("/");
            v1.push(Mount {
                root: line.point.clone(),
                own: join_own(&line.point, &line.root, own),
                controllers: carried,
            });
        }
        let missing: Vec<&str> = REQUIRED
            .iter()
            .filter(|c| !v1.iter().any(|m| m.controllers.contains(c)))
            .map(|c| c.name())
            .collect();
        if !missing.is_empty() {
            return Err(CgroupError::NoControllers { missing: missing.join(", ") });
        }
        Ok(Self { version: Version::V1, mounts: v1 })
    }

    /// v1 or v2.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The hierarchies in use: one for v2; one per mount for v1 (co-mounted controllers share one).
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Where `parent` is in each hierarchy: an absolute `parent` is below the mount point, a
    /// relative one below this process's own cgroup. `..` is refused.
    ///
    /// ```
    /// # let hierarchy = firepit_cgroup::Hierarchy::from_texts(
    /// #     "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/daemon.service\n",
    /// #     |_| Some("cpu memory pids".into()))?;
    /// let dirs = hierarchy.resolve("firepit".as_ref())?;
    /// assert_eq!(dirs, ["/sys/fs/cgroup/daemon.service/firepit"].map(std::path::PathBuf::from));
    /// let dirs = hierarchy.resolve("/firepit.slice".as_ref())?;
    /// assert_eq!(dirs, ["/sys/fs/cgroup/firepit.slice"].map(std::path::PathBuf::from));
    /// assert!(hierarchy.resolve("../x".as_ref()).is_err());
    /// # Ok::<(), firepit_cgroup::CgroupError>(())
    /// ```
    pub fn resolve(&self, parent: &Path) -> Result<Vec<PathBuf>, CgroupError> {
        if parent.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(CgroupError::InvalidParent { parent: parent.to_path_buf() });
        }
        let below = |base: &Path| {
            let relative: PathBuf =
                parent.components().filter(|c| matches!(c, Component::Normal(_))).collect();
            base.join(relative)
        };
        Ok(self
            .mounts
            .iter()
            .map(|m| if parent.is_absolute() { below(&m.root) } else { below(&m.own) })
            .collect())
    }
}

/// The path of this process's cgroup from `/proc/self/cgroup`: the v2 line (`0::PATH`) for
/// `None`, else the v1 line whose controller list names `controller`.
fn own_path<'a>(proc_cgroup: &'a str, controller: Option<&str>) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            None => id == "0" && list.is_empty(),
            Some(name) => list.split(',').any(|c| c == name),
        };
        matches.then_some(path)
    })
}

/// The directory of cgroup `own` in a hierarchy mounted at `point` whose mount shows the
/// hierarchy from `mount_root` (not `/` inside some containers). A path outside the mount (a
/// cgroup namespace boundary shows as `/..`) falls back to the mount point.
fn join_own(point: &Path, mount_root: &str, own: &str) -> PathBuf {
    let inside = if mount_root == "/" { Some(own) } else { own.strip_prefix(mount_root) };
    match inside {
        Some(rest) if !rest.split('/').any(|part| part == "..") => rest
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(point.to_path_buf(), |dir, part| dir.join(part)),
        _ => point.to_path_buf(),
    }
}

/// One line of `/proc/self/mountinfo`, the fields we use.
struct MountLine {
    root: String,
    point: PathBuf,
    fstype: String,
    super_options: String,
}

impl MountLine {
    /// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
    fn parse(line: &str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = before.split(' ');
        let root = unescape(fields.nth(3)?);
        let point = PathBuf::from(unescape(fields.next()?));
        let mut rest = after.split(' ');
        let fstype = rest.next()?.to_owned();
        let super_options = rest.nth(1).unwrap_or("").to_owned();
        Some(Self { root, point, fstype, super_options })
    }
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development host's layout: v1 controllers each on their own, a controller-less
    /// cgroup2 at `unified`, and the process in a memory cgroup of its own.
    const HYBRID: &str = "\
24 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
25 24 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu
26 24 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
27 24 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
28 24 0:26 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
29 24 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
30 24 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_OWN: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/f4e7\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn a_hybrid_host_is_v1_with_each_controller_where_it_is_mounted() {
        let h = Hierarchy::from_texts(HYBRID, HYBRID_OWN, |_| Some(String::new())).unwrap();
        assert_eq!(h.version(), Version::V1);
        let found: Vec<(&str, Vec<Controller>)> =
            h.mounts().iter().map(|m| (m.own.to_str().unwrap(), m.controllers.clone())).collect();
        assert_eq!(
            found,
            [
                ("/sys/fs/cgroup/cpu", vec![Controller::Cpu]),
                ("/sys/fs/cgroup/cpuacct", vec![Controller::CpuAcct]),
                ("/sys/fs/cgroup/memory/process_api/f4e7", vec![Controller::Memory]),
                ("/sys/fs/cgroup/pids", vec![Controller::Pids]),
            ]
        );
        let dirs = h.resolve(Path::new("firepit")).unwrap();
        assert_eq!(dirs[2], Path::new("/sys/fs/cgroup/memory/process_api/f4e7/firepit"));
        let absolute = h.resolve(Path::new("/firepit")).unwrap();
        assert_eq!(absolute[2], Path::new("/sys/fs/cgroup/memory/firepit"));
    }

    #[test]
    fn a_unified_host_with_the_controllers_is_v2() {
        let mounts = "31 24 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_texts(mounts, "0::/system.slice/firepit.service\n", |p| {
            assert_eq!(p, Path::new("/sys/fs/cgroup"));
            Some("cpuset cpu io memory hugetlb pids rdma misc\n".into())
        })
        .unwrap();
        assert_eq!(h.version(), Version::V2);
        assert_eq!(h.mounts()[0].own, Path::new("/sys/fs/cgroup/system.slice/firepit.service"));
    }

    #[test]
    fn co_mounted_controllers_share_a_mount_and_a_missing_one_is_named() {
        let mounts = "\
1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
2 0 0:2 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let own = "3:memory:/\n2:cpu,cpuacct:/x\n";
        let err = Hierarchy::from_texts(mounts, own, |_| None).unwrap_err();
        assert_eq!(err.to_string().split(':').next(), Some("no usable cgroup hierarchy"));
        assert!(err.to_string().contains("controllers pids"), "{err}");
        let with_pids = format!("{mounts}3 0 0:3 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n");
        let h = Hierarchy::from_texts(&with_pids, own, |_| None).unwrap();
        assert_eq!(h.mounts()[0].controllers, [Controller::Cpu, Controller::CpuAcct]);
        assert_eq!(h.mounts()[0].own, Path::new("/sys/fs/cgroup/cpu,cpuacct/x"));
    }

    #[test]
    fn v2_without_controllers_and_no_v1_is_no_hierarchy() {
        let mounts = "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let err = Hierarchy::from_texts(mounts, "0::/\n", |_| Some("cpu io\n".into())).unwrap_err();
        assert!(matches!(err, CgroupError::NoControllers { .. }), "{err}");
    }

    #[test]
    fn a_container_mount_root_and_escapes_are_handled() {
        // A container sees its own cgroup as the mount's root; the namespace boundary shows as /..
        assert_eq!(
            join_own(Path::new("/sys/fs/cgroup"), "/docker/abc", "/docker/abc/inner"),
            Path::new("/sys/fs/cgroup/inner")
        );
        assert_eq!(join_own(Path::new("/sys/fs/cgroup"), "/", "/.."), Path::new("/sys/fs/cgroup"));
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("\\9x"), "\\9x");
    }
}
