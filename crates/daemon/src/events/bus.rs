//! The event bus: one ring of recent events and a broadcast channel, so that emitting never waits
//! for a reader and a reader that falls behind (or reconnects) catches up from the ring.
//!
//! Ids are assigned, the ring appended and the broadcast sent under one lock, so the ring and the
//! channel see events in id order, and a [`Subscription`] taken under the same lock starts exactly
//! where its backlog ends: no event twice, none skipped. Ids start at the daemon's start time in
//! microseconds, so they keep growing across restarts and a `Last-Event-ID` from an earlier run
//! reads as "older than anything kept".
//!
//! A stop [`close`](EventBus::close)s the bus after its last events (the `lease.ended` of every
//! lease it ended, reason `host_shutdown`): readers get everything emitted until then, and then the
//! end of their stream, so an event stream or a webhook ends *after* the stop's events instead of
//! before them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use firepit_api::{Event, EventKind, unix_ms};
use tokio::sync::broadcast;

/// The daemon's event bus (cheap to clone; clones share the ring).
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: Mutex<Ring>,
    capacity: usize,
    emitted: AtomicU64,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// The id of this run's first event.
    first_id: u64,
    next_id: u64,
    /// The live readers' channel; `None` once the bus is closed.
    sender: Option<broadcast::Sender<Arc<Event>>>,
}

/// What a new reader gets: the events it missed (after the id it gave), how many it asked for
/// that are no longer kept, and the live events from there on.
#[derive(Debug)]
pub struct Subscription {
    /// Kept events after the id asked for, oldest first.
    pub backlog: Vec<Arc<Event>>,
    /// Events after the id asked for that the ring no longer holds.
    pub missed: u64,
    /// Every event emitted after the backlog.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The id of the first event `live` gets.
    pub next_id: u64,
}

impl EventBus {
    /// A bus keeping the last `capacity` events (at least 1).
    ///
    /// ```
    /// use firepit_api::EventKind;
    /// let bus = firepit_daemon::events::EventBus::new(2);
    /// let first = bus.emit(EventKind::LeaseCreated, |event| event.lease_id = Some("l-1".into()));
    /// bus.emit(EventKind::LeaseEnded, |_| {});
    /// bus.emit(EventKind::LeaseEnded, |_| {});
    /// let subscription = bus.subscribe(Some(first.id - 1));
    /// assert_eq!((subscription.backlog.len(), subscription.missed), (2, 1));
    /// ```
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (sender, _) = broadcast::channel(capacity);
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_micros() as u64);
        let first_id = micros.max(1);
        let ring = Ring {
            events: VecDeque::with_capacity(capacity),
            first_id,
            next_id: first_id,
            sender: Some(sender),
        };
        Self { inner: Arc::new(Inner { ring: Mutex::new(ring), capacity, emitted: AtomicU64::new(0) }) }
    }

    /// Emits an event of `kind`, filled in by `fill` (its id and time are set here); returns it.
    /// Never waits: readers that fell behind catch up from the ring, or learn what they missed.
    pub fn emit(&self, kind: EventKind, fill: impl FnOnce(&mut Event)) -> Arc<Event> {
        let mut ring = lock(&self.inner.ring);
        let mut event = Event::new(ring.next_id, kind, unix_ms(SystemTime::now()));
        fill(&mut event);
        event.id = ring.next_id;
        event.kind = kind;
        ring.next_id += 1;
        let event = Arc::new(event);
        if ring.events.len() == self.inner.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // No receiver is not an error: nobody listens yet (or any more, once closed).
        if let Some(sender) = &ring.sender {
            let _no_receiver_is_fine = sender.send(event.clone());
        }
        drop(ring);
        self.inner.emitted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = event.id, kind = %event.kind, lease_id = ?event.lease_id, "event");
        event
    }

    /// A new reader of the events after `after` (`None`: from now on). On a closed bus its live
    /// channel is closed: the reader gets its backlog and then the end.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let ring = lock(&self.inner.ring);
        let live = match &ring.sender {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        };
        let next_id = ring.next_id;
        let Some(after) = after else {
            return Subscription { backlog: Vec::new(), missed: 0, live, next_id };
        };
        let (backlog, missed) = ring.after(after);
        Subscription { backlog, missed, live, next_id }
    }

    /// The kept events after `after`, and how many after it are no longer kept (a reader that
    /// lagged behind the broadcast catches up with this).
    pub fn since(&self, after: u64) -> (Vec<Arc<Event>>, u64) {
        lock(&self.inner.ring).after(after)
    }

    /// Ends every live reader after the events emitted so far: each gets what is still in its
    /// channel, then `RecvError::Closed`. Later events are still kept in the history, but nobody
    /// reads them live. The stop calls this once its last events are out.
    ///
    /// ```
    /// use firepit_api::EventKind;
    /// use tokio::sync::broadcast::error::TryRecvError;
    /// let bus = firepit_daemon::events::EventBus::new(16);
    /// let mut live = bus.subscribe(None).live;
    /// bus.emit(EventKind::LeaseEnded, |_| {});
    /// bus.close();
    /// assert_eq!(live.try_recv().unwrap().kind, EventKind::LeaseEnded);
    /// assert_eq!(live.try_recv().unwrap_err(), TryRecvError::Closed);
    /// assert!(bus.is_closed());
    /// ```
    pub fn close(&self) {
        lock(&self.inner.ring).sender = None;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.ring).sender.is_none()
    }

    /// How many events were emitted since start.
    pub fn emitted(&self) -> u64 {
        self.inner.emitted.load(Ordering::Relaxed)
    }

    /// The id the next event gets.
    pub fn next_id(&self) -> u64 {
        lock(&self.inner.ring).next_id
    }
}

impl Ring {
    /// The kept events after `after`, and how many of this run's events after it are gone from
    /// the ring. (A run does not know what an earlier run emitted after `after`: its history was
    /// in memory.)
    fn after(&self, after: u64) -> (Vec<Arc<Event>>, u64) {
        if after.saturating_add(1) >= self.next_id {
            return (Vec::new(), 0);
        }
        let backlog: Vec<Arc<Event>> = self.events.iter().filter(|e| e.id > after).cloned().collect();
        let kept_from = self.events.front().map_or(self.next_id, |event| event.id);
        let missed = kept_from.saturating_sub(after.saturating_add(1).max(self.first_id));
        (backlog, missed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
