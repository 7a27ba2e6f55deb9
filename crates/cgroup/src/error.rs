//! [`CgroupError`]: why a cgroup could not be found, made, limited, joined or read.

use std::path::PathBuf;

/// Why a cgroup operation failed. Each variant names the file or directory and says what to do.
///
/// ```
/// let error = firepit_cgroup::CgroupError::NoControllers { missing: "memory".into() };
/// assert!(error.to_string().contains("memory"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither a cgroup v2 hierarchy with the cpu, memory and pids controllers nor cgroup v1
    /// hierarchies of all three are mounted.
    #[error(
        "no usable cgroup hierarchy: cgroup v2 without, or cgroup v1 missing, the controllers {missing} \
         (mount them, or run where cgroups are delegated to firepit)"
    )]
    NoControllers {
        /// The controllers that were not found, comma-separated.
        missing: String,
    },
    /// The parent path is not a plain path below the hierarchy (`..` in it).
    #[error("cgroup parent {parent:?} must not contain `..`: name a path below the hierarchy")]
    InvalidParent {
        /// The parent as configured.
        parent: PathBuf,
    },
    /// A cgroup file or directory could not be created, written, read or removed.
    #[error("{what} {path}: {source}{hint}", hint = hint(source))]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup v2 directory cannot hand the cpu, memory and pids controllers to its children.
    #[error(
        "cgroup v2: cannot enable the cpu, memory and pids controllers below {dir}: {source} (a cgroup \
         with processes of its own cannot hand controllers down: set the parent to a delegated cgroup \
         that holds no processes, e.g. an absolute `/firepit.slice`)"
    )]
    Delegation {
        /// The directory whose `cgroup.subtree_control` refused them.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file held something that is not a number.
    #[error("{path}: {text:?} is not a number")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
}

impl CgroupError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }

    /// Whether the error says cgroups cannot be written here at all (no permission, a read-only
    /// mount): the caller runs without them rather than failing.
    ///
    /// ```
    /// use firepit_cgroup::CgroupError;
    /// let denied = std::io::Error::from_raw_os_error(libc::EACCES);
    /// let error = CgroupError::Io { what: "creating", path: "/sys/fs/cgroup/x".into(), source: denied };
    /// assert!(error.is_not_permitted());
    /// ```
    pub fn is_not_permitted(&self) -> bool {
        match self {
            Self::Io { source, .. } | Self::Delegation { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS))
            }
            _ => false,
        }
    }
}

fn hint(source: &std::io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => {
            " (no permission: run as root or delegate the cgroup to this user)"
        }
        Some(libc::EROFS) => " (cgroups are mounted read-only here, as in most containers)",
        _ => "",
    }
}
