//! What `bench density` measures once the pool is full: the idle pool's CPU (whole host and per
//! QEMU process) and reserve → first exec on fresh VMs at that density.

use std::time::{Duration, Instant};

use firepit::qemu::QemuProvider;
use firepit_pool::Pool;

use crate::ToolError;
use crate::pool_wait::run_true;
use crate::procfs::{
    HostCpu, QemuProcess, cpu_ticks, cpu_ticks_delta, cpu_ticks_of, host_cpus, ticks_per_second,
};
use crate::stats::{Report, round};

/// Host CPU (`/proc/stat`) and the summed CPU time of `processes` (the pool's QEMUs) and of this
/// process (the pool engine's tasks) over `seconds` in which nothing is asked of the pool.
pub(crate) async fn idle_cpu(
    report: &Report,
    processes: &[QemuProcess],
    seconds: u64,
    baseline_percent: f64,
) -> Result<(), ToolError> {
    let seconds = seconds.max(1);
    let me = std::process::id();
    let (host_before, qemu_before, me_before) = (HostCpu::now()?, cpu_ticks_of(processes), cpu_ticks(me)?);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (host_after, qemu_after, me_after) = (HostCpu::now()?, cpu_ticks_of(processes), cpu_ticks(me)?);
    let cpus = host_cpus() as f64;
    let percent_of_core = |ticks: u64| ticks as f64 / ticks_per_second() / seconds as f64 * 100.0;
    let host = host_after.percent_since(host_before);
    let (qemu_ticks, vms) = cpu_ticks_delta(&qemu_before, &qemu_after);
    let qemu = percent_of_core(qemu_ticks);
    report.emit(
        "idle_host_cpu_percent",
        host,
        "%",
        serde_json::json!({
            "percent_of_one_core": round(host * cpus), "baseline_percent": round(baseline_percent),
            "cpus": cpus, "seconds": seconds, "vms": vms,
        }),
    );
    report.emit(
        "idle_qemu_cpu_percent_of_core",
        qemu,
        "%",
        serde_json::json!({
            "whole_host_percent": round(qemu / cpus), "per_vm_percent_of_core": round(qemu / vms.max(1) as f64),
            "vms": vms, "seconds": seconds,
        }),
    );
    let engine = percent_of_core(me_after.saturating_sub(me_before));
    report.emit(
        "idle_pool_process_cpu_percent_of_core",
        engine,
        "%",
        serde_json::json!({"seconds": seconds, "what": "the bench process: the pool engine's tasks, probes"}),
    );
    // The idle pool's own share of the host, whatever else runs on it: its QEMUs and its engine.
    report.emit(
        "idle_pool_cpu_percent",
        (qemu + engine) / cpus,
        "%",
        serde_json::json!({
            "percent_of_one_core": round(qemu + engine), "cpus": cpus, "seconds": seconds, "vms": vms,
            "what": "whole-host %: the pool's QEMUs and the engine's process (idle_host_cpu_percent adds everything else)",
        }),
    );
    Ok(())
}

/// `samples` times: wait until the pool is full and quiet (`quiet`), `reserve()` (with the agent
/// ping before hand-out) and run `true`; the VM is dropped and replaced before the next sample.
/// Emits `reserve{suffix}` and `reserve_to_first_exec{suffix}` (`suffix` ends in `_ms`); returns
/// the p50 of the latter and the density it was measured at.
pub(crate) async fn first_execs(
    report: &Report,
    pool: &Pool<QemuProvider>,
    samples: usize,
    suffix: &str,
    quiet: impl AsyncFn(&Pool<QemuProvider>) -> Result<(), ToolError>,
) -> Result<(Duration, usize), ToolError> {
    let (mut reserves, mut firsts) = (Vec::new(), Vec::new());
    let mut vms = 0;
    for _ in 0..samples.max(1) {
        quiet(pool).await?;
        vms = pool.available_now();
        let before = Instant::now();
        let vm = pool.reserve().await?;
        reserves.push(before.elapsed());
        run_true(&vm).await?;
        firsts.push(before.elapsed());
    }
    let fields = serde_json::json!({"vms": vms});
    report.latency(&format!("reserve{suffix}"), &mut reserves, fields.clone());
    report.latency(&format!("reserve_to_first_exec{suffix}"), &mut firsts, fields);
    Ok((crate::stats::percentiles(&mut firsts).0, vms))
}
