//! `firepit gateway`: one stateless front for many daemons (see `firepit-gateway`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use firepit_gateway::{Gateway, GatewayConfig};
use firepit_token::BearerToken;

use crate::CliResult;
use crate::logging;

/// Arguments of `firepit gateway` (each also from an environment variable, for service files).
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// TCP address to listen on; every request but /healthz needs the bearer token.
    #[arg(long, env = "FIREPIT_GATEWAY_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// etcd client URLs, comma-separated (the daemons' `cluster.etcd`).
    #[arg(long, env = "FIREPIT_ETCD", value_name = "URL,...", value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// File holding the bearer token clients must present.
    #[arg(long, env = "FIREPIT_GATEWAY_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    /// File holding the token the daemons' TCP listeners expect [default: --token-file].
    #[arg(long, env = "FIREPIT_DAEMON_TOKEN_FILE", value_name = "FILE")]
    daemon_token_file: Option<PathBuf>,
    /// Prefix of firepit's keys in etcd (the daemons' `cluster.prefix`).
    #[arg(long, env = "FIREPIT_ETCD_PREFIX", default_value = firepit_cluster::DEFAULT_PREFIX)]
    prefix: String,
    /// Log one JSON object per line (level from RUST_LOG).
    #[arg(long)]
    log_json: bool,
}

/// Runs the gateway until SIGTERM or SIGINT (in-flight requests finish; open terminals and streams
/// are cut).
pub async fn run(args: GatewayArgs) -> CliResult {
    logging::init(args.log_json);
    let token = BearerToken::from_file(&args.token_file)?;
    let daemon_token = match &args.daemon_token_file {
        Some(file) => BearerToken::from_file(file)?,
        None => token.clone(),
    };
    let config =
        GatewayConfig { listen: args.listen, etcd: args.etcd, prefix: args.prefix, token, daemon_token };
    let gateway = Gateway::bind(config).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    gateway
        .run(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping");
        })
        .await;
    Ok(ExitCode::SUCCESS)
}
