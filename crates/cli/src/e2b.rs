//! The E2B-compatible endpoint beside the daemon (`[e2b]` in the config, or `--e2b ADDR`): bound
//! before the daemon starts, so a taken port fails `firepit serve` at once, and stopped after it.
//! Its firepit client talks to the daemon's own Unix socket (one local hop: see the crate docs of
//! `firepit-e2b` for its measured cost).

use std::net::SocketAddr;

use firepit_daemon::config::Config;
use firepit_e2b::E2bConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running endpoint.
pub struct E2bEndpoint {
    stop: CancellationToken,
    task: JoinHandle<Result<(), firepit_e2b::server::ServeError>>,
}

/// The key clients must send: the daemon's bearer token, else `$FIREPIT_E2B_API_KEY`.
fn api_key(config: &Config) -> Result<String, String> {
    let from_file = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("reading the token file {}: {e}", path.display()))
    };
    let key = match (&config.listen.token_file, &config.listen.token_env) {
        (Some(file), _) => from_file(file)?,
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| format!("the token variable {var} is not set"))?
        }
        (None, None) => std::env::var("FIREPIT_E2B_API_KEY").map_err(|_| {
            "the E2B endpoint checks X-API-Key against the daemon's token: set [listen] token_file or \
             token_env in the config, or FIREPIT_E2B_API_KEY"
                .to_owned()
        })?,
    };
    let key = key.trim().to_owned();
    if key.len() < 16 {
        return Err("the E2B API key must be at least 16 characters".into());
    }
    Ok(key)
}

/// Binds and starts the endpoint when the config or `listen` asks for one.
pub async fn start(config: &Config, listen: Option<SocketAddr>) -> Result<Option<E2bEndpoint>, String> {
    let Some(address) = listen.or(config.e2b.as_ref().map(|section| section.listen)) else { return Ok(None) };
    let mut e2b = E2bConfig::new(address, api_key(config)?);
    e2b.http = firepit_http::HttpLimits { max_head_bytes: e2b.http.max_head_bytes, ..config.http.limits() };
    if let Some(section) = &config.e2b {
        if let Some(domain) = &section.domain {
            e2b.domain.clone_from(domain);
        }
        if let Some(user) = &section.default_user {
            e2b.default_user.clone_from(user);
        }
    }
    let listener = firepit_e2b::server::bind(&e2b).await.map_err(|e| e.to_string())?;
    let client = firepit_client::Client::new(firepit_client::Endpoint::Unix(config.socket_path()));
    let stop = CancellationToken::new();
    tracing::info!(%address, domain = %e2b.domain, "E2B endpoint listening");
    let task = tokio::spawn(firepit_e2b::server::serve(listener, e2b, client, stop.clone()));
    Ok(Some(E2bEndpoint { stop, task }))
}

impl E2bEndpoint {
    /// Stops the endpoint (open streams end) and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the E2B endpoint failed"),
            Ok(_) => {}
            Err(_) => tracing::warn!("the E2B endpoint did not stop within 5 s"),
        }
    }
}
