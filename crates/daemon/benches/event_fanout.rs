//! What fanning events out to many `GET /v1/events` readers costs: for 1 and for `CLIENTS` (100)
//! Server-Sent-Events readers in the same run, the time from an event's emit to its delivery at
//! the readers, and the daemon's CPU for it.
//!
//! A real daemon (`TestDaemon`: router, HTTP server, lease table, event bus) on a 2-worker runtime
//! of its own, serving the `FakeBackend`; the readers are `firepit_client` event feeds on another
//! runtime, over the Unix socket. `EVENTS` events (100) are emitted on the bus, `GAP_MS` (20) apart;
//! each reader notes when it parsed each one.
//!
//! Metrics (one JSON object per line, per reader count): `fanout_all_ms` p50/p99/max (emit to
//! the last reader's delivery of an event), `delivery_ms` p50/p99 (emit to each single delivery),
//! and `daemon_cpu_ms_per_event` / `daemon_cpu_percent` (CPU time of the daemon runtime's threads,
//! from `/proc/self/task/*/schedstat`, over the emitting window: the SSE encoding and socket writes
//! for every reader; the readers' own parsing runs on the other runtime and is not in it).
//!
//! Run: `cargo bench -p firepit-daemon --bench event_fanout` (`CLIENTS=N`, `EVENTS=N`, `GAP_MS=N`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use firepit_api::{EventKind, EventQuery};
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::TestDaemon;
use tokio::sync::mpsc;

/// The daemon runtime's threads' name (kernel `comm`: 15 bytes at most).
const DAEMON_THREADS: &str = "fanout-daemon";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time of this process's threads named [`DAEMON_THREADS`] (ns on CPU, from schedstat).
fn daemon_cpu() -> Duration {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != DAEMON_THREADS {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += schedstat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_nanos(total)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn main() {
    let clients = env("CLIENTS", 100) as usize;
    let events = env("EVENTS", 100) as usize;
    let gap = Duration::from_millis(env("GAP_MS", 20));
    let daemon_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(DAEMON_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fanout-readers")
        .enable_all()
        .build()
        .unwrap();
    for readers in [1, clients] {
        let daemon = daemon_rt.block_on(TestDaemon::start_with(FakeBackend::with_shape("small", 1), |_| {}));
        let client = daemon.client();
        let (delivered, mut deliveries) = mpsc::unbounded_channel::<(u64, Instant)>();
        client_rt.block_on(async {
            // Every reader connected (its first event is a probe) before the window starts.
            let query = EventQuery { kinds: vec![EventKind::LeaseCreated], ..EventQuery::default() };
            for _ in 0..readers {
                let mut feed = client.events(&query).await.unwrap();
                let delivered = delivered.clone();
                tokio::spawn(async move {
                    while let Ok(Some(event)) = feed.next_event().await {
                        let _closed = delivered.send((event.id, Instant::now()));
                    }
                });
            }
            let probe = daemon.events.emit(EventKind::LeaseCreated, |e| e.lease_id = Some("probe".into()));
            let mut got = 0;
            while got < readers {
                let (id, _) = deliveries.recv().await.unwrap();
                got += usize::from(id == probe.id);
            }
        });
        let mut emitted = HashMap::new();
        let cpu = daemon_cpu();
        let started = Instant::now();
        for n in 0..events {
            let at = Instant::now();
            let event = daemon.events.emit(EventKind::LeaseCreated, |e| e.lease_id = Some(format!("l-{n}")));
            emitted.insert(event.id, at);
            std::thread::sleep(gap);
        }
        // Wait for the last deliveries, then count.
        let mut latest: HashMap<u64, (usize, Instant)> = HashMap::new();
        let mut single = Vec::with_capacity(events * readers);
        client_rt.block_on(async {
            while single.len() < events * readers {
                let (id, at) = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
                    .await
                    .expect("every reader gets every event")
                    .unwrap();
                let Some(emit) = emitted.get(&id) else { continue };
                single.push((at - *emit).as_secs_f64() * 1000.0);
                let entry = latest.entry(id).or_insert((0, at));
                entry.0 += 1;
                entry.1 = entry.1.max(at);
            }
        });
        let window = started.elapsed();
        let cpu = daemon_cpu() - cpu;
        let mut all: Vec<f64> = latest
            .iter()
            .map(|(id, (count, last))| {
                assert_eq!(*count, readers, "event {id} reached every reader once");
                (*last - emitted[id]).as_secs_f64() * 1000.0
            })
            .collect();
        all.sort_by(f64::total_cmp);
        single.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({
                "bench": "event_fanout",
                "readers": readers,
                "events": events,
                "gap_ms": gap.as_millis() as u64,
                "fanout_all_ms": {"p50": round(percentile(&all, 50.0)), "p99": round(percentile(&all, 99.0)), "max": round(percentile(&all, 100.0))},
                "delivery_ms": {"p50": round(percentile(&single, 50.0)), "p99": round(percentile(&single, 99.0))},
                "daemon_cpu_ms_per_event": round(cpu.as_secs_f64() * 1000.0 / events as f64),
                "daemon_cpu_percent": round(cpu.as_secs_f64() * 100.0 / window.as_secs_f64()),
            })
        );
        drop(delivered);
        daemon_rt.block_on(daemon.stop());
    }
}
