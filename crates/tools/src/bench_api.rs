//! `firepit bench api`: what the daemon's HTTP API costs on top of the library, in one run.
//!
//! Two pools of the same shape (image, 1 vCPU, 256 MiB, depth `--depth`, fill `--fill`, agent ping
//! before hand-out on both) run side by side: a real `firepit serve` started as a child process on
//! a temporary Unix socket and state dir, and an in-process pool built with the facade
//! (`Firepit::pool`). Every measurement alternates between the two (API first on even iterations,
//! in-process first on odd ones), so both see the same machine at the same moment. The client keeps
//! its connection alive, as `firepit-client` does.
//!
//! Each iteration, per side, costs three VM fills:
//! 1. both pools full and quiet: `acquire_ms` — `POST /v1/leases {wait_ms: 0}` against
//!    `reserve_now()` (the daemon serves `wait_ms: 0` with `reserve_now`: a ready VM or none, woken
//!    and health-checked like `reserve` does, so this pair is like with like) — then `release_ms`
//!    (`DELETE`) against `drop`, and `acquire_release_ms` for the two;
//! 2. at once, while that pool refills (depth ≥ 2): `acquire_reserve_refilling_ms` —
//!    `POST /v1/leases {wait_ms: 60000}` (served with `reserve`, health check included) against
//!    `reserve()` — and `reserve_to_first_exec_refilling_ms`: from that call to the answer of
//!    `true` run through the agent on the fresh VM (`POST .../exec` against `vm.exec`);
//! 3. both pools full and quiet again: the same two, `acquire_reserve_ms` and
//!    `reserve_to_first_exec_ms`.
//!
//! Before step 1 on the API side, `request_floor_ms` times `GET /healthz`: what any request over
//! the socket costs at that moment (no in-process counterpart). Then `exec_ms`: `true` on one
//! leased VM, `--execs` times per side.
//!
//! Output: one JSON object per metric with p50/p99 of both sides, their ratio (API / in-process)
//! and their difference (API − in-process, ms) with `--json`, else a table. The daemon logs at
//! `$RUST_LOG` (default `info`, its default) to a file in the temporary directory; the last lines
//! of that log are part of the error if it fails.

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

/// Samples of one metric, both sides, and what each side called.
struct Row {
    metric: &'static str,
    /// The in-process call (`reserve_now`, `reserve`, `vm.exec`, ...).
    in_process: &'static str,
    /// `none` (both pools full, nothing filling) or `competing` (the measured pool refilling).
    refills: &'static str,
    api: Vec<Duration>,
    local: Vec<Duration>,
}

impl Row {
    fn new(metric: &'static str, in_process: &'static str, refills: &'static str) -> Self {
        Self { metric, in_process, refills, api: Vec::new(), local: Vec::new() }
    }

    fn push(&mut self, api_side: bool, sample: Duration) {
        if api_side { self.api.push(sample) } else { self.local.push(sample) }
    }
}

/// How long an acquire that must be served by `reserve` may wait (the pool is never empty here).
const RESERVE_WAIT_MS: u64 = 60_000;

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
    let (mut acquire, mut release, mut pair) = (
        Row::new("acquire_ms", "reserve_now", "none"),
        Row::new("release_ms", "drop", "none"),
        Row::new("acquire_release_ms", "reserve_now+drop", "none"),
    );
    let (mut reserve, mut first_exec) = (
        Row::new("acquire_reserve_ms", "reserve", "none"),
        Row::new("reserve_to_first_exec_ms", "reserve+exec", "none"),
    );
    let (mut reserve_busy, mut first_exec_busy) = (
        Row::new("acquire_reserve_refilling_ms", "reserve", "competing"),
        Row::new("reserve_to_first_exec_refilling_ms", "reserve+exec", "competing"),
    );
    let mut floor = Row::new("request_floor_ms", "", "none");
    let request = AcquireRequest { shape: SHAPE.to_owned(), wait_ms: 0, ttl_ms: None, snapshot: None };
    for iteration in 0..args.iterations.max(1) {
        for api_side in sides(iteration) {
            wait_full(pool, client, depth, daemon).await?;
            if api_side {
                let before = Instant::now();
                client.healthz().await?;
                floor.api.push(before.elapsed());
            }
            let before = Instant::now();
            if api_side {
                let lease = client.acquire(&request, None).await?;
                let acquired = before.elapsed();
                client.release(&lease.lease_id).await?;
                acquire.api.push(acquired);
                release.api.push(before.elapsed() - acquired);
                pair.api.push(before.elapsed());
            } else {
                let vm = pool.reserve_now().await?;
                let acquired = before.elapsed();
                drop(vm);
                acquire.local.push(acquired);
                release.local.push(before.elapsed() - acquired);
                pair.local.push(before.elapsed());
            }
            // The pool now refills the VM just taken: a fill competes with the next hand-out.
            if depth >= 2 {
                let (reserved, first) = reserve_and_first_exec(api_side, pool, client).await?;
                reserve_busy.push(api_side, reserved);
                first_exec_busy.push(api_side, first);
            }
            wait_full(pool, client, depth, daemon).await?;
            let (reserved, first) = reserve_and_first_exec(api_side, pool, client).await?;
            reserve.push(api_side, reserved);
            first_exec.push(api_side, first);
        }
    }

    wait_full(pool, client, depth, daemon).await?;
    let mut exec = Row::new("exec_ms", "vm.exec", "none");
    let lease = client.acquire(&request, None).await?;
    let vm = pool.reserve_now().await?;
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
            exec.push(api_side, took);
        }
    }
    client.release(&lease.lease_id).await?;
    drop(vm);
    let accel = client.pools().await?.shapes.first().map(|s| s.accelerator.clone()).unwrap_or_default();
    let mut rows = vec![floor, acquire, release, pair, reserve, first_exec];
    if depth >= 2 {
        rows.extend([reserve_busy, first_exec_busy]);
    }
    rows.push(exec);
    Ok((rows, accel))
}

/// A hand-out with the pool's health check and the first exec on the fresh VM, on one side:
/// `POST /v1/leases` with a wait (served by `reserve`) + `POST .../exec` + `DELETE`, or
/// `reserve()` + `vm.exec` + drop. Returns the time from the call to the VM in hand and to the
/// answer of `true`.
async fn reserve_and_first_exec(
    api_side: bool,
    pool: &VmPool,
    client: &Client,
) -> Result<(Duration, Duration), ToolError> {
    let before = Instant::now();
    let (reserved, first, exit_code) = if api_side {
        let request = AcquireRequest {
            shape: SHAPE.to_owned(),
            wait_ms: RESERVE_WAIT_MS,
            ttl_ms: None,
            snapshot: None,
        };
        let lease = client.acquire(&request, None).await?;
        let reserved = before.elapsed();
        let out = client.exec(&lease.lease_id, &ExecBody::new(["true"])).await;
        let first = before.elapsed();
        client.release(&lease.lease_id).await?;
        (reserved, first, out?.exit_code)
    } else {
        let vm = pool.reserve().await?;
        let reserved = before.elapsed();
        let exit_code = vm.exec(["true"]).await?.exit_code;
        (reserved, before.elapsed(), exit_code)
    };
    if exit_code != Some(0) {
        return Err(format!("`true` exited with {exit_code:?} in the guest").into());
    }
    Ok((reserved, first))
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
            "{:<36} {:>7} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "metric",
            "samples",
            "api p50",
            "api p99",
            "in-proc p50",
            "in-proc p99",
            "diff p50",
            "diff p99",
            "ratio p50",
            "ratio p99"
        );
    }
    for row in rows {
        let (mut api, mut local) = (row.api.clone(), row.local.clone());
        let (api_p50, api_p99) = percentiles(&mut api);
        let (local_p50, local_p99) = percentiles(&mut local);
        let ratio = |a: Duration, b: Duration| round(a.as_secs_f64() / b.as_secs_f64().max(1e-9));
        let diff = |a: Duration, b: Duration| round(ms(a) - ms(b));
        if args.json {
            let mut line = serde_json::json!({
                "system": "firepit", "bench": "api", "metric": row.metric, "unit": "ms",
                "value": round(ms(api_p50)),
                "api_p50": round(ms(api_p50)), "api_p99": round(ms(api_p99)),
                "in_process_p50": round(ms(local_p50)), "in_process_p99": round(ms(local_p99)),
                "ratio_p50": ratio(api_p50, local_p50), "ratio_p99": ratio(api_p99, local_p99),
                "diff_p50": diff(api_p50, local_p50), "diff_p99": diff(api_p99, local_p99),
                "in_process": row.in_process, "refills": row.refills,
                "samples": api.len(), "depth": args.depth, "fill": args.fill.config_name(), "accel": accel,
            });
            if let (true, Some(fields)) = (row.local.is_empty(), line.as_object_mut()) {
                // No in-process counterpart (the floor of any request): API numbers only.
                for key in [
                    "in_process_p50",
                    "in_process_p99",
                    "ratio_p50",
                    "ratio_p99",
                    "diff_p50",
                    "diff_p99",
                    "in_process",
                ] {
                    fields.remove(key);
                }
            }
            println!("{line}");
        } else if row.local.is_empty() {
            println!(
                "{:<36} {:>7} {:>9.3} {:>9.3} {:>11} {:>11}",
                row.metric,
                api.len(),
                ms(api_p50),
                ms(api_p99),
                "-",
                "-"
            );
        } else {
            println!(
                "{:<36} {:>7} {:>9.3} {:>9.3} {:>11.3} {:>11.3} {:>9.3} {:>9.3} {:>9.1} {:>9.1}",
                row.metric,
                api.len(),
                ms(api_p50),
                ms(api_p99),
                ms(local_p50),
                ms(local_p99),
                diff(api_p50, local_p50),
                diff(api_p99, local_p99),
                ratio(api_p50, local_p50),
                ratio(api_p99, local_p99)
            );
        }
    }
    if !args.json {
        println!(
            "(ms; api = firepit serve over its Unix socket, in-proc = Firepit::pool; diff = api - in-proc; accel {accel})"
        );
    }
}
