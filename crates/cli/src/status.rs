//! `firepit status`, and how every client subcommand finds the daemon ([`ConnectArgs`]).

use std::path::PathBuf;
use std::process::ExitCode;

use firepit_api::{ClusterHosts, HostStatusView, PoolsResponse, default_socket_path};
use firepit_client::{Client, Endpoint, Method};

use crate::CliResult;

/// Where the daemon is: its Unix socket (default) or a TCP URL with a token.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The daemon's Unix socket [default: $XDG_RUNTIME_DIR/firepit/firepit.sock, or
    /// /run/firepit/firepit.sock for root].
    #[arg(long, env = "FIREPIT_SOCKET", value_name = "PATH", conflicts_with = "url")]
    socket: Option<PathBuf>,
    /// The daemon's TCP address instead, as http://host:port (needs a bearer token: --token-file
    /// or $FIREPIT_TOKEN).
    #[arg(long, env = "FIREPIT_URL", value_name = "URL")]
    url: Option<String>,
    /// File holding the bearer token for --url.
    #[arg(long, env = "FIREPIT_TOKEN_FILE", value_name = "FILE", requires = "url")]
    token_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// A client for the daemon these arguments name.
    pub fn client(&self) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
        let Some(url) = &self.url else {
            return Ok(Client::new(Endpoint::Unix(self.socket.clone().unwrap_or_else(default_socket_path))));
        };
        let token = match &self.token_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read token file {}: {e}", file.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("FIREPIT_TOKEN").ok(),
        };
        Ok(Client::new(Endpoint::from_url(url, token)?))
    }
}

/// Arguments of `firepit status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print the daemon's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `firepit status`: one line per shape (ready, filling, leased VMs, failures); through a
/// gateway, the shapes summed over the cluster and then one line per host.
pub async fn run(args: StatusArgs) -> CliResult {
    let response = args.connect.client()?.request(Method::GET, "/v1/pools", None, &[]).await?;
    let pools: PoolsResponse = response.json()?;
    // A gateway adds `hosts`; a daemon has none.
    let cluster: ClusterHosts = serde_json::from_slice(&response.body).unwrap_or_default();
    if args.json {
        let value: serde_json::Value = serde_json::from_slice(&response.body)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>5} {:>7} {:>6} {:>9} {:>8}  {:<5} {:<8}  IMAGE",
        "SHAPE", "READY", "FILLING", "LEASED", "LOW-HIGH", "FAILURES", "ACCEL", "FILL"
    );
    for s in &pools.shapes {
        println!(
            "{:<16} {:>5} {:>7} {:>6} {:>9} {:>8}  {:<5} {:<8}  {}",
            s.name,
            s.ready,
            s.filling,
            s.leased,
            format!("{}-{}", s.depth_low, s.depth_high),
            s.fill_failures,
            s.accelerator,
            s.fill.as_str(),
            s.image_id,
        );
        if let Some(disk) = &s.root_disk {
            println!("  root disk {disk} (a private copy-on-write overlay per VM)");
        }
        if let Some(state) = &s.fill_state {
            println!("  {state}");
        }
        if let Some(error) = &s.last_error {
            println!("  last error: {error}");
        }
    }
    println!("{} leases held, up {} s", pools.leases, pools.uptime_secs);
    if !cluster.hosts.is_empty() {
        print_hosts(&cluster.hosts);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per host of a cluster: state, leases, load, ready VMs per shape.
fn print_hosts(hosts: &[HostStatusView]) {
    println!("\n{:<20} {:<11} {:>6} {:>9}  {:<28}  READY", "HOST", "STATE", "LEASES", "LOAD/CPUS", "URL");
    for h in hosts {
        let state = match (h.reachable, h.draining) {
            (false, _) => "unreachable",
            (true, true) => "draining",
            (true, false) => "ok",
        };
        let ready: Vec<String> = h.shapes.iter().map(|s| format!("{} {}", s.name, s.ready)).collect();
        let load = format!("{:.1}/{}", h.load1, h.cpus);
        println!(
            "{:<20} {:<11} {:>6} {:>9}  {:<28}  {}",
            h.host,
            state,
            h.leases,
            load,
            h.url,
            ready.join(", ")
        );
        if let Some(error) = &h.error {
            println!("  {error}");
        }
    }
    println!("{} hosts", hosts.len());
}
