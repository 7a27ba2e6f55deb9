//! [`Limits`]: what one VM's cgroup allows, and the files that say it in each cgroup version.

use crate::hierarchy::{Controller, Version};

/// The CFS period, µs: a quota of `cpus × PERIOD_US` per period is `cpus` cores.
pub const PERIOD_US: u64 = 100_000;

/// What one cgroup allows.
///
/// ```
/// let limits = firepit_cgroup::Limits { cpus: 2, memory_bytes: 512 << 20, pids: 128 };
/// assert_eq!(limits.cpu_quota_us(), 200_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU quota in cores (the VM's vCPUs); also its weight against its siblings, so busy VMs
    /// share a contended host by their sizes.
    pub cpus: u32,
    /// Memory limit, bytes: past it the kernel reclaims, then kills inside the cgroup.
    pub memory_bytes: u64,
    /// Most processes and threads at once.
    pub pids: u64,
}

impl Limits {
    /// CPU time per [`PERIOD_US`], µs.
    pub fn cpu_quota_us(&self) -> u64 {
        u64::from(self.cpus.max(1)) * PERIOD_US
    }

    /// The files (name, content) that set these limits in a directory carrying `controllers`,
    /// in the order they are written.
    pub(crate) fn files(&self, version: Version, controllers: &[Controller]) -> Vec<(&'static str, String)> {
        let cpus = u64::from(self.cpus.max(1));
        let mut files = Vec::new();
        for controller in controllers {
            match (version, controller) {
                (Version::V1, Controller::Cpu) => {
                    files.push(("cpu.cfs_period_us", PERIOD_US.to_string()));
                    files.push(("cpu.cfs_quota_us", self.cpu_quota_us().to_string()));
                    files.push(("cpu.shares", v1_shares(cpus).to_string()));
                }
                (Version::V1, Controller::Memory) => {
                    files.push(("memory.limit_in_bytes", self.memory_bytes.to_string()))
                }
                (Version::V2, Controller::Cpu) => {
                    files.push(("cpu.max", format!("{} {PERIOD_US}", self.cpu_quota_us())));
                    files.push(("cpu.weight", v2_weight(cpus).to_string()));
                }
                (Version::V2, Controller::Memory) => {
                    files.push(("memory.max", self.memory_bytes.to_string()))
                }
                (_, Controller::Pids) => files.push(("pids.max", self.pids.to_string())),
                (_, Controller::CpuAcct) => {}
            }
        }
        files
    }
}

/// v1 `cpu.shares` of `cpus` busy CPUs' worth (1024 is one task's), within the kernel's range.
pub(crate) fn v1_shares(cpus: u64) -> u64 {
    cpus.saturating_mul(1024).clamp(2, 262_144)
}

/// v2 `cpu.weight` of `cpus` busy CPUs' worth (100 is the default), within the kernel's range.
pub(crate) fn v2_weight(cpus: u64) -> u64 {
    cpus.saturating_mul(100).clamp(1, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_gets_its_own_files() {
        let limits = Limits { cpus: 2, memory_bytes: 1 << 30, pids: 64 };
        let all = [Controller::Cpu, Controller::CpuAcct, Controller::Memory, Controller::Pids];
        let v1: Vec<_> = limits.files(Version::V1, &all);
        assert_eq!(
            v1,
            [
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", "200000".to_owned()),
                ("cpu.shares", "2048".to_owned()),
                ("memory.limit_in_bytes", "1073741824".to_owned()),
                ("pids.max", "64".to_owned()),
            ]
        );
        let v2 = limits.files(Version::V2, &all);
        assert_eq!(v2[0], ("cpu.max", "200000 100000".to_owned()));
        assert_eq!(v2[1], ("cpu.weight", "200".to_owned()));
        assert_eq!(v2[2], ("memory.max", "1073741824".to_owned()));
        assert!(limits.files(Version::V1, &[Controller::CpuAcct]).is_empty(), "accounting only");
        assert_eq!((v1_shares(1000), v2_weight(1000), v2_weight(0)), (262_144, 10_000, 1));
    }
}
