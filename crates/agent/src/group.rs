//! Building child commands and signalling their process groups.
//!
//! Every child the agent starts leads its own process group (`setpgid(0, 0)` before `exec`), so
//! one `kill(-pgid, sig)` reaches everything it started that did not leave the group on purpose.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::time::Instant;

use firepit_agent::{ExitStatus, Failure};

use crate::failure;
use crate::run_as::{self, RunAs};

/// A command for `argv` with extra `env`, in `cwd` (absolute), as `user` (see
/// [`run_as`](crate::run_as); default: the agent's, root), leading a new process group.
pub fn command(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    user: Option<&str>,
) -> Result<Command, Failure> {
    let mut command = command_in_group(argv, env, cwd, user)?;
    command.process_group(0);
    Ok(command)
}

/// Like [`command`] but staying in the agent's process group (for a caller that calls `setsid`
/// itself, which a group leader cannot).
pub fn command_in_group(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    user: Option<&str>,
) -> Result<Command, Failure> {
    let program = argv.first().ok_or_else(|| failure::invalid("argv is empty"))?;
    let run_as = user.map(run_as::resolve).transpose()?;
    let cwd = failure::cwd(cwd.or_else(|| run_as.as_ref().and_then(RunAs::default_cwd)))?;
    let mut command = Command::new(program);
    command.args(&argv[1..]).envs(env.iter().map(|(k, v)| (k, v))).current_dir(cwd);
    if let Some(run_as) = &run_as {
        run_as.apply(&mut command, env);
    }
    default_signals(&mut command);
    Ok(command)
}

/// Children start with SIGINT and SIGQUIT at their defaults. The agent runs as a background job
/// of the guest's `/init` script, which starts it with both ignored, and ignored signals survive
/// `exec`: without this, Ctrl-C in a terminal or a `signal INT` would not stop anything.
pub fn default_signals(command: &mut Command) {
    // SAFETY: the closure only calls signal(2), which is async-signal-safe, in the forked child.
    unsafe {
        command.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    crate::oom::unprotect_child(command);
}

/// The failure for `command` that could not be started: a missing working directory is named as
/// such (the kernel reports it as the program's `ENOENT`).
pub fn spawn_failure(command: &Command, error: &io::Error) -> Failure {
    let program = command.get_program().to_string_lossy();
    if let Some(dir) = command.get_current_dir()
        && !dir.is_dir()
    {
        let message = format!(
            "cannot start {program:?}: the working directory {} does not exist or is not a directory",
            dir.display()
        );
        return Failure::new(firepit_agent::FailureKind::NotFound, message);
    }
    failure::io(format!("cannot start {program:?}"), error)
}

/// Sends `signal` to the process group led by `pid`.
pub fn signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: plain syscall; a negative pid names the process group our child leads.
    if unsafe { libc::kill(-pid, signal) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Kills the process group led by `pid` (SIGKILL); a group already gone is fine.
pub fn kill(pid: u32) {
    let _already_gone = signal(pid, libc::SIGKILL);
}

/// The protocol's exit status for a reaped child `pid` (the leader of its process group).
pub fn exit_status(pid: u32, status: std::process::ExitStatus, timed_out: bool, started: Instant) -> ExitStatus {
    ExitStatus {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        oom_killed: crate::oom::killed(pid, started),
    }
}

/// Milliseconds since the Unix epoch on the guest's clock.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
