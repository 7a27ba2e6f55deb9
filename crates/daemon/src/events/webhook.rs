//! Webhooks: each `[[webhook]]` gets the events it asked for as `POST`s of the [`Event`] as JSON,
//! signed, in order, retried with backoff, from a bounded queue of its own.
//!
//! Per webhook, a dispatcher task reads the bus and puts each matching event in the webhook's queue
//! (`queue` events at most); when the queue is full the event is dropped and counted
//! (`firepit_daemon_webhook_dropped_total`): a slow or dead receiver never holds a lease or the
//! bus up. A sender task delivers the queue one event at a time: a 2xx answer delivers it; anything
//! else (no connection, a timeout, another status) is retried after 0.5 s, 1 s, 2 s ... up to
//! 30 s apart, [`ATTEMPTS`] times in all, then the event is given up (`outcome="failed"`).
//!
//! Each request carries `X-Firepit-Event` (the kind), `X-Firepit-Delivery` (the event id: the same
//! on every retry, so a receiver can drop the copy of an answer that got lost) and
//! `X-Firepit-Signature: sha256=<hex>`, the HMAC-SHA256 of the body under the webhook's secret
//! (compare it in constant time before trusting the body).
//!
//! A stop flushes the queues: once the stop's last events are out (the `lease.ended` of every
//! lease it ended, reason `host_shutdown`) the bus closes, each dispatcher queues what it has not
//! yet read and ends, and each sender delivers its queue and ends; [`Webhooks::flush`] waits for
//! that at most its grace (`[events] webhook_grace_ms`, 5 s by default), then cancels the rest and
//! logs, per webhook, how many events were not delivered. A dead receiver so costs a stop the
//! grace, never more.
//!
//! Only `http://` URLs: the daemon carries no TLS stack; put a TLS-terminating proxy on the host
//! in front of an `https://` receiver.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use firepit_api::{Event, EventKind};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::events::EventBus;

/// Attempts per event before it is given up.
pub const ATTEMPTS: u32 = 8;
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one attempt may take (connect, send, answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Header with the body's signature.
pub const SIGNATURE_HEADER: &str = "x-firepit-signature";

/// One webhook, as the config gives it (the secret already read from its file).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://host:port/path`.
    pub url: String,
    /// The HMAC key.
    pub secret: Vec<u8>,
    /// The kinds it gets (empty: all).
    pub events: Vec<EventKind>,
    /// Most events waiting for delivery.
    pub queue: usize,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Why a webhook URL is not one the daemon can call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook url {url:?}: {why}")]
pub struct BadUrl {
    url: String,
    why: &'static str,
}

/// A webhook URL taken apart: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` (port 80 when the URL names none).
    pub authority: String,
    /// The path and query (`/` when empty).
    pub path: String,
}

/// Parses an `http://host[:port][/path]` URL.
///
/// ```
/// use firepit_daemon::events::webhook::target;
/// let t = target("http://127.0.0.1:9000/hooks/firepit?x=1").unwrap();
/// assert_eq!((t.authority.as_str(), t.path.as_str()), ("127.0.0.1:9000", "/hooks/firepit?x=1"));
/// assert_eq!(target("http://hooks.internal").unwrap().authority, "hooks.internal:80");
/// assert!(target("https://example.com/").is_err());
/// ```
pub fn target(url: &str) -> Result<Target, BadUrl> {
    let bad = |why| BadUrl { url: url.to_owned(), why };
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        bad("must start with http:// (put a TLS-terminating proxy in front of an https receiver)")
    })?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_owned()),
        Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
        None => (rest, "/".to_owned()),
    };
    if authority.is_empty() || authority.contains('@') || authority.chars().any(char::is_whitespace) {
        return Err(bad("needs a host (and no user info or spaces)"));
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        && !authority.ends_with(']');
    let authority = if has_port { authority.to_owned() } else { format!("{authority}:80") };
    Ok(Target { authority, path })
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
///
/// ```
/// let signature = firepit_daemon::events::webhook::sign(b"key", b"The quick brown fox jumps over the lazy dog");
/// assert_eq!(signature, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
/// ```
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    webhook: String,
    outcome: String,
}

/// The webhooks' metric families.
#[derive(Debug, Clone, Default)]
pub struct WebhookMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    attempts: Family<WebhookLabel, Counter>,
    dropped: Family<WebhookLabel, Counter>,
    queued: Family<WebhookLabel, Gauge>,
}

impl WebhookMetrics {
    /// Registers the families under `firepit_daemon_webhook_*` (label `webhook`: its URL).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("firepit_daemon_webhook");
        registry.register(
            "deliveries",
            "Events a webhook delivered or gave up after every retry",
            metrics.deliveries.clone(),
        );
        registry.register("attempts", "HTTP requests made to a webhook", metrics.attempts.clone());
        registry.register(
            "dropped",
            "Events not queued for a webhook: its queue was full",
            metrics.dropped.clone(),
        );
        registry.register("queued", "Events waiting for a webhook", metrics.queued.clone());
        metrics
    }

    /// Events dropped so far for `url` (its queue was full).
    pub fn dropped(&self, url: &str) -> u64 {
        self.dropped.get_or_create(&WebhookLabel { webhook: url.to_owned() }).get()
    }

    /// Events delivered so far to `url`.
    pub fn delivered(&self, url: &str) -> u64 {
        let labels = DeliveryLabels { webhook: url.to_owned(), outcome: "delivered".into() };
        self.deliveries.get_or_create(&labels).get()
    }
}

/// The running webhooks: their senders, to wait for at a stop.
#[derive(Debug)]
pub struct Webhooks {
    senders: TaskTracker,
}

impl Webhooks {
    /// Waits, at most `grace`, for every webhook to deliver (or give up) what it has queued; true
    /// if they all did. Call it after [`EventBus::close`]: the queues are complete only then. The
    /// senders still running at the end of the grace go on until their `stop` token fires (which
    /// logs what each leaves undelivered).
    pub async fn flush(&self, grace: Duration) -> bool {
        self.senders.close();
        if self.senders.is_empty() {
            return true;
        }
        let flushed = tokio::time::timeout(grace, self.senders.wait()).await.is_ok();
        match flushed {
            true => info!("webhooks delivered the events of the stop"),
            false => warn!(
                grace_ms = grace.as_millis() as u64,
                "webhooks still busy at the end of their grace; their undelivered events are dropped"
            ),
        }
        flushed
    }
}

/// Starts the dispatcher and sender of every webhook; they end when the bus closes and their queue
/// is delivered (see [`Webhooks::flush`]), or at once with `stop`.
pub fn start(
    webhooks: Vec<WebhookConfig>,
    bus: &EventBus,
    metrics: &WebhookMetrics,
    stop: &CancellationToken,
) -> Webhooks {
    let senders = TaskTracker::new();
    for config in webhooks {
        let target = match target(&config.url) {
            Ok(target) => target,
            Err(error) => {
                warn!(%error, "webhook not started");
                continue;
            }
        };
        let (queue, waiting) = mpsc::channel(config.queue.max(1));
        let config = Arc::new(config);
        let live = bus.subscribe(None).live;
        tokio::spawn(dispatch(config.clone(), live, queue, metrics.clone(), stop.clone()));
        senders.spawn(send(config, target, waiting, metrics.clone(), stop.clone()));
    }
    Webhooks { senders }
}

async fn dispatch(
    config: Arc<WebhookConfig>,
    mut live: broadcast::Receiver<Arc<Event>>,
    queue: mpsc::Sender<Arc<Event>>,
    metrics: WebhookMetrics,
    stop: CancellationToken,
) {
    let label = WebhookLabel { webhook: config.url.clone() };
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = live.recv() => event,
        };
        match event {
            Ok(event) if config.events.is_empty() || config.events.contains(&event.kind) => {
                if queue.try_send(event).is_err() {
                    metrics.dropped.get_or_create(&label).inc();
                } else {
                    metrics.queued.get_or_create(&label).inc();
                }
            }
            Ok(_other_kind) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(webhook = %config.url, missed, "webhook dispatcher fell behind the bus; events dropped");
                metrics.dropped.get_or_create(&label).inc_by(missed);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn send(
    config: Arc<WebhookConfig>,
    target: Target,
    mut waiting: mpsc::Receiver<Arc<Event>>,
    metrics: WebhookMetrics,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return undelivered(&config, None, &waiting),
            event = waiting.recv() => match event {
                Some(event) => event,
                // The bus closed and the queue is delivered.
                None => return,
            },
        };
        metrics.queued.get_or_create(&WebhookLabel { webhook: config.url.clone() }).dec();
        let outcome = tokio::select! {
            () = stop.cancelled() => return undelivered(&config, Some(&event), &waiting),
            outcome = deliver(&config, &target, &event, &metrics) => outcome,
        };
        let labels = DeliveryLabels { webhook: config.url.clone(), outcome: outcome.into() };
        metrics.deliveries.get_or_create(&labels).inc();
    }
}

/// Logs what a webhook leaves undelivered when the daemon stops it: `current` (being delivered)
/// and what waits in its queue.
fn undelivered(config: &WebhookConfig, current: Option<&Event>, waiting: &mpsc::Receiver<Arc<Event>>) {
    let left = usize::from(current.is_some()) + waiting.len();
    if left > 0 {
        warn!(
            webhook = %config.url,
            undelivered = left,
            first_id = current.map(|event| event.id),
            "the daemon stopped before these webhook events were delivered"
        );
    }
}

/// Delivers `event`, retrying with backoff; `"delivered"` or `"failed"` (given up).
async fn deliver(
    config: &WebhookConfig,
    target: &Target,
    event: &Event,
    metrics: &WebhookMetrics,
) -> &'static str {
    let label = WebhookLabel { webhook: config.url.clone() };
    let body = match serde_json::to_vec(event) {
        Ok(body) => Bytes::from(body),
        Err(error) => {
            warn!(%error, "cannot encode an event for a webhook");
            return "failed";
        }
    };
    let signature = sign(&config.secret, &body);
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        metrics.attempts.get_or_create(&label).inc();
        let posted =
            tokio::time::timeout(ATTEMPT_TIMEOUT, post(target, event, &signature, body.clone())).await;
        match posted {
            Ok(Ok(status)) if (200..300).contains(&status) => return "delivered",
            Ok(Ok(status)) => {
                debug!(webhook = %config.url, id = event.id, attempt, status, "webhook refused an event")
            }
            Ok(Err(error)) => {
                debug!(webhook = %config.url, id = event.id, attempt, %error, "webhook unreachable")
            }
            Err(_) => debug!(webhook = %config.url, id = event.id, attempt, "webhook timed out"),
        }
        if attempt == ATTEMPTS {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
    warn!(webhook = %config.url, id = event.id, kind = %event.kind, "webhook gave up on an event after {ATTEMPTS} attempts");
    "failed"
}

/// One POST of `body`; the answer's status.
async fn post(
    target: &Target,
    event: &Event,
    signature: &str,
    body: Bytes,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(&target.authority).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("firepit/", env!("CARGO_PKG_VERSION")))
        .header("x-firepit-event", event.kind.as_str())
        .header("x-firepit-delivery", event.id.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read the answer to its end so the receiver is not cut off mid-write.
    let _body = response.into_body().collect().await;
    connection.abort();
    Ok(status)
}
