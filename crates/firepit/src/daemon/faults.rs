//! Fault injection for soak tests: `[faults]` in the config file makes the real backend misbehave on
//! purpose, so `firepit soak` can check that the daemon survives it. Off unless configured.
//!
//! Only one fault exists: `fail_fills_file`. While the named file exists, every fill (cold boot,
//! snapshot restore, template boot) fails before QEMU is started, exactly as a provider whose host
//! ran out of resources would: the engine counts a fill failure, backs off and retries. Remove the
//! file and the next retry succeeds. The check is one `stat` per fill, nothing per request.
//!
//! ```
//! use firepit::daemon::faults::FillFaults;
//! let dir = tempfile::tempdir()?;
//! let trigger = dir.path().join("fail-fills");
//! let faults = FillFaults::new(Some(trigger.clone()));
//! assert!(faults.check().is_ok());
//! std::fs::write(&trigger, "")?;
//! assert!(faults.check().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::PathBuf;

use firepit_qemu::{QemuError, SpawnError};

/// Makes fills fail while a trigger file exists (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FillFaults {
    trigger: Option<PathBuf>,
}

impl FillFaults {
    /// Fills fail while `trigger` exists; `None` never fails (the default).
    pub fn new(trigger: Option<PathBuf>) -> Self {
        Self { trigger }
    }

    /// `Err` (a spawn error naming the trigger file) when fills must fail now.
    pub fn check(&self) -> Result<(), QemuError> {
        match &self.trigger {
            Some(path) if path.exists() => {
                tracing::warn!(trigger = %path.display(), "fill failed by fault injection");
                Err(SpawnError::Io {
                    what: format!("fault injection: {} exists (faults.fail_fills_file)", path.display()),
                    source: std::io::Error::other("injected fill failure"),
                }
                .into())
            }
            _ => Ok(()),
        }
    }
}
