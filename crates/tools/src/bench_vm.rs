//! `firepit bench vm`: one VM's numbers: cold boot, reserve → first console reply, exec round
//! trip, memory and idle CPU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit::qemu::process_memory_kib;
use firepit::{Firepit, VmConfig};
use firepit_pool::Provider;

use crate::ToolResult;
use crate::procfs::{cpu_ticks, ticks_per_second};
use crate::stats::{Report, ms, percentiles, round};

/// Arguments of `firepit bench vm`.
#[derive(Debug, clap::Args)]
pub struct VmBenchArgs {
    /// The guest image directory (default: where `firepit image build` writes it).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per line (else a human-readable line per metric).
    #[arg(long)]
    json: bool,
    /// Cold boots to measure (run one after another).
    #[arg(long, default_value_t = 3)]
    boots: usize,
    /// Exec round trips to measure.
    #[arg(long, default_value_t = 200)]
    execs: usize,
    /// Seconds over which the idle VM's host CPU use is measured.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
}

/// Runs `firepit bench vm`.
pub async fn run(args: VmBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "vm" };
    let image = firepit::image::Image::open(&args.image)?;
    let config = VmConfig::from_image(&image);

    // Cold boots, one at a time, straight from the provider: process start → agent ready.
    let provider = firepit::qemu::QemuProvider::new(firepit::qemu::ProviderConfig::default())?;
    let mut spec = firepit::qemu::VmSpec::new(
        image.id(),
        firepit::qemu::ImagePaths::new(image.kernel(), image.initramfs()),
    );
    (spec.cpus, spec.memory_mb, spec.fill) = (1, 256, firepit::FillStrategy::ColdBoot);
    let shape = firepit::ShapeKey::new("cold");
    let mut boots = Vec::with_capacity(args.boots);
    let mut accel = String::new();
    for _ in 0..args.boots.max(1) {
        let before = Instant::now();
        let vm = provider.create(&shape, &spec).await?;
        boots.push(before.elapsed());
        accel = vm.accel().as_str().to_owned();
        provider.destroy(vm).await;
    }
    let (p50, _) = percentiles(&mut boots);
    report.emit("cold_boot_ms", ms(p50), "ms", serde_json::json!({"samples": boots.len(), "accel": accel}));

    // A warm pool: reserve → first console reply, exec round trips, memory and idle CPU of one VM.
    let pool = Firepit::pool(config).console_enabled().build(2).await?;
    let before = Instant::now();
    let vm = pool.reserve().await?;
    let reserve = before.elapsed();
    let console = vm.console().await?;
    console.send("echo bench-$((40+2))\n").await?;
    console.read_until("bench-42").await?;
    let first_reply = before.elapsed();
    report.emit("reserve_us", reserve.as_secs_f64() * 1e6, "us", serde_json::json!({}));
    report.emit("reserve_to_console_reply_ms", ms(first_reply), "ms", serde_json::json!({}));

    let mut execs = Vec::with_capacity(args.execs);
    for _ in 0..args.execs.max(1) {
        let before = Instant::now();
        let out = vm.exec(["true"]).await?;
        execs.push(before.elapsed());
        if !out.success() {
            return Err(format!("`true` failed in the guest: {out:?}").into());
        }
    }
    let (p50, p99) = percentiles(&mut execs);
    report.emit(
        "exec_rtt_ms",
        ms(p50),
        "ms",
        serde_json::json!({"p99_ms": round(ms(p99)), "samples": execs.len()}),
    );

    let idle = pool.try_reserve()?;
    let pid = idle.pid();
    let (rss, pss) = process_memory_kib(pid)?;
    report.emit("idle_vm_rss_kib", rss as f64, "KiB", serde_json::json!({"pss_kib": pss}));
    let ticks_before = cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds.max(1))).await;
    let ticks = cpu_ticks(pid)?.saturating_sub(ticks_before);
    let cpu_percent = ticks as f64 / ticks_per_second() / args.idle_seconds.max(1) as f64 * 100.0;
    report.emit("idle_vm_cpu_percent", cpu_percent, "%", serde_json::json!({"seconds": args.idle_seconds}));

    drop((vm, idle));
    pool.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
