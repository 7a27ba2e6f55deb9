//! The requests a graceful stop waits for: each from its handler's call to the end of its response
//! body, **except event streams** (`text/event-stream`, i.e. `GET /v1/events`).
//!
//! Why the daemon counts them itself instead of waiting for its listeners to close every
//! connection: an event stream stays open through the stop on purpose, to carry the stop's own
//! events (the `lease.ended`, reason `host_shutdown`, of every lease the stop ends) to dashboards
//! and controllers; it ends once those are out (see [`crate::server`]). Waiting for its connection
//! would hold the stop for the whole budget. So the stop waits for [`InFlight::idle`] within its
//! budget, ends the leases, and only then waits (briefly) for the connections to close.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::Notify;

/// Counts the requests in flight (cheap to clone; clones share the count).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let in_flight = firepit_daemon::in_flight::InFlight::default();
/// let track = axum::middleware::from_fn_with_state(in_flight.clone(), firepit_daemon::in_flight::track);
/// let app: axum::Router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" })).layer(track);
/// # let _ = app;
/// assert_eq!(in_flight.count(), 0);
/// in_flight.idle().await; // nothing in flight: at once
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Counter>);

#[derive(Debug, Default)]
struct Counter {
    requests: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.requests.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight (at once if none is).
    pub async fn idle(&self) {
        loop {
            // Register before reading the count, so that a request ending in between is not missed.
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn begin(&self) -> Guard {
        self.0.requests.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }
}

/// One request counted; dropping it ends it.
#[derive(Debug)]
struct Guard(InFlight);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.0.requests.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

/// Middleware: counts the request in `in_flight` until its response body ends (or is dropped);
/// an event stream only until its response head is ready.
pub async fn track(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    let guard = in_flight.begin();
    let response = next.run(request).await;
    let event_stream = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if event_stream {
        return response;
    }
    response.map(|body| Body::new(Tracked { body, _guard: guard }))
}

/// A response body that keeps its request counted until it is done.
struct Tracked {
    body: Body,
    _guard: Guard,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_the_last_request_to_end() {
        let in_flight = InFlight::default();
        let (first, second) = (in_flight.begin(), in_flight.begin());
        assert_eq!(in_flight.count(), 2);
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "one request is still in flight");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert_eq!(in_flight.count(), 0);
    }
}
