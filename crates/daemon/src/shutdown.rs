//! Shutdown phases and the OS signals that drive them.
//!
//! The server never looks at signals directly: it watches a [`ShutdownSignal`], which tests drive
//! by hand through a [`ShutdownController`] and `firepit serve` drives from SIGTERM / SIGINT with
//! [`forward_os_signals`]. The first signal asks for a graceful stop (stop accepting, let in-flight
//! requests finish within the budget); the second asks for an immediate one (cancel in-flight
//! requests). Either way the backend is shut down, so no VM outlives the daemon.

use tokio::sync::watch;
use tracing::{info, warn};

/// Where the daemon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving.
    Running,
    /// Stop accepting; in-flight requests may finish within the budget.
    Graceful,
    /// Cancel in-flight requests now; still shut the backend down.
    Immediate,
}

/// Drives the phases (held by the signal task or a test).
#[derive(Debug, Clone)]
pub struct ShutdownController {
    tx: watch::Sender<Phase>,
}

/// Observes the phases (held by the server).
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<Phase>,
}

/// A connected controller and signal.
///
/// # Example
/// ```
/// use firepit_daemon::shutdown::{channel, Phase};
/// let (controller, signal) = channel();
/// controller.escalate();
/// assert_eq!(signal.phase(), Phase::Graceful);
/// controller.escalate();
/// assert_eq!(signal.phase(), Phase::Immediate);
/// ```
pub fn channel() -> (ShutdownController, ShutdownSignal) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownController { tx }, ShutdownSignal { rx })
}

impl ShutdownController {
    /// Moves to the next phase: Running → Graceful → Immediate. Returns the new phase.
    pub fn escalate(&self) -> Phase {
        let mut next = Phase::Immediate;
        self.tx.send_modify(|phase| {
            *phase = match *phase {
                Phase::Running => Phase::Graceful,
                _ => Phase::Immediate,
            };
            next = *phase;
        });
        next
    }

    /// Asks for a graceful stop (no-op if already stopping).
    pub fn graceful(&self) {
        self.tx.send_if_modified(|phase| {
            let changed = *phase == Phase::Running;
            if changed {
                *phase = Phase::Graceful;
            }
            changed
        });
    }

    /// Asks for an immediate stop.
    pub fn immediate(&self) {
        self.tx.send_replace(Phase::Immediate);
    }
}

impl ShutdownSignal {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// Resolves once the phase is at least `phase` (or the controller is gone, which counts as
    /// an immediate stop: nobody is left to ask for one).
    pub async fn reached(mut self, phase: Phase) {
        let _ignored_closed = self.rx.wait_for(|current| *current >= phase).await;
    }
}

/// Escalates `controller` on every SIGTERM or SIGINT, for the life of the process.
pub fn forward_os_signals(controller: ShutdownController) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = int.recv() => "SIGINT",
                else => return,
            };
            match controller.escalate() {
                Phase::Graceful => info!(
                    signal = name,
                    "stopping: finishing in-flight requests (signal again to stop at once)"
                ),
                _ => warn!(signal = name, "stopping at once: cancelling in-flight requests"),
            }
        }
    });
    Ok(())
}
