//! Runs one [`ExecRequest`]: spawn, feed stdin, collect bounded output, enforce the timeout.
//!
//! The program runs in its own process group so a timeout kills it *and* whatever it started
//! (otherwise a grandchild holding the stdout pipe would keep the reader threads waiting).

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use firepit_agent::{ExecRequest, ExecResult, MAX_EXEC_OUTPUT, MAX_FRAME_LEN};

/// Timeout used when the request says 0.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Output cap per stream used when the request says 0.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;
/// Hard cap per stream so that a response always fits in one frame.
const FRAME_SAFE_MAX_OUTPUT: usize = MAX_EXEC_OUTPUT as usize;
const _: () = assert!(2 * FRAME_SAFE_MAX_OUTPUT + 128 * 1024 <= MAX_FRAME_LEN);

/// Why a program could not be run at all (a program that ran and failed is an [`ExecResult`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `argv` was empty.
    #[error("exec: argv is empty")]
    EmptyArgv,
    /// The program could not be started (not found, not executable, bad cwd...).
    #[error("exec: cannot start {program:?}: {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The working directory does not exist or is not a directory (the kernel reports that as
    /// the program's `ENOENT`; this names the directory instead).
    #[error("exec: cannot start {program:?}: the working directory {cwd:?} does not exist or is not a directory")]
    Cwd {
        /// `argv[0]`.
        program: String,
        /// The working directory asked for.
        cwd: String,
    },
    /// `user` is not a numeric `uid` or `uid:gid`.
    #[error("exec: user {0:?} is not a numeric uid or uid:gid")]
    BadUser(String),
    /// Waiting for the program failed.
    #[error("exec: waiting for {program:?} failed: {source}")]
    Wait {
        /// `argv[0]`.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A stream read to its end, keeping at most `limit` bytes.
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

fn capture(mut source: impl Read, limit: usize) -> Captured {
    let mut bytes = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match source.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let room = limit.saturating_sub(bytes.len());
                if n > room {
                    truncated = true;
                }
                bytes.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    Captured { bytes, truncated }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain syscall; a negative pid names the process group we created for the child.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// `uid` or `uid:gid` (a lone uid runs with gid = uid).
fn parse_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The process groups of the one-shot execs running now, so that an agent that goes away can
/// kill them ([`ProcessTable::kill_all`](crate::ProcessTable::kill_all)).
#[derive(Debug, Default)]
pub struct Running(std::sync::Mutex<std::collections::BTreeSet<u32>>);

impl Running {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<u32>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Kills every running exec's process group.
    pub fn kill_all(&self) {
        for pid in self.lock().iter() {
            kill_group(*pid);
        }
    }
}

/// Runs `request` to completion (or timeout) and reports what happened; while it runs, its
/// process group is listed in `running`.
pub fn run(request: &ExecRequest, running: &Running) -> Result<ExecResult, ExecError> {
    let started = Instant::now();
    let program = request.argv.first().ok_or(ExecError::EmptyArgv)?.clone();
    let timeout = match request.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    let limit = match usize::try_from(request.max_output_bytes) {
        Ok(0) => DEFAULT_MAX_OUTPUT,
        Ok(n) => n,
        Err(_) => FRAME_SAFE_MAX_OUTPUT,
    }
    .min(FRAME_SAFE_MAX_OUTPUT);

    let mut command = Command::new(&program);
    command
        .args(&request.argv[1..])
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .current_dir(request.cwd.as_deref().unwrap_or("/"))
        .stdin(if request.stdin.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    crate::group::default_signals(&mut command);
    if let Some(user) = &request.user {
        let (uid, gid) = parse_user(user).ok_or_else(|| ExecError::BadUser(user.clone()))?;
        command.uid(uid).gid(gid);
    }
    let cwd = request.cwd.as_deref().unwrap_or("/");
    let mut child = command.spawn().map_err(|source| match std::path::Path::new(cwd).is_dir() {
        true => ExecError::Spawn { program: program.clone(), source },
        false => ExecError::Cwd { program: program.clone(), cwd: cwd.to_owned() },
    })?;
    let pid = child.id();
    running.lock().insert(pid);

    let stdin_writer = child.stdin.take().map(|mut pipe| {
        let input = request.stdin.clone();
        thread::spawn(move || {
            // A program that exits without reading its stdin gives EPIPE: not an error for us.
            let _ignored_epipe = pipe.write_all(&input);
        })
    });
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        thread::spawn(move || out_tx.send(capture(stdout, limit)));
    }
    if let Some(stderr) = child.stderr.take() {
        thread::spawn(move || err_tx.send(capture(stderr, limit)));
    }
    let (status_tx, status_rx) = mpsc::channel::<std::io::Result<ExitStatus>>();
    thread::spawn(move || status_tx.send(child.wait()));

    let deadline = started + timeout;
    let mut timed_out = false;
    let status = match status_rx.recv_timeout(timeout) {
        Ok(status) => status,
        Err(_) => {
            timed_out = true;
            kill_group(pid);
            status_rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("waiter thread vanished")))
        }
    };
    running.lock().remove(&pid);
    let status = status.map_err(|source| ExecError::Wait { program: program.clone(), source })?;
    // The program has exited; its output pipes close once every process of its group has too.
    let mut collect = |rx: mpsc::Receiver<Captured>| {
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        rx.recv_timeout(remaining).or_else(|_| {
            timed_out = true;
            kill_group(pid);
            rx.recv()
        })
    };
    let stdout = collect(out_rx).unwrap_or(Captured { bytes: Vec::new(), truncated: false });
    let stderr = collect(err_rx).unwrap_or(Captured { bytes: Vec::new(), truncated: false });
    if let Some(writer) = stdin_writer {
        if !writer.is_finished() {
            kill_group(pid);
        }
        let _stdin_thread_done = writer.join();
    }
    Ok(ExecResult {
        exit_code: status.code(),
        signal: status.signal(),
        truncated: stdout.truncated || stderr.truncated,
        stdout: stdout.bytes,
        stderr: stderr.bytes,
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        oom_killed: crate::oom::killed(pid, started),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ExecRequest {
        ExecRequest { argv: vec!["/bin/sh".into(), "-c".into(), script.into()], ..ExecRequest::default() }
    }

    #[test]
    fn exec_reports_exit_code_stdout_and_stderr() {
        let result = run(&sh("echo out; echo err >&2; exit 3"), &Running::default()).unwrap();
        assert_eq!(result.exit_code, Some(3));
        assert_eq!(result.signal, None);
        assert_eq!(result.stdout, b"out\n");
        assert_eq!(result.stderr, b"err\n");
        assert!(!result.truncated && !result.timed_out);
    }

    #[test]
    fn exec_feeds_stdin_env_and_cwd() {
        let mut request = sh("cat; echo \"$GREETING\"; pwd");
        request.stdin = b"from stdin\n".to_vec();
        request.env = vec![("GREETING".into(), "hi".into())];
        request.cwd = Some("/tmp".into());
        let result = run(&request, &Running::default()).unwrap();
        assert_eq!(String::from_utf8_lossy(&result.stdout), "from stdin\nhi\n/tmp\n");
    }

    #[test]
    fn exec_truncates_output_at_the_limit() {
        let mut request = sh("head -c 100000 /dev/zero");
        request.max_output_bytes = 1000;
        let result = run(&request, &Running::default()).unwrap();
        assert_eq!(result.stdout.len(), 1000);
        assert!(result.truncated);
        assert_eq!(result.exit_code, Some(0));
    }

    #[test]
    fn exec_kills_the_whole_group_on_timeout() {
        let mut request = sh("sleep 30 & sleep 30");
        request.timeout_ms = 200;
        let started = Instant::now();
        let result = run(&request, &Running::default()).unwrap();
        assert!(result.timed_out);
        assert_eq!(result.signal, Some(libc::SIGKILL));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn user_is_a_numeric_uid_or_uid_and_gid() {
        assert_eq!(parse_user("1000"), Some((1000, 1000)));
        assert_eq!(parse_user("1000:50"), Some((1000, 50)));
        assert_eq!(parse_user("nobody"), None);
        let request = ExecRequest { user: Some("app".into()), ..sh("true") };
        assert!(matches!(run(&request, &Running::default()), Err(ExecError::BadUser(_))));
    }

    #[test]
    fn a_missing_working_directory_is_named_not_the_program() {
        let request = ExecRequest { cwd: Some("/no/such/dir".into()), ..sh("pwd") };
        let error = run(&request, &Running::default()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ExecError::Cwd { .. }), "{message}");
        assert!(message.contains("working directory \"/no/such/dir\" does not exist"), "{message}");
    }

    #[test]
    fn exec_of_a_missing_program_is_an_error() {
        let request = ExecRequest { argv: vec!["/nonexistent/program".into()], ..ExecRequest::default() };
        assert!(matches!(run(&request, &Running::default()), Err(ExecError::Spawn { .. })));
        assert!(matches!(run(&ExecRequest::default(), &Running::default()), Err(ExecError::EmptyArgv)));
    }
}
