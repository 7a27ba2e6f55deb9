//! Raw QEMU for `firepit bench net`: the same guest image, machine and devices, a NIC on the same
//! backend (QEMU's user-mode NAT, or passt over `-netdev stream`), but none of firepit: no policy
//! filter, no agent requests. The guest is driven through its serial console (the shell `/init`
//! leaves there), configured with busybox `ip`, and measured with the agent binary's `net-probe`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use firepit_qemu::QmpClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

use crate::ToolError;

/// What the raw VM's NIC is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBackend {
    /// No NIC at all.
    None,
    /// `-netdev user` (libslirp), as firepit uses it but without the filter.
    Slirp,
    /// passt, one process per VM, over `-netdev stream`.
    Passt,
}

impl RawBackend {
    /// `none`, `slirp` or `passt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Slirp => "slirp",
            Self::Passt => "passt",
        }
    }
}

/// The guest address of a raw VM (the same network firepit uses).
pub const GUEST: &str = "100.96.0.16";
const GATEWAY: &str = "100.96.0.1";

/// Everything one raw run shares: QEMU binary, image, accelerator, a private directory.
#[derive(Debug, Clone)]
pub struct RawSetup {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Kernel and initramfs.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// Private directory for sockets, templates and state (removed by the caller).
    pub dir: PathBuf,
}

/// How a raw VM's RAM is set up.
#[derive(Debug, Clone)]
enum Memory {
    Anonymous,
    /// A snapshot template: RAM in this file, shared.
    Template(PathBuf),
    /// A clone: the template's RAM file mapped copy-on-write (its device state comes by migration).
    Clone(PathBuf),
}

/// A running raw QEMU (and its passt).
#[derive(Debug)]
pub struct RawVm {
    qemu: Child,
    passt: Option<Child>,
    console: UnixStream,
    qmp: QmpClient,
    seen: Vec<u8>,
    /// QEMU's pid.
    pub pid: u32,
    /// passt's pid, when it has one.
    pub passt_pid: Option<u32>,
}

fn spawn(program: &Path, args: &[String]) -> Result<Child, ToolError> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; nothing is allocated between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command.spawn().map_err(|e| format!("starting {}: {e}", program.display()))?)
}

async fn accept(listener: &UnixListener, what: &str) -> Result<UnixStream, ToolError> {
    match tokio::time::timeout(Duration::from_secs(60), listener.accept()).await {
        Ok(Ok((stream, _))) => Ok(stream),
        _ => Err(format!("raw qemu did not connect its {what} socket").into()),
    }
}

impl RawVm {
    /// Boots a raw VM with `backend` and waits for the guest's readiness line.
    pub async fn boot(setup: &RawSetup, backend: RawBackend, name: &str) -> Result<Self, ToolError> {
        let mut vm = Self::start(setup, backend, name, Memory::Anonymous).await?;
        vm.read_until(firepit_agent::READY_LINE, Duration::from_secs(180)).await?;
        Ok(vm)
    }

    /// Boots a template VM, saves it (RAM file + device state) and stops it; returns the files.
    pub async fn template(setup: &RawSetup, backend: RawBackend) -> Result<(PathBuf, PathBuf), ToolError> {
        let dir = setup.dir.join(format!("template-{}", backend.as_str()));
        std::fs::create_dir_all(&dir)?;
        let (memory, state) = (dir.join("memory"), dir.join("state"));
        let _ = std::fs::remove_file(&memory); // an earlier backend's run made the bare one
        let mut vm =
            Self::start(setup, backend, &format!("t-{}", backend.as_str()), Memory::Template(memory.clone()))
                .await?;
        vm.read_until(firepit_agent::READY_LINE, Duration::from_secs(180)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await; // let the shell start
        vm.qmp.stop().await?;
        vm.qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
        vm.qmp.migrate(&format!("exec:cat > '{}'", state.display())).await?;
        wait_migration(&vm.qmp).await?;
        vm.shutdown().await;
        Ok((memory, state))
    }

    /// Restores a clone of `template` and returns it with the time from process start until its
    /// shell answered.
    pub async fn restore(
        setup: &RawSetup,
        backend: RawBackend,
        template: &(PathBuf, PathBuf),
        name: &str,
    ) -> Result<(Self, Duration), ToolError> {
        let started = Instant::now();
        let memory = Memory::Clone(template.0.clone());
        let mut vm = Self::start(setup, backend, name, memory).await?;
        vm.qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
        vm.qmp.migrate_incoming(&format!("exec:cat '{}'", template.1.display())).await?;
        wait_migration(&vm.qmp).await?;
        vm.qmp.cont().await?;
        vm.sh("echo restored", Duration::from_secs(60)).await?;
        Ok((vm, started.elapsed()))
    }

    async fn start(
        setup: &RawSetup,
        backend: RawBackend,
        name: &str,
        memory: Memory,
    ) -> Result<Self, ToolError> {
        // Unique per VM: a name may come back (the bare template of each backend's run).
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = setup.dir.join(format!("{name}-{n}"));
        std::fs::create_dir_all(&dir)?;
        let console_path = dir.join("console.sock");
        let qmp_path = dir.join("qmp.sock");
        let console_listener = UnixListener::bind(&console_path)?;
        let qmp_listener = UnixListener::bind(&qmp_path)?;
        let mut passt = None;
        let mut args: Vec<String> = Vec::new();
        let mut machine = format!("microvm,accel={}", setup.accel);
        match &memory {
            Memory::Anonymous => {}
            Memory::Template(file) | Memory::Clone(file) => {
                let share = if matches!(memory, Memory::Template(_)) { "on" } else { "off" };
                machine.push_str(",memory-backend=mem");
                args.extend([
                    "-object".into(),
                    format!("memory-backend-file,id=mem,size=256M,mem-path={},share={share}", file.display()),
                ]);
            }
        }
        args.extend(["-name".into(), name.into(), "-M".into(), machine]);
        args.extend(
            ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-smp", "1", "-m", "256M"]
                .map(String::from),
        );
        if !matches!(memory, Memory::Clone(_)) {
            args.extend([
                "-kernel".into(),
                setup.kernel.display().to_string(),
                "-initrd".into(),
                setup.initramfs.display().to_string(),
            ]);
            args.extend(["-append".into(), setup.cmdline.clone()]);
        }
        args.extend(["-chardev".into(), format!("socket,id=console,path={}", console_path.display())]);
        args.extend(["-serial", "chardev:console", "-chardev"].map(String::from));
        args.push(format!("socket,id=qmp,path={}", qmp_path.display()));
        args.extend(
            ["-mon", "chardev=qmp,mode=control", "-device", "virtio-serial-device", "-chardev"]
                .map(String::from),
        );
        args.push(format!("socket,id=agent,path={},server=on,wait=off", dir.join("agent.sock").display()));
        args.extend([
            "-device".into(),
            format!("virtserialport,chardev=agent,name={}", firepit_agent::AGENT_PORT_NAME),
        ]);
        args.extend(["-device", "virtio-rng-device"].map(String::from));
        match backend {
            RawBackend::None => {}
            RawBackend::Slirp => {
                args.extend(["-netdev".into(), format!("user,id=net0,ipv6=off,net=100.96.0.0/16,host={GATEWAY},dns=100.96.0.2,dhcpstart={GUEST}")]);
            }
            RawBackend::Passt => {
                let passt_dir = dir.join("passt");
                std::fs::create_dir_all(&passt_dir)?;
                // passt drops to `nobody` when started as root: it must be able to bind in here.
                std::os::unix::fs::chown(&passt_dir, Some(65534), Some(65534))?;
                let socket = passt_dir.join("passt.sock");
                let passt_args: Vec<String> = [
                    "-f", "-1", "-q", "-4", "-t", "none", "-u", "none", "-n", "16", "-a", GUEST, "-g",
                    GATEWAY, "-s",
                ]
                .map(String::from)
                .into_iter()
                .chain([socket.display().to_string()])
                .collect();
                passt = Some(spawn(Path::new("passt"), &passt_args)?);
                let deadline = Instant::now() + Duration::from_secs(10);
                while !socket.exists() {
                    if Instant::now() > deadline {
                        return Err("passt did not create its socket within 10 s".into());
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                args.extend([
                    "-netdev".into(),
                    format!("stream,id=net0,server=off,addr.type=unix,addr.path={}", socket.display()),
                ]);
            }
        }
        if backend != RawBackend::None {
            args.extend(["-device", "virtio-net-device,netdev=net0,mac=02:46:50:00:ff:01"].map(String::from));
        }
        if matches!(memory, Memory::Clone(_)) {
            args.extend(["-incoming", "defer"].map(String::from));
        }
        let qemu = spawn(&setup.qemu, &args)?;
        let console = accept(&console_listener, "console").await?;
        let qmp = QmpClient::handshake(accept(&qmp_listener, "qmp").await?, Duration::from_secs(30)).await?;
        let pid = qemu.id().unwrap_or(0);
        let passt_pid = passt.as_ref().and_then(Child::id);
        Ok(Self { qemu, passt, console, qmp, seen: Vec::new(), pid, passt_pid })
    }

    async fn read_until(&mut self, marker: &str, timeout: Duration) -> Result<String, ToolError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(at) = find(&self.seen, marker.as_bytes()) {
                let before = String::from_utf8_lossy(&self.seen[..at]).into_owned();
                self.seen.drain(..at + marker.len());
                return Ok(before);
            }
            match tokio::time::timeout_at(deadline, self.console.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err("raw qemu's console closed".into()),
                Ok(Ok(n)) => self.seen.extend_from_slice(&chunk[..n]),
                Err(_) => return Err(format!("no {marker:?} on the raw console within {timeout:?}").into()),
            }
        }
    }

    /// Runs `command` in the guest's console shell; returns what it printed.
    pub async fn sh(&mut self, command: &str, timeout: Duration) -> Result<String, ToolError> {
        // The shell echoes the input line: the marker is quoted there, whole only in the output.
        self.console.write_all(format!("{command}; echo @@E\"\"ND@@\n").as_bytes()).await?;
        self.read_until("@@END@@", timeout).await
    }

    /// Gives the guest the address firepit would (the raw NIC's guest side).
    pub async fn configure(&mut self) -> Result<(), ToolError> {
        let script = format!(
            "ip link set eth0 up && ip addr add {GUEST}/16 dev eth0 && ip route add default via {GATEWAY}"
        );
        self.sh(&script, Duration::from_secs(60)).await?;
        Ok(())
    }

    /// Quits QEMU (and passt) and reaps them.
    pub async fn shutdown(mut self) {
        let _ = self.qemu.start_kill();
        let _ = self.qemu.wait().await;
        if let Some(mut passt) = self.passt.take() {
            let _ = passt.start_kill();
            let _ = passt.wait().await;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

async fn wait_migration(qmp: &QmpClient) -> Result<(), ToolError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = qmp.query_migrate().await?;
        match info.status.as_deref() {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                return Err(format!("raw migration failed: {:?}", info.error_desc).into());
            }
            _ if Instant::now() > deadline => return Err("raw migration did not complete in 60 s".into()),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
