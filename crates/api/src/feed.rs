//! What happened on a daemon, as events: `GET /v1/events` (Server-Sent Events) and the webhooks
//! carry the same [`Event`]s.
//!
//! SSE framing: each event is `id: <id>`, `event: <kind>` and `data: <the Event as JSON>`, then a
//! blank line. Ids grow (also across daemon restarts); a client that reconnects sends the last id
//! it saw as `Last-Event-ID` (or `?last_event_id=`) and gets what it missed from the daemon's
//! bounded history, then the live events. When the history no longer holds everything it missed,
//! the first event it gets is `events.missed`, saying how many are gone.
//!
//! ```
//! use firepit_api::{Event, EventKind};
//! let json = r#"{"id":17,"kind":"lease.ended","at":"2026-11-25T09:47:40.000Z","at_unix_ms":1795600060000,
//!     "lease_id":"l-1","shape":"small","reason":"ttl_expired"}"#;
//! let event: Event = serde_json::from_str(json).unwrap();
//! assert_eq!(event.kind, EventKind::LeaseEnded);
//! assert_eq!(event.reason, Some(firepit_api::EndReason::TtlExpired));
//! ```

use serde::{Deserialize, Serialize};

use crate::lease_options::Metadata;
use crate::lease_views::EndReason;

/// Content type of `GET /v1/events`.
pub const EVENT_STREAM: &str = "text/event-stream";

macro_rules! event_kinds {
    ($($variant:ident = ($name:literal, $meaning:literal),)+) => {
        /// What an [`Event`] is about.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum EventKind {
            $(
                #[doc = $meaning]
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl EventKind {
            /// Every kind, in the order of the table.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// The kind as the API writes it (`lease.created`, ...).
            ///
            /// ```
            /// assert_eq!(firepit_api::EventKind::LeaseEnded.as_str(), "lease.ended");
            /// ```
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }

            /// The kind named `name`, if there is one.
            ///
            /// ```
            /// use firepit_api::EventKind;
            /// assert_eq!(EventKind::from_name("shape.fill_failed"), Some(EventKind::ShapeFillFailed));
            /// assert_eq!(EventKind::from_name("lease.exploded"), None);
            /// ```
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    LeaseCreated = ("lease.created", "A lease was acquired (`lease_id`, `shape`, `metadata`)."),
    LeaseEnded = ("lease.ended", "A lease ended (`reason`, and `detail` when there is more to say)."),
    LeasePaused = ("lease.paused", "A lease was paused (by a client, or by its TTL with `on_expiry = pause`: `reason` says `ttl_expired` then)."),
    LeaseResumed = ("lease.resumed", "A paused lease runs again."),
    LeaseForked = ("lease.forked", "A lease was forked; `leases` lists the new leases."),
    ProcessOomKilled = ("process.oom_killed", "The guest's OOM killer killed a process of a lease (`pid`, `detail`)."),
    ShapeFillFailed = ("shape.fill_failed", "Making a VM of a shape failed (`detail`: the error; `failures`: how many in a row)."),
    ShapeFillRecovered = ("shape.fill_recovered", "A shape whose fills failed made a VM again."),
    EventsMissed = ("events.missed", "Sent first to a client that resumed too late: `failures` events it asked for are no longer kept."),
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened. Which fields are set depends on the kind (see [`EventKind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Grows by one per event (and across restarts); resume after it with `Last-Event-ID`.
    pub id: u64,
    /// What happened.
    pub kind: EventKind,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The lease it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// The shape it is about (a lease's, or the shape whose fills failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// The lease's labels (lease events).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// `lease.ended`: why; `lease.paused`: `ttl_expired` when its TTL paused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// More words: an exit status, an error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `lease.forked`: the new leases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<String>,
    /// `process.oom_killed`: the guest process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `shape.fill_failed`: failures in a row; `events.missed`: events lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
}

impl Event {
    /// An event of `kind` with only its id and time set.
    ///
    /// ```
    /// let event = firepit_api::Event::new(7, firepit_api::EventKind::LeaseCreated, 1_795_600_000_000);
    /// assert_eq!(event.at, "2026-11-25T09:46:40.000Z");
    /// ```
    pub fn new(id: u64, kind: EventKind, at_unix_ms: u64) -> Self {
        Self {
            id,
            kind,
            at: crate::time::rfc3339_ms(at_unix_ms),
            at_unix_ms,
            lease_id: None,
            shape: None,
            metadata: Metadata::new(),
            reason: None,
            detail: None,
            leases: Vec::new(),
            pid: None,
            failures: None,
        }
    }
}

/// The query of `GET /v1/events`.
///
/// On the wire: `kind=lease.ended` (repeated, or comma-separated: any of them), `lease_id=l-...`,
/// `last_event_id=N` (as the `Last-Event-ID` header: resume after event N; the header wins).
///
/// ```
/// use firepit_api::{EventKind, EventQuery};
/// let pairs = [("kind", "lease.created,lease.ended"), ("lease_id", "l-1")];
/// let query = EventQuery::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
/// assert_eq!(query.kinds, vec![EventKind::LeaseCreated, EventKind::LeaseEnded]);
/// assert_eq!(EventQuery::from_pairs(query.to_pairs()).unwrap(), query);
/// assert!(EventQuery::from_pairs([("kind".into(), "lease.exploded".into())]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EventQuery {
    /// Only events of these kinds (none: every kind).
    #[serde(default, rename = "kind")]
    pub kinds: Vec<EventKind>,
    /// Only events about this lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// Resume after this event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<u64>,
}

impl EventQuery {
    /// Reads a query string's pairs; the error names the parameter and what it must be.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let mut query = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "kind" => {
                    for name in value.split(',').filter(|n| !n.is_empty()) {
                        let kind = EventKind::from_name(name).ok_or_else(|| {
                            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                            format!("kind = {name:?}: must be one of {}", all.join(", "))
                        })?;
                        if !query.kinds.contains(&kind) {
                            query.kinds.push(kind);
                        }
                    }
                }
                "lease_id" => query.lease_id = Some(value),
                "last_event_id" => {
                    let id = value
                        .parse()
                        .map_err(|_| format!("last_event_id = {value:?}: must be an event id"))?;
                    query.last_event_id = Some(id);
                }
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`: use kind, lease_id or last_event_id"
                    ));
                }
            }
        }
        Ok(query)
    }

    /// The query's pairs, as [`from_pairs`](Self::from_pairs) reads them.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
            pairs.push(("kind".to_owned(), kinds.join(",")));
        }
        if let Some(lease) = &self.lease_id {
            pairs.push(("lease_id".to_owned(), lease.clone()));
        }
        if let Some(id) = self.last_event_id {
            pairs.push(("last_event_id".to_owned(), id.to_string()));
        }
        pairs
    }

    /// Whether `event` passes the filters. `events.missed` always does.
    pub fn matches(&self, event: &Event) -> bool {
        if event.kind == EventKind::EventsMissed {
            return true;
        }
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.lease_id.as_ref().is_none_or(|id| {
                event.lease_id.as_ref() == Some(id) || event.leases.iter().any(|other| other == id)
            })
    }
}
