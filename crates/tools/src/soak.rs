//! `firepit soak`: acquire/exec/release cycles from concurrent clients against a real daemon
//! (`firepit serve` as a child process, real QEMU VMs) while a chaos task injects faults; then
//! leak accounting and one JSON line. Exit code 1 when a pass condition fails.
//!
//! Faults (see the `soak_chaos` module): `kill -9` of leased and idle VMs' QEMU, fill failures
//! (the daemon's `[faults] fail_fills_file`), agent stalls (`SIGSTOP` of a QEMU for 4-14 s, which
//! the health check or the agent timeout must catch), execs sleeping past their timeout, requests
//! aborted mid-way, leases left to expire, clients that stop reading a stream, a download and a
//! terminal before their lease is released or expires (`soak_stall`: the VM must go at once and the
//! `leased` gauge equal the live leases), and once a `kill -9` of the daemon and a restart on the
//! same state dir.
//!
//! Which failures count as explained is the rule in the `soak_report` module. Pass conditions: every
//! fault kind injected, 0 unexplained failures, 0 leaked VMs (after the final stop and during the
//! run), 0 leaked files, the restart reaped only its own, timeouts enforced, full depth regained
//! within `--regain-secs`, and a clean SIGTERM stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::ToolResult;
use crate::procfs::qemu_under;
use crate::soak_chaos::Chaos;
use crate::soak_clients::{SoakShared, client_loop};
use crate::soak_daemon::{SHAPE, SoakDaemon, SoakSettings};
use crate::soak_leaks::leftover_files;
use crate::soak_report::{Durations, FaultKind, SoakReport};

/// Arguments of `firepit soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Acquire/exec/release cycles to run (at least; the soak goes on, up to 3×, until every fault
    /// kind was injected once).
    #[arg(long, default_value_t = 200)]
    cycles: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Mean pause of each client between two cycles, in ms.
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// Ready VMs the daemon keeps (depth.high).
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// How the daemon fills: `snapshot` (restore clones, fast) or `cold` (boot every VM).
    #[arg(long, default_value = "snapshot")]
    fill: String,
    /// Guest memory per VM, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mb: u64,
    /// Mean pause between two injected faults, in ms.
    #[arg(long, default_value_t = 2_500)]
    chaos_interval_ms: u64,
    /// Bound for the pool to be back at full depth once the chaos stopped, in seconds.
    #[arg(long, default_value_t = 240)]
    regain_secs: u64,
    /// The guest image directory (default: where `firepit image build` writes it).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print the result as one JSON line (otherwise pretty JSON).
    #[arg(long)]
    json: bool,
    /// Keep the soak directory (config, daemon logs, state dir) even when the soak passes.
    #[arg(long)]
    keep_dir: bool,
}

/// Runs `firepit soak`.
pub async fn run(args: SoakArgs) -> ToolResult {
    let began = Instant::now();
    firepit::image::Image::open(&args.image)?;
    let settings = SoakSettings {
        image: args.image.clone(),
        depth: args.depth,
        fill: args.fill.clone(),
        memory_mb: args.memory_mb,
    };
    let mut daemon = SoakDaemon::prepare(&std::env::temp_dir(), &settings)?;
    eprintln!("soak: directory {}", daemon.dir().display());
    daemon.start(Duration::from_secs(300)).await?;

    let shared =
        Arc::new(SoakShared::new(daemon.client(), args.cycles, Duration::from_millis(args.pause_ms)));
    let restart_at = (args.cycles as f64 * rand::rng().random_range(0.3..0.6)) as u64;
    let mut chaos = Chaos::new(shared.clone(), Duration::from_millis(args.chaos_interval_ms), restart_at);
    let done = tokio_util::sync::CancellationToken::new();
    let clients: Vec<_> =
        (0..args.clients.max(1)).map(|_| tokio::spawn(client_loop(shared.clone()))).collect();
    let all_done = done.clone();
    let waiter = tokio::spawn(async move {
        for client in clients {
            if let Err(error) = client.await {
                tracing::error!(%error, "a soak client panicked");
            }
        }
        all_done.cancel();
    });
    let chaos_began = Instant::now();
    let chaos_result = chaos.run(&mut daemon, &done).await;
    if let Err(error) = chaos_result {
        done.cancel();
        daemon.kill_hard().await;
        return Err(error.into());
    }
    waiter.await?;
    let chaos_s = chaos_began.elapsed().as_secs_f64();

    let regain_began = Instant::now();
    let full_depth_regained =
        wait_full_depth(&daemon, args.depth, Duration::from_secs(args.regain_secs)).await;
    let regain_s = regain_began.elapsed().as_secs_f64();
    chaos.leak_watch.scan(&daemon.state_dir);
    let clean_stop = daemon.stop(Duration::from_secs(120)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !qemu_under(&daemon.state_dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leaked_after = qemu_under(&daemon.state_dir).len() as u64;
    let leftovers = leftover_files(&daemon.state_dir, &daemon.socket, daemon.pids());

    let (explained, unexplained) = shared.log.classify();
    let faults = shared.log.fault_counts();
    let mut cycle_secs = shared.cycle_secs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    cycle_secs.sort_by(f64::total_cmp);
    let leaked_during = chaos.leak_watch.leaked() as u64;
    let every_kind = FaultKind::ALL.iter().all(|k| faults.get(k.name()).is_some_and(|n| *n > 0));
    let timeouts_enforced = shared.timeouts_enforced.load(Ordering::Acquire);
    let mut report = SoakReport {
        pass: false,
        cycles: shared.cycles_run.load(Ordering::Acquire),
        cycles_ok: shared.cycles_ok.load(Ordering::Acquire),
        faults,
        requests: shared.log.requests(),
        requests_failed: explained.values().sum::<u64>() + unexplained.len() as u64,
        requests_failed_explained: explained,
        requests_failed_unexplained: unexplained.len() as u64,
        unexplained: unexplained.iter().take(10).map(|f| format!("{}: {}", f.what, f.message)).collect(),
        leaked_vms: leaked_after + leaked_during,
        leaked_vms_during_run: leaked_during,
        leaked_files: leftovers.len() as u64,
        leaked_file_paths: leftovers.iter().take(20).map(|p| p.display().to_string()).collect(),
        restart_reaped_only_its_own: chaos.outcome.restart_reaped_only_its_own,
        timeouts_enforced,
        health_check_rejections: daemon.health_check_rejections,
        daemon_max_rss_kib: daemon.max_rss_kib(),
        full_depth_regained,
        clean_stop,
        durations: Durations {
            total_s: began.elapsed().as_secs_f64(),
            chaos_s,
            restart_s: chaos.outcome.restart_secs,
            regain_s,
            cycle_p50_s: percentile(&cycle_secs, 0.50),
            cycle_p99_s: percentile(&cycle_secs, 0.99),
        },
    };
    report.pass = every_kind
        && report.requests_failed_unexplained == 0
        && report.leaked_vms == 0
        && report.leaked_files == 0
        && report.restart_reaped_only_its_own
        && timeouts_enforced
        && full_depth_regained
        && clean_stop;
    let line =
        if args.json { serde_json::to_string(&report)? } else { serde_json::to_string_pretty(&report)? };
    println!("{line}");
    if report.pass && !args.keep_dir {
        // The soak directory goes with `daemon`; the template dir is the soak's own too.
        match std::fs::remove_dir_all(&daemon.template_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    } else {
        daemon.keep_dir();
        eprintln!(
            "soak: kept {} and {} (daemon logs: {:?})",
            daemon.dir().display(),
            daemon.template_dir.display(),
            daemon.logs()
        );
    }
    Ok(if report.pass { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Polls `/v1/pools` until the soak shape has `depth` ready VMs.
async fn wait_full_depth(daemon: &SoakDaemon, depth: usize, within: Duration) -> bool {
    let client = daemon.client();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(pools) = client.pools().await
            && pools.shapes.iter().any(|s| s.name == SHAPE && s.ready >= depth)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
