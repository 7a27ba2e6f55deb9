//! [`Launcher`]: what every way of making a VM needs, below the provider and its fill strategies.
//!
//! A cold boot, a snapshot template build and a clone restore all do the same first steps: resolve
//! the accelerator once, give the VM an id and a private runtime directory, describe its command
//! line as a [`LaunchSpec`], start QEMU and wrap what started into a [`QemuVm`]. Those steps live
//! here, with the checked configuration they read, so the snapshot machinery (`snapshot`,
//! `template_build`, `restore`) uses them without knowing the provider that owns it: the provider
//! sits above both and chooses between them per shape.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use firepit_pool::ShapeKey;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::argv::{GuestArgs, GuestMemory, LaunchSpec, kernel_args, tsc_khz_from_cpuinfo};
use crate::boot;
use crate::caps::QemuCaps;
use crate::config::{Accel, FillKind, ProviderConfig};
use crate::config_error::ConfigError;
use crate::disk::OVERLAY_FILE;
use crate::error::QemuError;
use crate::process::Credentials;
use crate::root_disk::DiskFormat;
use crate::rundir::{MAX_SOCKET_PATH, RuntimeDir, ensure_base};
use crate::vm::QemuVm;
use crate::vm_cgroup::VmCgroups;
use crate::vm_spec::VmSpec;

/// What the guest's init reads as its shape's `disk_mb` (see `firepit_image::initramfs`).
pub(crate) const DISK_MB_ARG: &str = "firepit.disk_mb";

/// Room kept in socket paths for `/<vm id>/console.sock`.
const VM_PATH_SUFFIX: usize = 48;

/// Unique VM ids across every provider of this process.
static NEXT_VM: AtomicU64 = AtomicU64::new(1);

/// The checked configuration and host facts every VM launch reads.
#[derive(Debug)]
pub(crate) struct Launcher {
    pub config: Arc<ProviderConfig>,
    pub caps: QemuCaps,
    requested_accel: Accel,
    resolved_accel: OnceCell<Accel>,
    tsc_khz: u64,
    /// The user QEMU runs as (`ProviderConfig::run_as`, resolved).
    pub run_as: Option<Credentials>,
    /// Traffic totals per shape (for VMs with a network).
    pub networks: crate::net::Networks,
    /// The parent of the VMs' cgroups, or why there is none.
    pub cgroups: VmCgroups,
    /// Held while a root disk is sized for a `disk_mb` (one copy at a time, never the same twice).
    sizing: tokio::sync::Mutex<()>,
}

impl Launcher {
    /// Checks `config` and the QEMU binary, and prepares the runtime directory (see
    /// [`QemuProvider::new`](crate::QemuProvider::new)).
    pub(crate) fn new(config: ProviderConfig) -> Result<Self, QemuError> {
        let requested_accel = config.requested_accel().map_err(ConfigError::Accel)?;
        let deadlines = [
            ("boot_timeout", config.boot_timeout),
            ("probe_timeout", config.probe_timeout),
            ("agent_timeout", config.agent_timeout),
        ];
        if let Some((field, _)) = deadlines.into_iter().find(|(_, deadline)| deadline.is_zero()) {
            return Err(ConfigError::ZeroTimeout { field }.into());
        }
        let room = config.runtime_dir.as_os_str().len() + VM_PATH_SUFFIX;
        if room > MAX_SOCKET_PATH {
            let (dir, max) = (config.runtime_dir.clone(), MAX_SOCKET_PATH - VM_PATH_SUFFIX);
            return Err(ConfigError::RuntimeDirTooLong { dir, max }.into());
        }
        let run_as = config.run_as.as_deref().map(crate::run_as::resolve).transpose()?;
        if let Some(user) = run_as {
            crate::run_as::make_reachable(&config.runtime_dir, user)?;
        }
        let caps = QemuCaps::detect(&config.qemu_binary)?;
        ensure_base(&config.runtime_dir, run_as.is_some())?;
        crate::rundir::remove_stale(&config.runtime_dir);
        // Scratch and discarded templates of dead processes (`firepit-<pid>-t<n>`).
        crate::rundir::remove_stale_in(&config.template_dir);
        let tsc_khz = tsc_khz_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        // Also removes the cgroups of VMs of dead firepit processes.
        let cgroups = VmCgroups::open(&config.cgroups);
        tracing::info!(qemu = %caps.version, sandbox = caps.sandbox, accel = %requested_accel, "QEMU provider ready");
        Ok(Self {
            config: Arc::new(config),
            caps,
            requested_accel,
            resolved_accel: OnceCell::new(),
            tsc_khz,
            run_as,
            networks: crate::net::Networks::default(),
            cgroups,
            sizing: tokio::sync::Mutex::new(()),
        })
    }

    /// The accelerator VMs run under; `Auto` is detected on the first call and kept.
    pub(crate) async fn accel(&self) -> Accel {
        *self
            .resolved_accel
            .get_or_init(|| async {
                match self.requested_accel {
                    Accel::Auto => crate::accel::detect_accel(&self.config.qemu_binary).await.accel,
                    forced => forced,
                }
            })
            .await
    }

    /// A fresh VM id and its runtime directory.
    pub(crate) fn new_dir(&self) -> Result<(String, RuntimeDir), QemuError> {
        let id = format!("fp-{}-{}", std::process::id(), NEXT_VM.fetch_add(1, Ordering::Relaxed));
        let dir = RuntimeDir::create(&self.config.runtime_dir, &id)?;
        if let Some(owner) = self.run_as {
            // QEMU creates its agent socket (and a snapshot's state file) in here.
            crate::rundir::chown(dir.path(), owner)?;
        }
        Ok((id, dir))
    }

    /// The command line of VM `id` of `shape` (made from `vm`), with its runtime directory `dir`
    /// and guest `memory`: the one place where what QEMU is told is derived from the shape (its
    /// size and console here; disk, network and limits as they come), after the shape's own
    /// bounds ([`ShapeSpec::validate_vm`](firepit_shape::ShapeSpec::validate_vm)) are checked.
    pub(crate) fn launch_spec(
        &self,
        id: &str,
        accel: Accel,
        (shape, vm): (&ShapeKey, &VmSpec),
        dir: &Path,
        memory: GuestMemory,
    ) -> Result<LaunchSpec, QemuError> {
        check_shape(shape, vm)?;
        let guest = GuestArgs { root_disk: vm.image.disk.is_some(), console: vm.console };
        // The guest's bound on its files in RAM (an image without a root disk; a root disk is
        // sized on the host, see `crate::disk_size`), before the user's arguments.
        let disk_arg = vm.disk_mb.map(|mb| format!("{DISK_MB_ARG}={mb}"));
        let extra: Vec<String> =
            disk_arg.into_iter().chain(self.config.extra_kernel_args.iter().cloned()).collect();
        Ok(LaunchSpec {
            name: id.to_string(),
            accel,
            vcpus: vm.cpus,
            memory_mb: vm.memory_mb,
            kernel: vm.image.kernel.clone(),
            initramfs: vm.image.initramfs.clone(),
            kernel_args: kernel_args(self.tsc_khz, guest, &extra),
            console: vm.console,
            sandbox: self.caps.sandbox,
            runtime_dir: dir.to_path_buf(),
            memory,
            incoming: None,
            tb_size_mb: None,
            without_kernel: false,
            run_as: self.run_as,
            // Cold boots and clones keep their overlay in their runtime directory (removed with
            // it); a template build puts its own where the template is saved.
            disk: vm.image.disk.as_ref().map(|_| dir.join(OVERLAY_FILE)),
            network: self.networks.plan(shape, &vm.network),
        })
    }

    /// Starts QEMU for `spec` in `dir`, in a cgroup of its own when the host has them (see
    /// [`crate::vm_cgroup`]), and connects its console and QMP before `deadline`: the one way
    /// every cold boot, template build and clone restore starts QEMU.
    pub(crate) async fn start(
        &self,
        spec: &LaunchSpec,
        dir: RuntimeDir,
        deadline: Instant,
    ) -> Result<boot::Started, QemuError> {
        let cgroup = self.cgroups.create(spec);
        boot::start(&self.config.qemu_binary, (spec, cgroup), dir, &self.config, deadline).await
    }

    /// `vm` as the provider makes its VMs: with a `disk_mb` and a root disk, the disk is the copy
    /// of the image's sized for it (see [`crate::disk_size`], made once, then reused; fills of the
    /// same shape wait for the first); otherwise `vm` itself.
    pub(crate) async fn sized<'a>(&self, vm: &'a VmSpec) -> Result<std::borrow::Cow<'a, VmSpec>, QemuError> {
        let (Some(disk_mb), Some(disk)) = (vm.disk_mb, &vm.image.disk) else {
            return Ok(std::borrow::Cow::Borrowed(vm));
        };
        let _one_at_a_time = self.sizing.lock().await;
        let qemu_img = &self.config.qemu_img_binary;
        let sized = crate::disk_size::sized_base(qemu_img, disk, disk_mb, &self.config.disk_dir).await?;
        let mut vm = vm.clone();
        vm.image.disk = Some(sized);
        Ok(std::borrow::Cow::Owned(vm))
    }

    /// Creates the qcow2 `overlay` over `base` (see [`crate::disk`]), owned by QEMU's user.
    pub(crate) async fn overlay(
        &self,
        base: &Path,
        format: DiskFormat,
        overlay: &Path,
    ) -> Result<(), QemuError> {
        let qemu_img = &self.config.qemu_img_binary;
        Ok(crate::disk::create_overlay(qemu_img, base, format, overlay, self.run_as).await?)
    }

    /// Boots a VM of `shape` (made from `vm`) from its kernel, under one boot deadline.
    pub(crate) async fn cold_boot(
        &self,
        shape: &ShapeKey,
        vm: &VmSpec,
        fill: FillKind,
    ) -> Result<QemuVm, QemuError> {
        let started_at = Instant::now();
        let deadline = started_at + self.config.boot_timeout;
        let accel = self.accel().await;
        let (id, dir) = self.new_dir()?;
        let spec = self.launch_spec(&id, accel, (shape, vm), dir.path(), GuestMemory::Anonymous)?;
        if let (Some(disk), Some(overlay)) = (&vm.image.disk, &spec.disk) {
            self.overlay(&disk.base, disk.format, overlay).await?;
        }
        let started = self.start(&spec, dir, deadline).await?;
        boot::wait_ready(&started, self.config.boot_timeout, deadline).await?;
        let boot_duration = started_at.elapsed();
        tracing::info!(vm = %id, %shape, %accel, pid = started.process.pid(), ?boot_duration, fill = fill.as_str(), "VM booted");
        let mut vm = self.vm((shape, vm), &spec, boot_duration, started, fill);
        vm.set_exec_defaults(vm.spec.image.exec_defaults.clone());
        vm.configure_network().await?;
        Ok(vm)
    }

    /// Wraps a started QEMU (launched as `launch` for a VM of `shape` made from `vm`) into the
    /// VM handle.
    pub(crate) fn vm(
        &self,
        (shape, vm): (&ShapeKey, &VmSpec),
        launch: &LaunchSpec,
        boot_duration: Duration,
        started: boot::Started,
        fill: FillKind,
    ) -> QemuVm {
        QemuVm {
            id: launch.name.clone(),
            shape: shape.clone(),
            spec: Arc::new(vm.clone()),
            memory: launch.memory.clone(),
            accel: launch.accel,
            boot_duration,
            config: self.config.clone(),
            qmp: started.qmp,
            console: started.console,
            console_enabled: started.console_enabled,
            guest: started.guest,
            waker: started.waker,
            network: started.network,
            process: started.process,
            dir: started.dir,
            template: None,
            fill,
            memory_charge_mb: None,
        }
    }
}

/// Whether VMs of `vm` can be made, by the bounds every shape is held to
/// ([`ShapeSpec::validate_vm`](firepit_shape::ShapeSpec::validate_vm)); the error names the
/// pool's `shape`.
pub(crate) fn check_shape(shape: &ShapeKey, vm: &VmSpec) -> Result<(), ConfigError> {
    vm.shape.validate_vm().map_err(|invalid| {
        ConfigError::InvalidShape(firepit_shape::InvalidShape { shape: shape.to_string(), ..invalid })
    })
}
