//! Starting a QEMU process and waiting until its guest is ready.
//!
//! [`start`] binds the console and QMP sockets, spawns QEMU, accepts its two connections (racing the
//! process's exit, so a bad command line fails at once with QEMU's stderr), and negotiates QMP.
//! [`wait_ready`] then waits for the readiness line on the console and an agent ping, all under one
//! deadline; a boot that misses it is killed and reported with the last console lines.

use std::sync::Arc;
use std::time::Duration;

use firepit_agent::READY_LINE;
use firepit_guest::{Guest, GuestError, Timeouts, UnixSocket};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

use crate::argv::{AGENT_SOCKET, CONSOLE_SOCKET, GuestMemory, LaunchSpec, QMP_SOCKET, build_argv};
use crate::config::ProviderConfig;
use crate::console::ConsoleShared;
use crate::error::{BootError, ConsoleError, QemuError, SpawnError};
use crate::exit::ExitInfo;
use crate::pause::{Rest, VmGate, Waker};
use crate::process::QemuProcess;
use crate::qmp::QmpClient;
use crate::rundir::RuntimeDir;

/// Console lines quoted in boot errors.
const TAIL_LINES: usize = 30;

/// A QEMU process whose sockets are connected (the guest may still be booting).
pub(crate) struct Started {
    pub process: QemuProcess,
    pub console: Arc<ConsoleShared>,
    /// Whether the console is the caller's (`LaunchSpec::console`).
    pub console_enabled: bool,
    pub qmp: QmpClient,
    /// The guest agent's client, behind the VM's gate (see [`crate::pause`]).
    pub guest: Guest,
    /// What wakes the VM when it rests in the pool.
    pub waker: Waker,
    pub dir: RuntimeDir,
    /// The NIC's network, when the shape has one.
    pub network: Option<firepit_net::VmNetwork>,
}

/// Spawns QEMU for `spec` in `dir` (in `cgroup`, when given) and connects console and QMP before
/// `deadline`.
pub(crate) async fn start(
    binary: &std::path::Path,
    (spec, cgroup): (&LaunchSpec, Option<Arc<firepit_cgroup::Cgroup>>),
    dir: RuntimeDir,
    config: &ProviderConfig,
    deadline: Instant,
) -> Result<Started, QemuError> {
    let bind = |name: &str| {
        let path = dir.path().join(name);
        UnixListener::bind(&path).map_err(|e| SpawnError::io(format!("listening on {}", path.display()), e))
    };
    let console_listener = bind(CONSOLE_SOCKET)?;
    let qmp_listener = bind(QMP_SOCKET)?;
    if let GuestMemory::File { path, shared: true, .. } = &spec.memory {
        create_private_memory_file(path, spec.run_as)?;
    }
    if let Some(owner) = spec.run_as {
        // QEMU, running as `owner`, connects to these: a socket needs write permission to connect.
        for name in [CONSOLE_SOCKET, QMP_SOCKET] {
            crate::rundir::chown(&dir.path().join(name), owner)?;
        }
    }
    let net_listeners = match &spec.network {
        Some(_) => {
            let owner = spec.run_as.map(|user| (user.uid, user.gid));
            Some(firepit_net::NicListeners::bind(dir.path(), owner)?)
        }
        None => None,
    };
    let argv = build_argv(spec);
    tracing::debug!(binary = %binary.display(), ?argv, "spawning qemu");
    let process = QemuProcess::spawn(binary, &argv, spec.run_as, cgroup)?;
    let console_stream =
        supervised(accept(&console_listener, "console"), "console", &process, deadline).await?;
    let qmp_stream = supervised(accept(&qmp_listener, "qmp"), "qmp", &process, deadline).await?;
    let console =
        ConsoleShared::start(console_stream, config.console_buffer_bytes, config.console_read_timeout);
    let qmp_timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let qmp = QmpClient::handshake(qmp_stream, qmp_timeout.min(Duration::from_secs(10))).await?;
    let timeouts = Timeouts { request: config.agent_timeout, ping: config.probe_timeout };
    let ungated = Guest::new(UnixSocket::new(dir.path().join(AGENT_SOCKET))).with_timeouts(timeouts);
    let waker = Waker {
        rest: Arc::new(Rest::default()),
        qmp: qmp.clone(),
        guest: ungated.clone().with_timeouts(Timeouts { request: config.probe_timeout, ..timeouts }),
        timeout: config.probe_timeout,
    };
    let guest = ungated.with_gate(Arc::new(VmGate { exit: process.exit_watch(), waker: waker.clone() }));
    let network = match (&spec.network, net_listeners) {
        (Some(plan), Some(listeners)) => {
            let sockets = supervised(listeners.accept(), "network", &process, deadline).await?;
            Some(match &plan.resume {
                Some(state) => {
                    firepit_net::VmNetwork::resume(&plan.spec, sockets, plan.shape_counters.clone(), state)?
                }
                None => firepit_net::VmNetwork::start(&plan.spec, sockets, plan.shape_counters.clone())?,
            })
        }
        _ => None,
    };
    Ok(Started { process, console, console_enabled: spec.console, qmp, guest, waker, dir, network })
}

/// Creates a snapshot template's memory file before QEMU maps it: exclusively (a file someone else
/// placed at that predictable /dev/shm name is refused, never mapped) and 0600 (left to QEMU it
/// would be 0644: the guest's RAM readable by every local user). QEMU grows the empty file to size.
fn create_private_memory_file(
    path: &std::path::Path,
    owner: Option<crate::process::Credentials>,
) -> Result<(), SpawnError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    let created = match create() {
        // A leftover of ours (same name from an earlier template) is replaced; anyone else's is not.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            match std::fs::symlink_metadata(path) {
                Ok(meta)
                    if meta.file_type().is_file()
                        && (meta.uid() == me || Some(meta.uid()) == owner.map(|o| o.uid)) =>
                {
                    std::fs::remove_file(path).and_then(|()| create())
                }
                _ => return Err(SpawnError::MemoryFileTaken { path: path.to_path_buf() }),
            }
        }
        other => other,
    };
    created.map_err(|e| SpawnError::io(format!("creating guest memory file {}", path.display()), e))?;
    if let Some(owner) = owner {
        crate::rundir::chown(path, owner)?;
    }
    Ok(())
}

/// Accepts QEMU's connection to its `socket` on `listener`.
async fn accept(listener: &UnixListener, socket: &str) -> Result<UnixStream, SpawnError> {
    let (stream, _) = listener
        .accept()
        .await
        .map_err(|e| SpawnError::io(format!("accepting qemu's {socket} connection"), e))?;
    Ok(stream)
}

/// Runs `step` (accepting one of QEMU's connections) until `deadline`, or fails as soon as QEMU
/// exits (quoting its stderr). `socket` names the socket in errors.
async fn supervised<T, E: Into<QemuError>>(
    step: impl std::future::Future<Output = Result<T, E>>,
    socket: &'static str,
    process: &QemuProcess,
    deadline: Instant,
) -> Result<T, QemuError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    tokio::select! {
        done = tokio::time::timeout_at(deadline, step) => match done {
            Ok(result) => result.map_err(Into::into),
            Err(_) => {
                process.kill();
                Err(SpawnError::SocketTimeout { socket, after: timeout, stderr: process.stderr_tail() }.into())
            }
        },
        info = process.exited() => {
            // Let the stderr reader drain the pipe: QEMU's last words explain the exit.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let status = info.unwrap_or(ExitInfo::UNKNOWN);
            Err(SpawnError::EarlyExit { status, stderr: process.stderr_tail() }.into())
        }
    }
}

/// Waits for the readiness line (printed since boot) and an agent ping, before `deadline`.
pub(crate) async fn wait_ready(
    started: &Started,
    boot_timeout: Duration,
    deadline: Instant,
) -> Result<(), QemuError> {
    let console = started.console.handle(Some(0));
    let remaining = deadline.saturating_duration_since(Instant::now());
    let line = tokio::select! {
        line = console.read_until_timeout(READY_LINE, remaining) => line,
        _ = started.process.exited() => return Err(exited(started).await),
    };
    match line {
        Ok(_) => {}
        // The console closes when QEMU exits (guest panic, `-no-reboot`): report the exit.
        Err(ConsoleError::Closed { .. }) => {
            if tokio::time::timeout(Duration::from_secs(2), started.process.exited()).await.is_ok() {
                return Err(exited(started).await);
            }
            return Err(timed_out(started, boot_timeout, "the readiness line (console closed)").await);
        }
        Err(_) => return Err(timed_out(started, boot_timeout, "the readiness line").await),
    }
    wait_for_agent(started, boot_timeout, deadline).await
}

/// Pings the agent until it answers or `deadline` passes.
pub(crate) async fn wait_for_agent(
    started: &Started,
    boot_timeout: Duration,
    deadline: Instant,
) -> Result<(), QemuError> {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out(started, boot_timeout, "an agent ping").await);
        }
        let attempt = started.guest.ping_timeout(remaining.min(Duration::from_secs(2)));
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = started.process.exited() => return Err(exited(started).await),
        };
        match outcome {
            Ok(_) => return Ok(()),
            Err(GuestError::Timeout { .. }) => tracing::debug!("agent ping timed out; retrying"),
            Err(e) => {
                tracing::debug!(error = %e, "agent ping failed; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Kills the process and describes the timeout.
pub(crate) async fn timed_out(started: &Started, after: Duration, waiting_for: &'static str) -> QemuError {
    started.process.kill();
    if tokio::time::timeout(Duration::from_secs(5), started.process.exited()).await.is_err() {
        tracing::error!(pid = started.process.pid(), "qemu not reaped 5 s after SIGKILL");
    }
    BootError::Timeout { after, waiting_for, console_tail: started.console.tail(TAIL_LINES) }.into()
}

async fn exited(started: &Started) -> QemuError {
    let info = started.process.exited().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    BootError::Exited {
        status: info.unwrap_or(ExitInfo::UNKNOWN),
        stderr: started.process.stderr_tail(),
        console_tail: started.console.tail(TAIL_LINES),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn template_memory_file_is_created_0600_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firepit-1-t1");
        create_private_memory_file(&path, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // A leftover of ours is replaced by a fresh private file.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        create_private_memory_file(&path, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // A symlink planted at the name is never followed.
        let planted = dir.path().join("firepit-1-t2");
        std::os::unix::fs::symlink(dir.path().join("target"), &planted).unwrap();
        let err = create_private_memory_file(&planted, None).unwrap_err().to_string();
        assert!(err.contains("not a file of ours"), "{err}");
        assert!(!dir.path().join("target").exists());
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let foreign = dir.path().join("firepit-1-t3");
            std::fs::write(&foreign, b"").unwrap();
            std::os::unix::fs::chown(&foreign, Some(12345), Some(12345)).unwrap();
            let err = create_private_memory_file(&foreign, None).unwrap_err().to_string();
            assert!(err.contains("not a file of ours"), "{err}");
        }
    }
}
