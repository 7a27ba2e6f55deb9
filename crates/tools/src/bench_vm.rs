//! `firepit bench vm`: one shape's numbers on real VMs: cold boot, reserve → first console reply,
//! exec round trip, reserve → first exec on fresh VMs (with and without refills competing),
//! memory, and what idle VMs cost in CPU.
//!
//! The pool is built with the facade (`Firepit::pool`, its defaults: snapshot fill, agent ping
//! before hand-out) on a private runtime directory, so the bench finds its own QEMU processes in
//! /proc. Idle CPU is measured on the VMs *in the pool* (ready, not leased: what a pool that pauses
//! idle VMs saves) and, side by side in the same window, on one leased VM left idle.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit::qemu::{ProviderConfig, process_memory_kib};
use firepit::{Firepit, VmConfig, VmPool};
use firepit_pool::Provider;

use crate::pool_wait::{run_true, wait_quiet};
use crate::procfs::{HostCpu, cpu_ticks_delta, cpu_ticks_of, host_cpus, qemu_under, ticks_per_second};
use crate::scratch::ScratchDir;
use crate::stats::{Report, ms, percentiles, round};
use crate::{ToolError, ToolResult};

/// How long the pool may take to be full and quiet again.
const REFILL_DEADLINE: Duration = Duration::from_secs(300);

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
    /// Seconds over which the idle VMs' host CPU use is measured.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Ready VMs the pool keeps (at least 2 for the "refilling" samples).
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Reserve → first exec samples, each on a fresh VM (each costs two VM fills).
    #[arg(long, default_value_t = 10)]
    samples: usize,
}

/// Runs `firepit bench vm`.
pub async fn run(args: VmBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "vm" };
    let image = firepit::image::Image::open(&args.image)?;
    cold_boots(&args, &report, &image).await?;

    let runtime = ScratchDir::create(&std::env::temp_dir(), "bench-vm")?;
    let provider = ProviderConfig { runtime_dir: runtime.path().to_owned(), ..ProviderConfig::default() };
    let depth = args.depth.max(1);
    let pool = Firepit::pool(VmConfig::from_image(&image))
        .console_enabled()
        .provider_config(provider)
        .build(depth)
        .await?;
    let result = warm_pool(&args, &report, &pool, &runtime, depth).await;
    pool.shutdown().await;
    result
}

/// Cold boots, one at a time, straight from the provider: process start → agent ready.
async fn cold_boots(
    args: &VmBenchArgs,
    report: &Report,
    image: &firepit::image::Image,
) -> Result<(), ToolError> {
    let provider = firepit::qemu::QemuProvider::new(ProviderConfig::default())?;
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
    Ok(())
}

async fn warm_pool(
    args: &VmBenchArgs,
    report: &Report,
    pool: &VmPool,
    runtime: &ScratchDir,
    depth: usize,
) -> ToolResult {
    // Reserve → first console reply, then exec round trips on that VM.
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
        run_true(&vm).await?;
        execs.push(before.elapsed());
    }
    let (p50, p99) = percentiles(&mut execs);
    report.emit(
        "exec_rtt_ms",
        ms(p50),
        "ms",
        serde_json::json!({"p99_ms": round(ms(p99)), "samples": execs.len()}),
    );
    drop(vm);

    first_execs(args, report, pool, depth).await?;
    idle(args, report, pool, runtime, depth).await?;
    Ok(ExitCode::SUCCESS)
}

/// Reserve → first `true` on fresh VMs: once with the pool full and quiet, once right after a
/// release, while the pool refills (a restore or boot competing for the CPU).
async fn first_execs(
    args: &VmBenchArgs,
    report: &Report,
    pool: &VmPool,
    depth: usize,
) -> Result<(), ToolError> {
    let refilling = depth >= 2;
    let (mut quiet_reserve, mut quiet_first) = (Vec::new(), Vec::new());
    let (mut busy_reserve, mut busy_first) = (Vec::new(), Vec::new());
    for _ in 0..args.samples.max(1) {
        wait_quiet(pool, depth, REFILL_DEADLINE).await?;
        let (reserve, first) = reserve_and_first_exec(pool).await?;
        quiet_reserve.push(reserve);
        quiet_first.push(first);
        // The VM just dropped is being destroyed and its replacement filled: time the next one now.
        if refilling {
            let (reserve, first) = reserve_and_first_exec(pool).await?;
            busy_reserve.push(reserve);
            busy_first.push(first);
        }
    }
    let us = |samples: &mut Vec<Duration>| {
        let (p50, p99) = percentiles(samples);
        (p50.as_secs_f64() * 1e6, round(p99.as_secs_f64() * 1e6))
    };
    let fields = serde_json::json!({"depth": depth, "refills": "none"});
    let (p50, p99) = us(&mut quiet_reserve);
    report.emit(
        "reserve_quiet_us",
        p50,
        "us",
        serde_json::json!({"p99_us": p99, "samples": quiet_reserve.len(), "depth": depth}),
    );
    report.latency("reserve_to_first_exec_ms", &mut quiet_first, fields);
    if refilling {
        let (p50, p99) = us(&mut busy_reserve);
        report.emit(
            "reserve_refilling_us",
            p50,
            "us",
            serde_json::json!({"p99_us": p99, "samples": busy_reserve.len(), "depth": depth}),
        );
        let fields = serde_json::json!({"depth": depth, "refills": "competing"});
        report.latency("reserve_to_first_exec_refilling_ms", &mut busy_first, fields);
    }
    Ok(())
}

/// `reserve()` (with the pool's hand-out check) and then `true` through the agent; returns the
/// time to the VM in hand and to the exec's answer, both from the reserve call. The VM is dropped.
async fn reserve_and_first_exec(pool: &VmPool) -> Result<(Duration, Duration), ToolError> {
    let before = Instant::now();
    let vm = pool.reserve().await?;
    let reserved = before.elapsed();
    run_true(&vm).await?;
    Ok((reserved, before.elapsed()))
}

/// CPU and memory of idle VMs: the pool's ready ones, and one leased VM nobody uses.
async fn idle(
    args: &VmBenchArgs,
    report: &Report,
    pool: &VmPool,
    runtime: &ScratchDir,
    depth: usize,
) -> Result<(), ToolError> {
    wait_quiet(pool, depth, REFILL_DEADLINE).await?;
    let leased = pool.try_reserve()?;
    wait_quiet(pool, depth, REFILL_DEADLINE).await?;
    let leased_pid = leased.pid();
    let all = qemu_under(runtime.path());
    let pooled: Vec<_> = all.iter().copied().filter(|p| p.pid != leased_pid).collect();
    let leased_process: Vec<_> = all.iter().copied().filter(|p| p.pid == leased_pid).collect();
    if let Some(first) = pooled.first() {
        let (rss, pss) = process_memory_kib(first.pid)?;
        report.emit(
            "idle_vm_rss_kib",
            rss as f64,
            "KiB",
            serde_json::json!({"pss_kib": pss, "vm": "pooled"}),
        );
    }

    let seconds = args.idle_seconds.max(1);
    let (host_before, pooled_before, leased_before) =
        (HostCpu::now()?, cpu_ticks_of(&pooled), cpu_ticks_of(&leased_process));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (host_after, pooled_after, leased_after) =
        (HostCpu::now()?, cpu_ticks_of(&pooled), cpu_ticks_of(&leased_process));
    let percent_of_core = |ticks: u64| ticks as f64 / ticks_per_second() / seconds as f64 * 100.0;
    let (pooled_ticks, vms) = cpu_ticks_delta(&pooled_before, &pooled_after);
    let (leased_ticks, _) = cpu_ticks_delta(&leased_before, &leased_after);
    let pool_total = percent_of_core(pooled_ticks);
    let host = host_after.percent_since(host_before);
    report.emit(
        "idle_vm_cpu_percent",
        pool_total / vms.max(1) as f64,
        "%",
        serde_json::json!({
            "seconds": seconds, "vm": "pooled", "vms": vms, "pool_total_percent_of_core": round(pool_total),
            "host_percent": round(host), "host_percent_of_core": round(host * host_cpus() as f64),
        }),
    );
    report.emit(
        "idle_leased_vm_cpu_percent",
        percent_of_core(leased_ticks),
        "%",
        serde_json::json!({"seconds": seconds, "vm": "leased"}),
    );
    drop(leased);
    Ok(())
}
