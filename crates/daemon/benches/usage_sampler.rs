//! What sampling every lease's usage costs the daemon: its CPU time with `LEASES` running leases
//! against the same daemon with none, each over `WINDOW_SECS` of wall time, at the default
//! interval (5 s).
//!
//! A real daemon (`TestDaemon`: router, lease table, the usage sampler) on a 2-worker runtime,
//! serving the `FakeBackend`: each fake VM's guest is the agent's request handling in this
//! process, so the guest's part of every probe (a request over a socket pair, `/proc/meminfo`,
//! `statfs`) is real work and counted here, where on real VMs it runs in the guests. The fake has
//! no QEMU, so the host's part (cgroup counters, `/proc/PID/statm`, the overlay's `stat`) is not
//! in this number: `firepit bench cgroup` measures it (`usage_sample_cpu_percent`, 300 VM
//! cgroups); the two add up to the sampler's cost.
//!
//! Metrics (one JSON object per line): `usage_sampler_cpu_percent` (percent of one core, the
//! process's user + system time over the window) for `leases` = 0 and `LEASES`, and the
//! share per lease (`per_lease_percent`); `probes` taken in the window and `probe_mean_ms`, the
//! mean of the daemon's own `firepit_daemon_usage_probe_seconds` over them.
//!
//! Run: `cargo bench -p firepit-daemon --bench usage_sampler` (`LEASES=N`, default 300;
//! `WINDOW_SECS=S`, default 20).

use std::time::{Duration, Instant};

use firepit_api::AcquireRequest;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::TestDaemon;

const SHAPE: &str = "small";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given for RUSAGE_SELF.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The daemon's probe histogram: (count, sum seconds).
fn probe_stats(metrics: &str) -> (f64, f64) {
    let value = |name: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    (value("firepit_daemon_usage_probe_seconds_count"), value("firepit_daemon_usage_probe_seconds_sum"))
}

fn main() {
    let leases = env("LEASES", 300) as usize;
    let window = Duration::from_secs(env("WINDOW_SECS", 20));
    let daemon_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for count in [0, leases] {
        let daemon =
            daemon_rt.block_on(TestDaemon::start_with(FakeBackend::with_shape(SHAPE, count.max(1)), |_| {}));
        let client = daemon.client();
        let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        client_rt.block_on(async {
            for _ in 0..count {
                let request = AcquireRequest { shape: SHAPE.into(), wait_ms: 5000, ttl_ms: Some(600_000), snapshot: None };
                client.acquire(&request, None).await.unwrap();
            }
            // Every lease sampled once before the window (the first round).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let before = probe_stats(&client.metrics().await.unwrap());
            let (cpu, wall) = (cpu_time(), Instant::now());
            tokio::time::sleep(window).await;
            let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
            let after = probe_stats(&client.metrics().await.unwrap());
            let probes = after.0 - before.0;
            let mean_ms = if probes > 0.0 { (after.1 - before.1) / probes * 1000.0 } else { 0.0 };
            let percent = cpu.as_secs_f64() * 100.0 / wall.as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "bench": "usage", "metric": "usage_sampler_cpu_percent", "leases": count,
                    "interval_ms": 5000, "window_s": wall.as_secs_f64().round(),
                    "value": (percent * 1000.0).round() / 1000.0, "probes": probes,
                    "probe_mean_ms": (mean_ms * 1000.0).round() / 1000.0,
                    "per_lease_percent": if count > 0 { ((percent / count as f64) * 10000.0).round() / 10000.0 } else { 0.0 },
                    "goal": "300 idle leases <= 1 % of a core (plus the host side: bench cgroup)",
                })
            );
        });
        daemon_rt.block_on(daemon.stop());
    }
}
