//! The QEMU child process: spawned so it cannot outlive us, watched so its exit is seen at once.
//!
//! Three layers make sure no QEMU survives its owner:
//! 1. `PR_SET_PDEATHSIG(SIGKILL)` in the child (between fork and exec): the kernel kills QEMU when
//!    the *thread* that forked it exits. We spawn from the async task that calls `create`, i.e. on a
//!    tokio worker (or the `current_thread` runtime's thread), which lives as long as the runtime;
//!    spawning from a short-lived thread (e.g. a `spawn_blocking` thread, which exits after 10 s idle)
//!    would kill the VM with that thread: don't.
//! 2. [`QemuProcess`] sends SIGKILL in `Drop` (synchronously, through a pidfd so a recycled pid can
//!    never be hit) and waits, at most 1 s, until the process is dead; the
//!    `tokio::process::Child` has `kill_on_drop` as a last resort.
//! 3. A watcher task owns the child and always `wait()`s for it (no zombie), then publishes the exit
//!    status on a `watch` channel: [`QemuProcess::exited`] resolves the moment QEMU dies.
//!
//! A VM with a cgroup (`vm_cgroup.rs`) has QEMU join it in the child, between fork and exec: a
//! `write(2)` of `0` to each `cgroup.procs` opened beforehand, so everything QEMU allocates is
//! charged to it and no guest code ever runs outside it (spawning first and attaching after would
//! leave QEMU's start-up, guest RAM included, charged elsewhere). The watcher holds the cgroup
//! until it has reaped QEMU, so the cgroup is removed right after, when nothing is left in it.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use firepit_cgroup::Cgroup;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::error::SpawnError;
use crate::exit::ExitInfo;
use crate::ring::OutputRing;

/// The unprivileged user (and group) QEMU runs as: `ProviderConfig::run_as`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

/// A running (or exited) QEMU process.
#[derive(Debug)]
pub(crate) struct QemuProcess {
    pid: u32,
    pidfd: Option<OwnedFd>,
    exit: watch::Receiver<Option<ExitInfo>>,
    stderr: Arc<Mutex<OutputRing>>,
    /// The cgroup QEMU runs in (also held by the watcher until QEMU is reaped).
    cgroup: Option<Arc<Cgroup>>,
}

impl QemuProcess {
    /// Spawns `binary` with `argv` (stdin/stdout null, stderr kept in a 64 KiB ring), with an
    /// environment of `PATH` only (nothing of ours, e.g. an API token, reaches QEMU), as `run_as`
    /// when given (supplementary groups dropped, then gid, then uid, before the death signal is set:
    /// a credential change would clear it), joining `cgroup` before exec when given.
    pub(crate) fn spawn(
        binary: &Path,
        argv: &[OsString],
        run_as: Option<Credentials>,
        cgroup: Option<Arc<Cgroup>>,
    ) -> Result<Self, SpawnError> {
        let mut command = tokio::process::Command::new(binary);
        command
            .args(argv)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(Credentials { uid, gid }) = run_as {
            // std drops the supplementary groups (setgroups) when it changes uid as root.
            command.uid(uid).gid(gid);
        }
        // SAFETY: getpid is async-signal-safe; read before fork and compared in the child.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe
        // functions (prctl, getppid, _exit); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        if let Some(cgroup) = &cgroup {
            let joiner = cgroup
                .joiner()
                .map_err(|e| SpawnError::io(format!("joining cgroup {cgroup}"), std::io::Error::other(e)))?;
            // SAFETY: `join_self` only writes to descriptors opened above (async-signal-safe);
            // it runs after the credential change and the death signal (the descriptors were
            // opened with our rights).
            unsafe {
                command.pre_exec(move || joiner.join_self());
            }
        }
        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SpawnError::BinaryNotFound { binary: binary.to_path_buf() },
            _ => SpawnError::io(format!("spawning {}", binary.display()), e),
        })?;
        let pid = child.id().ok_or_else(|| {
            SpawnError::io(
                "reading the qemu pid",
                std::io::Error::other("child exited before its pid was read"),
            )
        })?;
        let pidfd = pidfd_open(pid);
        let stderr = Arc::new(Mutex::new(OutputRing::new(64 * 1024)));
        if let Some(mut pipe) = child.stderr.take() {
            let ring = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    lock(&ring).push(&buf[..n]);
                }
            });
        }
        let (tx, exit) = watch::channel(None);
        let held = cgroup.clone();
        tokio::spawn(async move {
            let info = match child.wait().await {
                Ok(status) => ExitInfo { code: status.code(), signal: status.signal() },
                Err(e) => {
                    tracing::warn!(pid, error = %e, "waiting for qemu failed");
                    ExitInfo::UNKNOWN
                }
            };
            tracing::debug!(pid, %info, "qemu exited");
            // Reaped: nothing of QEMU is left in its cgroup, which goes with the last holder.
            drop(held);
            tx.send_replace(Some(info));
        });
        Ok(Self { pid, pidfd, exit, stderr, cgroup })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The cgroup QEMU runs in, if it has one.
    pub(crate) fn cgroup(&self) -> Option<&Arc<Cgroup>> {
        self.cgroup.as_ref()
    }

    /// The exit status, `None` while running.
    pub(crate) fn exit_info(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// The exit status as it changes (`None` while running), for whoever must check it without
    /// the process handle.
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// Resolves when the process has exited and been reaped.
    pub(crate) fn exited(&self) -> impl std::future::Future<Output = Option<ExitInfo>> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            match exit.wait_for(Option::is_some).await {
                Ok(info) => *info,
                // The watcher is gone (runtime shutting down): the child was killed on drop.
                Err(_) => None,
            }
        }
    }

    /// Sends SIGKILL unless the process has already been reaped.
    pub(crate) fn kill(&self) {
        if self.exit_info().is_some() {
            return;
        }
        let sent = match &self.pidfd {
            // SAFETY: a valid pidfd we own, a null siginfo and flags 0 are what the syscall expects.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                ) == 0
            },
            // SAFETY: plain kill(2); without a pidfd a recycled pid is possible only after the watcher
            // reaped the child, and exit_info() above makes that window tiny.
            None => unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) == 0 },
        };
        if !sent {
            tracing::debug!(pid = self.pid, error = %std::io::Error::last_os_error(), "SIGKILL not delivered");
        }
    }

    /// The end of QEMU's standard error, for error messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let ring = lock(&self.stderr);
        crate::console::tail_lines(&ring.since(0), 10)
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        // `kill` does nothing to a process already gone, and its pidfd is then readable at once.
        self.kill();
        // Wait (briefly, bounded) until it is dead, so that whoever dropped it — a fill cancelled
        // by a shutdown, say — can say "no QEMU left" when it returns. A SIGKILLed QEMU is gone
        // in milliseconds; a process stuck in an uninterruptible wait is left to the watcher.
        if let Some(fd) = &self.pidfd {
            let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call; the pidfd is readable once the
            // process has exited.
            let ready = unsafe { libc::poll(&mut pollfd, 1, DROP_WAIT_MS) };
            if ready == 0 {
                tracing::debug!(
                    pid = self.pid,
                    "QEMU not dead {DROP_WAIT_MS} ms after SIGKILL; the watcher reaps it"
                );
            }
        }
    }
}

/// How long `Drop` waits for a killed QEMU to be dead.
const DROP_WAIT_MS: libc::c_int = 1000;

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(pid, 0) has no memory arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn killed_child_is_reaped_and_exit_is_published() {
        let process = QemuProcess::spawn(Path::new("sleep"), &["30".into()], None, None).unwrap();
        let pid = process.pid();
        assert!(process.exit_info().is_none());
        process.kill();
        let info = tokio::time::timeout(Duration::from_secs(5), process.exited()).await.unwrap().unwrap();
        assert_eq!(info, ExitInfo { code: None, signal: Some(libc::SIGKILL) });
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "child {pid} left as a zombie");
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_the_child() {
        let process = QemuProcess::spawn(Path::new("sleep"), &["30".into()], None, None).unwrap();
        let pid = process.pid();
        let exited = process.exited();
        drop(process);
        let info = tokio::time::timeout(Duration::from_secs(5), exited).await.unwrap();
        assert_eq!(info.and_then(|i| i.signal), Some(libc::SIGKILL));
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[tokio::test]
    async fn when_drop_returns_the_child_is_dead() {
        let process = QemuProcess::spawn(Path::new("sleep"), &["30".into()], None, None).unwrap();
        let pid = process.pid();
        drop(process);
        // Dead: reaped already, or a zombie the watcher is about to reap; never still running.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
        assert!(matches!(state, None | Some("Z" | "X")), "child {pid} still {state:?} after drop");
    }

    #[tokio::test]
    async fn child_environment_is_path_only() {
        assert!(std::env::vars().count() > 1, "the test process has more than PATH in its environment");
        let process =
            QemuProcess::spawn(Path::new("sh"), &["-c".into(), "env >&2".into()], None, None).unwrap();
        process.exited().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let names: Vec<String> =
            process.stderr_tail().lines().filter_map(|l| l.split('=').next()).map(str::to_owned).collect();
        // `sh` itself adds PWD (and some shells SHLVL / _); nothing else may come from us.
        assert!(names.iter().all(|n| ["PATH", "PWD", "SHLVL", "_"].contains(&n.as_str())), "{names:?}");
        assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
    }

    #[tokio::test]
    async fn run_as_drops_to_that_user_and_its_group_only() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root can run a child as another user");
            return;
        }
        let nobody = Credentials { uid: 65534, gid: 65534 };
        let script = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) >&2".to_string();
        let process =
            QemuProcess::spawn(Path::new("sh"), &["-c".into(), script.into()], Some(nobody), None).unwrap();
        assert_eq!(process.exited().await.unwrap().code, Some(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(process.stderr_tail(), "uid=65534 gid=65534 groups=65534");
    }

    #[tokio::test]
    async fn missing_binary_says_how_to_install_qemu() {
        let err =
            QemuProcess::spawn(Path::new("/nonexistent/qemu-system-x86_64"), &[], None, None).unwrap_err();
        assert!(err.to_string().contains("apt-get install qemu-system-x86"), "{err}");
    }

    #[tokio::test]
    async fn stderr_is_kept_for_error_messages() {
        let process =
            QemuProcess::spawn(Path::new("sh"), &["-c".into(), "echo boom >&2; exit 3".into()], None, None)
                .unwrap();
        let info = process.exited().await.unwrap();
        assert_eq!(info.code, Some(3));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(process.stderr_tail(), "boom");
    }
}
