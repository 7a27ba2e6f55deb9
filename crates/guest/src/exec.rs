//! Results of guest commands and identities for restored clones: plain data, no channel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firepit_agent::{ExecResult, IdentityRequest};
use rand::RngCore;

/// What a command run in the guest produced.
///
/// ```
/// use firepit_guest::ExecOutput;
/// let out = ExecOutput { exit_code: Some(0), stdout: b"hi\n".to_vec(), ..Default::default() };
/// assert!(out.success());
/// assert_eq!(out.stdout_lossy(), "hi\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code; `None` when the program was killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Output was cut at the request's `max_output_bytes`.
    pub truncated: bool,
    /// The program ran past its timeout and was killed.
    pub timed_out: bool,
    /// Wall time in the guest.
    pub duration: Duration,
    /// The guest kernel's OOM killer killed the program or a process of its group.
    pub oom_killed: bool,
}

impl ExecOutput {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl From<ExecResult> for ExecOutput {
    fn from(r: ExecResult) -> Self {
        Self {
            exit_code: r.exit_code,
            signal: r.signal,
            stdout: r.stdout,
            stderr: r.stderr,
            truncated: r.truncated,
            timed_out: r.timed_out,
            duration: Duration::from_millis(r.duration_ms),
            oom_killed: r.oom_killed,
        }
    }
}

/// Back to the wire's form (what the daemon's API answers with).
impl From<ExecOutput> for ExecResult {
    fn from(out: ExecOutput) -> Self {
        Self {
            exit_code: out.exit_code,
            signal: out.signal,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
            timed_out: out.timed_out,
            duration_ms: u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
            oom_killed: out.oom_killed,
        }
    }
}

/// A new identity for a restored clone: 64 bytes of host randomness, the host clock, `hostname`, and
/// a random machine id.
///
/// ```
/// let identity = firepit_guest::fresh_identity("vm-7");
/// assert_eq!(identity.entropy.len(), 64);
/// assert_eq!(identity.machine_id.unwrap().len(), 32);
/// ```
pub fn fresh_identity(hostname: &str) -> IdentityRequest {
    let mut rng = rand::rng();
    let mut entropy = vec![0u8; 64];
    rng.fill_bytes(&mut entropy);
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let machine_id = id.iter().map(|b| format!("{b:02x}")).collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).ok();
    IdentityRequest {
        entropy,
        unix_time_ns: now,
        hostname: Some(hostname.to_string()),
        machine_id: Some(machine_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_identities_differ() {
        let (a, b) = (fresh_identity("a"), fresh_identity("b"));
        assert_ne!(a.entropy, b.entropy);
        assert_ne!(a.machine_id, b.machine_id);
        assert!(a.unix_time_ns.is_some());
    }
}
