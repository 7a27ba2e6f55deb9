//! A running microVM: the handle a lease derefs to.
//!
//! [`QemuVm`] owns everything of one VM: the supervised process, the QMP session, the console log,
//! the agent client and the runtime directory. Dropping it kills QEMU (synchronously) and removes the
//! directory; [`QemuProvider::destroy`](firepit_pool::Provider::destroy) does the same gracefully.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use firepit_agent::{ExecRequest, IdentityApplied, IdentityRequest, Pong, Request, Response};
use firepit_pool::{PoolVm, ShapeKey};

use crate::agent::AgentClient;
use crate::config::{Accel, ProviderConfig};
use crate::console::{Console, ConsoleShared};
use crate::error::{AgentError, QemuError, QmpError};
use crate::exec::ExecOutput;
use crate::exit::ExitInfo;
use crate::process::QemuProcess;
use crate::qmp::QmpClient;
use crate::rundir::RuntimeDir;

/// What a VM is doing.
///
/// ```no_run
/// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
/// use firepit_qemu::VmStatus;
/// vm.pause().await?;
/// assert_eq!(vm.status().await?, VmStatus::Paused);
/// vm.kill();
/// assert!(matches!(vm.status().await?, VmStatus::Exited(None))); // killed by a signal
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStatus {
    /// vCPUs run.
    Running,
    /// vCPUs are stopped (QMP `stop`, or waiting for an incoming migration).
    Paused,
    /// QEMU has exited, with this exit code (`None`: killed by a signal).
    Exited(Option<i32>),
}

/// A running QEMU microVM. Obtained from the pool (a `PooledVm<QemuProvider>` derefs to it).
///
/// ```no_run
/// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
/// let out = vm.exec(["uname", "-r"]).await?;
/// assert_eq!(out.exit_code, Some(0));
/// println!("{} booted in {:?} under {}", out.stdout_lossy().trim(), vm.boot_duration(), vm.accel());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct QemuVm {
    pub(crate) id: String,
    pub(crate) shape: ShapeKey,
    pub(crate) accel: Accel,
    pub(crate) boot_duration: Duration,
    pub(crate) config: Arc<ProviderConfig>,
    pub(crate) qmp: QmpClient,
    pub(crate) console: Arc<ConsoleShared>,
    /// Whether [`console`](Self::console) hands the console out (`VmSpec::console`).
    pub(crate) console_enabled: bool,
    pub(crate) agent: Arc<AgentClient>,
    /// The NIC's address, filter and forwards (`None`: the shape has no network).
    pub(crate) network: Option<crate::net::VmNetwork>,
    // Field order matters for drop: the process is killed before its directory is removed.
    pub(crate) process: QemuProcess,
    pub(crate) dir: RuntimeDir,
    /// Keeps a snapshot template's memory file alive while this clone maps it (held for its Drop).
    #[allow(dead_code)]
    pub(crate) template: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// Whether the VM rests in the pool (vCPUs stopped); see [`crate::pause`].
    pub(crate) rest: Arc<crate::pause::Rest>,
    /// How it was made.
    pub(crate) fill: crate::config::FillKind,
    /// What it costs against the pool's memory budget when not its spec's full memory (a snapshot
    /// clone: its PSS once restored, MiB); read by the provider's `MemoryAccounting`
    /// (`memory_charge.rs`).
    pub(crate) memory_charge_mb: Option<u64>,
    /// The image's environment, working directory and user for `exec` (see [`ExecDefaults`]).
    pub(crate) exec_defaults: crate::exec_defaults::ExecDefaults,
}

impl QemuVm {
    /// The VM's unique id (also its runtime directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The shape it was made for.
    pub fn shape(&self) -> &ShapeKey {
        &self.shape
    }

    /// How it was made: cold boot, snapshot restore, or cold boot as a snapshot shape's fallback.
    pub fn fill(&self) -> crate::config::FillKind {
        self.fill
    }

    /// The accelerator it runs under (`Kvm` or `Tcg`).
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The cgroup QEMU runs in (`None`: cgroups are off or unavailable on this host, see
    /// [`CgroupConfig`](crate::CgroupConfig)): its directories, and its CPU time and memory so
    /// far ([`Cgroup::usage`](firepit_cgroup::Cgroup::usage), two small file reads).
    ///
    /// ```no_run
    /// # fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::CgroupError> {
    /// if let Some(cgroup) = vm.cgroup() {
    ///     println!("pid {} in {cgroup}: {:?}", vm.pid(), cgroup.usage()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn cgroup(&self) -> Option<&firepit_cgroup::Cgroup> {
        self.process.cgroup().map(|cgroup| &**cgroup)
    }

    /// Time from process start to ready (readiness line and agent ping answered).
    pub fn boot_duration(&self) -> Duration {
        self.boot_duration
    }

    /// The VM's private runtime directory (sockets).
    pub fn runtime_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A console handle that sees output printed from now on. Only for a VM whose shape enabled
    /// the console (`VmSpec::console`, the facade's `console_enabled()`); otherwise
    /// [`ConfigError::ConsoleDisabled`](crate::ConfigError::ConsoleDisabled).
    pub async fn console(&self) -> Result<Console, QemuError> {
        if !self.console_enabled {
            return Err(crate::config_error::ConfigError::ConsoleDisabled { vm: self.id.clone() }.into());
        }
        self.awake().await?;
        Ok(self.console.handle(None))
    }

    /// The last `lines` lines of console output kept in memory.
    pub fn console_tail(&self, lines: usize) -> String {
        self.console.tail(lines)
    }

    /// Bytes the guest has written to its console since boot. Only the last
    /// `ProviderConfig::console_buffer_bytes` of them are kept in memory.
    pub fn console_bytes_received(&self) -> u64 {
        self.console.bytes_received()
    }

    /// The QMP session, for commands this API does not wrap.
    pub fn qmp(&self) -> &QmpClient {
        &self.qmp
    }

    /// Runs `argv` in the guest through the agent (no stdin, the agent's default timeout of 60 s).
    pub async fn exec<I, S>(&self, argv: I) -> Result<ExecOutput, QemuError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv = argv.into_iter().map(Into::into).collect();
        self.exec_request(ExecRequest { argv, ..Default::default() }).await
    }

    /// Runs a full [`ExecRequest`] (env, cwd, stdin, timeout, output limit). The host waits the
    /// request's timeout (0: the agent's 60 s) plus [`ProviderConfig::agent_timeout`].
    ///
    /// ```no_run
    /// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
    /// use firepit_qemu::ExecRequest;
    /// let out = vm
    ///     .exec_request(ExecRequest {
    ///         argv: vec!["sh".into(), "-c".into(), "wc -c".into()],
    ///         stdin: b"four".to_vec(),
    ///         timeout_ms: 5_000,
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// assert_eq!(out.stdout_lossy().trim(), "4");
    /// assert!(!out.timed_out);
    /// # Ok(()) }
    /// ```
    pub async fn exec_request(&self, request: ExecRequest) -> Result<ExecOutput, QemuError> {
        let guest_timeout = match request.timeout_ms {
            0 => Duration::from_secs(60),
            ms => Duration::from_millis(ms),
        };
        let deadline = guest_timeout + self.config.agent_timeout;
        let request = self.exec_defaults.applied_to(request);
        match self.agent_request(Request::Exec(request), deadline).await? {
            Response::Exec(result) => Ok(ExecOutput::from(result)),
            other => Err(unexpected("exec", other)),
        }
    }

    /// Pings the agent (deadline: `ProviderConfig::probe_timeout`).
    pub async fn ping(&self) -> Result<Pong, QemuError> {
        self.ping_timeout(self.config.probe_timeout).await
    }

    /// Pings the agent with an explicit deadline.
    pub async fn ping_timeout(&self, timeout: Duration) -> Result<Pong, QemuError> {
        match self.agent_request(Request::Ping, timeout).await? {
            Response::Pong(pong) => Ok(pong),
            other => Err(unexpected("ping", other)),
        }
    }

    /// Gives the guest its own identity (entropy, clock, hostname, machine id); see
    /// [`fresh_identity`](crate::fresh_identity). Snapshot clones get one before they are handed
    /// out; call it again to change the hostname, say.
    ///
    /// ```no_run
    /// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
    /// let applied = vm.set_identity(firepit_qemu::fresh_identity("build-42")).await?;
    /// assert!(applied.hostname_set && applied.clock_set);
    /// # Ok(()) }
    /// ```
    pub async fn set_identity(&self, identity: IdentityRequest) -> Result<IdentityApplied, QemuError> {
        match self.agent_request(Request::SetIdentity(identity), self.config.agent_timeout).await? {
            Response::Identity(applied) => Ok(applied),
            other => Err(unexpected("set-identity", other)),
        }
    }

    pub(crate) async fn agent_request(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, QemuError> {
        self.detached_request(request, timeout).await
    }

    /// What waking this VM needs, detached from the handle (see [`crate::pause`]).
    pub(crate) fn waker(&self) -> crate::pause::Waker {
        crate::pause::Waker {
            rest: self.rest.clone(),
            qmp: self.qmp.clone(),
            agent: self.agent.clone(),
            timeout: self.config.probe_timeout,
        }
    }

    /// Wakes the VM if it rested in the pool (a VM handed out by `try_reserve` may still be waking):
    /// every guest-facing operation calls this first. One atomic load when the VM runs.
    pub(crate) async fn awake(&self) -> Result<(), QemuError> {
        if self.rest.is_resting() {
            self.waker().wake().await?;
        }
        Ok(())
    }

    /// An agent request as a future that does not borrow the VM (for the pool's `'static` checks).
    fn detached_request(
        &self,
        request: Request,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response, QemuError>> + Send + use<> {
        let agent = self.agent.clone();
        let exited = self.process.exit_info().is_some();
        let waker = self.rest.is_resting().then(|| self.waker());
        async move {
            let kind = crate::agent::request_kind(&request);
            if exited {
                return Err(AgentError::Closed.into());
            }
            if let Some(waker) = waker {
                waker.wake().await?;
            }
            match agent.request(request, timeout).await? {
                Response::Error { message } => Err(AgentError::Remote { request: kind, message }.into()),
                response => Ok(response),
            }
        }
    }

    /// [`ping`](Self::ping) as a future that does not borrow the VM.
    pub fn ping_detached(&self) -> impl std::future::Future<Output = Result<Pong, QemuError>> + Send + use<> {
        let request = self.detached_request(Request::Ping, self.config.probe_timeout);
        async move {
            match request.await? {
                Response::Pong(pong) => Ok(pong),
                other => Err(unexpected("ping", other)),
            }
        }
    }

    /// Running, paused (QMP) or exited (process state). A VM that rested in the pool is woken
    /// first: a user never sees the pool's pause, only their own.
    pub async fn status(&self) -> Result<VmStatus, QemuError> {
        if let Some(info) = self.process.exit_info() {
            return Ok(VmStatus::Exited(info.code));
        }
        self.awake().await?;
        match self.qmp.query_status().await {
            Ok(status) if status.running => Ok(VmStatus::Running),
            Ok(_) => Ok(VmStatus::Paused),
            Err(QmpError::Closed) => {
                // QMP closes as QEMU exits: give the watcher a moment to reap it.
                match tokio::time::timeout(Duration::from_secs(2), self.process.exited()).await {
                    Ok(info) => Ok(VmStatus::Exited(info.and_then(|i| i.code))),
                    Err(_) => Err(QmpError::Closed.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Pauses the vCPUs (QMP `stop`). The guest's clocks stop with them: after
    /// [`resume`](Self::resume) it is behind by the pause until something sets its clock
    /// ([`set_identity`](Self::set_identity)). Idle VMs in the pool are paused by the pool
    /// (`ShapeConfig::pause_idle`) and woken with their clock set before anyone sees them.
    pub async fn pause(&self) -> Result<(), QemuError> {
        self.awake().await?;
        Ok(self.qmp.stop().await?)
    }

    /// Resumes the vCPUs (QMP `cont`).
    pub async fn resume(&self) -> Result<(), QemuError> {
        self.awake().await?;
        Ok(self.qmp.cont().await?)
    }

    /// How QEMU exited, `None` while it runs.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.process.exit_info()
    }

    /// Kills QEMU at once (SIGKILL); the VM's status becomes `Exited`.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Stops the VM: QMP `quit`, up to `ProviderConfig::quit_grace` to exit, then SIGKILL; waits
    /// until the process is reaped, then removes the runtime directory. What
    /// [`Provider::destroy`](firepit_pool::Provider::destroy) does; dropping the VM instead kills
    /// it at once.
    ///
    /// ```no_run
    /// # async fn demo(provider: firepit_qemu::QemuProvider, spec: firepit_qemu::VmSpec) -> Result<(), firepit_qemu::QemuError> {
    /// let vm = provider.cold_boot(&firepit_pool::ShapeKey::new("small"), &spec).await?;
    /// let dir = vm.runtime_dir().to_path_buf();
    /// println!("{}", vm.console_tail(5));
    /// vm.shutdown().await;
    /// assert!(!dir.exists());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(self) {
        if self.process.exit_info().is_none() {
            let quit = tokio::time::timeout(self.config.quit_grace, self.qmp.quit()).await;
            if let Ok(Err(e)) = quit {
                tracing::debug!(vm = %self.id, error = %e, "QMP quit failed; killing");
            }
            let graceful = tokio::time::timeout(self.config.quit_grace, self.process.exited()).await;
            if graceful.is_err() {
                tracing::warn!(vm = %self.id, "qemu ignored quit; sending SIGKILL");
                self.process.kill();
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), self.process.exited()).await.is_err() {
            tracing::error!(vm = %self.id, pid = self.process.pid(), "qemu not reaped 5 s after SIGKILL");
        }
        tracing::debug!(vm = %self.id, "VM destroyed");
        // Dropping `self` removes the runtime directory.
    }
}

fn unexpected(request: &'static str, response: Response) -> QemuError {
    AgentError::UnexpectedResponse { request, response: format!("{response:?}") }.into()
}

impl PoolVm for QemuVm {
    fn id(&self) -> &str {
        &self.id
    }

    fn exited(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let exited = self.process.exited();
        async move {
            exited.await;
        }
    }

    fn fill_kind(&self) -> Option<&'static str> {
        Some(self.fill.as_str())
    }
}
