//! Times on the wire: RFC 3339 in UTC with milliseconds, beside milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `unix_ms` as RFC 3339 (UTC, milliseconds).
///
/// ```
/// assert_eq!(firepit_api::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
/// ```
pub fn rfc3339_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// Milliseconds since the Unix epoch (0 before it).
///
/// ```
/// assert_eq!(firepit_api::unix_ms(std::time::UNIX_EPOCH), 0);
/// ```
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}
