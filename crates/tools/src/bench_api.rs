//! `firepit bench api`: what the daemon's HTTP API costs on top of the library, in one run.
//!
//! Two pools of the same shape (image, 1 vCPU, 256 MiB, depth `--depth`, fill `--fill`) run side by
//! side: a real `firepit serve` started as a child process on a temporary Unix socket and state
//! dir, and an in-process pool built with the facade (`Firepit::pool`). Every measurement alternates
//! between the two (API first on even iterations, in-process first on odd ones), so both see the
//! same machine at the same moment.
//!
//! - `acquire_ms`, `release_ms`, `acquire_release_ms`: `POST /v1/leases {wait_ms: 0}` then
//!   `DELETE /v1/leases/{id}` through [`Client`] (one HTTP/1.1 connection per request, as the CLI
//!   does), against `try_reserve()` then `drop` in process. A release destroys the VM and the pool
//!   boots a replacement, which takes seconds under TCG; before every timed pair the bench waits
//!   until **both** pools are full again with no boot in flight, and only the two calls are timed.
//!   That is why the default is a modest 10 pairs per side: each pair costs one boot.
//! - `exec_ms`: `true` run through the guest agent of one leased VM, via
//!   `POST /v1/leases/{id}/exec` against `vm.exec(["true"])`, `--execs` times each.
//!
//! Output: one JSON object per metric with p50/p99 of both sides and their ratio (API / in-process)
//! with `--json`, else a table. The daemon logs at `info` (its default) to a file in the temporary
//! directory; the last lines of that log are part of the error if it fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit::{FillStrategy, Firepit, VmConfig, VmPool};
use firepit_api::{AcquireRequest, ExecBody};
use firepit_client::Client;

use crate::child_daemon::ChildDaemon;
use crate::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};
use crate::stats::{ms, percentiles, round};
use crate::{ToolError, ToolResult};

/// The shape name the child daemon serves.
const SHAPE: &str = "bench";
/// How long either pool may take to be full again (cold boots under a loaded TCG host).
const REFILL_DEADLINE: Duration = Duration::from_secs(600);

/// Arguments of `firepit bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiBenchArgs {
    /// The guest image directory (default: where `firepit image build` writes it).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per metric (else a table).
    #[arg(long)]
    json: bool,
    /// Acquire + release pairs per side; each pair waits for one VM boot first.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Exec round trips (`true`) per side.
    #[arg(long, default_value_t = 100)]
    execs: usize,
    /// Ready VMs each pool keeps (low = high water).
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// How both pools fill: cold boot or snapshot restore.
    #[arg(long, value_enum, default_value_t = BenchFill::Cold)]
    fill: BenchFill,
}

/// Fill strategy of both pools.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchFill {
    /// Boot every VM from the kernel.
    Cold,
    /// Restore copy-on-write clones of a booted template.
    Snapshot,
}

impl BenchFill {
    fn config_name(self) -> &'static str {
        match self {
            Self::Cold => "cold",
            Self::Snapshot => "snapshot",
        }
    }
}

/// p50 and p99 samples of one metric, both sides.
struct Row {
    metric: &'static str,
    api: Vec<Duration>,
    local: Vec<Duration>,
}

impl Row {
    fn new(metric: &'static str) -> Self {
        Self { metric, api: Vec::new(), local: Vec::new() }
    }
}

/// Runs `firepit bench api`.
pub async fn run(args: ApiBenchArgs) -> ToolResult {
    let image = firepit::image::Image::open(&args.image)?;
    let dir = DaemonDir::create(&std::env::temp_dir(), "bench-api")?;
    let in_process_dir = dir.path().join("in-process");
    let depth = args.depth.max(1);
    let shape = ShapeSettings {
        depth_low: depth,
        depth_high: depth,
        fill: args.fill.config_name().into(),
        ..ShapeSettings::new(SHAPE, image.dir())
    };
    let settings = DaemonSettings::new(&dir, vec![shape]);
    let mut daemon = ChildDaemon::new(std::env::current_exe()?, dir, &settings)?;
    let measured = measure(&args, &image, in_process_dir, &mut daemon).await;
    let stopped = daemon.stop(Duration::from_secs(60)).await;
    let (rows, accel) =
        measured.map_err(|e| format!("{e}\nlast lines of the daemon's log:\n{}", daemon.log_tail(15)))?;
    stopped?;
    print(&args, &rows, &accel);
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    args: &ApiBenchArgs,
    image: &firepit::image::Image,
    in_process_dir: PathBuf,
    daemon: &mut ChildDaemon,
) -> Result<(Vec<Row>, String), ToolError> {
    let depth = args.depth.max(1);
    let fill = match args.fill {
        BenchFill::Cold => FillStrategy::ColdBoot,
        BenchFill::Snapshot => FillStrategy::Snapshot,
    };
    let provider = firepit::qemu::ProviderConfig {
        runtime_dir: in_process_dir,
        ..firepit::qemu::ProviderConfig::default()
    };
    let builder = Firepit::pool(VmConfig::from_image(image))
        .cpus(1)
        .memory_mb(256)
        .fill_strategy(fill)
        .provider_config(provider);
    let client = daemon.client();
    // Both pools warm up at the same time.
    let (pool, daemon_ready) = tokio::join!(builder.build(depth), daemon.start(REFILL_DEADLINE));
    let pool = pool?;
    let result = match daemon_ready {
        Ok(()) => measure_pools(args, depth, &pool, &client, daemon).await,
        Err(e) => Err(e.into()),
    };
    pool.shutdown().await;
    result
}

async fn measure_pools(
    args: &ApiBenchArgs,
    depth: usize,
    pool: &VmPool,
    client: &Client,
    daemon: &mut ChildDaemon,
) -> Result<(Vec<Row>, String), ToolError> {
    let (mut acquire, mut release, mut pair) =
        (Row::new("acquire_ms"), Row::new("release_ms"), Row::new("acquire_release_ms"));
    let request = AcquireRequest { shape: SHAPE.to_owned(), wait_ms: 0, ttl_ms: None };
    for iteration in 0..args.iterations.max(1) {
        for api_side in sides(iteration) {
            wait_full(pool, client, depth, daemon).await?;
            let before = Instant::now();
            if api_side {
                let lease = client.acquire(&request, None).await?;
                let acquired = before.elapsed();
                client.release(&lease.lease_id).await?;
                acquire.api.push(acquired);
                release.api.push(before.elapsed() - acquired);
                pair.api.push(before.elapsed());
            } else {
                let vm = pool.try_reserve()?;
                let acquired = before.elapsed();
                drop(vm);
                acquire.local.push(acquired);
                release.local.push(before.elapsed() - acquired);
                pair.local.push(before.elapsed());
            }
        }
    }

    wait_full(pool, client, depth, daemon).await?;
    let mut exec = Row::new("exec_ms");
    let lease = client.acquire(&request, None).await?;
    let vm = pool.try_reserve()?;
    let body = ExecBody::new(["true"]);
    for iteration in 0..args.execs.max(1) {
        for api_side in sides(iteration) {
            let before = Instant::now();
            let exit_code = if api_side {
                client.exec(&lease.lease_id, &body).await?.exit_code
            } else {
                vm.exec(["true"]).await?.exit_code
            };
            let took = before.elapsed();
            if exit_code != Some(0) {
                return Err(format!("`true` exited with {exit_code:?} in the guest").into());
            }
            if api_side { exec.api.push(took) } else { exec.local.push(took) }
        }
    }
    client.release(&lease.lease_id).await?;
    drop(vm);
    let accel = client.pools().await?.shapes.first().map(|s| s.accelerator.clone()).unwrap_or_default();
    Ok((vec![acquire, release, pair, exec], accel))
}

/// Which side goes first: the API on even iterations, in-process on odd ones.
fn sides(iteration: usize) -> [bool; 2] {
    if iteration.is_multiple_of(2) { [true, false] } else { [false, true] }
}

/// Waits until both pools hold `depth` ready VMs and boot none (the machine is quiet again).
async fn wait_full(
    pool: &VmPool,
    client: &Client,
    depth: usize,
    daemon: &mut ChildDaemon,
) -> Result<(), ToolError> {
    let started = Instant::now();
    loop {
        let local = pool.status().shapes.first().is_some_and(|s| s.ready >= depth && s.filling == 0);
        let api = client
            .pools()
            .await?
            .shapes
            .iter()
            .any(|s| s.name == SHAPE && s.ready >= depth && s.filling == 0);
        if local && api {
            return Ok(());
        }
        daemon.check_running()?;
        if started.elapsed() > REFILL_DEADLINE {
            return Err(format!(
                "the pools were not full again within {REFILL_DEADLINE:?}: in-process {:?}",
                pool.status()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn print(args: &ApiBenchArgs, rows: &[Row], accel: &str) {
    if !args.json {
        println!(
            "{:<20} {:>7} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9}",
            "metric", "samples", "api p50", "api p99", "in-proc p50", "in-proc p99", "ratio p50", "ratio p99"
        );
    }
    for row in rows {
        let (mut api, mut local) = (row.api.clone(), row.local.clone());
        let (api_p50, api_p99) = percentiles(&mut api);
        let (local_p50, local_p99) = percentiles(&mut local);
        let ratio = |a: Duration, b: Duration| round(a.as_secs_f64() / b.as_secs_f64().max(1e-9));
        if args.json {
            let line = serde_json::json!({
                "system": "firepit", "bench": "api", "metric": row.metric, "unit": "ms",
                "value": round(ms(api_p50)),
                "api_p50": round(ms(api_p50)), "api_p99": round(ms(api_p99)),
                "in_process_p50": round(ms(local_p50)), "in_process_p99": round(ms(local_p99)),
                "ratio_p50": ratio(api_p50, local_p50), "ratio_p99": ratio(api_p99, local_p99),
                "samples": api.len(), "depth": args.depth, "fill": args.fill.config_name(), "accel": accel,
            });
            println!("{line}");
        } else {
            println!(
                "{:<20} {:>7} {:>10.3} {:>10.3} {:>12.3} {:>12.3} {:>9.1} {:>9.1}",
                row.metric,
                api.len(),
                ms(api_p50),
                ms(api_p99),
                ms(local_p50),
                ms(local_p99),
                ratio(api_p50, local_p50),
                ratio(api_p99, local_p99)
            );
        }
    }
    if !args.json {
        println!("(ms; api = firepit serve over its Unix socket, in-proc = Firepit::pool; accel {accel})");
    }
}
