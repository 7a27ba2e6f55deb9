//! `firepit bench fill`: cold boot and snapshot restore side by side, in one run.
//!
//! One provider serves the same image as two shapes, one per fill strategy, so both are measured
//! on the same machine at the same time of day. Metrics: median time from process start to a ready
//! agent (`cold_boot_ms`, `restore_ms`), PSS of one idle cold VM and of one idle clone with four
//! clones alive, and the time a snapshot pool of depth 16 takes to be full again after 16 releases
//! at once (`refill_16_ms`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit_pool::{Pool, Provider, ShapeKey};
use firepit_qemu::{FillStrategy, ProviderConfig, QemuProvider, VmSpec};

use crate::ToolResult;
use crate::stats::{Report, ms, percentiles};
use firepit::qemu::process_memory_kib;

/// Arguments of `firepit bench fill`.
#[derive(Debug, clap::Args)]
pub struct FillBenchArgs {
    /// The guest image: a firepit image directory, a root disk file (raw ext4 or qcow2) or an
    /// image-store id, as a shape's `image` (default: the default image).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Samples per strategy.
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Depth of the refill measurement (0 skips it).
    #[arg(long, default_value_t = 16)]
    refill_depth: usize,
    /// TCG translation-cache size (MiB) of template and clones (`-accel tcg,tb-size=N`); default:
    /// the provider's default.
    #[arg(long)]
    tb_size_mb: Option<u32>,
}

/// Runs `firepit bench fill`.
pub async fn run(args: FillBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "fill" };
    // Resolved as a daemon shape's `image` is: image directory, disk file or store id.
    let image = tokio::task::spawn_blocking({
        let spec = firepit::ShapeSpec::new("bench", args.image.clone());
        move || firepit::PoolShape::open(&spec)
    })
    .await??
    .vm;
    // A private template directory, so an earlier run's template is neither reused nor left behind.
    let template_dir = PathBuf::from(format!(
        "{}-bench-{}",
        firepit_qemu::default_template_dir().display(),
        std::process::id()
    ));
    let defaults = ProviderConfig::default();
    let provider = QemuProvider::new(ProviderConfig {
        template_dir: template_dir.clone(),
        keep_templates: false,
        snapshot_tb_size_mb: args.tb_size_mb.or(defaults.snapshot_tb_size_mb),
        ..defaults
    })?;
    let result = measure(&args, &report, &image, &provider).await;
    provider.remove_templates();
    drop(provider);
    let _ = std::fs::remove_dir_all(&template_dir);
    result
}

async fn measure(
    args: &FillBenchArgs,
    report: &Report,
    image: &VmSpec,
    provider: &QemuProvider,
) -> ToolResult {
    let mut cold_spec = image.clone();
    (cold_spec.cpus, cold_spec.memory_mb, cold_spec.fill) = (1, 256, FillStrategy::ColdBoot);
    let mut snap_spec = cold_spec.clone();
    snap_spec.fill = FillStrategy::Snapshot;
    let (cold, snap) = (ShapeKey::new("cold"), ShapeKey::new("snapshot"));
    provider.check(&cold, &cold_spec)?;
    provider.check(&snap, &snap_spec)?;

    // The first snapshot create builds the template; it is reported, not counted as a restore.
    let before = Instant::now();
    let first_clone = provider.create(&snap, &snap_spec).await?;
    let tb_size = serde_json::json!({"tb_size_mb": provider.config().snapshot_tb_size_mb});
    report.emit("template_build_ms", ms(before.elapsed()), "ms", tb_size.clone());
    provider.destroy(first_clone).await;

    let samples = args.samples.max(1);
    let (mut cold_times, mut restore_times) = (Vec::new(), Vec::new());
    let mut cold_pss = 0;
    for round in 0..samples {
        let vm = provider.create(&cold, &cold_spec).await?;
        cold_times.push(vm.boot_duration());
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cold_pss = process_memory_kib(vm.pid())?.1;
        }
        provider.destroy(vm).await;
        let vm = provider.create(&snap, &snap_spec).await?;
        restore_times.push(vm.boot_duration());
        provider.destroy(vm).await;
    }
    let (cold_p50, _) = percentiles(&mut cold_times);
    let (restore_p50, _) = percentiles(&mut restore_times);
    let speedup = cold_p50.as_secs_f64() / restore_p50.as_secs_f64().max(1e-9);
    report.emit("cold_boot_ms", ms(cold_p50), "ms", serde_json::json!({"samples": samples}));
    report.emit(
        "restore_ms",
        ms(restore_p50),
        "ms",
        serde_json::json!({"samples": samples, "speedup": speedup}),
    );

    // Four clones alive, idle for a moment: PSS of one of them.
    let mut clones = Vec::new();
    for _ in 0..4 {
        clones.push(provider.create(&snap, &snap_spec).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clone_pss = match clones.first() {
        Some(vm) => process_memory_kib(vm.pid())?.1,
        None => 0,
    };
    for vm in clones {
        provider.destroy(vm).await;
    }
    report.emit("cold_pss_kib", cold_pss as f64, "KiB", serde_json::json!({}));
    let ratio = clone_pss as f64 / (cold_pss as f64).max(1.0);
    report.emit(
        "clone_pss_kib",
        clone_pss as f64,
        "KiB",
        serde_json::json!({"ratio_to_cold": ratio, "clones_alive": 4, "tb_size_mb": provider.config().snapshot_tb_size_mb}),
    );

    report.emit("restore_speedup", speedup, "x", serde_json::json!({"goal_min": 10}));
    report.emit("clone_pss_ratio", ratio, "ratio", serde_json::json!({"goal_max": 0.2}));

    if args.refill_depth > 0 {
        let refill = refill(provider.clone(), (snap, snap_spec), args.refill_depth).await?;
        report.emit("refill_16_ms", ms(refill), "ms", serde_json::json!({"depth": args.refill_depth}));
    }
    Ok(ExitCode::SUCCESS)
}

/// Time for a snapshot pool of `depth` to be full again after `depth` releases at once.
async fn refill(
    provider: QemuProvider,
    (shape, spec): (ShapeKey, VmSpec),
    depth: usize,
) -> Result<Duration, Box<dyn std::error::Error + Send + Sync>> {
    let pool = Pool::builder(provider)
        .shape(shape, spec)
        .depth(depth..=depth)
        .max_parallel_fills(4)
        .warmup_timeout(Duration::from_secs(600))
        .build()
        .await?;
    let mut leases = Vec::with_capacity(depth);
    for _ in 0..depth {
        leases.push(pool.try_reserve()?);
    }
    let before = Instant::now();
    drop(leases);
    while pool.available_now() < depth {
        if before.elapsed() > Duration::from_secs(600) {
            return Err(
                format!("the pool did not refill to {depth} within 600 s: {:?}", pool.status()).into()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = before.elapsed();
    pool.shutdown().await;
    Ok(took)
}
