//! What one API request costs on top of the backend call it wraps: the daemon's own per-request
//! work (routing, JSON, logging, the lease span, metrics, idempotency bookkeeping, the expiry task)
//! plus the client and the Unix socket, without VMs.
//!
//! A real daemon (router, lease table, Unix listener) serves the `FakeBackend`
//! (`TestDaemon`) on its own multi-threaded runtime (2 workers, like `firepit serve` on a 2-core
//! host), as the daemon process would; the client runs on a current-thread runtime, as a
//! client process would. Logs go to a file through the same `tracing-subscriber` set-up as
//! `firepit serve` (plain text, level from `RUST_LOG`, default `info`; `RUST_LOG=off` measures
//! without a subscriber). Every iteration alternates API and in-process calls, so both see the
//! same machine.
//!
//! Metrics (µs; one JSON object per line; `diff_*` = API − in-process):
//! - `acquire_us`: `POST /v1/leases {wait_ms: 0}` on a kept-alive connection vs
//!   `backend.acquire(shape, 0)`;
//! - `release_us`: `DELETE /v1/leases/{id}` vs dropping the VM;
//! - `acquire_new_connection_us`: the same acquire on a new connection (connect + handshake);
//! - `acquire_idempotent_us`: the acquire with a fresh `Idempotency-Key`;
//! - `exec_us`: `POST /v1/leases/{id}/exec` of `true` vs the leased VM's `exec` (the fake VM's
//!   guest is the agent's request handling in this process: both sides run the host's `true`, so
//!   the difference is the API's cost of an exec);
//! - `healthz_us`: `GET /healthz`, the floor of any request (no in-process side).
//!
//! Run: `cargo bench -p firepit-daemon --bench request_cost` (`ITERATIONS=N`, default 3000).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use firepit_agent::ExecRequest;
use firepit_api::{AcquireRequest, ExecBody};
use firepit_client::{Client, Endpoint};
use firepit_daemon::backend::LeaseBackend;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::TestDaemon;

const SHAPE: &str = "small";
const WARMUP: usize = 300;

/// Samples of one metric, both sides.
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

fn main() {
    let iterations: usize = std::env::var("ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let log_dir = tempfile::tempdir().expect("bench set-up: temp dir");
    let log_path = log_dir.path().join("daemon.log");
    if log_level != "off" {
        let file = std::fs::File::create(&log_path).expect("bench set-up: log file");
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&log_level))
            .with_writer(Mutex::new(file))
            .with_ansi(false)
            .init();
    }

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("bench set-up: server runtime");
    let backend = FakeBackend::with_shape(SHAPE, 4);
    let daemon = server.block_on(TestDaemon::start_with(backend.clone(), |_| {}));
    let client_rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("bench set-up: runtime");
    let rows = client_rt.block_on(measure(&daemon, &backend, iterations));
    server.block_on(daemon.stop());
    let log_bytes = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    for row in rows {
        print(&row, &log_level, log_bytes / (iterations + WARMUP) as u64);
    }
}

async fn measure(daemon: &TestDaemon, backend: &FakeBackend, iterations: usize) -> Vec<Row> {
    let client = daemon.client();
    let request = AcquireRequest { shape: SHAPE.to_owned(), wait_ms: 0, ttl_ms: None, snapshot: None };
    let body = ExecBody::new(["true"]);
    let mut rows = [
        Row::new("acquire_us"),
        Row::new("release_us"),
        Row::new("acquire_new_connection_us"),
        Row::new("acquire_idempotent_us"),
        Row::new("exec_us"),
        Row::new("healthz_us"),
    ];
    let [acquire, release, fresh, idempotent, exec, healthz] = &mut rows;
    let pause =
        Duration::from_millis(std::env::var("PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    for i in 0..iterations + WARMUP {
        let keep = i >= WARMUP;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let sides = if i % 2 == 0 { [true, false] } else { [false, true] };
        for api in sides {
            if api {
                let t = Instant::now();
                let lease = client.acquire(&request, None).await.expect("acquire");
                let acquired = t.elapsed();
                let t = Instant::now();
                let out = client.exec(&lease.lease_id, &body).await.expect("exec");
                let executed = t.elapsed();
                assert_eq!(out.exit_code, Some(0));
                let t = Instant::now();
                client.release(&lease.lease_id).await.expect("release");
                let released = t.elapsed();

                let new_client = Client::new(Endpoint::Unix(daemon.socket.clone()));
                let t = Instant::now();
                let lease = new_client.acquire(&request, None).await.expect("acquire");
                let fresh_acquired = t.elapsed();
                new_client.release(&lease.lease_id).await.expect("release");

                let key = format!("bench-{i}");
                let t = Instant::now();
                let lease = client.acquire(&request, Some(&key)).await.expect("acquire");
                let idempotent_acquired = t.elapsed();
                client.release(&lease.lease_id).await.expect("release");

                let t = Instant::now();
                client.healthz().await.expect("healthz");
                let health = t.elapsed();
                if keep {
                    acquire.api.push(acquired);
                    exec.api.push(executed);
                    release.api.push(released);
                    fresh.api.push(fresh_acquired);
                    idempotent.api.push(idempotent_acquired);
                    healthz.api.push(health);
                }
            } else {
                let t = Instant::now();
                let vm = backend.acquire(SHAPE, Duration::ZERO).await.expect("acquire");
                let acquired = t.elapsed();
                let t = Instant::now();
                let out = vm.exec(exec_request()).await.expect("exec");
                let executed = t.elapsed();
                assert_eq!(out.exit_code, Some(0));
                let t = Instant::now();
                drop(vm);
                let released = t.elapsed();
                if keep {
                    for row in [&mut *acquire, &mut *fresh, &mut *idempotent] {
                        row.local.push(acquired);
                    }
                    exec.local.push(executed);
                    release.local.push(released);
                }
            }
        }
    }
    rows.into_iter().collect()
}

fn exec_request() -> ExecRequest {
    ExecRequest {
        argv: vec!["true".into()],
        env: Vec::new(),
        cwd: None,
        stdin: Vec::new(),
        timeout_ms: 0,
        max_output_bytes: 1 << 20,
        user: None,
    }
}

fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.5), at(0.99))
}

fn print(row: &Row, log: &str, log_bytes_per_iteration: u64) {
    let (mut api, mut local) = (row.api.clone(), row.local.clone());
    let (api_p50, api_p99) = percentiles(&mut api);
    let (local_p50, local_p99) = percentiles(&mut local);
    let r = |v: f64| (v * 10.0).round() / 10.0;
    let line = serde_json::json!({
        "system": "firepit", "bench": "request_cost", "metric": row.metric, "unit": "us",
        "value": r(api_p50 - local_p50),
        "api_p50": r(api_p50), "api_p99": r(api_p99),
        "in_process_p50": r(local_p50), "in_process_p99": r(local_p99),
        "diff_p50": r(api_p50 - local_p50), "diff_p99": r(api_p99 - local_p99),
        "samples": api.len(), "log": log, "log_bytes_per_iteration": log_bytes_per_iteration,
    });
    println!("{line}");
}
