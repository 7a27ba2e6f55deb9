//! Per-shape settings and their validation.
//!
//! Settings are plain data, validated once at the edge (`build()` and `register_shape()`), so the
//! engine never has to second-guess them. Every rejection says what to change.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::error::PoolError;
use crate::shape::ShapeKey;

/// How a shape's bucket is kept warm.
///
/// ```
/// use std::time::Duration;
/// use firepit_pool::ShapeConfig;
/// let config = ShapeConfig { depth: 2..=4, max_age: Some(Duration::from_secs(600)), ..ShapeConfig::default() };
/// assert_eq!(config.depth, 2..=4);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeConfig {
    /// Low..=high water. `build()` waits for the low water; the refiller keeps the bucket at the high
    /// water (or at the adaptive target, if larger).
    pub depth: RangeInclusive<usize>,
    /// Replace ready VMs older than this (time since they became ready). `None`: never.
    pub max_age: Option<Duration>,
    /// Replace ready VMs idle (unleased) longer than this. `None`: never. Ready VMs are never leased
    /// (a lease ends in destruction), so this differs from `max_age` only in its metrics label.
    pub idle_ttl: Option<Duration>,
    /// How often idle VMs are probed with [`Provider::probe`](crate::Provider::probe). `None`: never
    /// (the pool then only watches [`PoolVm::exited`](crate::provider::PoolVm::exited)).
    pub probe_interval: Option<Duration>,
    /// Grow the high water with demand. `None`: fixed depth.
    pub adaptive: Option<AdaptiveDepth>,
    /// Retry policy for failed fills.
    pub backoff: Backoff,
    /// Run the pool's [`HealthCheck`](crate::HealthCheck) on this shape's VMs: once when a VM
    /// becomes ready and again right before it is handed out. Default `true`; without a pool-wide
    /// check set with [`PoolBuilder::health_check`](crate::PoolBuilder::health_check) there is
    /// nothing to run either way.
    pub health_check: bool,
    /// Let this shape's VMs rest while they wait in the pool ([`Provider::pause`]: the QEMU
    /// provider stops their vCPUs), and wake them as they are handed out ([`Provider::resume`]).
    /// Idle VMs then cost (next to) no CPU. Default `true`; a provider that cannot pause ignores it.
    ///
    /// [`Provider::pause`]: crate::Provider::pause
    /// [`Provider::resume`]: crate::Provider::resume
    pub pause_idle: bool,
}

impl Default for ShapeConfig {
    fn default() -> Self {
        Self {
            depth: 1..=1,
            max_age: None,
            idle_ttl: None,
            probe_interval: Some(Duration::from_secs(30)),
            adaptive: None,
            backoff: Backoff::default(),
            health_check: true,
            pause_idle: true,
        }
    }
}

/// Adaptive depth: target = acquire rate (EWMA) × observed fill latency (EWMA) × `safety` (Little's
/// law), never below the configured high water, never above `max` nor the memory budget.
///
/// ```
/// use std::time::Duration;
/// use firepit_pool::AdaptiveDepth;
/// let adaptive = AdaptiveDepth { max: 16, ..AdaptiveDepth::default() };
/// assert_eq!(adaptive.safety, 2.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveDepth {
    /// Upper bound of the target depth.
    pub max: usize,
    /// Multiplier on rate × fill time, for bursts (≥ 1.0 sensible).
    pub safety: f64,
    /// Time constant of the acquire-rate average: older acquires weigh `e^-age/window`.
    pub window: Duration,
}

impl Default for AdaptiveDepth {
    fn default() -> Self {
        Self { max: 8, safety: 2.0, window: Duration::from_secs(10) }
    }
}

/// Exponential backoff with jitter after failed fills: delay = min(initial × multiplier^(n-1), max),
/// then ± `jitter` × delay at random.
///
/// ```
/// use std::time::Duration;
/// use firepit_pool::Backoff;
/// let backoff = Backoff { initial: Duration::from_millis(50), ..Backoff::default() };
/// assert!(backoff.max >= backoff.initial);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per consecutive failure (≥ 1.0).
    pub multiplier: f64,
    /// Random spread, a fraction of the delay in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// Delay before the next fill after `failures` consecutive failures (≥ 1), with jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use firepit_pool::Backoff;
    /// let b = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(8), multiplier: 2.0, jitter: 0.0 };
    /// assert_eq!(b.delay(1), Duration::from_secs(1));
    /// assert_eq!(b.delay(3), Duration::from_secs(4));
    /// assert_eq!(b.delay(10), Duration::from_secs(8));
    /// ```
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(64) as i32;
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        let capped = base.min(self.max.as_secs_f64());
        let spread = if self.jitter > 0.0 {
            let unit: f64 = rand::random::<f64>() * 2.0 - 1.0;
            capped * self.jitter * unit
        } else {
            0.0
        };
        Duration::from_secs_f64((capped + spread).clamp(0.0, self.max.as_secs_f64()))
    }
}

fn invalid(msg: String) -> PoolError {
    PoolError::InvalidConfig(msg)
}

fn nonzero(name: &str, value: Option<Duration>) -> Result<(), PoolError> {
    match value {
        Some(d) if d.is_zero() => {
            Err(invalid(format!("{name} is zero: use None to disable it, or a positive duration")))
        }
        _ => Ok(()),
    }
}

impl ShapeConfig {
    /// Checks the settings for `shape`; the error says what to change.
    ///
    /// ```
    /// use firepit_pool::{ShapeConfig, ShapeKey};
    /// let shape = ShapeKey::new("small");
    /// let bad = ShapeConfig { depth: 4..=2, ..ShapeConfig::default() };
    /// assert!(bad.validate(&shape).unwrap_err().to_string().contains("write the smaller number first"));
    /// ```
    pub fn validate(&self, shape: &ShapeKey) -> Result<(), PoolError> {
        let (low, high) = (*self.depth.start(), *self.depth.end());
        if low > high {
            return Err(invalid(format!(
                "shape {shape}: depth {low}..={high} has its low water above its high water: \
                 write the smaller number first, e.g. .depth({high}..={low})"
            )));
        }
        if high == 0 {
            return Err(invalid(format!(
                "shape {shape}: depth {low}..={high} keeps no VM warm: use a high water of at least 1, e.g. .depth(1..=2)"
            )));
        }
        nonzero("max_age", self.max_age)?;
        nonzero("idle_ttl", self.idle_ttl)?;
        nonzero("probe_interval", self.probe_interval)?;
        if let Some(a) = &self.adaptive {
            if a.max < high {
                return Err(invalid(format!(
                    "shape {shape}: adaptive max {} is below the high water {high}: raise AdaptiveDepth::max to at least {high}",
                    a.max
                )));
            }
            if !(a.safety.is_finite() && a.safety > 0.0) {
                return Err(invalid(format!(
                    "shape {shape}: adaptive safety {} must be a positive number, e.g. 2.0",
                    a.safety
                )));
            }
            if a.window.is_zero() {
                return Err(invalid(format!("shape {shape}: adaptive window is zero: use e.g. 10 s")));
            }
        }
        let b = &self.backoff;
        if b.initial.is_zero() || b.max < b.initial {
            return Err(invalid(format!(
                "shape {shape}: backoff initial {:?} must be positive and at most max {:?}",
                b.initial, b.max
            )));
        }
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
            return Err(invalid(format!(
                "shape {shape}: backoff multiplier {} must be ≥ 1.0, e.g. 2.0",
                b.multiplier
            )));
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(invalid(format!(
                "shape {shape}: backoff jitter {} must be within 0.0..=1.0",
                b.jitter
            )));
        }
        Ok(())
    }
}

/// A shape whose VMs cost nothing could never be bounded by the memory budget: refused.
pub(crate) fn check_memory(shape: &ShapeKey, full_mb: u64) -> Result<(), PoolError> {
    if full_mb == 0 {
        return Err(invalid(format!(
            "shape {shape} has memory_mb = 0 (its provider's MemoryAccounting::full_mb): give the VM memory"
        )));
    }
    Ok(())
}

/// The low water of every shape together must fit in the budget, or `build()` could never finish.
/// `shapes` yields each shape's low water and [`full_mb`](crate::MemoryAccounting::full_mb).
pub(crate) fn check_budget(
    budget: Option<u64>,
    shapes: impl Iterator<Item = (usize, u64)>,
) -> Result<(), PoolError> {
    let Some(budget) = budget else { return Ok(()) };
    let need =
        shapes.fold(0u64, |need, (low, full_mb)| need.saturating_add(full_mb.saturating_mul(low as u64)));
    if need > budget {
        return Err(PoolError::InvalidConfig(format!(
            "the low water of all shapes needs {need} MiB but memory_budget_mb is {budget}: \
             raise the budget to at least {need} or lower the depths"
        )));
    }
    Ok(())
}
