//! `firepit run`: one command in a fresh VM, from the shell (with port forwards: `-p 8000`).

use firepit_api::AcquireRequest;
use firepit_client::Client;

use crate::CliResult;
use crate::lease::{ExecArgs, exec_and_print};
use crate::status::ConnectArgs;

/// Arguments of `firepit run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Shape of the VM (see `firepit status`); default `default`, or the snapshot's with
    /// `--snapshot`.
    #[arg(long)]
    shape: Option<String>,
    /// Start the VM from this snapshot (`firepit lease snapshot`) instead of a warm one.
    #[arg(long, value_name = "SNAPSHOT_ID")]
    snapshot: Option<String>,
    /// How long to wait for a ready VM, in ms.
    #[arg(long, default_value_t = 30_000)]
    wait_ms: u64,
    /// Forward this guest TCP port to a loopback port of this host before the command runs
    /// (repeatable); prints `guest PORT -> 127.0.0.1:HOSTPORT` on stderr first. The shape needs
    /// `network = "nat"`.
    #[arg(long = "publish", short = 'p', value_name = "GUEST_PORT")]
    ports: Vec<u16>,
    #[command(flatten)]
    exec: ExecArgs,
}

/// Runs `firepit run`: acquire a VM, run the command, print its output, release the VM (even when
/// the command fails), and exit with the command's exit code.
pub async fn run(args: RunArgs) -> CliResult {
    let client = args.connect.client()?;
    let shape = args.shape.unwrap_or_else(|| if args.snapshot.is_some() { "" } else { "default" }.to_owned());
    let request = AcquireRequest { shape, wait_ms: args.wait_ms, ttl_ms: None, snapshot: args.snapshot };
    let lease = client.acquire(&request, None).await?;
    let outcome = match forward(&client, &lease.lease_id, &args.ports).await {
        Ok(()) => exec_and_print(&client, &lease.lease_id, &args.exec).await,
        Err(error) => Err(error),
    };
    let released = client.release(&lease.lease_id).await;
    let code = outcome?;
    released?;
    Ok(code)
}

/// Opens the forwards and prints each as `guest PORT -> HOST:PORT` on stderr.
async fn forward(
    client: &Client,
    lease_id: &str,
    ports: &[u16],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for &port in ports {
        let addr = client.forward_port(lease_id, port).await?;
        eprintln!("guest {port} -> {addr}");
    }
    Ok(())
}
