//! `GET /v1/events` and `GET /v1/usage` through a gateway: one event stream merged from every
//! host (hosts that join are followed), each event naming its host, resumable with the stream's
//! cursor; the usage of every host's leases in one list.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use firepit_api::{EventKind, EventQuery};
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::TOKEN;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{TwoHosts, host_of, hosts_seen, send, small, start_host, start_host_with, two_hosts};

/// A raw SSE reader (HTTP/1.0, so the body is the stream as sent): each event's `id:` line and
/// its data.
struct RawEvents {
    stream: tokio::net::TcpStream,
    text: String,
}

impl RawEvents {
    async fn open(addr: SocketAddr, last_event_id: Option<&str>) -> Self {
        let mut request = format!("GET /v1/events HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut events = Self { stream, text: String::new() };
        while !events.text.contains("\r\n\r\n") {
            events.read_more(Duration::from_secs(10)).await.expect("the head");
        }
        let (head, rest) = events.text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("text/event-stream"), "{head}");
        events.text = rest.to_owned();
        events
    }

    async fn read_more(&mut self, within: Duration) -> Option<()> {
        let mut buffer = [0u8; 4096];
        let n = tokio::time::timeout(within, self.stream.read(&mut buffer)).await.ok()?.unwrap();
        assert!(n > 0, "the stream ended");
        self.text.push_str(std::str::from_utf8(&buffer[..n]).unwrap());
        Some(())
    }

    /// The next event (`id:`, data), skipping comments; `None` if none comes `within`.
    async fn next(&mut self, within: Duration) -> Option<(String, Value)> {
        loop {
            while let Some((block, rest)) = self.text.split_once("\n\n") {
                let (block, rest) = (block.to_owned(), rest.to_owned());
                self.text = rest;
                let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|v| v.trim().to_owned());
                let data = block.lines().find_map(|l| l.strip_prefix("data:"));
                if let (Some(id), Some(data)) = (id, data) {
                    return Some((id, serde_json::from_str(data.trim()).unwrap()));
                }
            }
            self.read_more(within).await?;
        }
    }

    /// `n` events, each within 10 s.
    async fn take(&mut self, n: usize) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        for i in 0..n {
            let next = self.next(Duration::from_secs(10)).await;
            events.push(next.unwrap_or_else(|| panic!("event {i} of {n} did not come: {events:?}")));
        }
        events
    }
}

/// (host, host's id) of each event: what identifies it across streams.
fn identities(events: &[(String, Value)]) -> Vec<(String, u64)> {
    events.iter().map(|(_, e)| (e["host"].as_str().unwrap().to_owned(), e["id"].as_u64().unwrap())).collect()
}

#[tokio::test]
async fn one_stream_carries_every_hosts_events_and_resumes_across_hosts_without_gaps_or_repeats() {
    let TwoHosts { etcd, a: _a, b: _b, gateway } = two_hosts("/ev1", 4, |_| {}).await;
    let client = gateway.client();
    // The typed client reads the gateway's stream as it reads a daemon's.
    let mut feed = client.events(&EventQuery::default()).await.unwrap();
    let mut first = RawEvents::open(gateway.addr, None).await;

    // Leases until both hosts have one.
    let mut leases = Vec::new();
    let mut hosts = BTreeSet::new();
    while hosts.len() < 2 {
        assert!(leases.len() < 8, "every lease went to one host: {hosts:?}");
        let lease = client.acquire(&small(0), None).await.unwrap();
        hosts.insert(host_of(&client, &lease.lease_id).await);
        leases.push(lease.lease_id);
    }
    let created = first.take(leases.len()).await;
    assert!(created.iter().all(|(_, e)| e["kind"] == "lease.created"), "{created:?}");
    let named: BTreeSet<String> =
        created.iter().map(|(_, e)| e["host"].as_str().unwrap().to_owned()).collect();
    assert_eq!(named, hosts, "each event names its host");
    for lease in &leases {
        let host = host_of(&client, lease).await;
        assert!(
            created.iter().any(|(_, e)| e["lease_id"] == lease.as_str() && e["host"] == host.as_str()),
            "{lease} on {host} missing: {created:?}"
        );
    }

    // Disconnected after the first event; everything after it happens while no stream is open.
    let cursor = created[0].0.clone();
    drop(first);
    for lease in &leases {
        client.release(lease).await.unwrap();
    }
    let mut resumed = RawEvents::open(gateway.addr, Some(&cursor)).await;
    let expected = created.len() - 1 + leases.len();
    let got = resumed.take(expected).await;
    assert_eq!(resumed.next(Duration::from_millis(500)).await, None, "nothing more, nothing repeated");
    let of_kind = |kind: &str| -> Vec<(String, Value)> {
        got.iter().filter(|(_, e)| e["kind"] == kind).cloned().collect()
    };
    let (mut again, mut before) = (identities(&of_kind("lease.created")), identities(&created[1..]));
    again.sort();
    before.sort();
    assert_eq!(again, before, "the events after the cursor, and not the one before it");
    let mut ended: Vec<String> =
        of_kind("lease.ended").iter().map(|(_, e)| e["lease_id"].as_str().unwrap().to_owned()).collect();
    ended.sort();
    let mut released = leases.clone();
    released.sort();
    assert_eq!(ended, released, "each release once: {got:?}");

    // A host that registers while the stream is open is followed.
    let _c = start_host_with(&etcd, "/ev1", "c", FakeBackend::with_shape("solo", 1)).await;
    hosts_seen(&gateway, 3).await;
    let solo = firepit_api::AcquireRequest { shape: "solo".into(), ..small(0) };
    let on_c = client.acquire(&solo, None).await.unwrap();
    let (_, event) = resumed.next(Duration::from_secs(10)).await.expect("the new host's event");
    assert_eq!(
        (event["host"].as_str(), event["lease_id"].as_str()),
        (Some("c"), Some(on_c.lease_id.as_str()))
    );

    // The typed client got them all, in each host's order, the gateway's `host` field ignored.
    let mut kinds = Vec::new();
    for _ in 0..(leases.len() * 2 + 1) {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next_event()).await.unwrap().unwrap();
        kinds.push(event.unwrap().kind);
    }
    let count = |kind| kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(
        (count(EventKind::LeaseCreated), count(EventKind::LeaseEnded)),
        (leases.len() + 1, leases.len())
    );

    // The typed client resumes through the gateway with the stream's cursor, not an event's id.
    let cursor = feed.resume_id().expect("the gateway's stream has ids").to_owned();
    assert!(cursor.contains(':'), "a cursor over hosts: {cursor}");
    drop(feed);
    client.release(&on_c.lease_id).await.unwrap();
    let mut feed = client.events_resuming(&EventQuery::default(), &cursor).await.unwrap();
    let event =
        tokio::time::timeout(Duration::from_secs(10), feed.next_event()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        (event.kind, event.lease_id.as_deref()),
        (EventKind::LeaseEnded, Some(on_c.lease_id.as_str()))
    );
    let more = tokio::time::timeout(Duration::from_millis(300), feed.next_event()).await;
    assert!(more.is_err(), "nothing repeated after the cursor: {more:?}");

    // `0` reads every host from its oldest kept event; one host's own id is refused.
    let mut everything = RawEvents::open(gateway.addr, Some("0")).await;
    assert_eq!(everything.take(leases.len() * 2 + 2).await.len(), leases.len() * 2 + 2);
    let id = created[0].1["id"].to_string();
    let (status, _, body) = send(
        gateway.addr,
        "GET",
        "/v1/events",
        &[("Authorization", &format!("Bearer {TOKEN}")), ("Last-Event-ID", &id)],
        "",
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn usage_lists_every_hosts_leases() {
    let TwoHosts { gateway, a: _a, b: _b, etcd: _etcd } = two_hosts("/us1", 4, |_| {}).await;
    let client = gateway.client();
    let mut by_host = std::collections::BTreeMap::new();
    while by_host.len() < 2 {
        let lease = client.acquire(&small(0), None).await.unwrap();
        by_host.insert(host_of(&client, &lease.lease_id).await, lease.lease_id);
    }
    let usage = client.usage().await.unwrap();
    let listed: BTreeSet<&str> = usage.leases.iter().map(|l| l.lease_id.as_str()).collect();
    for lease in by_host.values() {
        assert!(listed.contains(lease.as_str()), "{lease} missing from {usage:?}");
    }
    let raw = client.request(firepit_client::Method::GET, "/v1/usage", None, &[]).await.unwrap();
    let raw: Value = serde_json::from_slice(&raw.body).unwrap();
    for (host, lease) in &by_host {
        let entry =
            raw["leases"].as_array().unwrap().iter().find(|l| l["lease_id"] == lease.as_str()).unwrap();
        assert_eq!(entry["host"], host.as_str(), "{raw}");
    }
    assert!(raw["interval_ms"].as_u64().is_some_and(|ms| ms > 0), "{raw}");
}

#[tokio::test]
async fn a_stream_outlives_a_host_that_stops_and_follows_it_again_when_it_is_back() {
    let TwoHosts { etcd, a: _a, b, gateway } = two_hosts("/ev2", 2, |_| {}).await;
    let client = gateway.client();
    let mut stream = RawEvents::open(gateway.addr, None).await;

    b.daemon.stop().await;
    hosts_seen(&gateway, 1).await;
    let lease = client.acquire(&small(0), None).await.unwrap();
    let (_, event) = stream.next(Duration::from_secs(10)).await.expect("the remaining host's event");
    assert_eq!(
        (event["host"].as_str(), event["lease_id"].as_str()),
        (Some("a"), Some(lease.lease_id.as_str()))
    );

    // `b` again (a new run): its events reach the same stream.
    let _b = start_host(&etcd, "/ev2", "b", 2).await;
    hosts_seen(&gateway, 2).await;
    let mut on_b = None;
    while on_b.is_none() {
        let lease = client.acquire(&small(0), None).await.unwrap();
        if host_of(&client, &lease.lease_id).await == "b" {
            on_b = Some(lease.lease_id);
        }
    }
    let on_b = on_b.unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["lease_id"] == on_b.as_str() && e["host"] == "b") {
        let (_, event) = stream
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no event of {on_b} on b: {seen:?}"));
        seen.push(event);
    }
}
