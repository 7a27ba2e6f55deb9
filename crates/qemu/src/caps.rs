//! What the installed QEMU binary supports, read once when the provider is made.

use std::path::{Path, PathBuf};

use crate::error::SpawnError;

/// Facts about one QEMU binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCaps {
    /// The binary as given.
    pub binary: PathBuf,
    /// First line of `-version` (e.g. `QEMU emulator version 7.2.22 (Debian ...)`).
    pub version: String,
    /// Whether `-sandbox` (seccomp) is compiled in.
    pub sandbox: bool,
}

impl QemuCaps {
    /// Runs `binary -version` and `binary -help` (≈50 ms, synchronously).
    ///
    /// ```no_run
    /// let caps = firepit_qemu::QemuCaps::detect("qemu-system-x86_64".as_ref())?;
    /// assert!(caps.version.starts_with("QEMU emulator version"));
    /// # Ok::<(), firepit_qemu::SpawnError>(())
    /// ```
    pub fn detect(binary: &Path) -> Result<Self, SpawnError> {
        let run = |arg: &str| {
            std::process::Command::new(binary).arg(arg).output().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => SpawnError::BinaryNotFound { binary: binary.to_path_buf() },
                _ => SpawnError::io(format!("running {} {arg}", binary.display()), e),
            })
        };
        let version = run("-version")?;
        let help = run("-help")?;
        Ok(Self::from_outputs(
            binary,
            &String::from_utf8_lossy(&version.stdout),
            &String::from_utf8_lossy(&help.stdout),
        ))
    }

    pub(crate) fn from_outputs(binary: &Path, version: &str, help: &str) -> Self {
        Self {
            binary: binary.to_path_buf(),
            version: version.lines().next().unwrap_or("").trim().to_string(),
            sandbox: help.lines().any(|line| line.starts_with("-sandbox")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_is_detected_from_help_and_version_is_the_first_line() {
        let help = "usage: qemu\n-sandbox on[=off][,obsolete=allow|deny]\n                Enable seccomp\n";
        let caps = QemuCaps::from_outputs(Path::new("q"), "QEMU emulator version 7.2.22\nCopyright\n", help);
        assert!(caps.sandbox);
        assert_eq!(caps.version, "QEMU emulator version 7.2.22");
        assert!(!QemuCaps::from_outputs(Path::new("q"), "", "-name string\n").sandbox);
    }

    #[test]
    fn installed_qemu_is_detected() {
        let caps = QemuCaps::detect(Path::new("qemu-system-x86_64")).unwrap();
        assert!(caps.version.starts_with("QEMU emulator version"), "{caps:?}");
    }

    #[test]
    fn missing_binary_error_says_what_to_install() {
        let err = QemuCaps::detect(Path::new("/nonexistent/qemu")).unwrap_err();
        assert!(err.to_string().contains("apt-get install qemu-system-x86"));
    }
}
