//! Choosing the accelerator: KVM only when it can really run our guests, else TCG.
//!
//! Our hosts have a `/dev/kvm` backed by `kvm_pvm`, which only runs guest kernels built for PVM: a
//! plain "can I open /dev/kvm" test would pick KVM and every boot would hang. So `Auto` decides in
//! two steps, once per process (the verdict is cached in a `OnceCell` and logged):
//! 1. a cheap check: `/dev/kvm` opens read-write, the CPU flags include `vmx` or `svm`, and the
//!    `kvm_pvm` module is not loaded;
//! 2. if still plausible, a probe boot with a deadline: a 64 KiB firmware whose reset vector writes
//!    to an `isa-debug-exit` port, so QEMU exits with a known code when a vCPU really ran.
//!
//! Measured limitation: under `kvm_pvm` the firmware probe of step 2 *succeeds* (real-mode code
//! runs); only step 1 tells PVM apart. Step 2 catches a missing or broken KVM, not PVM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::config::Accel;

/// The accelerator chosen for `Auto`, and why.
///
/// ```no_run
/// # async fn demo() {
/// let verdict = firepit_qemu::detect_accel(std::path::Path::new("qemu-system-x86_64")).await;
/// println!("using {} ({})", verdict.accel, verdict.reason);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelVerdict {
    /// [`Accel::Kvm`] or [`Accel::Tcg`], never `Auto`.
    pub accel: Accel,
    /// Why, in words (shown in logs and status).
    pub reason: String,
}

/// Why KVM cannot run our guests here: the cheap check's verdict or the probe boot's failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KvmUnusable {
    #[error("/dev/kvm cannot be opened read-write")]
    NoDevKvm,
    #[error("/dev/kvm is kvm_pvm, which runs only PVM guest kernels")]
    KvmPvm,
    #[error("CPU flags have neither vmx nor svm")]
    NoVirtualization,
    #[error("KVM probe boot failed: {what} {path}: {source}")]
    ProbeFiles { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("KVM probe boot failed: cannot run {binary}: {source}")]
    ProbeSpawn { binary: PathBuf, source: std::io::Error },
    #[error("KVM probe boot failed: no vCPU ran within {0:?}")]
    ProbeTimeout(Duration),
    #[error("KVM probe boot failed: qemu exited with {status} ({stderr})")]
    ProbeExit { status: std::process::ExitStatus, stderr: String },
}

/// Exit code of the probe firmware: `(0x2a << 1) | 1`, as `isa-debug-exit` encodes it.
const PROBE_EXIT_CODE: i32 = 85;
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

static VERDICT: OnceCell<AccelVerdict> = OnceCell::const_new();

/// Decides between KVM and TCG for `qemu_binary`; the first call's verdict is cached for the process.
pub async fn detect_accel(qemu_binary: &Path) -> AccelVerdict {
    VERDICT
        .get_or_init(|| async {
            let verdict = decide(qemu_binary).await;
            tracing::info!(accel = %verdict.accel, reason = %verdict.reason, "accelerator chosen");
            verdict
        })
        .await
        .clone()
}

async fn decide(qemu_binary: &Path) -> AccelVerdict {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let facts = HostFacts {
        dev_kvm_rw: std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok(),
        cpu_has_virt: cpu_has_virtualization(&cpuinfo),
        kvm_pvm_loaded: Path::new("/sys/module/kvm_pvm").exists(),
    };
    let verdict = match facts.kvm_plausible() {
        Ok(()) => probe_boot_with(qemu_binary, "kvm").await,
        Err(unusable) => Err(unusable),
    };
    match verdict {
        Ok(()) => AccelVerdict { accel: Accel::Kvm, reason: "KVM probe boot ran a vCPU".into() },
        Err(unusable) => AccelVerdict { accel: Accel::Tcg, reason: unusable.to_string() },
    }
}

/// What the cheap check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostFacts {
    pub dev_kvm_rw: bool,
    pub cpu_has_virt: bool,
    pub kvm_pvm_loaded: bool,
}

impl HostFacts {
    /// `Ok` when KVM may run a normal guest, else why not.
    pub(crate) fn kvm_plausible(&self) -> Result<(), KvmUnusable> {
        if !self.dev_kvm_rw {
            return Err(KvmUnusable::NoDevKvm);
        }
        if self.kvm_pvm_loaded {
            return Err(KvmUnusable::KvmPvm);
        }
        if !self.cpu_has_virt {
            return Err(KvmUnusable::NoVirtualization);
        }
        Ok(())
    }
}

/// Whether `/proc/cpuinfo` text lists `vmx` or `svm`.
pub(crate) fn cpu_has_virtualization(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm")
}

/// The probe firmware: `hlt` everywhere, and at the reset vector `mov al, 0x2a; out 0xf4, al; hlt`.
pub(crate) fn probe_firmware() -> Vec<u8> {
    let mut image = vec![0xf4u8; 64 * 1024];
    let code = [0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd];
    image[0xfff0..0xfff0 + code.len()].copy_from_slice(&code);
    image
}

/// Runs the probe firmware under `accel` (KVM in production; tests run it under TCG).
pub(crate) async fn probe_boot_with(qemu_binary: &Path, accel: &str) -> Result<(), KvmUnusable> {
    let dir = std::env::temp_dir().join(format!("firepit-accel-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| KvmUnusable::ProbeFiles {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    let firmware = dir.join(format!("probe-{accel}.bin"));
    std::fs::write(&firmware, probe_firmware()).map_err(|source| KvmUnusable::ProbeFiles {
        what: "writing",
        path: firmware.clone(),
        source,
    })?;
    let mut command = tokio::process::Command::new(qemu_binary);
    command
        .args(["-M", &format!("microvm,accel={accel}"), "-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-m", "16M", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-bios"])
        .arg(&firmware)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let outcome = tokio::time::timeout(PROBE_DEADLINE, command.output()).await;
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::debug!(error = %e, "removing the accel probe directory failed");
    }
    match outcome {
        Err(_) => Err(KvmUnusable::ProbeTimeout(PROBE_DEADLINE)),
        Ok(Err(source)) => Err(KvmUnusable::ProbeSpawn { binary: qemu_binary.to_path_buf(), source }),
        Ok(Ok(output)) if output.status.code() == Some(PROBE_EXIT_CODE) => Ok(()),
        Ok(Ok(output)) => Err(KvmUnusable::ProbeExit {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: HostFacts = HostFacts { dev_kvm_rw: true, cpu_has_virt: true, kvm_pvm_loaded: false };

    #[test]
    fn kvm_is_plausible_only_with_rw_dev_kvm_virt_flags_and_no_pvm() {
        assert!(GOOD.kvm_plausible().is_ok());
        let pvm = HostFacts { kvm_pvm_loaded: true, ..GOOD };
        assert!(matches!(pvm.kvm_plausible(), Err(KvmUnusable::KvmPvm)));
        let closed = HostFacts { dev_kvm_rw: false, ..GOOD };
        assert!(matches!(closed.kvm_plausible(), Err(KvmUnusable::NoDevKvm)));
        let no_virt = HostFacts { cpu_has_virt: false, ..GOOD };
        assert!(no_virt.kvm_plausible().unwrap_err().to_string().contains("vmx"));
    }

    #[test]
    fn virtualization_flags_are_found_only_as_whole_words() {
        assert!(cpu_has_virtualization("flags\t: fpu vme svm sse\n"));
        assert!(cpu_has_virtualization("flags\t: fpu vmx\n"));
        assert!(!cpu_has_virtualization("flags\t: fpu vmxx hypervisor\nmodel name : svm cpu\n"));
    }

    #[test]
    fn probe_firmware_jumps_from_the_reset_vector_to_the_exit_port() {
        let image = probe_firmware();
        assert_eq!(image.len(), 65536);
        assert_eq!(&image[0xfff0..0xfff4], &[0xb0, 0x2a, 0xe6, 0xf4]);
    }

    #[tokio::test]
    async fn probe_firmware_runs_to_the_exit_port_under_tcg() {
        // Needs qemu-system-x86_64 (installed in CI by scripts/setup); TCG always works.
        probe_boot_with(Path::new("qemu-system-x86_64"), "tcg").await.unwrap();
    }
}
