//! `firepit top`: a live table of the daemon's running leases and what each uses (CPU %, guest
//! memory, host RSS, disk, network), like `docker stats`. Plain text: the screen is cleared and
//! redrawn on a terminal, and `--once` prints one table and exits (scripts, non-terminals).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use firepit_api::{UsageList, UsageSample};

use crate::CliResult;
use crate::status::ConnectArgs;

/// Arguments of `firepit top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print the table once and exit (the default when stdout is not a terminal).
    #[arg(long)]
    once: bool,
    /// Seconds between two tables.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    every: f64,
    /// Print the daemon's JSON answer (`GET /v1/usage`) instead of a table (implies --once).
    #[arg(long)]
    json: bool,
}

/// Runs `firepit top`.
pub async fn run(args: TopArgs) -> CliResult {
    let client = args.connect.client()?;
    let live = !args.once && !args.json && std::io::stdout().is_terminal();
    let every = Duration::try_from_secs_f64(args.every.max(0.2)).unwrap_or(Duration::from_secs(2));
    loop {
        let usage = client.usage().await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&usage)?);
            return Ok(ExitCode::SUCCESS);
        }
        let table = render(&usage);
        if !live {
            print!("{table}");
            return Ok(ExitCode::SUCCESS);
        }
        // Home, the table, then clear what an earlier, longer table left below it.
        print!("\x1b[H{table}\x1b[J");
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// The table: a header, one line per lease, a summary line.
pub fn render(usage: &UsageList) -> String {
    let mut out = format!(
        "{:<20} {:<12} {:>5} {:>7} {:>19} {:>9} {:>19} {:>19} {:>4}\n",
        "LEASE",
        "SHAPE",
        "CPUS",
        "CPU %",
        "MEM USED / TOTAL",
        "HOST RSS",
        "DISK USED / TOTAL",
        "NET IN / OUT",
        "OOM"
    );
    for lease in &usage.leases {
        let s = lease.latest.clone().unwrap_or_default();
        let cpus = if lease.latest.is_some() { s.cpus.to_string() } else { "-".into() };
        out.push_str(&format!(
            "{:<20} {:<12} {:>5} {:>7} {:>19} {:>9} {:>19} {:>19} {:>4}\n",
            lease.lease_id,
            lease.shape,
            cpus,
            s.cpu_percent.map_or("-".into(), |p| format!("{p:.1}")),
            pair(s.memory_used_bytes, s.memory_total_bytes),
            bytes(s.host_rss_bytes),
            pair(s.disk_used_bytes, s.disk_total_bytes),
            pair(s.net_rx_bytes, s.net_tx_bytes),
            s.oom_kills,
        ));
    }
    let total_cpu =
        usage.leases.iter().filter_map(|l| sample_cpu_cores(l.latest.as_ref())).fold(0.0, |a, b| a + b);
    out.push_str(&format!(
        "{} leases, {:.2} cores busy, sampled every {} s\n",
        usage.leases.len(),
        total_cpu,
        usage.interval_ms as f64 / 1000.0
    ));
    out
}

/// Cores a sample's CPU % amounts to.
fn sample_cpu_cores(sample: Option<&UsageSample>) -> Option<f64> {
    let sample = sample?;
    Some(sample.cpu_percent? * f64::from(sample.cpus) / 100.0)
}

fn pair(a: Option<u64>, b: Option<u64>) -> String {
    format!("{} / {}", bytes(a), bytes(b))
}

/// Bytes in KiB, MiB or GiB (`-`: not measured).
fn bytes(value: Option<u64>) -> String {
    let Some(value) = value else { return "-".into() };
    let v = value as f64;
    match value {
        0..1024 => format!("{value}B"),
        1024..1_048_576 => format!("{:.0}K", v / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.0}M", v / 1_048_576.0),
        _ => format!("{:.1}G", v / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_api::LeaseUsage;

    #[test]
    fn the_table_shows_each_lease_and_dashes_for_what_was_not_measured() {
        let sample = UsageSample {
            cpus: 2,
            cpu_percent: Some(50.0),
            memory_used_bytes: Some(64 << 20),
            memory_total_bytes: Some(256 << 20),
            host_rss_bytes: Some(300 << 20),
            ..UsageSample::default()
        };
        let usage = UsageList {
            interval_ms: 5000,
            leases: vec![
                LeaseUsage { lease_id: "l-1".into(), shape: "small".into(), latest: Some(sample) },
                LeaseUsage { lease_id: "l-2".into(), shape: "small".into(), latest: None },
            ],
        };
        let table = render(&usage);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[1].contains("50.0") && lines[1].contains("64M / 256M") && lines[1].contains("300M"),
            "{table}"
        );
        assert!(lines[2].contains("- / -"), "{table}");
        assert_eq!(lines[3], "2 leases, 1.00 cores busy, sampled every 5 s");
        let none = UsageList { interval_ms: 5000, leases: Vec::new() };
        assert_eq!(render(&none).lines().last(), Some("0 leases, 0.00 cores busy, sampled every 5 s"));
    }

    #[test]
    fn sizes_are_short() {
        assert_eq!(bytes(Some(512)), "512B");
        assert_eq!(bytes(Some(3 << 30)), "3.0G");
        assert_eq!(bytes(None), "-");
    }
}
