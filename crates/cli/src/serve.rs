//! `firepit serve`: run the daemon for a config file until SIGTERM / SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use firepit_daemon::config::Config;
use firepit_daemon::server::Listeners;

use crate::logging;

use crate::CliResult;

/// Arguments of `firepit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file (TOML): shapes to keep warm, limits, listeners, lease TTLs. Every key is
    /// explained in the annotated example `crates/daemon/firepit.example.toml`. Without one, the
    /// daemon serves one shape named `default` on the default image (built on first start) at the
    /// default socket.
    #[arg(long, short, env = "FIREPIT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log one JSON object per line instead of human-readable text (level from RUST_LOG).
    #[arg(long)]
    log_json: bool,
    /// Only validate the config file, then exit.
    #[arg(long)]
    check: bool,
    /// Also serve E2B's SDKs on this TCP address (as `[e2b] listen` in the config does).
    #[arg(long, value_name = "ADDR")]
    e2b: Option<std::net::SocketAddr>,
}

/// Runs `firepit serve`: validates the config, reaps VMs a crashed previous run left behind,
/// starts the pools and serves until the first SIGTERM / SIGINT (graceful stop; a second one stops
/// at once). The socket is removed and every VM destroyed before it returns.
pub async fn run(args: ServeArgs) -> CliResult {
    logging::init(args.log_json);
    if let Some(path) = &args.config {
        let config = Config::load(path)?;
        if args.check {
            println!("{}: ok ({} shapes)", path.display(), config.shapes.len());
            return Ok(ExitCode::SUCCESS);
        }
        let e2b = crate::e2b::start(&config, args.e2b).await?;
        let served = firepit_daemon::serve(&config).await;
        if let Some(e2b) = e2b {
            e2b.stop().await;
        }
        served?;
        return Ok(ExitCode::SUCCESS);
    }
    // The built-in config: bind the default socket first, so that clients started right after
    // `firepit serve &` wait for the daemon while it builds the default image (first start only)
    // and warms the pool, instead of finding no socket.
    let listeners = match args.check {
        true => None,
        false => Some(Listeners::bind(&firepit_api::default_socket_path(), None).await?),
    };
    let image = tokio::task::spawn_blocking(crate::image::ensure_default).await??;
    let config = Config::builtin(image.dir())?;
    match listeners {
        None => println!(
            "built-in default config: ok ({} shape on {})",
            config.shapes.len(),
            image.dir().display()
        ),
        Some(listeners) => {
            let e2b = crate::e2b::start(&config, args.e2b).await?;
            let served = firepit_daemon::serve_on(listeners, &config).await;
            if let Some(e2b) = e2b {
                e2b.stop().await;
            }
            served?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
