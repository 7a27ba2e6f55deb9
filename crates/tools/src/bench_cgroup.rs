//! `firepit bench cgroup`: what putting each VM in its own cgroup costs, in one run.
//!
//! - `cgroup_setup_ms`: making one VM's cgroup with its limits (one directory per hierarchy under
//!   v1, a few files each), opening its `cgroup.procs` for the pre-exec join, and removing it —
//!   what the provider adds to every fill (p50, p99). Measured on the provider's own parent, with
//!   a 1-vCPU, 256 MiB VM's limits.
//! - `cgroup_join_us`: what the join adds to spawning a process (`true` spawned and reaped with
//!   and without joining, alternately).
//! - `restore_ms` with `cgroups` = `on` / `off`: snapshot clones restored by two providers of the
//!   same image, one with cgroups and one without, alternately (TCG restores vary by tens of ms on
//!   a busy host: the setup cost above is the precise number).
//! - `usage_sample_cpu_percent`: the CPU a sampler spends reading CPU time and memory of 300 VM
//!   cgroups every 5 s (the per-lease metrics' sampling rate), as a share of one core.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit_cgroup::{Cgroup, Hierarchy, Limits, Parent};
use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{CgroupConfig, FillStrategy, ProviderConfig, QemuProvider};

use crate::stats::{Report, ms, round};
use crate::{ToolError, ToolResult};

/// Arguments of `firepit bench cgroup`.
#[derive(Debug, clap::Args)]
pub struct CgroupBenchArgs {
    /// The guest image for the restore comparison (as a shape's `image`; default: the default
    /// image).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Cgroups made and removed for the setup measurement.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Restores per provider (0 skips the VM part).
    #[arg(long, default_value_t = 6)]
    restores: usize,
    /// VM cgroups read by the sampling measurement.
    #[arg(long, default_value_t = 300)]
    sampled: usize,
}

/// Runs `firepit bench cgroup`.
pub async fn run(args: CgroupBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "cgroup" };
    let parent = match Hierarchy::detect().and_then(|h| Parent::open(&h, "firepit".as_ref())) {
        Ok(parent) => parent,
        Err(e) => {
            eprintln!("no usable cgroups here ({e}): nothing to measure");
            return Ok(ExitCode::FAILURE);
        }
    };
    let version = format!("{:?}", parent.version());
    let tag = format!("fp-bench-{}", std::process::id());
    let limits = Limits { cpus: 1, memory_bytes: (256 + 96 + 1024) << 20, pids: 256 };
    setup(&args, &report, &parent, &tag, &limits, &version)?;
    join(&args, &report, &parent, &tag, &limits)?;
    sampling(&args, &report, &parent, &tag, &limits)?;
    parent.remove_if_empty();
    if args.restores > 0 {
        restores(&args, &report).await?;
    }
    Ok(ExitCode::SUCCESS)
}

fn setup(
    args: &CgroupBenchArgs,
    report: &Report,
    parent: &Parent,
    tag: &str,
    limits: &Limits,
    version: &str,
) -> Result<(), ToolError> {
    let mut samples = Vec::with_capacity(args.samples);
    for i in 0..args.samples.max(1) {
        let started = Instant::now();
        let cgroup = parent.create(&format!("{tag}-{i}"), limits)?;
        let joiner = cgroup.joiner()?;
        drop(joiner);
        cgroup.remove()?;
        samples.push(started.elapsed());
    }
    let hierarchies = parent.paths().count();
    report.latency(
        "cgroup_setup_ms",
        &mut samples,
        serde_json::json!({"version": version, "hierarchies": hierarchies, "goal_ms": 2}),
    );
    Ok(())
}

fn join(
    args: &CgroupBenchArgs,
    report: &Report,
    parent: &Parent,
    tag: &str,
    limits: &Limits,
) -> Result<(), ToolError> {
    use std::os::unix::process::CommandExt;
    let cgroup = parent.create(&format!("{tag}-join"), limits)?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..args.samples.max(1) {
        let joiner = cgroup.joiner()?;
        let mut command = std::process::Command::new("true");
        // SAFETY: `join_self` only writes to descriptors opened before the fork.
        unsafe { command.pre_exec(move || joiner.join_self()) };
        let started = Instant::now();
        command.status()?;
        with.push(started.elapsed());
        let started = Instant::now();
        std::process::Command::new("true").status()?;
        without.push(started.elapsed());
    }
    with.sort();
    without.sort();
    let added = with[with.len() / 2].saturating_sub(without[without.len() / 2]);
    report.emit(
        "cgroup_join_us",
        added.as_secs_f64() * 1e6,
        "us",
        serde_json::json!({"spawn_with_join_ms": round(ms(with[with.len() / 2])), "spawn_ms": round(ms(without[without.len() / 2]))}),
    );
    cgroup.remove()?;
    Ok(())
}

fn sampling(
    args: &CgroupBenchArgs,
    report: &Report,
    parent: &Parent,
    tag: &str,
    limits: &Limits,
) -> Result<(), ToolError> {
    let cgroups: Vec<Cgroup> =
        (0..args.sampled).map(|i| parent.create(&format!("{tag}-s{i}"), limits)).collect::<Result<_, _>>()?;
    let rounds = 20;
    let (cpu_before, started) = (process_cpu(), Instant::now());
    for _ in 0..rounds {
        for cgroup in &cgroups {
            std::hint::black_box(cgroup.usage()?);
        }
    }
    let per_round = (process_cpu() - cpu_before) / rounds;
    let wall_per_round = started.elapsed() / rounds;
    let percent = per_round.as_secs_f64() / 5.0 * 100.0;
    report.emit(
        "usage_sample_cpu_percent",
        percent,
        "% of a core",
        serde_json::json!({"vms": cgroups.len(), "every_s": 5, "round_cpu_ms": round(ms(per_round)), "round_wall_ms": round(ms(wall_per_round)), "goal_percent": 1}),
    );
    for cgroup in &cgroups {
        cgroup.remove()?;
    }
    Ok(())
}

async fn restores(args: &CgroupBenchArgs, report: &Report) -> Result<(), ToolError> {
    let image = tokio::task::spawn_blocking({
        let spec = firepit::ShapeSpec::new("bench", args.image.clone());
        move || firepit::PoolShape::open(&spec)
    })
    .await??
    .vm;
    let mut spec = image.clone();
    spec.fill = FillStrategy::Snapshot;
    let template_dir = |on: bool| {
        PathBuf::from(format!(
            "{}-bench-{}-{on}",
            firepit_qemu::default_template_dir().display(),
            std::process::id()
        ))
    };
    let provider = |on: bool| {
        QemuProvider::new(ProviderConfig {
            template_dir: template_dir(on),
            keep_templates: false,
            cgroups: CgroupConfig { enabled: on, ..CgroupConfig::default() },
            ..ProviderConfig::default()
        })
    };
    let providers = [(true, provider(true)?), (false, provider(false)?)];
    let shape = ShapeKey::new("bench");
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // The first create of each builds its template: not counted.
    for (_, provider) in &providers {
        let vm = provider.create(&shape, &spec).await?;
        provider.destroy(vm).await;
    }
    for _ in 0..args.restores {
        for (i, (_, provider)) in providers.iter().enumerate() {
            let vm = provider.create(&shape, &spec).await?;
            times[i].push(vm.boot_duration());
            provider.destroy(vm).await;
        }
    }
    for ((on, provider), samples) in providers.iter().zip(&mut times) {
        report.latency("restore_ms", samples, serde_json::json!({"cgroups": if *on { "on" } else { "off" }}));
        provider.forget_template(&shape);
        provider.remove_templates();
    }
    for on in [true, false] {
        let _ = std::fs::remove_dir_all(template_dir(on));
    }
    Ok(())
}

/// CPU time (user + system) this process has used.
fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
