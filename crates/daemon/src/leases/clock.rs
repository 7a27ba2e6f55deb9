//! A lease's TTL clock, and the task that acts when it runs out.
//!
//! The clock runs while the lease runs and stands still while it is paused: pausing keeps what was
//! left of the TTL, resuming counts it down again from then. A paused lease has a deadline of its
//! own instead, the daemon's paused retention. Renew sets the TTL from now (while paused: what
//! will be left at resume).
//!
//! One task per lease sleeps until the clock's next deadline, wakes early when the clock changes
//! (renew, pause, resume) and ends with the lease.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leases::state::lock;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The TTL of a running lease ran out.
    Ttl,
    /// A paused lease stayed paused longer than the daemon keeps paused leases.
    PausedRetention,
}

/// A lease's TTL clock (see the module docs).
#[derive(Debug)]
pub struct Clock {
    state: Mutex<ClockState>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
enum ClockState {
    Running { at: Instant, wall: SystemTime },
    Stopped { remaining: Duration, wall: SystemTime, paused_until: Instant },
}

impl Clock {
    /// A running clock with `ttl` left.
    pub fn running(ttl: Duration) -> Self {
        Self::new(ClockState::Running { at: Instant::now() + ttl, wall: SystemTime::now() + ttl })
    }

    /// A stopped clock with `remaining` left at resume, that ends the pause after `paused_for`.
    pub fn stopped(remaining: Duration, paused_for: Duration) -> Self {
        let wall = SystemTime::now() + remaining;
        Self::new(ClockState::Stopped { remaining, wall, paused_until: Instant::now() + paused_for })
    }

    fn new(state: ClockState) -> Self {
        Self { state: Mutex::new(state), changed: Notify::new() }
    }

    /// When the TTL runs out (while stopped: when it would have, had the lease not been paused).
    pub fn expires_at(&self) -> SystemTime {
        match *lock(&self.state) {
            ClockState::Running { wall, .. } | ClockState::Stopped { wall, .. } => wall,
        }
    }

    /// While stopped: the TTL left at resume.
    pub fn remaining(&self) -> Option<Duration> {
        match *lock(&self.state) {
            ClockState::Running { .. } => None,
            ClockState::Stopped { remaining, .. } => Some(remaining),
        }
    }

    /// Sets the TTL to `ttl` from now (while stopped: from the resume).
    pub fn renew(&self, ttl: Duration) {
        let mut state = lock(&self.state);
        *state = match *state {
            ClockState::Running { .. } => {
                ClockState::Running { at: Instant::now() + ttl, wall: SystemTime::now() + ttl }
            }
            ClockState::Stopped { paused_until, .. } => {
                ClockState::Stopped { remaining: ttl, wall: SystemTime::now() + ttl, paused_until }
            }
        };
        drop(state);
        self.changed.notify_one();
    }

    /// Stops the clock (the lease was paused); the pause may last `paused_for`.
    pub fn stop(&self, paused_for: Duration) {
        let mut state = lock(&self.state);
        if let ClockState::Running { at, wall } = *state {
            let remaining = at.saturating_duration_since(Instant::now());
            *state = ClockState::Stopped { remaining, wall, paused_until: Instant::now() + paused_for };
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Starts the clock again with what was left (the lease was resumed).
    pub fn start(&self) {
        let mut state = lock(&self.state);
        if let ClockState::Stopped { remaining, .. } = *state {
            *state =
                ClockState::Running { at: Instant::now() + remaining, wall: SystemTime::now() + remaining };
        }
        drop(state);
        self.changed.notify_one();
    }

    /// The next deadline and what it is for.
    pub fn due(&self) -> (Instant, Due) {
        match *lock(&self.state) {
            ClockState::Running { at, .. } => (at, Due::Ttl),
            ClockState::Stopped { paused_until, .. } => (paused_until, Due::PausedRetention),
        }
    }
}

impl Clock {
    /// Sleeps until the clock runs out (following every change of it) and calls `act` with what
    /// ran out, until `gone` fires (the lease ended). `act` ends the lease, or pauses it (then the
    /// clock stopped and the task sleeps until the paused retention runs out).
    pub(crate) async fn watch<F, Fut>(&self, gone: CancellationToken, act: F)
    where
        F: Fn(Due) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (at, due) = self.due();
            tokio::select! {
                () = gone.cancelled() => return,
                () = &mut changed => continue,
                () = tokio::time::sleep_until(at) => {
                    // A renew may have raced the wake-up: act only on a deadline still passed.
                    let (now_at, now_due) = self.due();
                    if now_at > Instant::now() || now_due != due {
                        continue;
                    }
                    act(due).await;
                    if gone.is_cancelled() {
                        return;
                    }
                    // The act failed to change anything (a pause that failed ended the lease, or
                    // nothing could be done): do not spin on a passed deadline.
                    if self.due() == (now_at, now_due) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}
