//! A running microVM: the handle a lease derefs to.
//!
//! [`QemuVm`] owns everything of one VM: the supervised process, the QMP session, the console log,
//! the guest agent's client ([`Guest`], which the handle derefs to) and the runtime directory.
//! Dropping it kills QEMU (synchronously) and removes the directory;
//! [`QemuProvider::destroy`](firepit_pool::Provider::destroy) does the same gracefully.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use firepit_guest::Guest;
use firepit_pool::{PoolVm, ShapeKey};

use crate::config::{Accel, ProviderConfig};
use crate::console::{Console, ConsoleShared};
use crate::error::{QemuError, QmpError};
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
/// It derefs to its [`Guest`] (also [`guest`](Self::guest)): `vm.exec(...)`, `vm.write_file(...)`,
/// `vm.spawn(...)` and every other guest operation go through the VM's agent, waking the VM first
/// if it rested in its pool, and fail with [`GuestError::Closed`](firepit_guest::GuestError) once
/// QEMU has exited.
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
    /// What it was made from (saved with it when it is paused or snapshotted).
    pub(crate) spec: Arc<crate::vm_spec::VmSpec>,
    /// Where its RAM lives (a saved stream names its RAM block).
    pub(crate) memory: crate::argv::GuestMemory,
    pub(crate) accel: Accel,
    pub(crate) boot_duration: Duration,
    pub(crate) config: Arc<ProviderConfig>,
    pub(crate) qmp: QmpClient,
    pub(crate) console: Arc<ConsoleShared>,
    /// Whether [`console`](Self::console) hands the console out (`VmSpec::console`).
    pub(crate) console_enabled: bool,
    /// The guest agent's client, behind the gate that wakes a resting VM (see [`crate::pause`]).
    pub(crate) guest: Guest,
    /// What wakes the VM when it rests in the pool (the vCPUs stopped); its `rest` says whether.
    pub(crate) waker: crate::pause::Waker,
    /// The NIC's address, filter and forwards (`None`: the shape has no network).
    pub(crate) network: Option<firepit_net::VmNetwork>,
    // Field order matters for drop: the process is killed before its directory is removed.
    pub(crate) process: QemuProcess,
    pub(crate) dir: RuntimeDir,
    /// Keeps a snapshot template's memory file alive while this clone maps it (held for its Drop).
    #[allow(dead_code)]
    pub(crate) template: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// How it was made.
    pub(crate) fill: crate::config::FillKind,
    /// What it costs against the pool's memory budget when not its spec's full memory (a snapshot
    /// clone: its PSS once restored, MiB); read by the provider's `MemoryAccounting`
    /// (`memory_charge.rs`).
    pub(crate) memory_charge_mb: Option<u64>,
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

    /// The guest agent's client (what the handle derefs to).
    pub fn guest(&self) -> &Guest {
        &self.guest
    }

    /// Sets the image's environment, working directory and user for the guest's commands.
    pub(crate) fn set_exec_defaults(&mut self, defaults: firepit_guest::ExecDefaults) {
        self.guest = self.guest.clone().with_exec_defaults(defaults);
    }

    /// What waking this VM needs, detached from the handle (see [`crate::pause`]).
    pub(crate) fn waker(&self) -> crate::pause::Waker {
        self.waker.clone()
    }

    /// Wakes the VM if it rested in the pool (a VM handed out by `try_reserve` may still be waking):
    /// the handle's own guest-facing operations (console, status) call this first; the guest's
    /// pass the same wake-up through its gate. One atomic load when the VM runs.
    pub(crate) async fn awake(&self) -> Result<(), QemuError> {
        if self.waker.rest.is_resting() {
            self.waker.wake().await?;
        }
        Ok(())
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
    /// ([`Guest::set_identity`]). Idle VMs in the pool are paused by the pool
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

    /// Resolves when QEMU exits, with how it exited and the guest's last kernel panic line (from
    /// the console, when it printed one). Not borrowed from the VM: whoever holds the VM elsewhere
    /// can wait for its end.
    ///
    /// ```no_run
    /// # async fn demo(vm: &firepit_qemu::QemuVm) {
    /// let exit = vm.exit_report();
    /// vm.kill();
    /// let (info, panic) = exit.await;
    /// println!("{info:?} {panic:?}"); // Some(ExitInfo { code: None, signal: Some(9) }) None
    /// # }
    /// ```
    pub fn exit_report(
        &self,
    ) -> impl std::future::Future<Output = (Option<ExitInfo>, Option<String>)> + Send + 'static {
        let exited = self.process.exited();
        let console = self.console.clone();
        async move {
            let info = exited.await;
            let tail = console.tail(40);
            let panic = tail
                .lines()
                .rev()
                .find(|line| line.contains("Kernel panic"))
                .map(|line| line.trim().to_owned());
            (info, panic)
        }
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

impl Deref for QemuVm {
    type Target = Guest;

    fn deref(&self) -> &Guest {
        &self.guest
    }
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
