//! Log output: human-readable lines by default, one JSON object per line with `--log-json`.
//! The level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (e.g. in tests) is a no-op.
///
/// # Example
/// ```
/// firepit::daemon::logging::init(false);
/// tracing::info!("hello");
/// ```
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _already_set = if json { builder.json().try_init() } else { builder.try_init() };
}
