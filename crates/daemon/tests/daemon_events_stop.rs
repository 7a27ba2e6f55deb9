//! The events of a graceful stop, over the fake backend: the stop ends every held lease with
//! reason `host_shutdown`, and those `lease.ended` events reach the `GET /v1/events` readers
//! before their streams end and the webhooks before they are stopped; neither a dead webhook nor
//! a reader that does not read holds the stop longer than its grace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use firepit_api::{AcquireRequest, EndReason, Event, EventKind, EventQuery};
use firepit_client::Client;
use firepit_daemon::events::webhook::WebhookConfig;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::server::STREAM_GRACE;
use firepit_daemon::test_daemon::TestDaemon;
use tokio::io::AsyncWriteExt;

const SECRET: &[u8] = b"a webhook secret of some length";

async fn acquire(client: &Client) -> String {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None, snapshot: None };
    client.acquire(&request, None).await.unwrap().lease_id
}

async fn acquire_three(daemon: &TestDaemon) -> Vec<String> {
    let client = daemon.client();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(acquire(&client).await);
    }
    held.sort();
    held
}

fn webhook(url: String) -> WebhookConfig {
    WebhookConfig { url, secret: SECRET.to_vec(), events: vec![EventKind::LeaseEnded], queue: 64 }
}

/// The leases whose `lease.ended` says `host_shutdown`, sorted.
fn ended_by_shutdown(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .filter(|e| e.kind == EventKind::LeaseEnded && e.reason == Some(EndReason::HostShutdown))
        .filter_map(|e| e.lease_id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_graceful_stop_sends_every_leases_host_shutdown_end_before_the_event_stream_ends() {
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("small", 3), |_| {}).await;
    let held = acquire_three(&daemon).await;
    let query = EventQuery { kinds: vec![EventKind::LeaseEnded], ..EventQuery::default() };
    let mut feed = daemon.client().events(&query).await.unwrap();
    // A second reader of every kind, on the same stop.
    let mut everything = daemon.client().events(&EventQuery::default()).await.unwrap();

    let started = Instant::now();
    let report = daemon.stop().await;
    let took = started.elapsed();
    assert_eq!(report.leases_ended, 3, "{report:?}");
    assert!(report.drained, "an open event stream is not an in-flight request: {report:?}");
    assert!(took < Duration::from_secs(2), "the open event streams did not hold the stop: {took:?}");

    let mut events = Vec::new();
    while let Some(event) =
        tokio::time::timeout(Duration::from_secs(5), feed.next_event()).await.unwrap().unwrap()
    {
        events.push(event);
    }
    assert_eq!(ended_by_shutdown(&events), held, "one host_shutdown end per lease: {events:?}");
    assert_eq!(events.len(), 3, "nothing else: {events:?}");
    let mut all = Vec::new();
    while let Some(event) =
        tokio::time::timeout(Duration::from_secs(5), everything.next_event()).await.unwrap().unwrap()
    {
        all.push(event);
    }
    assert_eq!(ended_by_shutdown(&all), held, "the unfiltered reader too: {all:?}");
    assert!(all.windows(2).all(|pair| pair[0].id < pair[1].id), "in id order: {all:?}");
}

/// A receiver on loopback answering each POST after `delay`; the events it got.
async fn slow_receiver(delay: Duration) -> (String, Arc<Mutex<Vec<Event>>>) {
    let got: Arc<Mutex<Vec<Event>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |body: Bytes| {
                let got = got.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    got.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                    "ok"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn a_webhook_gets_the_host_shutdown_ends_of_a_stop_before_the_stop_returns() {
    // 200 ms per delivery: the three ends take 0.6 s, queued behind one another.
    let (url, got) = slow_receiver(Duration::from_millis(200)).await;
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("small", 3), move |options| {
        options.events.webhooks = vec![webhook(url)];
    })
    .await;
    let held = acquire_three(&daemon).await;

    let report = daemon.stop().await;
    assert!(report.webhooks_flushed, "{report:?}");
    let got = got.lock().unwrap().clone();
    assert_eq!(ended_by_shutdown(&got), held, "every end was delivered when the stop returned: {got:?}");
}

#[tokio::test]
async fn a_dead_webhook_holds_the_stop_no_longer_than_its_grace() {
    // A port nobody listens on: every attempt is refused, and retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let grace = Duration::from_millis(700);
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("small", 1), move |options| {
        options.events.webhooks = vec![webhook(format!("http://127.0.0.1:{port}/hook"))];
        options.events.webhook_grace = grace;
    })
    .await;
    acquire(&daemon.client()).await;

    let started = Instant::now();
    let report = daemon.stop().await;
    let took = started.elapsed();
    assert!(!report.webhooks_flushed && report.leases_ended == 1, "{report:?}");
    assert!(took >= grace, "the webhook got its grace: {took:?}");
    assert!(took < grace + Duration::from_millis(1500), "and no more: {took:?}");
}

#[tokio::test]
async fn an_event_reader_that_does_not_read_holds_the_stop_no_longer_than_the_stream_grace() {
    let daemon = TestDaemon::start_with(FakeBackend::with_shape("small", 1), |_| {}).await;
    acquire(&daemon.client()).await;
    let mut stuck = tokio::net::UnixStream::connect(&daemon.socket).await.unwrap();
    stuck.write_all(b"GET /v1/events HTTP/1.1\r\nhost: firepit\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // More than the socket's buffers hold: the stream's writes block on the reader.
    let detail = "x".repeat(1000);
    for _ in 0..4000 {
        daemon.events.emit(EventKind::ShapeFillFailed, |event| event.detail = Some(detail.clone()));
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let report = daemon.stop().await;
    let took = started.elapsed();
    assert!(report.drained && report.leases_ended == 1, "{report:?}");
    assert!(took >= STREAM_GRACE, "the stuck stream was waited for: {took:?}");
    assert!(took < STREAM_GRACE + Duration::from_secs(1), "cut off after the grace: {took:?}");
    drop(stuck);
}
