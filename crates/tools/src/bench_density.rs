//! `firepit bench density`: how many warm snapshot clones of one shape fit in a memory budget, and
//! what they cost at that density: memory (PSS), host CPU while they sit idle, and reserve → first
//! exec latency.
//!
//! The pool is the engine (`firepit_pool::Pool`) over the QEMU provider with snapshot fill and the
//! agent ping before hand-out (what `Firepit::pool` builds), plus a memory budget — the facade has
//! no budget knob, so the bench builds the engine directly. The budget charges the template's RAM
//! once and each clone its PSS measured after restore (the "Snapshot fill" section of the README);
//! the pool's high water is `--max-vms`, so the budget is what stops the fill.
//!
//! Steps: host CPU baseline before anything starts; fill until the budget stops the pool (`vms`,
//! `fill_ms`); sum the clones' PSS; host and per-QEMU CPU over `--idle-seconds` with nothing
//! happening; then `--samples` times: wait until the pool is full and quiet again, `reserve()` and
//! run `true` (each sample takes one VM, which is replaced before the next, so the density stays).
//! Then, the full pool shut down, the same samples on a pool of `--low-density-vms` (same provider,
//! template and settings) give `first_exec_density_ratio`: full density against low, one run.
//!
//! Runtime directories and the template live in private scratch directories removed at the end;
//! the pool is shut down and any QEMU of ours still alive is killed by pid, also on error and on
//! Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit::AgentPing;
use firepit::qemu::{FillStrategy, ImagePaths, ProviderConfig, QemuProvider, VmSpec, process_memory_kib};
use firepit_pool::{Pool, Provider, ShapeKey};

use crate::procfs::{HostCpu, QemuProcess, qemu_under};
use crate::scratch::ScratchDir;
use crate::stats::{Report, round};
use crate::{ToolError, ToolResult};

/// Arguments of `firepit bench density`.
#[derive(Debug, clap::Args)]
pub struct DensityBenchArgs {
    /// The guest image directory (default: where `firepit image build` writes it).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// The pool's memory budget, MiB: the template's RAM once plus each clone's PSS.
    #[arg(long, default_value_t = 1024)]
    budget_mb: u64,
    /// Guest memory per VM, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    /// Seconds over which the idle pool's CPU use is measured.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Reserve → first exec samples (each takes one VM, replaced before the next sample).
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Restores running at once while the pool fills.
    #[arg(long, default_value_t = 4)]
    parallel_fills: usize,
    /// The pool's high water: a cap on VMs in case the budget allows more.
    #[arg(long, default_value_t = 2000)]
    max_vms: usize,
    /// Give up when the pool is not full after this many seconds.
    #[arg(long, default_value_t = 3600)]
    fill_timeout_secs: u64,
    /// Let idle VMs run instead of pausing them (`pause_idle = false`), for comparison.
    #[arg(long)]
    no_pause: bool,
    /// Hand out VMs without the fill's warm-up (`warm_up = false`), for comparison.
    #[arg(long)]
    no_warm_up: bool,
    /// After the full pool is gone, a pool of this many VMs (same provider, template and
    /// settings) gives the low-density reserve → first exec the full one is compared with; 0 skips.
    #[arg(long, default_value_t = 8)]
    low_density_vms: usize,
}

/// Runs `firepit bench density`.
pub async fn run(args: DensityBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "density" };
    let image = firepit::image::Image::open(&args.image)?;
    raise_open_files_limit();
    let runtime = ScratchDir::create(&std::env::temp_dir(), "bench-density")?;
    let templates = ScratchDir::create(std::path::Path::new("/dev/shm"), "bench-density-templates")?;
    let provider = QemuProvider::new(ProviderConfig {
        runtime_dir: runtime.path().to_owned(),
        template_dir: templates.path().to_owned(),
        keep_templates: false,
        ..ProviderConfig::default()
    })?;
    let mut spec = VmSpec::new(image.id(), ImagePaths::new(image.kernel(), image.initramfs()));
    (spec.memory_mb, spec.fill) = (u64::from(args.memory_mb), FillStrategy::Snapshot);
    spec.warm_up = !args.no_warm_up;
    let shape = ShapeKey::new("density");

    let run = Run {
        args: &args,
        report,
        provider: &provider,
        shape: &shape,
        spec: &spec,
        runtime: &runtime,
        templates: &templates,
    };
    let result = tokio::select! {
        result = run.measure() => result,
        signal = crate::signals::interrupted() => Err(format!("interrupted by {signal}; cleaned up").into()),
    };
    // Whatever happened: the pool is gone by now (shut down, or dropped with the cancelled future,
    // which sends its VMs to be destroyed); kill what is left of ours and remove the files.
    let leftovers = kill_leftovers(runtime.path()).await;
    provider.remove_templates();
    drop(provider);
    drop((runtime, templates));
    if leftovers > 0 {
        eprintln!("warning: killed {leftovers} QEMU process(es) the pool had not destroyed in time");
    }
    result
}

/// What one run measures with.
struct Run<'a> {
    args: &'a DensityBenchArgs,
    report: Report,
    provider: &'a QemuProvider,
    shape: &'a ShapeKey,
    spec: &'a VmSpec,
    runtime: &'a ScratchDir,
    templates: &'a ScratchDir,
}

impl Run<'_> {
    async fn measure(&self) -> ToolResult {
        let args = self.args;
        let baseline_seconds = args.idle_seconds.clamp(1, 10);
        let baseline = host_cpu_over(Duration::from_secs(baseline_seconds)).await?;
        self.report.emit(
            "host_baseline_cpu_percent",
            baseline,
            "%",
            serde_json::json!({"seconds": baseline_seconds, "cpus": crate::procfs::host_cpus()}),
        );
        let started = Instant::now();
        let pool = self.pool(args.max_vms).await?;
        let result = self.at_density(&pool, started, baseline).await;
        pool.shutdown().await;
        let full = result?;
        if args.low_density_vms == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        // The same reserve → first exec on a small pool right after, for a ratio from one run.
        let pool = self.pool(args.low_density_vms).await?;
        let low = match self.wait_full(&pool, Instant::now()).await {
            Ok(_) => {
                let quiet = async |pool: &Pool<QemuProvider>| self.quiet(pool).await;
                crate::density_idle::first_execs(&self.report, &pool, args.samples, "_low_density_ms", quiet)
                    .await
            }
            Err(e) => Err(e),
        };
        pool.shutdown().await;
        let low = low?;
        self.report.emit(
            "first_exec_density_ratio",
            full.0.as_secs_f64() / low.0.as_secs_f64().max(1e-9),
            "x",
            serde_json::json!({
                "full_p50_ms": round(crate::stats::ms(full.0)), "full_vms": full.1,
                "low_p50_ms": round(crate::stats::ms(low.0)), "low_vms": low.1,
                "what": "reserve_to_first_exec_ms p50 at full density / at low density, same run",
            }),
        );
        Ok(ExitCode::SUCCESS)
    }

    /// A pool of the bench's shape and settings, at most `max_vms` VMs.
    async fn pool(&self, max_vms: usize) -> Result<Pool<QemuProvider>, ToolError> {
        let args = self.args;
        Ok(Pool::builder(self.provider.clone())
            .shape(self.shape.clone(), self.spec.clone())
            .depth(1..=max_vms.max(1))
            .memory_budget_mb(args.budget_mb)
            .max_parallel_fills(args.parallel_fills.max(1))
            .pause_idle(!args.no_pause)
            .health_check(AgentPing)
            .warmup_timeout(Duration::from_secs(600))
            .shutdown_budget(Duration::from_secs(300))
            .build()
            .await?)
    }

    /// Measures the full pool; returns reserve → first exec p50 and the density it was taken at.
    async fn at_density(
        &self,
        pool: &Pool<QemuProvider>,
        started: Instant,
        baseline: f64,
    ) -> Result<(Duration, usize), ToolError> {
        let (args, report) = (self.args, &self.report);
        let vms = self.wait_full(pool, started).await?;
        let fill = started.elapsed();
        let status = pool.status();
        let shape_status = status.shapes.first();
        report.emit(
            "vms",
            vms as f64,
            "VMs",
            serde_json::json!({
                "budget_mb": args.budget_mb, "memory_mb": args.memory_mb,
                "memory_used_mb": status.memory_used_mb, "shared_memory_mb": status.shared_memory_mb,
                "clone_estimate_mb": self.provider.memory().estimate_mb(self.shape, self.spec),
                "fill_failures": shape_status.map_or(0, |s| s.fill_failures),
                "pause_idle": !args.no_pause, "warm_up": !args.no_warm_up,
                "last_fill": shape_status.and_then(|s| s.last_fill),
            }),
        );
        report.emit(
            "fill_ms",
            fill.as_secs_f64() * 1e3,
            "ms",
            serde_json::json!({"vms": vms, "parallel_fills": args.parallel_fills, "includes": "template build"}),
        );

        tokio::time::sleep(Duration::from_secs(2)).await;
        let processes = qemu_under(self.runtime.path());
        self.memory(&processes);
        crate::density_idle::idle_cpu(report, &processes, args.idle_seconds, baseline).await?;
        let quiet = async |pool: &Pool<QemuProvider>| self.quiet(pool).await;
        crate::density_idle::first_execs(report, pool, args.samples, "_ms", quiet).await
    }

    /// PSS and RSS of every clone, and the template's RAM file.
    fn memory(&self, processes: &[QemuProcess]) {
        let readings: Vec<(u64, u64)> =
            processes.iter().filter_map(|p| process_memory_kib(p.pid).ok()).collect();
        let n = readings.len().max(1) as u64;
        let pss: u64 = readings.iter().map(|(_, pss)| pss).sum();
        let rss: u64 = readings.iter().map(|(rss, _)| rss).sum();
        let template_mib = self.templates.allocated_bytes() as f64 / (1024.0 * 1024.0);
        self.report.emit(
            "pss_total_mib",
            pss as f64 / 1024.0,
            "MiB",
            serde_json::json!({
                "vms": readings.len(), "rss_total_mib": round(rss as f64 / 1024.0),
                "template_tmpfs_mib": round(template_mib),
                "note": "clone PSS includes their share of the template pages they read; the template file is tmpfs memory besides",
            }),
        );
        let min = readings.iter().map(|(_, pss)| *pss).min().unwrap_or(0);
        let max = readings.iter().map(|(_, pss)| *pss).max().unwrap_or(0);
        self.report.emit(
            "pss_per_vm_kib",
            (pss / n) as f64,
            "KiB",
            serde_json::json!({"min_kib": min, "max_kib": max, "rss_per_vm_kib": rss / n}),
        );
    }

    /// Whether the pool is as full as the budget allows: nothing filling, and the target reached
    /// or no room for one more clone at the provider's estimate.
    fn is_full(&self, pool: &Pool<QemuProvider>) -> Option<usize> {
        let status = pool.status();
        let shape = status.shapes.first()?;
        let estimate = self.provider.memory().estimate_mb(self.shape, self.spec);
        let no_room = status.memory_used_mb + estimate > self.args.budget_mb;
        (shape.filling == 0 && !shape.backing_off && (shape.ready >= shape.target || no_room))
            .then_some(shape.ready)
    }

    /// Waits until the pool is full (twice in a row, 200 ms apart); returns its ready VMs.
    async fn wait_full(&self, pool: &Pool<QemuProvider>, started: Instant) -> Result<usize, ToolError> {
        let deadline = Duration::from_secs(self.args.fill_timeout_secs);
        let mut last_progress = Instant::now();
        let mut previous = None;
        loop {
            let full = self.is_full(pool);
            if full.is_some() && full == previous {
                return full.ok_or_else(|| "unreachable: checked above".into());
            }
            previous = full;
            if started.elapsed() > deadline {
                return Err(format!("the pool was not full within {deadline:?}: {:?}", pool.status()).into());
            }
            if last_progress.elapsed() > Duration::from_secs(15) {
                let status = pool.status();
                eprintln!(
                    "density: {} ready, {} filling, {} of {} MiB charged after {:.0} s",
                    status.ready(),
                    status.shapes.first().map_or(0, |s| s.filling),
                    status.memory_used_mb,
                    self.args.budget_mb,
                    started.elapsed().as_secs_f64()
                );
                last_progress = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the pool is full again after a sample took a VM (at most 5 minutes).
    async fn quiet(&self, pool: &Pool<QemuProvider>) -> Result<(), ToolError> {
        let started = Instant::now();
        while self.is_full(pool).is_none() {
            if started.elapsed() > Duration::from_secs(300) {
                return Err(format!("the pool was not full again within 300 s: {:?}", pool.status()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Busy share of the whole host over `window`, percent.
async fn host_cpu_over(window: Duration) -> Result<f64, ToolError> {
    let before = HostCpu::now()?;
    tokio::time::sleep(window).await;
    Ok(HostCpu::now()?.percent_since(before))
}

/// Kills (SIGKILL, by pid) QEMU processes still running under our runtime dir and waits up to 10 s
/// for them to go; returns how many there were. They are ours: the dir is private to this run.
async fn kill_leftovers(runtime: &std::path::Path) -> usize {
    let left = qemu_under(runtime);
    for process in &left {
        if let Ok(pid) = libc::pid_t::try_from(process.pid)
            && crate::procfs::still_running(*process)
        {
            // SAFETY: kill(2) on a process we started (its command line names our private dir).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let started = Instant::now();
    while left.iter().any(|p| crate::procfs::still_running(*p)) && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    left.len()
}

/// Raises the soft limit on open files to the hard limit: every VM holds a few sockets and files.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                eprintln!("warning: cannot raise the open-files limit: {}", std::io::Error::last_os_error());
            }
        }
    }
}
