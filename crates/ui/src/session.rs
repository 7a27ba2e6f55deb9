//! Sessions and one-time login tickets, kept in memory.
//!
//! A session is a 256-bit random secret in an `HttpOnly; SameSite=Strict` cookie, with its own
//! 256-bit CSRF token that every state-changing request must echo in a header. Only SHA-256
//! digests of the secrets are stored, compared in constant time, so neither a memory dump nor the
//! timing of a lookup gives a usable cookie away. Sessions end after [`SESSION_LIFETIME`], on
//! logout, or when the process stops (there is nothing on disk); at most [`MAX_SESSIONS`] live at
//! once (the oldest is dropped first).
//!
//! A ticket is a one-time login secret for a link (`firepit ui` prints one): redeemed once, or
//! expired after [`TICKET_LIFETIME`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a session lasts from login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a login ticket can be redeemed.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 1024;
/// Most unredeemed tickets at once.
const MAX_TICKETS: usize = 64;

/// A logged-in browser, as the pages see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every state-changing request must carry (`X-CSRF-Token`, or `csrf` in a form).
    pub csrf: String,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    ///
    /// ```
    /// let session = firepit_ui::session::Session { csrf: "abc".into() };
    /// assert!(session.csrf_matches("abc"));
    /// assert!(!session.csrf_matches("abd"));
    /// ```
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.csrf.as_bytes());
        let presented = Sha256::digest(presented.as_bytes());
        expected.ct_eq(&presented).into()
    }
}

struct Stored {
    session: Session,
    created: Instant,
}

type Digest32 = [u8; 32];

/// Every live session and unredeemed ticket.
///
/// ```
/// let sessions = firepit_ui::session::Sessions::default();
/// let (cookie, session) = sessions.create();
/// assert_eq!(sessions.find(&cookie).unwrap().csrf, session.csrf);
/// sessions.remove(&cookie);
/// assert!(sessions.find(&cookie).is_none());
///
/// let ticket = sessions.issue_ticket();
/// assert!(sessions.redeem_ticket(&ticket));
/// assert!(!sessions.redeem_ticket(&ticket), "a ticket works once");
/// ```
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<Digest32, Stored>>,
    tickets: Mutex<HashMap<Digest32, Instant>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("sessions", &lock(&self.sessions).len()).finish_non_exhaustive()
    }
}

impl Sessions {
    /// Starts a session: returns the cookie's secret value and the session.
    pub fn create(&self) -> (String, Session) {
        let secret = random_secret();
        let session = Session { csrf: random_secret() };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, stored| stored.created.elapsed() < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&secret), Stored { session: session.clone(), created: Instant::now() });
        (secret, session)
    }

    /// The live session whose cookie value is `secret`.
    pub fn find(&self, secret: &str) -> Option<Session> {
        let sessions = lock(&self.sessions);
        let stored = sessions.get(&digest(secret))?;
        (stored.created.elapsed() < SESSION_LIFETIME).then(|| stored.session.clone())
    }

    /// Ends the session whose cookie value is `secret` (logout).
    pub fn remove(&self, secret: &str) {
        lock(&self.sessions).remove(&digest(secret));
    }

    /// A new one-time login ticket.
    pub fn issue_ticket(&self) -> String {
        let ticket = random_secret();
        let mut tickets = lock(&self.tickets);
        tickets.retain(|_, issued| issued.elapsed() < TICKET_LIFETIME);
        if tickets.len() >= MAX_TICKETS
            && let Some(oldest) = tickets.iter().min_by_key(|(_, issued)| **issued).map(|(k, _)| *k)
        {
            tickets.remove(&oldest);
        }
        tickets.insert(digest(&ticket), Instant::now());
        ticket
    }

    /// Uses up `ticket`: true the first time, while it has not expired.
    pub fn redeem_ticket(&self, ticket: &str) -> bool {
        lock(&self.tickets).remove(&digest(ticket)).is_some_and(|issued| issued.elapsed() < TICKET_LIFETIME)
    }
}

/// 32 random bytes from the OS-seeded generator, as hex.
fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_and_long() {
        let sessions = Sessions::default();
        let (a, session_a) = sessions.create();
        let (b, session_b) = sessions.create();
        assert_ne!(a, b);
        assert_ne!(session_a.csrf, session_b.csrf);
        assert_eq!(a.len(), 64);
        assert!(sessions.find("not-a-session").is_none());
    }

    #[test]
    fn the_oldest_session_goes_when_too_many_live() {
        let sessions = Sessions::default();
        let (first, _) = sessions.create();
        for _ in 0..MAX_SESSIONS {
            sessions.create();
        }
        assert!(sessions.find(&first).is_none());
        assert_eq!(lock(&sessions.sessions).len(), MAX_SESSIONS);
    }

    #[test]
    fn unknown_tickets_are_refused() {
        let sessions = Sessions::default();
        assert!(!sessions.redeem_ticket("guess"));
        let ticket = sessions.issue_ticket();
        assert!(!sessions.redeem_ticket(&ticket[1..]));
        assert!(sessions.redeem_ticket(&ticket));
    }
}
