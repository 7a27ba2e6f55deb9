//! `POST /v1/leases` through a gateway: place the acquire on a host, record the route, answer the
//! daemon's `201` unchanged.
//!
//! The order comes from `firepit_cluster::placement` (warm hosts first, best of K by load). A first
//! pass asks each host in that order with `wait_ms: 0`, so a host whose last ready VM was just
//! taken answers `503` at once and the next warm host is asked; when every host said `503` and the
//! client asked to wait, the best host that answered is asked again with what is left of `wait_ms`. A host that
//! refuses the connection is skipped (and skipped by the next placements for a few seconds), and so
//! is one whose request broke half-way when a fresh connection to it is then refused (it died with
//! the request in flight, e.g. `kill -9`: a lease it may have made died with it). The
//! route is written to etcd before the client gets the lease; if that fails the lease is released
//! again and the client gets `503 cluster_unavailable`, so no lease exists that no gateway can route.
//!
//! An acquire with `snapshot` goes to the host that holds the snapshot (and only there).
//!
//! The body is passed through as JSON (fields this gateway does not know included); only
//! `wait_ms` is rewritten per attempt. With an `Idempotency-Key`, a key already routed is sent
//! to its lease's host, which replays the lease.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use firepit_api::ErrorCode;
use firepit_cluster::{HostRecord, LeaseRoute};
use serde_json::Value;
use tracing::{debug, warn};

use crate::error::GatewayError;
use crate::state::GatewayState;
use crate::upstream::{Answer, UpstreamError};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What an acquire asks for, as far as placement cares.
struct Ask {
    body: serde_json::Map<String, Value>,
    shape: Option<String>,
    wait_ms: u64,
    idempotency_key: Option<HeaderValue>,
}

/// `POST /v1/leases`.
pub async fn acquire(State(gw): State<GatewayState>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let result = place(&gw, &headers, &body).await;
    gw.metrics().acquire_seconds.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(response) => {
            gw.metrics().acquire("ok");
            response
        }
        Err(error) => {
            gw.metrics().acquire(error.code.as_str());
            error.into_response()
        }
    }
}

async fn place(gw: &GatewayState, headers: &HeaderMap, body: &[u8]) -> Result<Response, GatewayError> {
    let ask = parse(headers, body)?;
    let directory = gw.directory();
    let health = directory.health();
    if !health.reachable {
        let cause = health.error.unwrap_or_else(|| "not reached yet".into());
        return Err(GatewayError::cluster_unavailable("cannot place a new lease", &cause));
    }
    if let Some(key) = ask.idempotency_key.as_ref().and_then(|k| k.to_str().ok()) {
        let earlier = gw
            .routes()
            .by_idempotency_key(key)
            .await
            .map_err(|e| unavailable("cannot check the Idempotency-Key", &e))?;
        if let Some(route) = earlier {
            return replay(gw, &ask, &route).await;
        }
    }
    // A lease from a snapshot starts where the snapshot is.
    let order = match ask.body.get("snapshot").and_then(Value::as_str) {
        Some(snapshot) => vec![crate::snapshots::snapshot_host(gw, snapshot).await?],
        None => directory.placement_order(ask.shape.as_deref()),
    };
    if order.is_empty() {
        return Err(no_host(&directory.hosts(), ask.shape.as_deref()));
    }
    let started = Instant::now();
    let single = order.len() == 1;
    let mut trace = Trace::default();
    let mut busy = Vec::new();
    for host in &order {
        // With one host there is nobody to move on to: it gets the whole wait.
        let wait_ms = if single { ask.wait_ms } else { 0 };
        match attempt(gw, &ask, host, wait_ms, &mut trace).await? {
            Attempt::Answered(response) => return Ok(trace.stamp(response, started)),
            Attempt::Busy => busy.push(host),
            Attempt::Unreachable => {}
        }
    }
    // The wait goes to the best host that answered (not to one that is down).
    let left = Duration::from_millis(ask.wait_ms).saturating_sub(started.elapsed());
    if let (false, false, Some(best)) = (single, left.is_zero(), busy.first())
        && let Attempt::Answered(response) =
            attempt(gw, &ask, best, left.as_millis() as u64, &mut trace).await?
    {
        return Ok(trace.stamp(response, started));
    }
    let tried = trace.tried;
    let shape = ask.shape.as_deref().unwrap_or("of that size");
    if busy.is_empty() {
        return Err(GatewayError {
            retry_after_secs: Some(1),
            ..GatewayError::new(
                ErrorCode::HostUnreachable,
                format!("no host that serves shape `{shape}` answered (asked: {})", tried.join(", ")),
            )
        });
    }
    Err(GatewayError {
        retry_after_secs: Some(1),
        ..GatewayError::new(
            ErrorCode::Exhausted,
            format!(
                "no host had a VM of shape `{shape}` ready within {} ms (asked: {})",
                ask.wait_ms,
                tried.join(", ")
            ),
        )
    })
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Ask, GatewayError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_json(format!("the body is not JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(GatewayError::bad_json("the body must be a JSON object"));
    };
    let shape = body.get("shape").and_then(Value::as_str).map(str::to_owned);
    let wait_ms = body.get("wait_ms").and_then(Value::as_u64).unwrap_or(0);
    Ok(Ask { body, shape, wait_ms, idempotency_key: headers.get(IDEMPOTENCY_KEY).cloned() })
}

/// What an acquire's attempts did, and where its time went: the hosts asked, the time spent
/// waiting for them, and the time the route's etcd write took. A placed lease's answer carries the
/// split as a `Server-Timing` header (W3C Server Timing: `host;dur=…, route;dur=…,
/// gateway;dur=…`, milliseconds; `gateway` is the whole placement), so what the gateway adds can
/// be told from what the host took.
#[derive(Debug, Default)]
struct Trace {
    tried: Vec<String>,
    hosts: Duration,
    route: Duration,
}

impl Trace {
    fn stamp(&self, mut response: Response, started: Instant) -> Response {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let timing = format!(
            "host;dur={:.3}, route;dur={:.3}, gateway;dur={:.3}",
            ms(self.hosts),
            ms(self.route),
            ms(started.elapsed())
        );
        if let Ok(value) = HeaderValue::from_str(&timing) {
            response.headers_mut().insert(HeaderName::from_static("server-timing"), value);
        }
        response
    }
}

/// How one attempt on a host went.
enum Attempt {
    /// The response to give the client.
    Answered(Response),
    /// The host answered that it has no VM ready (or does not know the shape any more).
    Busy,
    /// The host is down.
    Unreachable,
}

/// One attempt on `host`.
async fn attempt(
    gw: &GatewayState,
    ask: &Ask,
    host: &HostRecord,
    wait_ms: u64,
    trace: &mut Trace,
) -> Result<Attempt, GatewayError> {
    trace.tried.push(host.host.clone());
    let mut body = ask.body.clone();
    body.insert("wait_ms".into(), wait_ms.into());
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let headers: Vec<(HeaderName, HeaderValue)> =
        ask.idempotency_key.iter().map(|k| (HeaderName::from_static(IDEMPOTENCY_KEY), k.clone())).collect();
    let asked = Instant::now();
    let answered =
        gw.upstream().call(&host.url, Method::POST, "/v1/leases", Some(body), &headers, None).await;
    trace.hosts += asked.elapsed();
    let answer = match answered {
        Ok(answer) => answer,
        Err(error) if error.is_connect() || died_meanwhile(gw, host, &error).await => {
            debug!(host = %host.host, %error, "host refused the connection; trying the next");
            gw.directory().note_unreachable(&host.host);
            gw.metrics().attempt(&host.host, "unreachable");
            return Ok(Attempt::Unreachable);
        }
        Err(error) => return Err(GatewayError::host_unreachable(&host.host, &error.to_string())),
    };
    match answer.status {
        StatusCode::CREATED => placed(gw, ask, host, answer, trace).await.map(Attempt::Answered),
        StatusCode::SERVICE_UNAVAILABLE => {
            gw.metrics().attempt(&host.host, "busy");
            Ok(Attempt::Busy)
        }
        // A record older than a shape's removal: the next host may still have it.
        StatusCode::NOT_FOUND if answer.error_code().as_deref() == Some("unknown_shape") => {
            gw.metrics().attempt(&host.host, "busy");
            Ok(Attempt::Busy)
        }
        _ => {
            gw.metrics().attempt(&host.host, "refused");
            Ok(Attempt::Answered(answer.into_response()))
        }
    }
}

/// Whether a request that failed half-way (not a timeout) failed because `host` died: a new
/// connection is refused. A lease it may have made died with it, so the next host can be asked.
async fn died_meanwhile(gw: &GatewayState, host: &HostRecord, error: &UpstreamError) -> bool {
    matches!(error, UpstreamError::Request(_)) && gw.upstream().refuses(&host.url).await
}

/// The daemon handed a lease out: route it, then answer.
async fn placed(
    gw: &GatewayState,
    ask: &Ask,
    host: &HostRecord,
    answer: Answer,
    trace: &mut Trace,
) -> Result<Response, GatewayError> {
    let lease: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let Some(lease_id) = lease.get("lease_id").and_then(Value::as_str) else {
        return Err(GatewayError::new(
            ErrorCode::InternalError,
            format!("host {} answered 201 without a lease_id", host.host),
        ));
    };
    let route = LeaseRoute {
        lease_id: lease_id.to_owned(),
        host: host.host.clone(),
        run_id: host.run_id.clone(),
        shape: lease
            .get("shape")
            .and_then(Value::as_str)
            .or(ask.shape.as_deref())
            .unwrap_or_default()
            .to_owned(),
        expires_at_unix_ms: lease.get("expires_at_unix_ms").and_then(Value::as_u64).unwrap_or(0),
        idempotency_key: ask.idempotency_key.as_ref().and_then(|k| k.to_str().ok()).map(str::to_owned),
    };
    let writing = Instant::now();
    let remembered = gw.routes().remember(route.clone()).await;
    trace.route = writing.elapsed();
    if let Err(error) = remembered {
        warn!(lease_id, host = %host.host, %error, "cannot store the lease's route; releasing it");
        let release = format!("/v1/leases/{lease_id}");
        let released = gw
            .upstream()
            .call(&host.url, Method::DELETE, &release, None, &[], Some(Duration::from_secs(5)))
            .await;
        if let Err(error) = released {
            warn!(lease_id, %error, "cannot release the unroutable lease; it ends at its TTL");
        }
        return Err(unavailable("cannot record the new lease's host", &error));
    }
    gw.directory().note_placed(&host.host, &route.shape);
    gw.metrics().attempt(&host.host, "placed");
    Ok(answer.into_response())
}

/// An acquire whose Idempotency-Key was routed before: its host replays the lease.
async fn replay(gw: &GatewayState, ask: &Ask, route: &LeaseRoute) -> Result<Response, GatewayError> {
    let Some(host) = gw.directory().host(&route.host).filter(|h| h.run_id == route.run_id) else {
        return Err(GatewayError::host_lost(
            &route.lease_id,
            &route.host,
            gw.directory().host(&route.host).is_some(),
        ));
    };
    let body = serde_json::to_vec(&ask.body).unwrap_or_default();
    let headers: Vec<(HeaderName, HeaderValue)> =
        ask.idempotency_key.iter().map(|k| (HeaderName::from_static(IDEMPOTENCY_KEY), k.clone())).collect();
    match gw.upstream().call(&host.url, Method::POST, "/v1/leases", Some(body), &headers, None).await {
        Ok(answer) => Ok(answer.into_response()),
        Err(error) => Err(GatewayError::host_unreachable(&host.host, &error.to_string())),
    }
}

fn no_host(hosts: &[HostRecord], shape: Option<&str>) -> GatewayError {
    if hosts.is_empty() {
        return GatewayError {
            retry_after_secs: Some(1),
            ..GatewayError::new(
                ErrorCode::NoHost,
                "no daemon is registered in etcd: start `firepit serve` with a [cluster] table",
            )
        };
    }
    if let Some(shape) = shape
        && !hosts.iter().any(|h| h.serves(shape))
    {
        let mut known: Vec<&str> =
            hosts.iter().flat_map(|h| h.shapes.iter().map(|s| s.name.as_str())).collect();
        known.sort_unstable();
        known.dedup();
        return GatewayError::new(
            ErrorCode::UnknownShape,
            format!("no host serves shape `{shape}` (shapes: {})", known.join(", ")),
        );
    }
    GatewayError {
        retry_after_secs: Some(5),
        ..GatewayError::new(
            ErrorCode::Draining,
            "every host that serves this shape is draining or did not answer just now",
        )
    }
}

pub(crate) fn unavailable(what: &str, error: &firepit_cluster::ClusterError) -> GatewayError {
    GatewayError::cluster_unavailable(what, &firepit_pool::error_chain(error))
}
