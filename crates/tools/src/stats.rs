//! What every benchmark prints: one JSON object per line (`--json`) or an aligned text line, and
//! the percentiles and rounding they share.

use std::time::Duration;

/// Prints the measurements of one benchmark.
///
/// ```
/// let report = firepit_tools::stats::Report { json: true, bench: "vm" };
/// report.emit("exec_rtt_ms", 9.1234, "ms", serde_json::json!({"samples": 200}));
/// // prints {"system":"firepit","bench":"vm","metric":"exec_rtt_ms","value":9.123,"unit":"ms","samples":200}
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// The benchmark's name (`vm`, `fill`, `api`, ...), the `bench` field of every line.
    pub bench: &'static str,
}

impl Report {
    /// Prints one metric, with `extra` fields merged into the JSON object (or shown after it).
    pub fn emit(&self, metric: &str, value: f64, unit: &str, extra: serde_json::Value) {
        if self.json {
            let mut line = serde_json::json!({"system": "firepit", "bench": self.bench, "metric": metric, "value": round(value), "unit": unit});
            if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
                line.extend(extra);
            }
            println!("{line}");
        } else {
            println!("{metric:<28} {:>12.3} {unit}  {extra}", value);
        }
    }
}

impl Report {
    /// Prints a latency metric: p50 in ms as the value, with `p99_ms` and `samples` (and `extra`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let report = firepit_tools::stats::Report { json: true, bench: "vm" };
    /// let mut samples = vec![Duration::from_millis(20), Duration::from_millis(10)];
    /// report.latency("reserve_to_first_exec_ms", &mut samples, serde_json::json!({"vms": 2}));
    /// // prints {...,"metric":"reserve_to_first_exec_ms","value":20.0,"unit":"ms","p99_ms":20.0,"samples":2,"vms":2}
    /// ```
    pub fn latency(&self, metric: &str, samples: &mut [Duration], extra: serde_json::Value) {
        let (p50, p99) = percentiles(samples);
        let mut fields = serde_json::json!({"p99_ms": round(ms(p99)), "samples": samples.len()});
        if let (Some(fields), serde_json::Value::Object(extra)) = (fields.as_object_mut(), extra) {
            fields.extend(extra);
        }
        self.emit(metric, ms(p50), "ms", fields);
    }
}

/// `value` rounded to three decimals (what the JSON lines carry).
///
/// ```
/// assert_eq!(firepit_tools::stats::round(1.23456), 1.235);
/// ```
pub fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// A duration in milliseconds.
///
/// ```
/// assert_eq!(firepit_tools::stats::ms(std::time::Duration::from_micros(1500)), 1.5);
/// ```
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of the samples (sorted in place; zero for no samples).
///
/// ```
/// use std::time::Duration;
/// let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
/// let (p50, p99) = firepit_tools::stats::percentiles(&mut samples);
/// assert_eq!((p50.as_millis(), p99.as_millis()), (51, 99));
/// ```
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    (at(0.5), at(0.99))
}
