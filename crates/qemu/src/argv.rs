//! The QEMU command line, built as an argv (never a shell string).
//!
//! Socket layout in the VM's runtime directory:
//! - `console.sock` and `qmp.sock`: *we* listen, QEMU connects while it starts (before the guest
//!   runs), so no console byte and no QMP greeting can be missed and nothing polls for a socket file.
//! - `agent.sock`: QEMU listens (`server=on,wait=off`), we connect and may reconnect at will.
//!
//! Measured facts behind the defaults are in the project's notes/qemu.md: microvm under TCG needs
//! `tsc=reliable tsc_early_khz=` or the guest hangs calibrating the TSC; `quiet` halves boot time
//! because console output under TCG is slow. `reboot=t` (triple fault) with `-no-reboot` makes a
//! guest panic end the QEMU process: without it a panicked microvm guest just hangs (measured).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Accel;

/// Socket file names inside a VM's runtime directory.
pub(crate) const CONSOLE_SOCKET: &str = "console.sock";
/// QMP socket file name.
pub(crate) const QMP_SOCKET: &str = "qmp.sock";
/// Agent socket file name.
pub(crate) const AGENT_SOCKET: &str = "agent.sock";

/// Where guest RAM lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuestMemory {
    /// Ordinary anonymous memory (`-m`), the machine's own RAM block ([`RamBlock::Machine`]).
    Anonymous,
    /// Anonymous memory in a memory backend ([`RamBlock::Backend`]): a VM resumed from the saved
    /// state of a snapshot clone, whose RAM block has the backend's name.
    Ram,
    /// A file (in /dev/shm) mapped shared (a snapshot template) or private copy-on-write (a clone).
    File { path: PathBuf, shared: bool, block: RamBlock },
}

/// The name of a VM's RAM block. A migration stream names the RAM it carries, and QEMU loads it
/// only into a block of that name: a VM saved from a cold boot (`-m`) has the machine's block, one
/// saved from a snapshot clone (a memory backend) the backend's. A VM started from a saved state
/// (resumed, or a template built from it) keeps the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RamBlock {
    /// `microvm.ram`, what `-m` alone makes.
    Machine,
    /// `mem`, firepit's memory backend.
    Backend,
}

impl RamBlock {
    /// The block's (and its memory backend object's) id.
    pub(crate) fn id(self) -> &'static str {
        match self {
            RamBlock::Machine => "microvm.ram",
            RamBlock::Backend => "mem",
        }
    }
}

impl GuestMemory {
    /// The RAM block this memory makes.
    pub(crate) fn block(&self) -> RamBlock {
        match self {
            GuestMemory::Anonymous => RamBlock::Machine,
            GuestMemory::Ram => RamBlock::Backend,
            GuestMemory::File { block, .. } => *block,
        }
    }
}

/// Everything that varies between QEMU command lines.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSpec {
    pub name: String,
    pub accel: Accel,
    pub vcpus: u32,
    /// Guest RAM, MiB (a checked shape's: at most 65536, well within what QEMU takes).
    pub memory_mb: u64,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_args: String,
    /// Whether the console is the caller's (see `VmSpec::console`); the serial port is attached
    /// either way, since the readiness line comes through it.
    pub console: bool,
    pub sandbox: bool,
    pub runtime_dir: PathBuf,
    pub memory: GuestMemory,
    /// `-incoming` value (e.g. `defer`), for snapshot clones.
    pub incoming: Option<String>,
    /// TCG translation-cache size in MiB (`-accel tcg,tb-size=N`); `None`: QEMU's default.
    pub tb_size_mb: Option<u32>,
    /// Leave out `-kernel`/`-initrd`/`-append`: a snapshot clone's kernel is already in the RAM it
    /// maps, and QEMU would otherwise keep a private copy of both files (≈14 MiB per clone).
    pub without_kernel: bool,
    /// The unprivileged user QEMU runs as (not part of the argv).
    pub run_as: Option<crate::process::Credentials>,
    /// The VM's root-disk overlay (qcow2), attached as virtio-blk `/dev/vda`; `None`: no disk.
    pub disk: Option<PathBuf>,
    /// The shape's network (a NIC behind the NAT and firepit's filter), `None`: no NIC.
    pub network: Option<crate::net::NetPlan>,
}

/// What the guest's initramfs reads to find its root disk (the first virtio-blk device).
pub(crate) const ROOT_DISK_ARG: &str = "firepit.root=/dev/vda";

/// What the guest's initramfs reads to run no shell on its console (the shape's console is not
/// the caller's).
pub(crate) const NO_CONSOLE_ARG: &str = "firepit.console=off";

/// What firepit's initramfs is told on the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuestArgs {
    /// The VM has a root disk ([`ROOT_DISK_ARG`]).
    pub root_disk: bool,
    /// The console is the caller's; without it the guest runs no shell there ([`NO_CONSOLE_ARG`]).
    pub console: bool,
}

/// The kernel command line firepit passes before the user's extra arguments; it names a root disk
/// for the initramfs ([`ROOT_DISK_ARG`]) and a console nobody uses ([`NO_CONSOLE_ARG`]).
pub(crate) fn kernel_args(tsc_khz: u64, guest: GuestArgs, extra: &[String]) -> String {
    let mut args = format!("console=ttyS0 panic=-1 reboot=t quiet tsc=reliable tsc_early_khz={tsc_khz}");
    let ours = [(guest.root_disk, ROOT_DISK_ARG), (!guest.console, NO_CONSOLE_ARG)];
    for arg in
        ours.into_iter().filter_map(|(on, arg)| on.then_some(arg)).chain(extra.iter().map(String::as_str))
    {
        args.push(' ');
        args.push_str(arg);
    }
    args
}

/// The host's TSC frequency in kHz from `/proc/cpuinfo` text (`cpu MHz`), else 2 GHz.
pub(crate) fn tsc_khz_from_cpuinfo(cpuinfo: &str) -> u64 {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("cpu MHz"))
        .and_then(|line| line.split(':').nth(1))
        .and_then(|mhz| mhz.trim().parse::<f64>().ok())
        .filter(|mhz| *mhz > 0.0)
        .map(|mhz| (mhz * 1000.0).round() as u64)
        .unwrap_or(2_000_000)
}

/// Escapes a value for QEMU's `key=value,...` option syntax (a comma is written twice).
fn opt_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Builds the argv (without the binary itself).
pub(crate) fn build_argv(spec: &LaunchSpec) -> Vec<OsString> {
    let mut argv: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| argv.extend(items.iter().map(|s| s.to_string()));
    let dir = &spec.runtime_dir;
    let accel = match spec.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg | Accel::Auto => "tcg",
    };
    // `-accel` and `-M accel=` exclude each other: a TCG cache size needs the `-accel` form.
    let tb_size = spec.tb_size_mb.filter(|_| accel == "tcg");
    let mut machine =
        if tb_size.is_some() { String::from("microvm") } else { format!("microvm,accel={accel}") };
    let backend = match &spec.memory {
        GuestMemory::Anonymous => None,
        GuestMemory::Ram => Some(format!("memory-backend-ram,id=mem,size={}M", spec.memory_mb)),
        GuestMemory::File { path, shared, block } => {
            let share = if *shared { "on" } else { "off" };
            Some(format!(
                "memory-backend-file,id={},size={}M,mem-path={},share={share}",
                block.id(),
                spec.memory_mb,
                opt_path(path)
            ))
        }
    };
    if let Some(backend) = backend {
        machine.push_str(&format!(",memory-backend={}", spec.memory.block().id()));
        push(&["-object", &backend]);
    }
    push(&["-name", &spec.name, "-M", &machine]);
    if let Some(mb) = tb_size {
        push(&["-accel", &format!("tcg,tb-size={mb}")]);
    }
    if spec.accel == Accel::Kvm {
        push(&["-cpu", "host"]);
    }
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    if spec.sandbox {
        // `exec:` migration URIs fork `cat`: snapshot VMs (those with a memory file) must be allowed
        // to spawn. (Pause, snapshots and forks migrate through `fd:`, which spawns nothing.)
        let spawn = if matches!(spec.memory, GuestMemory::File { .. }) { "allow" } else { "deny" };
        let sandbox = format!("on,obsolete=deny,elevateprivileges=deny,spawn={spawn},resourcecontrol=deny");
        push(&["-sandbox", &sandbox]);
    }
    push(&["-smp", &spec.vcpus.to_string(), "-m", &format!("{}M", spec.memory_mb)]);
    if !spec.without_kernel {
        push(&["-kernel", &spec.kernel.to_string_lossy(), "-initrd", &spec.initramfs.to_string_lossy()]);
        push(&["-append", &spec.kernel_args]);
    }
    let console = format!("socket,id=console,path={}", opt_path(&dir.join(CONSOLE_SOCKET)));
    push(&["-chardev", &console, "-serial", "chardev:console"]);
    let qmp = format!("socket,id=qmp,path={}", opt_path(&dir.join(QMP_SOCKET)));
    push(&["-chardev", &qmp, "-mon", "chardev=qmp,mode=control"]);
    let agent = format!("socket,id=agent,path={},server=on,wait=off", opt_path(&dir.join(AGENT_SOCKET)));
    push(&["-device", "virtio-serial-device", "-chardev", &agent]);
    let port = format!("virtserialport,chardev=agent,name={}", firepit_agent::AGENT_PORT_NAME);
    push(&["-device", &port, "-device", "virtio-rng-device"]);
    if let Some(overlay) = &spec.disk {
        // The overlay is private and thrown away with the VM: guest flushes need not reach the
        // host disk (`cache=unsafe`); a snapshot's migration still flushes it before it completes.
        let drive = format!("if=none,id=root,format=qcow2,cache=unsafe,file={}", opt_path(overlay));
        push(&["-drive", &drive, "-device", "virtio-blk-device,drive=root"]);
    }
    if spec.network.is_some() {
        argv.extend(firepit_net::qemu_args(dir));
    }
    if let Some(incoming) = &spec.incoming {
        argv.push("-incoming".into());
        argv.push(incoming.clone());
    }
    argv.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            name: "firepit-vm-1".into(),
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mb: 256,
            kernel: "/img/vmlinuz".into(),
            initramfs: "/img/initramfs.cpio.gz".into(),
            kernel_args: kernel_args(
                2_596_106,
                GuestArgs { root_disk: false, console: true },
                &["firepit.x=1".into()],
            ),
            console: true,
            sandbox: true,
            runtime_dir: "/run/fp/vm-1".into(),
            memory: GuestMemory::Anonymous,
            incoming: None,
            tb_size_mb: None,
            without_kernel: false,
            run_as: None,
            disk: None,
            network: None,
        }
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn value_after<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
        argv.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn a_clone_argv_has_no_kernel_to_keep_in_memory() {
        let argv = strings(&build_argv(&LaunchSpec { without_kernel: true, ..spec() }));
        for flag in ["-kernel", "-initrd", "-append"] {
            assert!(!argv.iter().any(|a| a == flag), "{flag} in {argv:?}");
        }
        assert_eq!(value_after(&argv, "-m"), ["256M"], "the machine itself is unchanged");
    }

    #[test]
    fn tcg_cache_size_moves_the_accelerator_to_dash_accel() {
        let argv = strings(&build_argv(&LaunchSpec { tb_size_mb: Some(16), ..spec() }));
        assert_eq!(value_after(&argv, "-M"), ["microvm"]);
        assert_eq!(value_after(&argv, "-accel"), ["tcg,tb-size=16"]);
        let kvm = strings(&build_argv(&LaunchSpec { tb_size_mb: Some(16), accel: Accel::Kvm, ..spec() }));
        assert_eq!(value_after(&kvm, "-M"), ["microvm,accel=kvm"]);
        assert!(value_after(&kvm, "-accel").is_empty(), "tb-size is a TCG option");
    }

    #[test]
    fn cold_boot_argv_has_microvm_sockets_sandbox_and_tsc_args() {
        let argv = strings(&build_argv(&spec()));
        assert_eq!(value_after(&argv, "-M"), ["microvm,accel=tcg"]);
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            assert!(argv.iter().any(|a| a == flag), "missing {flag}");
        }
        assert_eq!(
            value_after(&argv, "-sandbox"),
            ["on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
        );
        assert_eq!(value_after(&argv, "-smp"), ["2"]);
        assert_eq!(value_after(&argv, "-m"), ["256M"]);
        assert_eq!(
            value_after(&argv, "-append"),
            ["console=ttyS0 panic=-1 reboot=t quiet tsc=reliable tsc_early_khz=2596106 firepit.x=1"]
        );
        assert_eq!(
            value_after(&argv, "-chardev"),
            [
                "socket,id=console,path=/run/fp/vm-1/console.sock",
                "socket,id=qmp,path=/run/fp/vm-1/qmp.sock",
                "socket,id=agent,path=/run/fp/vm-1/agent.sock,server=on,wait=off",
            ]
        );
        assert_eq!(
            value_after(&argv, "-device"),
            ["virtio-serial-device", "virtserialport,chardev=agent,name=firepit.agent", "virtio-rng-device"]
        );
        assert!(value_after(&argv, "-object").is_empty());
        assert!(value_after(&argv, "-incoming").is_empty());
    }

    #[test]
    fn snapshot_clone_argv_maps_the_memory_file_privately_and_waits_for_incoming() {
        let mut spec = spec();
        spec.memory =
            GuestMemory::File { path: "/dev/shm/fp-t1".into(), shared: false, block: RamBlock::Backend };
        spec.incoming = Some("defer".into());
        let argv = strings(&build_argv(&spec));
        assert_eq!(value_after(&argv, "-M"), ["microvm,accel=tcg,memory-backend=mem"]);
        assert_eq!(
            value_after(&argv, "-object"),
            ["memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/fp-t1,share=off"]
        );
        assert_eq!(value_after(&argv, "-incoming"), ["defer"]);
        assert!(value_after(&argv, "-sandbox")[0].contains("spawn=allow"));
    }

    #[test]
    fn a_saved_vm_starts_again_with_the_ram_block_it_was_saved_with() {
        let clone_resumed = strings(&build_argv(&LaunchSpec { memory: GuestMemory::Ram, ..spec() }));
        assert_eq!(value_after(&clone_resumed, "-M"), ["microvm,accel=tcg,memory-backend=mem"]);
        assert_eq!(value_after(&clone_resumed, "-object"), ["memory-backend-ram,id=mem,size=256M"]);
        assert!(value_after(&clone_resumed, "-sandbox")[0].contains("spawn=deny"), "fd: migrations only");
        let memory = GuestMemory::File { path: "/t/memory".into(), shared: true, block: RamBlock::Machine };
        let template_of_cold_boot = strings(&build_argv(&LaunchSpec { memory, ..spec() }));
        assert_eq!(
            value_after(&template_of_cold_boot, "-M"),
            ["microvm,accel=tcg,memory-backend=microvm.ram"]
        );
        assert_eq!(
            value_after(&template_of_cold_boot, "-object"),
            ["memory-backend-file,id=microvm.ram,size=256M,mem-path=/t/memory,share=on"]
        );
    }

    #[test]
    fn no_sandbox_flag_when_unsupported_and_commas_in_paths_are_escaped() {
        let mut spec = spec();
        spec.sandbox = false;
        spec.runtime_dir = "/tmp/a,b".into();
        let argv = strings(&build_argv(&spec));
        assert!(value_after(&argv, "-sandbox").is_empty());
        assert_eq!(value_after(&argv, "-chardev")[0], "socket,id=console,path=/tmp/a,,b/console.sock");
    }

    #[test]
    fn a_root_disk_is_its_overlay_on_virtio_blk_named_on_the_kernel_command_line() {
        let with_disk = LaunchSpec {
            disk: Some("/run/fp/vm-1/disk.qcow2".into()),
            kernel_args: kernel_args(2_000_000, GuestArgs { root_disk: true, console: true }, &[]),
            ..spec()
        };
        let argv = strings(&build_argv(&with_disk));
        assert_eq!(
            value_after(&argv, "-drive"),
            ["if=none,id=root,format=qcow2,cache=unsafe,file=/run/fp/vm-1/disk.qcow2"]
        );
        assert!(value_after(&argv, "-device").contains(&"virtio-blk-device,drive=root"));
        assert!(value_after(&argv, "-append")[0].ends_with(" firepit.root=/dev/vda"));
        assert!(value_after(&strings(&build_argv(&spec())), "-drive").is_empty(), "no disk, no drive");
    }

    #[test]
    fn a_console_nobody_uses_gets_no_guest_shell_and_the_argument_comes_before_the_users() {
        let args =
            |root_disk, console| kernel_args(2_000_000, GuestArgs { root_disk, console }, &["x=1".into()]);
        assert!(args(false, false).ends_with(" firepit.console=off x=1"), "{}", args(false, false));
        assert!(args(true, false).ends_with(" firepit.root=/dev/vda firepit.console=off x=1"));
        assert!(!args(false, true).contains("firepit.console"), "an enabled console is the default");
    }

    #[test]
    fn tsc_khz_comes_from_cpu_mhz_or_defaults_to_2ghz() {
        assert_eq!(tsc_khz_from_cpuinfo("processor : 0\ncpu MHz\t\t: 2596.106\n"), 2_596_106);
        assert_eq!(tsc_khz_from_cpuinfo("processor : 0\n"), 2_000_000);
    }
}
