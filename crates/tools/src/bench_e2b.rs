//! `firepit bench e2b`: E2B's Python SDK against firepit's E2B endpoint, next to firepit's own
//! Python SDK against the same daemon, in the same run.
//!
//! A child `firepit serve --e2b` on a private dir keeps pools of two templates on the `e2b-base`
//! image (snapshot fill): `base`, whose VMs also run E2B's command wrapper (`bash -lc true`) in
//! their warm-up (`WARM_UP_ARGV`), and `base-plain`, whose do not. Two Python processes (one per
//! SDK, the script in `bench_e2b_driver.py`) do what they are told on stdin, alternating, each
//! sample on full and quiet pools: `create_to_first_run_ms` (`Sandbox.create()` →
//! `commands.run("true")` answered — E2B's SDK runs it as `bash -l -c true` — on `base`, and on
//! `base-plain` to show what the shape's warm-up command saves; vs `client.lease()` →
//! `exec(["true"])` on `base`) and `files_write_mb_s` (one file from memory). Then the
//! cost of the endpoint's hop, from Rust: `envd_stat_ms`, a `Stat` through the endpoint (JSON
//! Connect over TCP, then the daemon's Unix socket) vs the same stat straight on the daemon's
//! socket.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use firepit_client::{Client, Endpoint, Method};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{ToolError, ToolResult};

/// A result of this bench's steps.
type Step<T = ()> = Result<T, ToolError>;
use crate::child_daemon::ChildDaemon;
use crate::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};
use crate::stats::{Report, ms};

/// What `base`'s VMs run in their warm-up: what E2B's SDKs wrap every command in.
const WARM_UP_ARGV: [&str; 3] = ["/bin/bash", "-lc", "true"];

/// The driver script both Python processes run.
const DRIVER: &str = include_str!("bench_e2b_driver.py");

/// Arguments of `firepit bench e2b`.
#[derive(Debug, clap::Args)]
pub struct E2bBenchArgs {
    /// The guest boot image directory (kernel, initramfs).
    #[arg(long, default_value_os_t = firepit_image::default_dir())]
    image: PathBuf,
    /// The template's root disk: an image name or id (`firepit image build --preset e2b-base`).
    #[arg(long, default_value = "e2b-base")]
    disk: String,
    /// Python with the `e2b` package (e.g. scripts/test's `target/e2b-compat/venv/bin/python`).
    #[arg(long, default_value = "python3")]
    e2b_python: PathBuf,
    /// Python with firepit's SDK (e.g. scripts/test's `target/python-sdk/venv/bin/python`).
    #[arg(long, default_value = "python3")]
    firepit_python: PathBuf,
    /// create → first run samples per SDK.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// File size of the write samples, MiB (3 per SDK).
    #[arg(long, default_value_t = 32)]
    megabytes: usize,
    /// Stat round trips per path for the hop's cost.
    #[arg(long, default_value_t = 200)]
    stats: usize,
    /// Print one JSON object per metric (else a table).
    #[arg(long)]
    json: bool,
}

/// One SDK's Python process.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    fn spawn(python: &PathBuf, sdk: &str, script: &PathBuf, env: &[(&str, String)]) -> Step<Self> {
        let mut child = Command::new(python)
            .arg(script)
            .arg(sdk)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdin = child.stdin.take().ok_or("the driver has no stdin")?;
        let stdout = child.stdout.take().ok_or("the driver has no stdout")?;
        Ok(Self { child, stdin, lines: BufReader::new(stdout).lines() })
    }

    async fn ask(&mut self, command: &str, key: &str) -> Step<f64> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        let line = tokio::time::timeout(Duration::from_secs(300), self.lines.next_line())
            .await
            .map_err(|_| format!("the driver did not answer `{command}` within 300 s"))??
            .ok_or("the driver exited (is its SDK installed in that python?)")?;
        let answer: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(error) = answer.get("error") {
            return Err(format!("`{command}` failed: {error}").into());
        }
        answer[key].as_f64().ok_or_else(|| format!("unexpected answer {line}").into())
    }
}

/// Waits until the templates' pools are full and quiet.
async fn full(client: &Client, depth: usize) -> Step {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let pools = client.pools().await?;
        if !pools.shapes.is_empty() && pools.shapes.iter().all(|s| s.ready >= depth && s.filling == 0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the pool was not full within 300 s: {:?}", pools.shapes).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `firepit bench e2b`.
pub async fn run(args: E2bBenchArgs) -> ToolResult {
    let report = Report { json: args.json, bench: "e2b" };
    let dir = DaemonDir::create(&std::env::temp_dir(), "bench-e2b")?;
    let depth = 2;
    let shape = |name: &str, warm_up_argv: &[&str]| {
        let mut shape = ShapeSettings::new(name, PathBuf::from(&args.disk));
        (shape.memory_mb, shape.depth_low, shape.depth_high) = (512, depth, depth);
        shape.warm_up_argv = warm_up_argv.iter().map(|arg| (*arg).to_owned()).collect();
        shape
    };
    let settings = DaemonSettings::new(&dir, vec![shape("base", &WARM_UP_ARGV), shape("base-plain", &[])]);
    let script = dir.path().join("driver.py");
    std::fs::write(&script, DRIVER)?;
    let key = format!("{:032x}", rand::random::<u128>());
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let e2b_url = format!("http://{address}");
    let socket = settings.socket.clone();
    let mut daemon = ChildDaemon::new(std::env::current_exe()?, dir, &settings)?
        .with_args(&["--e2b", &address.to_string()])
        .with_env("FIREPIT_E2B_API_KEY", &key)
        .with_env("FIREPIT_IMAGE_DIR", &args.image.to_string_lossy());
    daemon.start(Duration::from_secs(300)).await?;
    let result = measure(&args, &report, &daemon.client(), &script, &socket, &e2b_url, &key, depth).await;
    daemon.stop(Duration::from_secs(60)).await?;
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &E2bBenchArgs,
    report: &Report,
    client: &Client,
    script: &PathBuf,
    socket: &std::path::Path,
    e2b_url: &str,
    key: &str,
    depth: usize,
) -> Step {
    let env = [
        ("E2B_API_KEY", key.to_owned()),
        ("E2B_API_URL", e2b_url.to_owned()),
        ("E2B_SANDBOX_URL", e2b_url.to_owned()),
        ("E2B_DOMAIN", "e2b.local".to_owned()),
        ("FIREPIT_SOCKET", socket.to_string_lossy().into_owned()),
    ];
    let mut e2b = Driver::spawn(&args.e2b_python, "e2b", script, &env)?;
    let mut own = Driver::spawn(&args.firepit_python, "firepit", script, &env)?;
    // One untimed round each: imports, first connections.
    for driver in [&mut e2b, &mut own] {
        full(client, depth).await?;
        driver.ask("first-run", "ms").await?;
    }
    let (mut via_e2b, mut via_e2b_plain, mut via_own) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.samples {
        for (sdk, template) in [("e2b", "base"), ("e2b", "base-plain"), ("firepit", "base")] {
            full(client, depth).await?;
            let driver = if sdk == "e2b" { &mut e2b } else { &mut own };
            let took = driver.ask(&format!("first-run {template}"), "ms").await?;
            let samples = match (sdk, template) {
                ("e2b", "base") => &mut via_e2b,
                ("e2b", _) => &mut via_e2b_plain,
                _ => &mut via_own,
            };
            samples.push(Duration::from_secs_f64(took / 1000.0));
        }
    }
    let goal = serde_json::json!({"goal_p50_ms": 50});
    let warmed = serde_json::json!({"sdk": "e2b", "template": "base", "warm_up_argv": WARM_UP_ARGV});
    report.latency("create_to_first_run_ms", &mut via_e2b, merge(&goal, warmed));
    let plain = serde_json::json!({"sdk": "e2b", "template": "base-plain", "warm_up_argv": []});
    report.latency("create_to_first_run_ms", &mut via_e2b_plain, plain);
    report.latency(
        "create_to_first_run_ms",
        &mut via_own,
        serde_json::json!({"sdk": "firepit", "template": "base"}),
    );
    let write = format!("write {}", args.megabytes);
    let (mut e2b_rates, mut own_rates) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        full(client, depth).await?;
        e2b_rates.push(e2b.ask(&write, "mb_s").await?);
        full(client, depth).await?;
        own_rates.push(own.ask(&write, "mb_s").await?);
    }
    for (sdk, rates) in [("e2b", &mut e2b_rates), ("firepit", &mut own_rates)] {
        rates.sort_by(f64::total_cmp);
        let extra = serde_json::json!({"sdk": sdk, "megabytes": args.megabytes, "samples": rates.len()});
        report.emit("files_write_mb_s", rates[rates.len() / 2], "MB/s", extra);
    }
    drop((e2b.child, own.child));
    full(client, depth).await?;
    hop(args, report, client, e2b_url, key).await
}

fn merge(a: &serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    let mut out = a.clone();
    if let (Some(out), serde_json::Value::Object(b)) = (out.as_object_mut(), b) {
        out.extend(b);
    }
    out
}

/// The endpoint's own cost: the same stat through it and straight to the daemon, alternating.
async fn hop(args: &E2bBenchArgs, report: &Report, client: &Client, e2b_url: &str, key: &str) -> Step {
    let authority = e2b_url.trim_start_matches("http://").to_owned();
    let e2b = Client::new(Endpoint::Tcp { authority, token: None });
    let body = serde_json::to_vec(&serde_json::json!({"templateID": "base", "timeout": 120}))?;
    let created = e2b.request(Method::POST, "/sandboxes", Some(body), &[("x-api-key", key)]).await?;
    let created: serde_json::Value = created.json()?;
    let id = created["sandboxID"].as_str().ok_or("no sandboxID in the create answer")?.to_owned();
    let token = created["envdAccessToken"].as_str().unwrap_or_default().to_owned();
    let headers = [("e2b-sandbox-id", id.as_str()), ("x-access-token", token.as_str())];
    let stat = br#"{"path":"/etc/hostname"}"#.to_vec();
    let (mut through, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..args.stats {
        let started = Instant::now();
        let answer =
            e2b.request(Method::POST, "/filesystem.Filesystem/Stat", Some(stat.clone()), &headers).await?;
        if !answer.status.is_success() {
            return Err(format!("Stat through the endpoint: {} {}", answer.status, answer.text()).into());
        }
        through.push(started.elapsed());
        let started = Instant::now();
        client.stat(&id, "/etc/hostname", false).await?;
        direct.push(started.elapsed());
    }
    let (through_p50, _) = crate::stats::percentiles(&mut through.clone());
    let (direct_p50, _) = crate::stats::percentiles(&mut direct.clone());
    let diff = ms(through_p50) - ms(direct_p50);
    report.latency(
        "envd_stat_ms",
        &mut through,
        serde_json::json!({"via": "e2b", "hop_added_p50_ms": crate::stats::round(diff)}),
    );
    report.latency("envd_stat_ms", &mut direct, serde_json::json!({"via": "daemon"}));
    let _gone = e2b.request(Method::DELETE, &format!("/sandboxes/{id}"), None, &[("x-api-key", key)]).await?;
    Ok(())
}
