//! `GET /v1/events` and webhooks over the fake backend: events come in order with increasing ids,
//! a reader resumes after the last id it saw (from the daemon's history), filters by kind and
//! lease hold, and a webhook on loopback gets the same events, signed with HMAC-SHA256 under its
//! secret, each exactly once even when its receiver is down for 10 s in the middle (the retries,
//! 0.5 s to 8 s apart by then, deliver them ~16 s in).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use firepit_api::{
    AcquireBody, EndReason, Event, EventKind, EventQuery, Metadata, ReleaseQuery, ReleaseReason,
};
use firepit_client::{Client, EventFeed};
use firepit_daemon::events::webhook::WebhookConfig;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::TestDaemon;
use hmac::{Hmac, Mac};
use tokio::sync::mpsc;

const SECRET: &[u8] = b"a webhook secret of some length";

fn lease_kinds() -> Vec<EventKind> {
    vec![EventKind::LeaseCreated, EventKind::LeaseEnded]
}

/// Acquires a lease of `small` labelled `job=NAME`.
async fn acquire(client: &Client, job: &str) -> String {
    let mut metadata = Metadata::new();
    metadata.insert("job".into(), job.into());
    let body = AcquireBody { shape: "small".into(), wait_ms: 1000, metadata, ..AcquireBody::default() };
    client.acquire_with(&body, None).await.unwrap().lease_id
}

async fn next(feed: &mut EventFeed) -> Event {
    tokio::time::timeout(Duration::from_secs(10), feed.next_event()).await.unwrap().unwrap().unwrap()
}

/// A receiver on loopback: each POST's headers and body go to the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (sender, received) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let _sent = sender.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn events_come_in_order_resume_after_the_last_id_and_filter() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let query = EventQuery { kinds: lease_kinds(), ..EventQuery::default() };
    let mut feed = client.events(&query).await.unwrap();
    let first = acquire(&client, "one").await;
    client.release(&first).await.unwrap();
    let second = acquire(&client, "two").await;
    let kill = ReleaseQuery { reason: ReleaseReason::Killed, detail: Some("runaway".into()) };
    client.end_lease(&second, &kill).await.unwrap();

    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next(&mut feed).await);
    }
    let seen: Vec<(EventKind, &str, Option<EndReason>)> =
        events.iter().map(|e| (e.kind, e.lease_id.as_deref().unwrap_or(""), e.reason)).collect();
    assert_eq!(
        seen,
        [
            (EventKind::LeaseCreated, first.as_str(), None),
            (EventKind::LeaseEnded, first.as_str(), Some(EndReason::Released)),
            (EventKind::LeaseCreated, second.as_str(), None),
            (EventKind::LeaseEnded, second.as_str(), Some(EndReason::Killed)),
        ]
    );
    assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id), "ids increase: {events:?}");
    assert_eq!(events[0].metadata.get("job").map(String::as_str), Some("one"));
    assert_eq!(events[3].detail.as_deref(), Some("runaway"));

    // Resuming after the first event gets the rest from the history, in order.
    let resumed = EventQuery { last_event_id: Some(events[0].id), ..query.clone() };
    let mut again = client.events(&resumed).await.unwrap();
    for expected in &events[1..] {
        let event = next(&mut again).await;
        assert_eq!((event.id, event.kind), (expected.id, expected.kind));
    }
    assert_eq!(again.last_event_id(), Some(events[3].id));
    // The stream's own id, passed back as it is, resumes the same way.
    assert_eq!(again.resume_id(), Some(events[3].id.to_string().as_str()));
    let mut raw = client.events_resuming(&query, &events[2].id.to_string()).await.unwrap();
    assert_eq!(next(&mut raw).await.id, events[3].id);

    // Filters: only the ends, only one lease.
    let ends = EventQuery {
        kinds: vec![EventKind::LeaseEnded],
        lease_id: Some(second.clone()),
        last_event_id: Some(0),
    };
    let mut filtered = client.events(&ends).await.unwrap();
    let event = next(&mut filtered).await;
    assert_eq!((event.kind, event.lease_id.as_deref()), (EventKind::LeaseEnded, Some(second.as_str())));
    let third = acquire(&client, "three").await;
    client.release(&third).await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), filtered.next_event()).await;
    assert!(nothing.is_err(), "another lease's events are filtered out: {nothing:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_webhook_gets_the_events_signed_with_its_secret() {
    let (url, mut received) = receiver().await;
    let webhook = WebhookConfig {
        url: url.clone(),
        secret: SECRET.to_vec(),
        events: vec![EventKind::LeaseEnded],
        queue: 16,
    };
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("small", 1), move |options| {
        options.events.webhooks = vec![webhook];
    })
    .await;
    let client = daemon.client();
    let id = acquire(&client, "hooked").await;
    client.release(&id).await.unwrap();

    let (headers, body) =
        tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    let event: Event = serde_json::from_slice(&body).unwrap();
    assert_eq!((event.kind, event.lease_id.as_deref()), (EventKind::LeaseEnded, Some(id.as_str())));
    assert_eq!(event.reason, Some(EndReason::Released));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("x-firepit-event"), "lease.ended");
    assert_eq!(header("x-firepit-delivery"), event.id.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header("x-firepit-signature"), expected, "the body is signed with the secret");
    let mut wrong = Hmac::<sha2::Sha256>::new_from_slice(b"another secret, not this one").unwrap();
    wrong.update(&body);
    assert_ne!(
        header("x-firepit-signature"),
        format!("sha256={}", hex::encode(wrong.finalize().into_bytes()))
    );
    // lease.created was not asked for: nothing else came.
    assert!(tokio::time::timeout(Duration::from_millis(300), received.recv()).await.is_err());
    daemon.stop().await;
}

/// What a receiver got: per POST, the delivery id header, whether the signature was right, and
/// the event.
type Deliveries = Arc<Mutex<Vec<(String, bool, Event)>>>;

/// A receiver serving `addr` until `stop` fires, recording into `deliveries`; returns its task.
async fn receiver_on(
    addr: std::net::SocketAddr,
    deliveries: Deliveries,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let deliveries = deliveries.clone();
            async move {
                let header =
                    |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
                mac.update(&body);
                let signed = header("x-firepit-signature")
                    == format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let event: Event = serde_json::from_slice(&body).unwrap();
                deliveries.lock().unwrap().push((header("x-firepit-delivery"), signed, event));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let stopped = async move {
            let _either = stop.await;
        };
        axum::serve(listener, app).with_graceful_shutdown(stopped).await.unwrap();
    })
}

#[tokio::test]
async fn a_webhook_receiver_down_for_10_s_gets_every_event_once_when_it_is_back() {
    let deliveries: Deliveries = Arc::default();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let up = receiver_on(addr, deliveries.clone(), stopped).await;
    let webhook = WebhookConfig {
        url: format!("http://{addr}/hook"),
        secret: SECRET.to_vec(),
        events: lease_kinds(),
        queue: 64,
    };
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("small", 1), move |options| {
        options.events.webhooks = vec![webhook];
    })
    .await;
    let client = daemon.client();
    let delivered = |n: usize| {
        let deliveries = deliveries.clone();
        async move {
            let waiting = async {
                while deliveries.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(60), waiting).await.is_ok()
        }
    };
    let cycle = |job: &'static str| {
        let client = client.clone();
        async move {
            let id = acquire(&client, job).await;
            client.release(&id).await.unwrap();
        }
    };

    cycle("before").await;
    assert!(delivered(2).await, "the receiver is up: {:?}", deliveries.lock().unwrap());
    // Down: connections are refused for 10 s while leases come and go.
    stop.send(()).unwrap();
    up.await.unwrap();
    let down = tokio::time::Instant::now();
    for job in ["down-1", "down-2", "down-3"] {
        cycle(job).await;
    }
    tokio::time::sleep_until(down + Duration::from_secs(10)).await;
    assert_eq!(deliveries.lock().unwrap().len(), 2, "nothing is delivered while the receiver is down");
    // Back on the same port.
    let (_stop, stopped) = tokio::sync::oneshot::channel();
    let _up = receiver_on(addr, deliveries.clone(), stopped).await;
    cycle("after").await;
    assert!(delivered(10).await, "the retries deliver: {:?}", deliveries.lock().unwrap());
    // A late copy would come within a retry's wait.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every event the bus has, once, in order, signed.
    let query = EventQuery { kinds: lease_kinds(), last_event_id: Some(0), ..EventQuery::default() };
    let mut feed = client.events(&query).await.unwrap();
    let mut emitted = Vec::new();
    for _ in 0..10 {
        emitted.push(next(&mut feed).await.id);
    }
    let deliveries = deliveries.lock().unwrap().clone();
    let ids: Vec<u64> = deliveries.iter().map(|(_, _, event)| event.id).collect();
    assert_eq!(ids, emitted, "each event once, in order: {deliveries:?}");
    for (delivery, signed, event) in &deliveries {
        assert!(signed, "a valid signature: {event:?}");
        assert_eq!(delivery, &event.id.to_string(), "X-Firepit-Delivery is the event id");
    }
    let text = client.metrics().await.unwrap();
    assert!(!text.contains("outcome=\"failed\""), "nothing given up: {text}");
    daemon.stop().await;
}
