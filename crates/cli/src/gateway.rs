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
    /// Seconds a request's head may take (and an idle kept-alive connection stays open).
    #[arg(long, env = "FIREPIT_GATEWAY_HEADER_TIMEOUT_SECS", value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_secs: u64,
    /// Seconds a request body may send nothing while the gateway waits for it.
    #[arg(long, env = "FIREPIT_GATEWAY_BODY_IDLE_TIMEOUT_SECS", value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_idle_timeout_secs: u64,
    /// Connections one client (peer address) may have open at once.
    #[arg(long, env = "FIREPIT_GATEWAY_MAX_CONNECTIONS_PER_CLIENT", value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_connections_per_client: u64,
    /// Log one JSON object per line (level from RUST_LOG).
    #[arg(long)]
    log_json: bool,
    /// Serve the web dashboard under /ui (log in with the clients' token): the whole cluster.
    #[arg(long)]
    ui: bool,
    /// Also serve E2B's SDKs on this TCP address (as `firepit serve --e2b` does), over the whole
    /// cluster; the API key is the clients' token.
    #[arg(long, env = "FIREPIT_GATEWAY_E2B", value_name = "ADDR")]
    e2b: Option<SocketAddr>,
    /// The domain of the E2B endpoint's `{port}-{sandbox}.{domain}` host names.
    #[arg(long, env = "FIREPIT_GATEWAY_E2B_DOMAIN", value_name = "DOMAIN", requires = "e2b")]
    e2b_domain: Option<String>,
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
    let http = firepit_http::HttpLimits {
        header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout_secs),
        body_idle_timeout: std::time::Duration::from_secs(args.body_idle_timeout_secs),
        max_connections_per_client: usize::try_from(args.max_connections_per_client).unwrap_or(usize::MAX),
        max_head_bytes: None,
    };
    let e2b = args.e2b.map(|listen| {
        // The key is set to the clients' token by the gateway.
        let mut e2b = firepit_e2b::E2bConfig::new(listen, String::new());
        e2b.http = firepit_http::HttpLimits { max_head_bytes: e2b.http.max_head_bytes, ..http };
        if let Some(domain) = args.e2b_domain {
            e2b.domain = domain;
        }
        e2b
    });
    let config = GatewayConfig {
        listen: args.listen,
        etcd: args.etcd,
        prefix: args.prefix,
        token,
        daemon_token,
        http,
        ui: args.ui,
        e2b,
    };
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
