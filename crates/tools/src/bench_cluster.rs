//! `firepit bench cluster`: what a gateway adds, and how the cluster behaves, on one machine.
//!
//! Starts a [`ChildCluster`] (etcd, `--daemons` real daemons with a snapshot shape of depth
//! `--depth`, one gateway) and measures, side by side in one run:
//! - `acquire_ms` / `release_ms`: through the gateway vs directly on a daemon's TCP listener
//!   (alternating, pools full and quiet before each), and `etcd_route_write_ms`, the etcd
//!   transaction the gateway adds to each (the route of the lease);
//! - `exec_ms`: `true` on one lease, through the gateway vs directly on its host, and
//!   `proxy_hop_ms`, a request its host answers from memory (the lease's port forwards): the hop;
//! - `placement_balance`: `--balance-leases` leases held at once through the gateway, max / min per
//!   host (with the counts), and `record_writes_per_host_per_s` while they were placed (the etcd
//!   write rate capacity updates cause; also idle, `record_writes_idle_per_host_per_s`);
//! - `host_death_to_last_placement_ms`: `kill -9` of one daemon while acquires run through the
//!   gateway: the last time the gateway tried the dead host, `host_gone_ms` (its record expired
//!   and the gateway dropped it), and the acquires that failed meanwhile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use firepit_api::{AcquireRequest, ExecBody};
use firepit_client::{Client, Method};
use firepit_cluster::{Etcd, Keys, LeaseRoute};
use serde_json::json;
use tokio::time::Instant;

use crate::ToolResult;
use crate::child_cluster::{ChildCluster, ClusterSettings};
use crate::daemon_dir::ShapeSettings;
use crate::stats::{Report, ms, percentiles, round};

/// Arguments of `firepit bench cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterBenchArgs {
    /// The guest image directory (default: where `firepit image build` writes it).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// Print one JSON object per metric (else text).
    #[arg(long)]
    json: bool,
    /// Daemons (hosts).
    #[arg(long, default_value_t = 3)]
    daemons: usize,
    /// Ready VMs per daemon.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Acquire + release pairs per side.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Exec round trips per side.
    #[arg(long, default_value_t = 200)]
    execs: usize,
    /// Leases held at once for the balance measurement.
    #[arg(long, default_value_t = 30)]
    balance_leases: usize,
}

/// Runs `firepit bench cluster`.
pub async fn run(args: ClusterBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "cluster" };
    let depth = args.depth.max(1);
    let shape =
        ShapeSettings { depth_low: depth, depth_high: depth, ..ShapeSettings::new("small", &args.image) };
    let settings = ClusterSettings {
        daemons: args.daemons.max(2),
        shape,
        ..ClusterSettings::new(std::env::current_exe()?, args.image.clone())
    };
    let mut cluster = ChildCluster::start(&settings).await?;
    let result = measure(&args, &report, &mut cluster, settings.ttl_secs).await;
    if result.is_err() {
        eprintln!(
            "logs are in {} (kept: the cluster is dropped after this message)",
            cluster.dir().display()
        );
    }
    result.map(|()| ExitCode::SUCCESS)
}

async fn measure(
    args: &ClusterBenchArgs,
    report: &Report,
    cluster: &mut ChildCluster,
    ttl_secs: u64,
) -> Result<(), crate::ToolError> {
    let gateway = cluster.gateway_client(0);
    let direct = cluster.daemon_client(0);
    let full = args.depth.max(1) * cluster.daemons.len();
    let request = AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None, snapshot: None };
    let (mut acquire, mut release) = (Sides::default(), Sides::default());
    for iteration in 0..args.iterations.max(1) {
        for through_gateway in alternate(iteration) {
            wait_full(&gateway, full).await?;
            let client = if through_gateway { &gateway } else { &direct };
            let before = Instant::now();
            let lease = client.acquire(&request, None).await?;
            let acquired = before.elapsed();
            client.release(&lease.lease_id).await?;
            acquire.push(through_gateway, acquired);
            release.push(through_gateway, before.elapsed() - acquired);
        }
    }
    acquire.emit(report, "acquire_ms");
    release.emit(report, "release_ms");
    emit_route_writes(report, cluster).await?;

    wait_full(&gateway, full).await?;
    let lease = gateway.acquire(&request, None).await?;
    let host = host_of(&gateway, &lease.lease_id).await?;
    let index = cluster.daemons.iter().position(|d| d.host == host).ok_or("the lease's host is not ours")?;
    let direct = cluster.daemon_client(index);
    let mut exec = Sides::default();
    for iteration in 0..args.execs.max(1) {
        for through_gateway in alternate(iteration) {
            let client = if through_gateway { &gateway } else { &direct };
            let before = Instant::now();
            client.exec(&lease.lease_id, &ExecBody::new(["true"])).await?;
            exec.push(through_gateway, before.elapsed());
        }
    }
    exec.emit(report, "exec_ms");
    // The hop alone: a request the daemon answers from memory (the lease's port forwards).
    let mut hop = Sides::default();
    let ports = format!("/v1/leases/{}/ports", lease.lease_id);
    for iteration in 0..args.execs.max(1) {
        for through_gateway in alternate(iteration) {
            let client = if through_gateway { &gateway } else { &direct };
            let before = Instant::now();
            client.request(Method::GET, &ports, None, &[]).await?.json::<serde_json::Value>()?;
            hop.push(through_gateway, before.elapsed());
        }
    }
    hop.emit(report, "proxy_hop_ms");
    gateway.release(&lease.lease_id).await?;

    balance(args, report, cluster).await?;
    host_death(report, cluster, ttl_secs).await
}

/// Samples of one metric on both sides.
#[derive(Default)]
struct Sides {
    gateway: Vec<Duration>,
    direct: Vec<Duration>,
}

impl Sides {
    fn push(&mut self, through_gateway: bool, sample: Duration) {
        if through_gateway { self.gateway.push(sample) } else { self.direct.push(sample) }
    }

    fn emit(&mut self, report: &Report, metric: &str) {
        let (g50, g99) = percentiles(&mut self.gateway);
        let (d50, d99) = percentiles(&mut self.direct);
        let extra = json!({
            "p99_ms": round(ms(g99)), "direct_p50_ms": round(ms(d50)), "direct_p99_ms": round(ms(d99)),
            "added_p50_ms": round(ms(g50) - ms(d50)), "added_p99_ms": round(ms(g99) - ms(d99)),
            "samples": self.gateway.len(),
        });
        report.emit(metric, ms(g50), "ms", extra);
    }
}

fn alternate(iteration: usize) -> [bool; 2] {
    if iteration.is_multiple_of(2) { [true, false] } else { [false, true] }
}

/// Waits until the cluster holds `full` ready VMs and fills none.
async fn wait_full(gateway: &Client, full: usize) -> Result<(), crate::ToolError> {
    let started = Instant::now();
    loop {
        let pools = gateway.pools().await?;
        if pools.shapes.iter().any(|s| s.ready >= full && s.filling == 0) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("the cluster's pools are not full after 2 min: {:?}", pools.shapes).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The etcd transaction a gateway adds to an acquire (and a release): one route written.
async fn emit_route_writes(report: &Report, cluster: &ChildCluster) -> Result<(), crate::ToolError> {
    let etcd = Etcd::connect(&cluster.etcd.endpoints(), Keys::new("/bench-routes")).await?;
    let mut samples = Vec::new();
    for i in 0..50 {
        let route = LeaseRoute {
            lease_id: format!("l-bench-{i}"),
            host: "bench".into(),
            run_id: "bench".into(),
            shape: "small".into(),
            expires_at_unix_ms: 0,
            idempotency_key: None,
        };
        let before = Instant::now();
        etcd.put_route(&route).await?;
        samples.push(before.elapsed());
        etcd.delete_route(&route).await?;
    }
    report.latency("etcd_route_write_ms", &mut samples, json!({"etcd_members": 1}));
    Ok(())
}

/// Counts the host-record writes etcd sees, per host, until `stop` fires.
fn count_record_writes(
    etcd: Etcd,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<BTreeMap<String, u64>>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut counts = BTreeMap::new();
        let mut client = etcd.client();
        let prefix = etcd.keys().hosts_prefix();
        let Ok(mut stream) = client.watch(prefix, Some(WatchOptions::new().with_prefix())).await else {
            return counts;
        };
        loop {
            tokio::select! {
                _ = &mut stopped => return counts,
                message = stream.message() => match message {
                    Ok(Some(response)) => {
                        for event in response.events().iter().filter(|e| e.event_type() == EventType::Put) {
                            let host = event.kv().and_then(|kv| etcd.keys().host_from_key(kv.key()).map(str::to_owned));
                            *counts.entry(host.unwrap_or_default()).or_insert(0) += 1;
                        }
                    }
                    _ => return counts,
                },
            }
        }
    });
    (stop, task)
}

async fn balance(
    args: &ClusterBenchArgs,
    report: &Report,
    cluster: &ChildCluster,
) -> Result<(), crate::ToolError> {
    let gateway = cluster.gateway_client(0);
    let etcd = Etcd::connect(&cluster.etcd.endpoints(), Keys::default()).await?;
    let hosts = cluster.daemons.len() as f64;
    // Idle: what a quiet host writes (load and free memory drift).
    wait_full(&gateway, args.depth.max(1) * cluster.daemons.len()).await?;
    let (stop, counting) = count_record_writes(etcd.clone());
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let _ = stop.send(());
    let writes: u64 = counting.await?.values().sum();
    report.emit(
        "record_writes_idle_per_host_per_s",
        writes as f64 / hosts / idle.as_secs_f64(),
        "1/s",
        json!({"seconds": idle.as_secs()}),
    );

    let (stop, counting) = count_record_writes(etcd);
    let started = Instant::now();
    let request = AcquireRequest { shape: "small".into(), wait_ms: 60_000, ttl_ms: None, snapshot: None };
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    let mut leases = Vec::new();
    for _ in 0..args.balance_leases.max(1) {
        let lease = gateway.acquire(&request, None).await?;
        *per_host.entry(host_of(&gateway, &lease.lease_id).await?).or_default() += 1;
        leases.push(lease.lease_id);
    }
    let placing = started.elapsed();
    for id in &leases {
        gateway.release(id).await?;
    }
    let _ = stop.send(());
    let writes: u64 = counting.await?.values().sum();
    let (min, max) =
        (per_host.values().min().copied().unwrap_or(0), per_host.values().max().copied().unwrap_or(0));
    let ratio = if min == 0 { f64::INFINITY } else { max as f64 / min as f64 };
    report.emit("placement_balance", ratio, "max/min", json!({"leases": leases.len(), "per_host": per_host}));
    let window = started.elapsed().as_secs_f64();
    let extra = json!({"seconds": round(window), "placing_seconds": round(placing.as_secs_f64()), "acquires_and_releases": 2 * leases.len()});
    report.emit("record_writes_per_host_per_s", writes as f64 / hosts / window, "1/s", extra);
    Ok(())
}

/// The host a gateway names for a lease.
async fn host_of(gateway: &Client, lease_id: &str) -> Result<String, crate::ToolError> {
    let response = gateway.request(Method::GET, &format!("/v1/leases/{lease_id}"), None, &[]).await?;
    let view: serde_json::Value = response.json()?;
    Ok(view["host"].as_str().ok_or("the gateway named no host")?.to_owned())
}

/// Placement attempts the gateway made on `host` (from its metrics).
async fn attempts_on(gateway: &Client, host: &str) -> u64 {
    let Ok(text) = gateway.metrics().await else { return 0 };
    let prefix = format!("firepit_gateway_placement_attempts_total{{host=\"{host}\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn host_death(
    report: &Report,
    cluster: &mut ChildCluster,
    ttl_secs: u64,
) -> Result<(), crate::ToolError> {
    let gateway = cluster.gateway_client(0);
    let victim = cluster.daemons.len() - 1;
    let host = cluster.daemons[victim].host.clone();
    let request = AcquireRequest { shape: "small".into(), wait_ms: 60_000, ttl_ms: None, snapshot: None };
    let mut seen = attempts_on(&gateway, &host).await;
    cluster.kill_daemon(victim).await;
    let killed = Instant::now();
    let (mut last_attempt, mut errors, mut acquires) = (Duration::ZERO, 0u64, 0u64);
    let mut samples = Vec::new();
    while cluster.hosts_seen(0).await.contains(&host) {
        if killed.elapsed() > Duration::from_secs(60) {
            return Err(format!("{host} still listed a minute after kill -9").into());
        }
        let before = Instant::now();
        match gateway.acquire(&request, None).await {
            Ok(lease) => {
                samples.push(before.elapsed());
                acquires += 1;
                gateway.release(&lease.lease_id).await?;
            }
            Err(_) => errors += 1,
        }
        let now = attempts_on(&gateway, &host).await;
        if now > seen {
            last_attempt = killed.elapsed();
            seen = now;
        }
    }
    let gone = killed.elapsed();
    let (p50, p99) = percentiles(&mut samples);
    let extra = json!({
        "host_gone_ms": round(ms(gone)), "acquires": acquires, "acquire_errors": errors,
        "acquire_p50_ms": round(ms(p50)), "acquire_p99_ms": round(ms(p99)), "ttl_secs": ttl_secs,
    });
    report.emit("host_death_to_last_placement_ms", ms(last_attempt), "ms", extra);
    Ok(())
}
