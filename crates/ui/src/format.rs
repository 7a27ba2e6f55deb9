//! Numbers and times for people: `3 m 12 s`, `1.5 MiB`, `2026-11-24 10:00:00 UTC`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A duration to the second, largest two units.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(firepit_ui::format::duration(Duration::from_secs(42)), "42 s");
/// assert_eq!(firepit_ui::format::duration(Duration::from_secs(3 * 60 + 12)), "3 m 12 s");
/// assert_eq!(firepit_ui::format::duration(Duration::from_secs(26 * 3600 + 120)), "1 d 2 h");
/// ```
pub fn duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} m {s} s"),
        (0, _, _) => format!("{h} h {m} m"),
        _ => format!("{d} d {h} h"),
    }
}

/// A byte count in binary units.
///
/// ```
/// assert_eq!(firepit_ui::format::bytes(512), "512 B");
/// assert_eq!(firepit_ui::format::bytes(1536), "1.5 KiB");
/// assert_eq!(firepit_ui::format::bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
/// ```
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Milliseconds since the Unix epoch as a UTC time to the second.
///
/// ```
/// assert_eq!(firepit_ui::format::unix_ms(1_795_600_000_000), "2026-11-25 09:46:40 UTC");
/// ```
pub fn unix_ms(ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}

/// The time from `from_ms` to `to_ms` (zero if `to_ms` is earlier).
pub fn between(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(to_ms.saturating_sub(from_ms))
}
