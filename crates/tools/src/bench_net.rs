//! `firepit bench net`: what networking costs, next to raw QEMU with the same backend, in one run.
//!
//! Measured for firepit (user-mode NAT behind firepit's policy filter, snapshot clones) and for raw
//! QEMU (the same image and devices, a NIC on QEMU's user-mode NAT, and on passt when it is
//! installed; no filter, driven through the serial console):
//! - `throughput_mb_s`: guest → outside TCP, the guest writing `--megabytes` to a server in a
//!   network namespace the bench makes (median of 3), with `host_cpu_ms_per_mb` (QEMU, plus passt
//!   or the firepit process that runs the filter);
//! - `connect_rtt_ms` p50/p99: `--connects` TCP connects from the guest to that server;
//! - `restore_ms` with and without a NIC (`--samples` each, alternating) and `nic_restore_added_ms`,
//!   the difference: firepit's includes the per-clone network step (MAC, address, route), raw
//!   QEMU's ends when the restored guest's shell answers.
//!
//! The guest side of every measurement is `firepit-agent net-probe` (in the image). The server
//! side is a socket bound inside a `firepit_testnet::TestNet` (a veth pair on a /30 of
//! 198.18.0.0/15, gone with the bench): the NAT, in QEMU or passt on the host, reaches it through
//! the host's routing like a remote server, and no traffic goes to the machine's own address or
//! off the machine. Needs root (the namespace) and iproute2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use firepit_agent::ExecRequest;
use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{FillStrategy, ImagePaths, NetworkSpec, ProviderConfig, QemuProvider, QemuVm, VmSpec};
use firepit_testnet::TestNet;
use tokio::io::AsyncReadExt;

use crate::bench_net_raw::{RawBackend, RawSetup, RawVm};
use crate::procfs::{cpu_ticks, ticks_per_second};
use crate::stats::{Report, ms, percentiles};
use crate::{ToolError, ToolResult};

/// Arguments of `firepit bench net`.
#[derive(Debug, clap::Args)]
pub struct NetBenchArgs {
    /// The guest image directory (default: where `firepit image build` writes it).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Restores measured per variant (with and without a NIC).
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// MiB the guest sends per throughput sample.
    #[arg(long, default_value_t = 32)]
    megabytes: u64,
    /// TCP connects for the round-trip percentiles.
    #[arg(long, default_value_t = 200)]
    connects: u64,
    /// Leave out passt even when it is installed.
    #[arg(long)]
    no_passt: bool,
}

/// A TCP server inside `net` that reads every connection to its end.
async fn sink(net: &TestNet) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ToolError> {
    let listener = tokio::net::TcpListener::from_std(net.listen_tcp(0)?)?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    Ok((addr, task))
}

/// `sent BYTES us N` → MB/s.
fn throughput(output: &str) -> Option<f64> {
    let fields: Vec<&str> = output.lines().find(|l| l.starts_with("sent "))?.split_whitespace().collect();
    let (bytes, us): (f64, f64) = (fields.get(1)?.parse().ok()?, fields.get(3)?.parse().ok()?);
    Some(bytes / 1e6 / (us / 1e6).max(1e-9))
}

/// `connect_us N` lines → durations.
fn connects(output: &str) -> Vec<Duration> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("connect_us "))
        .filter_map(|n| n.trim().parse().ok())
        .map(Duration::from_micros)
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// What one setup measured.
struct Figures {
    throughput: f64,
    cpu_ms_per_mb: f64,
    /// The part of it spent outside QEMU (passt, or the firepit process running the filter).
    helper_cpu_ms_per_mb: f64,
    rtt: Vec<Duration>,
}

fn emit(report: &Report, setup: &str, backend: &str, figures: &mut Figures) {
    let tags = serde_json::json!({"setup": setup, "backend": backend});
    report.emit("throughput_mb_s", figures.throughput, "MB/s", tags.clone());
    let split =
        serde_json::json!({"setup": setup, "backend": backend, "outside_qemu": figures.helper_cpu_ms_per_mb});
    report.emit("host_cpu_ms_per_mb", figures.cpu_ms_per_mb, "ms/MB", split);
    let samples = figures.rtt.len();
    let (p50, p99) = percentiles(&mut figures.rtt);
    report.emit(
        "connect_rtt_p50_ms",
        ms(p50),
        "ms",
        serde_json::json!({"setup": setup, "backend": backend, "samples": samples}),
    );
    report.emit("connect_rtt_p99_ms", ms(p99), "ms", tags);
}

/// Runs `firepit bench net`.
pub async fn run(args: NetBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "net" };
    let image = firepit_image::Image::open(&args.image)?;
    let net = TestNet::create()?;
    let (server, server_task) = sink(&net).await?;
    let scratch = std::env::temp_dir().join(format!("firepit-bench-net-{}", std::process::id()));
    let template_dir = PathBuf::from(format!(
        "{}-bench-net-{}",
        firepit_qemu::default_template_dir().display(),
        std::process::id()
    ));
    let provider = QemuProvider::new(ProviderConfig {
        template_dir: template_dir.clone(),
        keep_templates: false,
        ..Default::default()
    })?;
    let result = async {
        firepit_side(&args, &report, &image, &provider, server).await?;
        let setup = RawSetup {
            qemu: provider.config().qemu_binary.clone(),
            kernel: image.kernel().to_path_buf(),
            initramfs: image.initramfs().to_path_buf(),
            cmdline: image.manifest().kernel_cmdline.clone(),
            accel: provider.accel().await.as_str().to_owned(),
            dir: scratch.clone(),
        };
        std::fs::create_dir_all(&scratch)?;
        let passt = !args.no_passt && which("passt");
        let backends: &[RawBackend] =
            if passt { &[RawBackend::Slirp, RawBackend::Passt] } else { &[RawBackend::Slirp] };
        for backend in backends {
            raw_side(&args, &report, &setup, *backend, server).await?;
        }
        if !passt {
            report.emit(
                "passt_skipped",
                1.0,
                "",
                serde_json::json!({"why": "passt not installed (apt-get install passt) or --no-passt"}),
            );
        }
        Ok::<_, ToolError>(())
    }
    .await;
    server_task.abort();
    drop(net);
    provider.remove_templates();
    drop(provider);
    let _ = std::fs::remove_dir_all(&template_dir);
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| ExitCode::SUCCESS)
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

async fn guest(vm: &QemuVm, argv: &[String]) -> Result<String, ToolError> {
    let request = ExecRequest { argv: argv.to_vec(), timeout_ms: 600_000, ..Default::default() };
    let out = vm.exec_request(request).await?;
    if out.exit_code != Some(0) {
        return Err(format!("{argv:?} failed in the guest: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(out.stdout_lossy().to_string())
}

fn probe(mode: &str, server: SocketAddr, n: u64) -> Vec<String> {
    ["/sbin/firepit-agent", "net-probe", mode]
        .iter()
        .map(|s| s.to_string())
        .chain([server.to_string(), n.to_string()])
        .collect()
}

async fn firepit_side(
    args: &NetBenchArgs,
    report: &Report,
    image: &firepit_image::Image,
    provider: &QemuProvider,
    server: SocketAddr,
) -> Result<(), ToolError> {
    let mut bare = VmSpec::new(image.id(), ImagePaths::new(image.kernel(), image.initramfs()));
    bare.fill = FillStrategy::Snapshot;
    let mut with_net = bare.clone();
    let egress = serde_json::from_str(&format!(r#"["{server}"]"#))?;
    with_net.network = NetworkSpec { egress, ..NetworkSpec::nat() };
    let (nat, none) = ((ShapeKey::new("nat"), with_net), (ShapeKey::new("none"), bare));
    // First creates build the templates; not counted.
    for (shape, spec) in [&nat, &none] {
        let vm = provider.create(shape, spec).await?;
        provider.destroy(vm).await;
    }
    // Alternating which goes first: the first restore after a pause tends to be slower.
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..args.samples.max(1) {
        let mut order = [(&nat, 0), (&none, 1)];
        if i % 2 == 1 {
            order.reverse();
        }
        for ((shape, spec), which) in order {
            let vm = provider.create(shape, spec).await?;
            times[which].push(vm.boot_duration());
            provider.destroy(vm).await;
        }
    }
    let [with_nic, without] = times;
    emit_restores(report, "firepit", "slirp+filter", with_nic, without);

    let vm = provider.create(&nat.0, &nat.1).await?;
    let bytes = args.megabytes * 1024 * 1024;
    let (mut rates, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let before = (cpu_ticks(vm.pid())?, cpu_ticks(std::process::id())?);
        let out = guest(&vm, &probe("send", server, bytes)).await?;
        let used = (
            cpu_ticks(vm.pid())?.saturating_sub(before.0),
            cpu_ticks(std::process::id())?.saturating_sub(before.1),
        );
        rates.push(throughput(&out).ok_or_else(|| format!("no throughput in {out:?}"))?);
        cpu.push(per_mb(used, bytes));
    }
    let rtt = connects(&guest(&vm, &probe("connect", server, args.connects)).await?);
    provider.destroy(vm).await;
    emit(report, "firepit", "slirp+filter", &mut figures(rates, cpu, rtt));
    Ok(())
}

/// CPU ms per MB of `(qemu, helper)` ticks for `bytes`.
fn per_mb((qemu, helper): (u64, u64), bytes: u64) -> (f64, f64) {
    let ms = |ticks: u64| ticks as f64 / ticks_per_second() * 1e3 / (bytes as f64 / 1e6);
    (ms(qemu + helper), ms(helper))
}

fn figures(rates: Vec<f64>, cpu: Vec<(f64, f64)>, rtt: Vec<Duration>) -> Figures {
    let total = median(cpu.iter().map(|c| c.0).collect());
    let helper = median(cpu.iter().map(|c| c.1).collect());
    Figures { throughput: median(rates), cpu_ms_per_mb: total, helper_cpu_ms_per_mb: helper, rtt }
}

fn emit_restores(
    report: &Report,
    setup: &str,
    backend: &str,
    mut with_nic: Vec<Duration>,
    mut without: Vec<Duration>,
) {
    let samples = with_nic.len();
    let (nic, _) = percentiles(&mut with_nic);
    let (bare, _) = percentiles(&mut without);
    let tags =
        |nic: &str| serde_json::json!({"setup": setup, "backend": backend, "nic": nic, "samples": samples});
    report.emit("restore_ms", ms(nic), "ms", tags("yes"));
    report.emit("restore_ms", ms(bare), "ms", tags("no"));
    report.emit("nic_restore_added_ms", ms(nic) - ms(bare), "ms", tags("yes"));
}

async fn raw_side(
    args: &NetBenchArgs,
    report: &Report,
    setup: &RawSetup,
    backend: RawBackend,
    server: SocketAddr,
) -> Result<(), ToolError> {
    let name = backend.as_str();
    let mut vm = RawVm::boot(setup, backend, &format!("cold-{name}")).await?;
    vm.configure().await?;
    let bytes = args.megabytes * 1024 * 1024;
    let (mut rates, mut cpu) = (Vec::new(), Vec::new());
    let ticks = |vm: &RawVm| -> Result<(u64, u64), ToolError> {
        Ok((cpu_ticks(vm.pid)?, vm.passt_pid.map(cpu_ticks).transpose()?.unwrap_or(0)))
    };
    let long = Duration::from_secs(600);
    for _ in 0..3 {
        let before = ticks(&vm)?;
        let out = vm.sh(&probe("send", server, bytes).join(" "), long).await?;
        let after = ticks(&vm)?;
        let used = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
        rates.push(throughput(&out).ok_or_else(|| format!("no throughput in {out:?}"))?);
        cpu.push(per_mb(used, bytes));
    }
    let rtt = connects(&vm.sh(&probe("connect", server, args.connects).join(" "), long).await?);
    vm.shutdown().await;
    emit(report, "raw-qemu", name, &mut figures(rates, cpu, rtt));

    let with_template = RawVm::template(setup, backend).await?;
    let bare_template = RawVm::template(setup, RawBackend::None).await?;
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..args.samples.max(1) {
        let mut order = [(&with_template, backend, 0), (&bare_template, RawBackend::None, 1)];
        if i % 2 == 1 {
            order.reverse();
        }
        for (template, kind, which) in order {
            let (vm, took) =
                RawVm::restore(setup, kind, template, &format!("clone-{name}-{}", kind.as_str())).await?;
            times[which].push(took);
            vm.shutdown().await;
        }
    }
    let [with_nic, without] = times;
    emit_restores(report, "raw-qemu", name, with_nic, without);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_parsed() {
        assert_eq!(throughput("sent 2000000 us 1000000\n"), Some(2.0));
        assert_eq!(throughput("nothing"), None);
        let text = "$ probe\r\nconnect_us 150\r\nconnect_us 250\r\nfailed 0\r\n";
        assert_eq!(connects(text), [Duration::from_micros(150), Duration::from_micros(250)]);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
