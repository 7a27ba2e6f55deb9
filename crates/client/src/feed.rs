//! `GET /v1/events`: the daemon's events as Server-Sent Events, parsed into [`Event`]s.

use bytes::BytesMut;
use firepit_api::{Event, EventQuery};
use hyper::Method;
use hyper::body::Incoming;

use crate::events::read_frame;
use crate::{Client, ClientError, body};

/// Longest SSE line accepted (an event is a few hundred bytes of JSON).
const MAX_LINE: usize = 1024 * 1024;

/// The daemon's events in order, as they happen (see [`Client::events`]).
#[derive(Debug)]
pub struct EventFeed {
    body: Incoming,
    buffer: BytesMut,
    data: String,
    last_id: Option<u64>,
    resume_id: Option<String>,
    finished: bool,
}

impl EventFeed {
    /// The next event; `None` when the daemon ended the stream (it stops). Comment lines (the
    /// keep-alives) are skipped.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let text = std::str::from_utf8(&line[..end])
                    .map_err(|e| ClientError::Stream(format!("an event line is not UTF-8 ({e})")))?
                    .trim_end_matches('\r');
                if let Some(event) = self.line(text)? {
                    return Ok(Some(event));
                }
            }
            if self.finished {
                return Ok(None);
            }
            if self.buffer.len() > MAX_LINE {
                return Err(ClientError::Stream(format!("an event line is longer than {MAX_LINE} bytes")));
            }
            self.finished = !read_frame(&mut self.body, &mut self.buffer).await?;
        }
    }

    /// The id of the last event read: give it as `last_event_id` to resume after a break.
    pub fn last_event_id(&self) -> Option<u64> {
        self.last_id
    }

    /// The stream's last `id:` line, as sent: what to resume after with
    /// [`Client::events_resuming`]. From a daemon it is the last event's id; through a gateway it
    /// is a cursor over every host (`a:17,b:42`), which no single event's id can stand for.
    pub fn resume_id(&self) -> Option<&str> {
        self.resume_id.as_deref()
    }

    /// One SSE line: a blank one dispatches the event gathered so far.
    fn line(&mut self, text: &str) -> Result<Option<Event>, ClientError> {
        if text.is_empty() {
            if self.data.is_empty() {
                return Ok(None);
            }
            let data = std::mem::take(&mut self.data);
            let event: Event = serde_json::from_str(&data)
                .map_err(|e| ClientError::Stream(format!("an event's data is not an event ({e})")))?;
            self.last_id = Some(event.id);
            return Ok(Some(event));
        }
        if let Some(data) = text.strip_prefix("data:") {
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(data.strip_prefix(' ').unwrap_or(data));
        }
        if let Some(id) = text.strip_prefix("id:") {
            self.resume_id = Some(id.strip_prefix(' ').unwrap_or(id).to_owned());
        }
        // `event:` repeats what the data says; `:` lines are comments.
        Ok(None)
    }
}

impl Client {
    /// `GET /v1/events`: follows the daemon's events (`lease.created`, `lease.ended`, ...)
    /// matching `query`, from now on, or after `query.last_event_id` from the daemon's history.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::{EventKind, EventQuery};
    /// let query = EventQuery { kinds: vec![EventKind::LeaseEnded], ..EventQuery::default() };
    /// let mut feed = client.events(&query).await?;
    /// while let Some(event) = feed.next_event().await? {
    ///     println!("{} {} {:?} {:?}", event.id, event.kind.as_str(), event.lease_id, event.reason);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn events(&self, query: &EventQuery) -> Result<EventFeed, ClientError> {
        let resume_id = query.last_event_id.map(|id| id.to_string());
        self.open_events(&query.to_pairs(), query.last_event_id, resume_id).await
    }

    /// [`Client::events`] after the stream position `resume_id` (an earlier feed's
    /// [`EventFeed::resume_id`], or the `Last-Event-ID` a browser sent); `query.last_event_id` is
    /// not used. Through a gateway this is the only way to resume: its ids are cursors over hosts.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// let query = firepit_api::EventQuery::default();
    /// let mut feed = client.events(&query).await?;
    /// feed.next_event().await?;
    /// let resume = feed.resume_id().map(str::to_owned).unwrap_or_default();
    /// drop(feed); // a break
    /// let mut feed = client.events_resuming(&query, &resume).await?;
    /// # Ok(()) }
    /// ```
    pub async fn events_resuming(
        &self,
        query: &EventQuery,
        resume_id: &str,
    ) -> Result<EventFeed, ClientError> {
        let mut pairs: Vec<(String, String)> =
            query.to_pairs().into_iter().filter(|(name, _)| name != "last_event_id").collect();
        pairs.push(("last_event_id".to_owned(), resume_id.to_owned()));
        self.open_events(&pairs, resume_id.parse().ok(), Some(resume_id.to_owned())).await
    }

    async fn open_events(
        &self,
        pairs: &[(String, String)],
        last_id: Option<u64>,
        resume_id: Option<String>,
    ) -> Result<EventFeed, ClientError> {
        let path = with_query("/v1/events", pairs)?;
        let response = self.send(Method::GET, &path, body::full(Vec::new()), None).await?;
        Ok(EventFeed {
            body: response.into_body(),
            buffer: BytesMut::new(),
            data: String::new(),
            last_id,
            resume_id,
            finished: false,
        })
    }
}

/// `path?pairs`, URL-encoded.
pub(crate) fn with_query(path: &str, pairs: &[(String, String)]) -> Result<String, ClientError> {
    if pairs.is_empty() {
        return Ok(path.to_owned());
    }
    let query = serde_urlencoded::to_string(pairs)
        .map_err(|e| ClientError::Decode { status: hyper::StatusCode::OK, message: e.to_string() })?;
    Ok(format!("{path}?{query}"))
}
