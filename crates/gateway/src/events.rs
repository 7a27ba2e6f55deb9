//! `GET /v1/events` through a gateway: every host's event stream merged into one Server-Sent
//! Events stream, each event tagged with its `host`, resumable across hosts.
//!
//! Why a merge and not a forward: an event belongs to the host whose lease it is about, and a
//! client watching a cluster wants one stream. The gateway follows each registered host's
//! `/v1/events` (a host that registers while the stream is open is followed too, from its oldest
//! kept event, so that what it did before the gateway saw it is not lost; a host whose stream
//! breaks is asked again after what was last read from it) and passes each event on as it
//! arrives; one host's events keep their order, events of different hosts interleave as they come.
//! Each open stream holds one connection to every host.
//!
//! What changes on the wire, and nothing else:
//! - `data:` is the daemon's event JSON with one more field, `host` (the host id it came from).
//!   Its `id` stays the host's own id, so ids of different hosts are unrelated.
//! - `id:` is a **cursor**: every host's last event id the stream delivered,
//!   `HOST:ID` pairs joined by `,`, in host order (e.g. `a:1795600000000017,b:1795600000000042`;
//!   host ids never hold `:` or `,`). An SSE client that reconnects sends it back as
//!   `Last-Event-ID` (or `?last_event_id=`), and gets every host's events after its pair: nothing
//!   it had, nothing it missed (within each daemon's `events.history`; beyond it, that host's
//!   `events.missed`, tagged with its host). A host the cursor does not name (one that
//!   registered later, or one that had sent nothing yet) is read from its oldest kept event: it
//!   may bring events from before the first connection, never one the client had.
//! - `last_event_id=0` reads every host from its oldest kept event (`firepit events` without
//!   `--follow` asks for that). Another plain number is refused: it is one host's id, which says
//!   nothing about the others.
//!
//! A host that dies cannot say its leases ended. When a followed host's registration expires
//! (its stream broken or not), the stream says it for it: one `lease.ended` with reason
//! `host_lost` per lease routed to that run of the host that neither ended on its stream nor
//! expired, tagged with the host, its `id` the host's last id (the cursor does not move). It is
//! said once per open stream, live: a client that was away at that moment learns it from the
//! lease itself (`410 host_lost`). A host that comes back later may still report those leases
//! (`daemon_restart`) from its records.
//!
//! The filters (`kind`, `lease_id`) are passed to every host. A stream without a cursor starts
//! "from now": the response's head is sent once every host answered (or [`OPEN_TIMEOUT`] passed),
//! so what happens after the client has the head reaches it.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use firepit_api::{EndReason, ErrorCode, Event, EventKind, EventQuery};
use firepit_client::EventFeed;
use tokio::sync::mpsc;
use tracing::debug;

use crate::error::GatewayError;
use crate::state::GatewayState;

/// How long opening one host's stream may take before the stream goes on without it (it is
/// asked again in the background).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a host whose stream broke waits before it is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A comment line this often keeps idle connections (and proxies) open, as the daemon's does.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the hosts and not yet sent to the client.
const BUFFER: usize = 1024;
/// Lease ends a follower remembers (to tell a lost lease from one that ended on its stream).
const ENDED_KEPT: usize = 65_536;

/// Where a merged stream stands: each host's last delivered event id.
///
/// ```
/// use firepit_gateway::events::Cursor;
/// let cursor = Cursor::parse("b:42,a:17").unwrap().unwrap();
/// assert_eq!(cursor.after("a"), Some(17));
/// assert_eq!(cursor.to_string(), "a:17,b:42");
/// assert_eq!(Cursor::parse("0").unwrap().unwrap().after("anything"), Some(0));
/// assert!(Cursor::parse("17").is_err() && Cursor::parse("a:x").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    hosts: BTreeMap<String, u64>,
}

impl Cursor {
    /// Reads a `Last-Event-ID`: `HOST:ID,...`, or `0` (every host from its oldest kept event;
    /// `Ok(Some(empty cursor))`). An empty text is no cursor.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text == "0" {
            return Ok(Some(Self::default()));
        }
        let mut hosts = BTreeMap::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let parsed = pair
                .split_once(':')
                .and_then(|(host, id)| Some((host, id.parse::<u64>().ok()?)))
                .filter(|(host, _)| firepit_cluster::check_host_id(host).is_ok());
            let Some((host, id)) = parsed else {
                return Err(format!(
                    "Last-Event-ID {text:?}: through a gateway it is the stream's `id:` line, `HOST:ID` pairs joined by `,` (or 0 for everything kept), not one event's id"
                ));
            };
            hosts.insert(host.to_owned(), id);
        }
        Ok(Some(Self { hosts }))
    }

    /// Where to resume `host`: after its pair, or from its oldest kept event (`0`).
    pub fn after(&self, host: &str) -> Option<u64> {
        Some(self.hosts.get(host).copied().unwrap_or(0))
    }

    /// Notes that `event` of `host` was delivered.
    pub fn advance(&mut self, host: &str, event: &Event) {
        // `events.missed` carries the id before the first kept one: resuming after it is the
        // same as resuming after the pair the host had.
        if event.kind != EventKind::EventsMissed {
            self.hosts.insert(host.to_owned(), event.id);
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (host, id)) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{host}:{id}")?;
        }
        Ok(())
    }
}

/// `GET /v1/events`.
pub async fn events(State(gw): State<GatewayState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    match open(gw, &headers, raw.as_deref()).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn open(gw: GatewayState, headers: &HeaderMap, raw: Option<&str>) -> Result<Response, GatewayError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| GatewayError::new(ErrorCode::BadRequest, format!("the query is not a query: {e}")))?;
    let (resume, filters): (Vec<_>, Vec<_>) =
        pairs.into_iter().partition(|(name, _)| name == "last_event_id");
    let query = EventQuery::from_pairs(filters).map_err(|e| GatewayError::new(ErrorCode::BadRequest, e))?;
    let resume = match headers.get("last-event-id") {
        Some(value) => value.to_str().unwrap_or("?").to_owned(),
        None => resume.into_iter().next_back().map(|(_, value)| value).unwrap_or_default(),
    };
    let cursor = Cursor::parse(&resume).map_err(|e| GatewayError::new(ErrorCode::BadRequest, e))?;

    let (sender, receiver) = mpsc::channel(BUFFER);
    // The hosts known now are asked before the head goes out (from now, or after the cursor).
    let hosts = gw.directory().hosts();
    let opened = futures_util::future::join_all(hosts.iter().map(|host| {
        let after = cursor.as_ref().and_then(|c| c.after(&host.host));
        let query = EventQuery { last_event_id: after, ..query.clone() };
        open_host(&gw, host.host.clone(), host.url.clone(), query)
    }))
    .await;
    let mut following = HashSet::new();
    for (host, feed) in hosts.into_iter().zip(opened) {
        following.insert(host.host.clone());
        let after = cursor.as_ref().and_then(|c| c.after(&host.host));
        let follower = Follower::new(&gw, host.host, query.clone(), after, sender.clone());
        tokio::spawn(follower.run(feed));
    }
    tokio::spawn(follow_new_hosts(gw, following, cursor.clone(), query, sender));

    let stream = futures_util::stream::unfold(
        (receiver, cursor.unwrap_or_default()),
        |(mut receiver, mut cursor)| async move {
            let (host, event) = receiver.recv().await?;
            cursor.advance(&host, &event);
            Some((Ok::<SseEvent, Infallible>(sse(&cursor, &host, &event)), (receiver, cursor)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// One event as SSE: the cursor as its id, the daemon's JSON with `host` added as its data.
fn sse(cursor: &Cursor, host: &str, event: &Event) -> SseEvent {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    data["host"] = host.into();
    SseEvent::default().id(cursor.to_string()).event(event.kind.as_str()).data(data.to_string())
}

/// Opens `host`'s event stream, bounded by [`OPEN_TIMEOUT`]; `None` when it did not answer.
async fn open_host(gw: &GatewayState, host: String, url: String, query: EventQuery) -> Option<EventFeed> {
    let client = match gw.upstream().daemon_client(&url) {
        Ok(client) => client,
        Err(error) => {
            debug!(%host, %error, "cannot follow the host's events");
            return None;
        }
    };
    match tokio::time::timeout(OPEN_TIMEOUT, client.events(&query)).await {
        Ok(Ok(feed)) => Some(feed),
        Ok(Err(error)) => {
            debug!(%host, %error, "the host refused its event stream");
            None
        }
        Err(_) => {
            debug!(%host, "the host's event stream did not open in time");
            None
        }
    }
}

/// Follows the hosts that register while the stream is open (from their oldest kept event, or
/// after the cursor's pair), until the client goes.
async fn follow_new_hosts(
    gw: GatewayState,
    mut following: HashSet<String>,
    cursor: Option<Cursor>,
    query: EventQuery,
    sender: mpsc::Sender<(String, Event)>,
) {
    loop {
        tokio::select! {
            () = sender.closed() => return,
            () = gw.directory().changed(RETRY_AFTER) => {}
        }
        for host in gw.directory().hosts() {
            if following.insert(host.host.clone()) {
                let after = cursor.as_ref().map_or(Some(0), |c| c.after(&host.host));
                let follower = Follower::new(&gw, host.host, query.clone(), after, sender.clone());
                tokio::spawn(follower.run(None));
            }
        }
    }
}

/// Reads one host's events into the merged stream, as long as the client reads it.
struct Follower {
    gw: GatewayState,
    host: String,
    query: EventQuery,
    /// The last id read from the host (`None`: from now, until the first event).
    after: Option<u64>,
    sender: mpsc::Sender<(String, Event)>,
    /// The run of the host being followed (`None` while it is not registered).
    run_id: Option<String>,
    /// Leases whose end came on the host's stream.
    ended: HashSet<String>,
}

impl Follower {
    fn new(
        gw: &GatewayState,
        host: String,
        query: EventQuery,
        after: Option<u64>,
        sender: mpsc::Sender<(String, Event)>,
    ) -> Self {
        let run_id = gw.directory().host(&host).map(|record| record.run_id);
        Self { gw: gw.clone(), host, query, after, sender, run_id, ended: HashSet::new() }
    }

    async fn run(mut self, mut feed: Option<EventFeed>) {
        loop {
            if let Some(open) = feed.take() {
                self.forward(open).await;
            }
            if self.sender.is_closed() {
                return;
            }
            self.check_registration().await;
            // Asked again after what was read; never "from now" again (that could skip events).
            self.after = Some(self.after.unwrap_or(0));
            tokio::select! {
                () = self.sender.closed() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
            // A host that left is asked again once it is back (a restart, an etcd hiccup).
            self.check_registration().await;
            if let Some(record) = self.gw.directory().host(&self.host) {
                let query = EventQuery { last_event_id: self.after, ..self.query.clone() };
                feed = open_host(&self.gw, self.host.clone(), record.url, query).await;
            }
        }
    }

    /// Passes `feed`'s events on until it ends, breaks, the host's registration goes, or the
    /// client goes. (`next_event` is cancel-safe: a frame is taken whole or not at all.)
    async fn forward(&mut self, mut feed: EventFeed) {
        loop {
            let next = tokio::select! {
                () = self.sender.closed() => return,
                () = self.gw.directory().changed(RETRY_AFTER) => {
                    if self.gw.directory().host(&self.host).is_none() {
                        return;
                    }
                    continue;
                }
                next = feed.next_event() => next,
            };
            match next {
                Ok(Some(event)) => {
                    if event.kind != EventKind::EventsMissed {
                        self.after = Some(event.id);
                    }
                    if let (EventKind::LeaseEnded, Some(lease)) = (event.kind, &event.lease_id) {
                        if self.ended.len() >= ENDED_KEPT {
                            self.ended.clear();
                        }
                        self.ended.insert(lease.clone());
                    }
                    if self.sender.send((self.host.clone(), event)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    debug!(host = %self.host, %error, "the host's event stream broke; asking again");
                    return;
                }
            }
        }
    }
}

impl Follower {
    /// Notes the host's registration: a run that is gone gets its leases reported lost.
    async fn check_registration(&mut self) {
        match self.gw.directory().host(&self.host) {
            Some(record) => self.run_id = Some(record.run_id),
            None => {
                if let Some(run_id) = self.run_id.take() {
                    self.report_lost(&run_id).await;
                }
            }
        }
    }

    /// One `lease.ended` (`host_lost`) per lease routed to `run_id` of the host that did not end
    /// on its stream and has not expired.
    async fn report_lost(&mut self, run_id: &str) {
        let routes = match self.gw.directory().etcd().host_routes(&self.host).await {
            Ok(routes) => routes,
            Err(error) => {
                debug!(host = %self.host, %error, "cannot list a lost host's leases");
                return;
            }
        };
        let now = firepit_cluster::now_unix_ms();
        for route in routes {
            if route.run_id != run_id
                || route.expires_at_unix_ms < now
                || self.ended.contains(&route.lease_id)
            {
                continue;
            }
            let mut event = Event::new(self.after.unwrap_or(0), EventKind::LeaseEnded, now);
            event.lease_id = Some(route.lease_id.clone());
            event.shape = (!route.shape.is_empty()).then(|| route.shape.clone());
            event.reason = Some(EndReason::HostLost);
            event.detail = Some(format!(
                "host {} stopped answering (its registration in etcd expired); said by the gateway",
                self.host
            ));
            if self.query.matches(&event) && self.sender.send((self.host.clone(), event)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_advances_per_host_and_skips_missed_notices() {
        let mut cursor = Cursor::default();
        cursor.advance("b", &Event::new(5, EventKind::LeaseCreated, 0));
        cursor.advance("a", &Event::new(9, EventKind::LeaseEnded, 0));
        cursor.advance("a", &Event::new(3, EventKind::EventsMissed, 0));
        assert_eq!(cursor.to_string(), "a:9,b:5");
        assert_eq!(Cursor::parse(&cursor.to_string()).unwrap(), Some(cursor));
        assert_eq!(Cursor::parse(" ").unwrap(), None);
        assert!(Cursor::parse("a/b:1").is_err(), "not a host id");
    }
}
