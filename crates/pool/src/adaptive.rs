//! Demand estimation for adaptive depth (Little's law: depth ≈ rate × fill time × safety).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::AdaptiveDepth;

/// An exponentially decayed event rate plus an EWMA of fill latency.
#[derive(Debug, Default)]
pub(crate) struct DemandEstimate {
    /// Decayed count of acquires, as of `last`.
    decayed: f64,
    last: Option<Instant>,
    /// EWMA of fill latency, seconds.
    fill_secs: Option<f64>,
}

const FILL_ALPHA: f64 = 0.2;

impl DemandEstimate {
    fn decay(&self, now: Instant, window: Duration) -> f64 {
        match self.last {
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                self.decayed * (-dt / window.as_secs_f64()).exp()
            }
            None => 0.0,
        }
    }

    /// Records one acquire.
    pub fn record_acquire(&mut self, now: Instant, window: Duration) {
        self.decayed = self.decay(now, window) + 1.0;
        self.last = Some(now);
    }

    /// Records one successful fill's latency.
    pub fn record_fill(&mut self, latency: Duration) {
        let x = latency.as_secs_f64();
        self.fill_secs = Some(match self.fill_secs {
            Some(avg) => avg + FILL_ALPHA * (x - avg),
            None => x,
        });
    }

    /// Acquires per second, averaged over `window`.
    pub fn rate(&self, now: Instant, window: Duration) -> f64 {
        self.decay(now, window) / window.as_secs_f64()
    }

    /// The average fill latency seen so far.
    pub fn fill_latency(&self) -> Option<Duration> {
        self.fill_secs.map(Duration::from_secs_f64)
    }

    /// Target depth: `high` grown by demand up to `adaptive.max`.
    pub fn target(&self, now: Instant, high: usize, adaptive: Option<&AdaptiveDepth>) -> usize {
        let Some(a) = adaptive else { return high };
        let Some(fill) = self.fill_secs else { return high };
        let want = (self.rate(now, a.window) * fill * a.safety).ceil();
        let want = if want.is_finite() && want > 0.0 { want.min(a.max as f64) as usize } else { 0 };
        want.clamp(high, a.max)
    }
}
