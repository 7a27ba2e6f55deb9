//! `firepit port LEASE [GUEST_PORT] [--close]`: forward a guest port of a leased VM to a loopback
//! port of this host (prints the address to connect to), close that forward, or list the lease's
//! forwards.

use std::process::ExitCode;

use crate::CliResult;
use crate::status::ConnectArgs;

/// Arguments of `firepit port`.
#[derive(Debug, clap::Args)]
pub struct PortArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The lease id (from `firepit lease acquire`).
    lease_id: String,
    /// The guest's TCP port; without it, the lease's forwards are listed.
    guest_port: Option<u16>,
    /// Close the forward to GUEST_PORT instead of opening one.
    #[arg(long, requires = "guest_port")]
    close: bool,
}

/// Runs `firepit port`: prints `HOST:PORT` for a new (or existing) forward, or one
/// `GUEST_PORT HOST:PORT` line per forward.
pub async fn run(args: PortArgs) -> CliResult {
    let client = args.connect.client()?;
    match args.guest_port {
        Some(port) if args.close => client.remove_forward(&args.lease_id, port).await?,
        Some(port) => println!("{}", client.forward_port(&args.lease_id, port).await?),
        None => {
            for forward in client.ports(&args.lease_id).await? {
                println!("{} {}", forward.guest_port, forward.host_addr);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
