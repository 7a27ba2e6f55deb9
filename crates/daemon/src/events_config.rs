//! `[events]` and `[[events.webhooks]]`: how many events `GET /v1/events` keeps for clients that resume,
//! and where events are POSTed.
//!
//! ```toml
//! [events]
//! history = 4096
//! webhook_grace_ms = 5000   # a stop waits this long at most for the webhooks to deliver
//!
//! [[events.webhooks]]
//! url = "http://127.0.0.1:9000/firepit"     # http only; a TLS proxy in front for https
//! secret_file = "/etc/firepit/webhook.secret" # the HMAC-SHA256 key (surrounding whitespace ignored)
//! events = ["lease.ended", "shape.fill_failed"] # default: every kind
//! queue = 1024                               # events waiting at most; more are dropped (counted)
//! ```

use std::path::PathBuf;

use firepit_api::EventKind;
use serde::Deserialize;

use crate::config::{Config, ConfigError};
use crate::events::EventSettings;
use crate::events::webhook::{WebhookConfig, target};

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Events kept in memory for readers that resume with `Last-Event-ID` (16..=1048576).
    #[serde(default = "default_history")]
    pub history: usize,
    /// Where events are POSTed: `[[events.webhooks]]` tables.
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
    /// How long a stop waits at most, in milliseconds, for the webhooks to deliver the events they
    /// have queued, among them the `lease.ended` (`host_shutdown`) of every lease the stop ended
    /// (0..=60000; 0: not at all). Events still undelivered then are logged and dropped. A second
    /// SIGTERM / SIGINT ends the wait at once.
    #[serde(default = "default_webhook_grace_ms")]
    pub webhook_grace_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            history: default_history(),
            webhooks: Vec::new(),
            webhook_grace_ms: default_webhook_grace_ms(),
        }
    }
}

fn default_webhook_grace_ms() -> u64 {
    crate::events::DEFAULT_WEBHOOK_GRACE.as_millis() as u64
}

fn default_history() -> usize {
    4096
}

/// One `[[events.webhooks]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Where to POST: `http://host[:port][/path]`.
    pub url: String,
    /// The secret the body is signed with (at least 16 bytes); or `secret_file`.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the secret (surrounding whitespace ignored), instead of `secret` (keeps it
    /// out of the config file).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The kinds to send (`lease.created`, `lease.ended`, ...); empty or absent: every kind.
    #[serde(default)]
    pub events: Vec<String>,
    /// Most events waiting for delivery (1..=1048576); past it new ones are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_queue() -> usize {
    1024
}

/// Checks `[events]` and every `[[events.webhooks]]` (not their secret files: [`event_settings`] reads
/// them).
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    if !(16..=1 << 20).contains(&config.events.history) {
        return Err(ConfigError::invalid("events.history", config.events.history, "must be 16..=1048576"));
    }
    if config.events.webhook_grace_ms > 60_000 {
        return Err(ConfigError::invalid(
            "events.webhook_grace_ms",
            config.events.webhook_grace_ms,
            "must be 0..=60000 (a stop waits this long for the webhooks)",
        ));
    }
    for (i, webhook) in config.events.webhooks.iter().enumerate() {
        if let Err(error) = target(&webhook.url) {
            return Err(ConfigError::invalid(
                format!("events.webhooks[{i}].url"),
                format!("{:?}", webhook.url),
                error.to_string(),
            ));
        }
        kinds(i, webhook)?;
        if !(1..=1 << 20).contains(&webhook.queue) {
            return Err(ConfigError::invalid(
                format!("events.webhooks[{i}].queue"),
                webhook.queue,
                "must be 1..=1048576",
            ));
        }
    }
    Ok(())
}

fn kinds(i: usize, webhook: &WebhookSection) -> Result<Vec<EventKind>, ConfigError> {
    webhook
        .events
        .iter()
        .map(|name| {
            EventKind::from_name(name).ok_or_else(|| {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                ConfigError::invalid(
                    format!("events.webhooks[{i}].events"),
                    format!("{name:?}"),
                    format!("must be one of {}", all.join(", ")),
                )
            })
        })
        .collect()
}

/// The events' settings of a validated config: reads every webhook's secret file.
pub fn event_settings(config: &Config) -> Result<EventSettings, ConfigError> {
    let mut webhooks = Vec::new();
    for (i, webhook) in config.events.webhooks.iter().enumerate() {
        let (key, shown, secret) = match (&webhook.secret, &webhook.secret_file) {
            (Some(secret), None) => {
                (format!("events.webhooks[{i}].secret"), "(hidden)".to_owned(), secret.as_bytes().to_vec())
            }
            (None, Some(file)) => {
                let key = format!("events.webhooks[{i}].secret_file");
                let secret = std::fs::read(file).map_err(|error| {
                    ConfigError::invalid(&key, file.display(), format!("cannot be read: {error}"))
                })?;
                (key, file.display().to_string(), secret.trim_ascii().to_vec())
            }
            _ => {
                return Err(ConfigError::invalid(
                    format!("events.webhooks[{i}]"),
                    &webhook.url,
                    "needs exactly one of `secret` and `secret_file`",
                ));
            }
        };
        if secret.len() < 16 {
            return Err(ConfigError::invalid(key, shown, "must hold a secret of at least 16 bytes"));
        }
        webhooks.push(WebhookConfig {
            url: webhook.url.clone(),
            secret,
            events: kinds(i, webhook)?,
            queue: webhook.queue,
        });
    }
    Ok(EventSettings {
        history: config.events.history,
        webhooks,
        webhook_grace: std::time::Duration::from_millis(config.events.webhook_grace_ms),
    })
}
