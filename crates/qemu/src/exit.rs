//! [`ExitInfo`]: how a QEMU process ended, as plain data. The process supervisor publishes it and
//! errors quote it, so it sits below both.

/// How a QEMU process ended.
///
/// ```
/// use firepit_qemu::ExitInfo;
/// let killed = ExitInfo { code: None, signal: Some(9) };
/// assert_eq!(killed.to_string(), "killed by signal 9");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// An exit whose status could not be read (the reaper failed): neither code nor signal.
    pub const UNKNOWN: ExitInfo = ExitInfo { code: None, signal: None };
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("exit status unknown"),
        }
    }
}
