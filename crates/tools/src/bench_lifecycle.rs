//! `firepit bench lifecycle`: pause, resume, snapshot and fork of a running VM, per guest size.
//!
//! For each size (256 MiB and 1 GiB by default) one lease — a snapshot clone, as a pool hands
//! them out — gets a workload that dirties `--dirty-mb` of guest memory (a file of random bytes in
//! its RAM root) and a process that keeps counting. Then, `--samples` times each, side by side in
//! one run:
//! - `pause_ms`: call → the state is on disk and QEMU has exited; `paused_disk_mb` what it takes;
//!   `pause_s_per_gib_touched` the pause time per GiB of state written (goal ≤ 1 s);
//!   `paused_qemu_processes` QEMU processes left of the paused VM (goal 0: no CPU, no RAM);
//! - `resume_ms`: call → the answer of the first exec in the resumed VM (goal p50 ≤ 300 ms at
//!   256 MiB);
//! - `snapshot_ms`: call → the snapshot is on disk and the VM runs again;
//! - `restore_from_snapshot_ms`: call → first exec of a VM started from that snapshot;
//! - `fork_ms` for count 1 and 8: call → every fork answered an exec (goal ≤ 2 s for 8);
//! - references, measured the same way (call → first exec) in the same run: `cold_boot_ms` (a VM
//!   booted from its kernel) and `snapshot_clone_ms` (a clone of the shape's template, what a pool
//!   hands out).
//!
//! Saved VMs go under `--state-dir` (default: the system's temporary directory, which must be on
//! disk, not tmpfs, to measure what a daemon's `state_dir` costs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{FillStrategy, ProviderConfig, QemuProvider, QemuVm, VmSpec};

use crate::ToolResult;
use crate::scratch::ScratchDir;
use crate::stats::{Report, percentiles};

/// Arguments of `firepit bench lifecycle`.
#[derive(Debug, clap::Args)]
pub struct LifecycleBenchArgs {
    /// The guest image, as a shape's `image` (default: the default image).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Samples per measurement.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Guest sizes to measure, MiB.
    #[arg(long, value_delimiter = ',', default_values_t = [256u64, 1024])]
    memory_mb: Vec<u64>,
    /// Guest memory the workload dirties before the measurements, MiB.
    #[arg(long, default_value_t = 100)]
    dirty_mb: u64,
    /// Where saved VMs go (on disk, as a daemon's state directory).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    state_dir: PathBuf,
}

/// Runs `firepit bench lifecycle`.
pub async fn run(args: LifecycleBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "lifecycle" };
    let image = tokio::task::spawn_blocking({
        let spec = firepit::ShapeSpec::new("bench", args.image.clone());
        move || firepit::PoolShape::open(&spec)
    })
    .await??
    .vm;
    let scratch = ScratchDir::create(&std::env::temp_dir(), "bench-lifecycle-run")?;
    let templates = ScratchDir::create(std::path::Path::new("/dev/shm"), "bench-lifecycle-templates")?;
    let saves = ScratchDir::create(&args.state_dir, "bench-lifecycle-state")?;
    let provider = QemuProvider::new(ProviderConfig {
        runtime_dir: scratch.path().join("run"),
        template_dir: templates.path().join("t"),
        keep_templates: false,
        ..ProviderConfig::default()
    })?;
    for memory_mb in &args.memory_mb {
        let mut spec = image.clone();
        (spec.cpus, spec.memory_mb, spec.fill) = (1, *memory_mb, FillStrategy::Snapshot);
        measure(&args, &report, &provider, (ShapeKey::new(format!("m{memory_mb}")), spec), saves.path())
            .await?;
    }
    provider.remove_templates();
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    args: &LifecycleBenchArgs,
    report: &Report,
    provider: &QemuProvider,
    (key, spec): (ShapeKey, VmSpec),
    saves: &std::path::Path,
) -> ToolResult {
    let memory_mb = spec.memory_mb;
    let size = serde_json::json!({"memory_mb": memory_mb, "dirty_mb": args.dirty_mb});
    let with = |extra: serde_json::Value| {
        let mut fields = size.clone();
        if let (Some(fields), serde_json::Value::Object(extra)) = (fields.as_object_mut(), extra) {
            fields.extend(extra);
        }
        fields
    };
    references(report, provider, (&key, &spec), args.samples.max(1), &with).await?;
    let mut vm = provider.create(&key, &spec).await?;
    let dirty = format!(
        "dd if=/dev/urandom of=/root/dirty bs=1M count={} 2>/dev/null; \
         (i=0; while true; do i=$((i+1)); echo $i > /root/count; sleep 1; done) >/dev/null 2>&1 &",
        args.dirty_mb
    );
    exec_ok(&vm, &["sh", "-c", &dirty]).await?;
    let samples = args.samples.max(1);
    let (mut pauses, mut resumes, mut per_gib, mut disk_mb) = (Vec::new(), Vec::new(), Vec::new(), 0.0);
    let mut left_running = 0;
    for round in 0..samples {
        let dir = saves.join(format!("paused-{memory_mb}-{round}"));
        let pid = vm.pid();
        let started = Instant::now();
        let paused = provider.pause_to_disk(&vm, &dir).await?;
        let took = started.elapsed();
        pauses.push(took);
        per_gib.push(Duration::from_secs_f64(
            took.as_secs_f64() / (paused.state_bytes() as f64 / (1u64 << 30) as f64),
        ));
        disk_mb = paused.total_bytes() as f64 / (1u64 << 20) as f64;
        provider.destroy(vm).await;
        left_running += usize::from(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let started = Instant::now();
        vm = provider.resume_saved(&paused).await?;
        exec_ok(&vm, &["true"]).await?;
        resumes.push(started.elapsed());
    }
    report.latency("pause_ms", &mut pauses, with(serde_json::json!({})));
    report.emit("paused_disk_mb", disk_mb, "MiB", with(serde_json::json!({})));
    let (per_gib_p50, _) = percentiles(&mut per_gib);
    report.emit(
        "pause_s_per_gib_touched",
        per_gib_p50.as_secs_f64(),
        "s",
        with(serde_json::json!({"goal_max": 1.0})),
    );
    report.emit(
        "paused_qemu_processes",
        left_running as f64,
        "processes",
        with(serde_json::json!({"goal_max": 0})),
    );
    let goal =
        if memory_mb <= 256 { serde_json::json!({"goal_p50_max_ms": 300}) } else { serde_json::json!({}) };
    report.latency("resume_ms", &mut resumes, with(goal));

    let (mut snapshots, mut restores) = (Vec::new(), Vec::new());
    for round in 0..samples {
        let dir = saves.join(format!("snapshot-{memory_mb}-{round}"));
        let started = Instant::now();
        let snapshot = provider.snapshot(&vm, &dir).await?;
        snapshots.push(started.elapsed());
        let started = Instant::now();
        let restored = provider.start_from_snapshot(&snapshot).await?;
        exec_ok(&restored, &["true"]).await?;
        restores.push(started.elapsed());
        provider.destroy(restored).await;
        snapshot.remove()?;
    }
    report.latency("snapshot_ms", &mut snapshots, with(serde_json::json!({})));
    report.latency("restore_from_snapshot_ms", &mut restores, with(serde_json::json!({})));

    for count in [1usize, 8] {
        let mut forks_took = Vec::new();
        for _ in 0..samples.min(3) {
            let started = Instant::now();
            let forks = provider.fork(&vm, count).await?;
            let mut alive = Vec::new();
            for fork in forks {
                let fork = fork?;
                exec_ok(&fork, &["true"]).await?;
                alive.push(fork);
            }
            forks_took.push(started.elapsed());
            for fork in alive {
                provider.destroy(fork).await;
            }
        }
        let goal = if count == 8 {
            serde_json::json!({"count": count, "goal_max_ms": 2000})
        } else {
            serde_json::json!({"count": count})
        };
        report.latency("fork_ms", &mut forks_took, with(goal));
    }
    provider.destroy(vm).await;
    Ok(ExitCode::SUCCESS)
}

/// Cold boot and snapshot-clone restore of the same size, call → first exec: what pause/resume,
/// restore from a snapshot and fork compare with. The first clone builds the shape's template and
/// is not counted.
async fn references(
    report: &Report,
    provider: &QemuProvider,
    (key, spec): (&ShapeKey, &VmSpec),
    samples: usize,
    with: &dyn Fn(serde_json::Value) -> serde_json::Value,
) -> ToolResult {
    let mut cold_spec = spec.clone();
    cold_spec.fill = FillStrategy::ColdBoot;
    let cold_key = ShapeKey::new(format!("{key}-cold"));
    provider.destroy(provider.create(key, spec).await?).await;
    let (mut colds, mut clones) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        for (key, spec, times) in [(&cold_key, &cold_spec, &mut colds), (key, spec, &mut clones)] {
            let started = Instant::now();
            let vm = provider.create(key, spec).await?;
            exec_ok(&vm, &["true"]).await?;
            times.push(started.elapsed());
            provider.destroy(vm).await;
        }
    }
    report.latency("cold_boot_ms", &mut colds, with(serde_json::json!({"reference": true})));
    report.latency("snapshot_clone_ms", &mut clones, with(serde_json::json!({"reference": true})));
    Ok(ExitCode::SUCCESS)
}

async fn exec_ok(vm: &QemuVm, argv: &[&str]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let out = vm.exec(argv.iter().copied()).await?;
    if out.exit_code != Some(0) {
        return Err(format!(
            "{argv:?} in the guest: {:?} {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}
