//! The control loop of an attached process (pipes or terminal): signals, resizes, the timeout, the
//! host's cancel, and knowing when the stream may end.
//!
//! Rule: the stream ends only once the child has been reaped and its output pumps have stopped. A
//! timeout or cancel kills the whole process group first; the pumps then get [`KILL_GRACE`] to
//! drain what the dead processes wrote before they are stopped (a process that left the group may
//! hold the descriptors open forever).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use firepit_agent::WindowSize;

use crate::group;
use crate::stream::{Control, Event, StreamHandle};

/// After a kill, how long the output pumps may still drain before they are stopped.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How the supervised process ended.
pub enum Outcome {
    /// The host cancelled (the group was killed and the child reaped).
    Cancelled,
    /// The child was reaped; the flag says whether its timeout killed it.
    Exited(std::io::Result<std::process::ExitStatus>, bool),
}

/// What to supervise and how.
pub struct Supervised<'a> {
    /// The child's pid (it leads its process group).
    pub pid: u32,
    /// Output pumps running (each posts `OutputClosed` when it ends).
    pub open_outputs: usize,
    /// When to kill the group for running too long.
    pub deadline: Option<Instant>,
    /// Tells the pumps to stop.
    pub stop: &'a AtomicBool,
    /// Once the child has exited, stop the pumps after this long even if the output is still open
    /// (a terminal whose other users linger); `None`: wait for the outputs to close.
    pub drain_after_exit: Option<Duration>,
    /// Applies a resize.
    pub on_resize: &'a dyn Fn(WindowSize),
    /// Delivers a signal.
    pub on_signal: &'a dyn Fn(i32),
}

/// Handles control events until the child is reaped and its outputs are closed.
pub fn supervise(handle: &StreamHandle, mut spec: Supervised<'_>) -> Outcome {
    let mut exited = None;
    let mut cancelled = false;
    let mut timed_out = false;
    let mut grace: Option<Instant> = None;
    let pid = spec.pid;
    let kill = |grace: &mut Option<Instant>| {
        group::kill(pid);
        grace.get_or_insert(Instant::now() + KILL_GRACE);
    };
    loop {
        if spec.open_outputs == 0
            && let Some(status) = exited.take()
        {
            // A cancel counts even if the child died before its event was handled (the pumps
            // stop on cancel, and a child writing to a closed pipe dies of SIGPIPE); what else
            // the group holds dies too.
            if !cancelled && handle.is_cancelled() {
                group::kill(pid);
                cancelled = true;
            }
            return if cancelled { Outcome::Cancelled } else { Outcome::Exited(status, timed_out) };
        }
        let wake = [spec.deadline, grace].into_iter().flatten().min();
        match handle.wait_event(wake) {
            Event::Control(Control::Signal(signal)) => (spec.on_signal)(signal),
            Event::Control(Control::Resize(size)) => (spec.on_resize)(size),
            Event::Control(Control::Exited(status)) => {
                exited = Some(status);
                if let Some(drain) = spec.drain_after_exit {
                    grace.get_or_insert(Instant::now() + drain);
                }
            }
            Event::Control(Control::OutputClosed) => spec.open_outputs = spec.open_outputs.saturating_sub(1),
            Event::Cancelled => {
                cancelled = true;
                kill(&mut grace);
            }
            Event::Deadline => {
                let now = Instant::now();
                if spec.deadline.is_some_and(|d| d <= now) {
                    spec.deadline = None;
                    if exited.is_none() || spec.open_outputs > 0 {
                        timed_out = true;
                        kill(&mut grace);
                    }
                }
                if grace.is_some_and(|g| g <= now) {
                    grace = None;
                    spec.stop.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}
