//! `firepit serve`: run the daemon for a config file until SIGTERM / SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use firepit_daemon::{self as daemon, config::Config, shutdown};

use crate::logging;

use crate::CliResult;

/// Arguments of `firepit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file (TOML): shapes to keep warm, limits, listeners, lease TTLs. Every key is
    /// explained in the annotated example `crates/firepit/src/daemon/firepit.example.toml`.
    #[arg(long, short, env = "FIREPIT_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Log one JSON object per line instead of human-readable text (level from RUST_LOG).
    #[arg(long)]
    log_json: bool,
    /// Only validate the config file, then exit.
    #[arg(long)]
    check: bool,
}

/// Runs `firepit serve`: validates the config, reaps VMs a crashed previous run left behind,
/// starts the pools and serves until the first SIGTERM / SIGINT (graceful stop; a second one stops
/// at once). The socket is removed and every VM destroyed before it returns.
pub async fn run(args: ServeArgs) -> CliResult {
    logging::init(args.log_json);
    let config = Config::load(&args.config)?;
    if args.check {
        println!("{}: ok ({} shapes)", args.config.display(), config.shapes.len());
        return Ok(ExitCode::SUCCESS);
    }
    let (controller, signal) = shutdown::channel();
    shutdown::forward_os_signals(controller)?;
    let config_ref = &config;
    daemon::run(config_ref, signal, move |records| daemon::build_backend(config_ref, records)).await?;
    Ok(ExitCode::SUCCESS)
}
