//! `firepit demo`: a pool of real VMs, used through the agent and the console, with a timing table.
//!
//! It exits 0 only if every step worked and nothing (QEMU process, runtime directory) was left
//! behind after shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use firepit::{Firepit, PooledVm, VmConfig};

use crate::{CliResult, progress};

/// Arguments of `firepit demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The guest image directory (default: the default image, built first when missing).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Number of VMs in the pool.
    #[arg(long, default_value_t = 4)]
    vms: usize,
    /// Memory per VM in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
}

/// Runs `firepit demo`.
pub async fn run(args: DemoArgs) -> CliResult {
    let image = match &args.image {
        Some(dir) => firepit::image::Image::open(dir)?,
        None => crate::image::ensure_default()?,
    };
    println!("image {} (kernel {}) at {}", image.id(), image.kernel_version(), image.dir().display());

    let started = Instant::now();
    let spinner = progress::spinner(format!("booting a pool of {} VMs", args.vms));
    let pool = Firepit::pool(VmConfig::from_image(&image))
        .cpus(1)
        .memory_mb(u64::from(args.memory_mb))
        .console_enabled()
        .build(args.vms)
        .await;
    spinner.finish();
    let pool = pool?;
    let warm = started.elapsed();
    println!("pool ready: {} VMs in {:.2} s", pool.available_now(), warm.as_secs_f64());

    let outcome = use_all(&pool, args.vms).await;
    let pids: Vec<u32> = match &outcome {
        Ok(rows) => rows.iter().map(|row| row.pid).collect(),
        Err(_) => Vec::new(),
    };
    let runtime_dir = firepit::qemu::ProviderConfig::default().runtime_dir;
    let before_shutdown = Instant::now();
    pool.shutdown().await;
    let shutdown = before_shutdown.elapsed();
    let rows = outcome?;
    print_table(&rows);
    println!("shutdown in {:.2} s", shutdown.as_secs_f64());

    let survivors: Vec<u32> = pids.into_iter().filter(|pid| process_alive(*pid)).collect();
    if !survivors.is_empty() {
        return Err(format!("QEMU processes still alive after shutdown: {survivors:?}").into());
    }
    let leftovers: Vec<PathBuf> = rows.iter().map(|r| r.runtime_dir.clone()).filter(|d| d.exists()).collect();
    if !leftovers.is_empty() {
        return Err(format!(
            "runtime directories left behind under {}: {leftovers:?}",
            runtime_dir.display()
        )
        .into());
    }
    println!("nothing left behind: all {} QEMU processes gone, runtime directories removed", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// What the demo measured for one VM.
struct Row {
    vm_id: String,
    pid: u32,
    runtime_dir: PathBuf,
    accel: String,
    boot: Duration,
    reserve: Duration,
    exec: Duration,
    output: String,
}

/// Reserves every VM, runs a command in each through the agent and one through the console.
async fn use_all(
    pool: &firepit::VmPool,
    n: usize,
) -> Result<Vec<Row>, Box<dyn std::error::Error + Send + Sync>> {
    let mut leases: Vec<PooledVm> = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let before = Instant::now();
        let vm = pool.try_reserve()?;
        let reserve = before.elapsed();
        rows.push(Row {
            vm_id: vm.id().to_owned(),
            pid: vm.pid(),
            runtime_dir: vm.runtime_dir().to_path_buf(),
            accel: vm.accel().as_str().to_owned(),
            boot: vm.boot_duration(),
            reserve,
            exec: Duration::ZERO,
            output: String::new(),
        });
        leases.push(vm);
    }
    for (vm, row) in leases.iter().zip(rows.iter_mut()) {
        let before = Instant::now();
        let out = vm.exec(["uname", "-r"]).await?;
        row.exec = before.elapsed();
        if !out.success() {
            return Err(format!("`uname -r` failed in {}: {}", vm.id(), out.stderr_lossy()).into());
        }
        row.output = out.stdout_lossy().trim().to_owned();
    }
    if let Some(vm) = leases.first() {
        let console = vm.console().await?;
        console.send("echo firepit-says-$((6*7))\n").await?;
        console.read_until("firepit-says-42").await?;
        println!("console of {}: `echo firepit-says-$((6*7))` answered firepit-says-42", vm.id());
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    println!("{:<24} {:>6} {:>9} {:>12} {:>10}  uname -r", "vm", "accel", "boot ms", "reserve µs", "exec ms");
    for row in rows {
        println!(
            "{:<24} {:>6} {:>9.0} {:>12.1} {:>10.1}  {}",
            row.vm_id,
            row.accel,
            row.boot.as_secs_f64() * 1e3,
            row.reserve.as_secs_f64() * 1e6,
            row.exec.as_secs_f64() * 1e3,
            row.output
        );
    }
}

fn process_alive(pid: u32) -> bool {
    // A reaped child's /proc entry is gone; a zombie would still count as left behind.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
