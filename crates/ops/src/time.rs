//! Moments in time as operators type and read them: RFC 3339 in UTC, epoch milliseconds, or
//! "this long ago" (`15m`, `2h`, `1d`). Parsing and printing go through `humantime`, which does
//! exactly these two formats without pulling in a calendar library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::OpsError;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `input` into epoch milliseconds: RFC 3339 (`2026-11-25T10:00:00Z`, fractions
/// allowed, UTC only), a plain integer (epoch milliseconds), or a duration before `now_ms`
/// (`15m`, `2h`, `1d`, `1h 30m`).
pub fn parse_time(input: &str, now_ms: i64) -> Result<i64, OpsError> {
    let s = input.trim();
    let invalid = || OpsError::InvalidTime(input.to_string());
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| invalid());
    }
    if s.contains('T') || s.contains('-') || s.contains(':') {
        let at = humantime::parse_rfc3339(s).map_err(|_| invalid())?;
        let since = at.duration_since(UNIX_EPOCH).map_err(|_| invalid())?;
        return i64::try_from(since.as_millis()).map_err(|_| invalid());
    }
    let ago = humantime::parse_duration(s).map_err(|_| invalid())?;
    let ago = i64::try_from(ago.as_millis()).map_err(|_| invalid())?;
    Ok(now_ms.saturating_sub(ago))
}

/// Epoch milliseconds as RFC 3339 in UTC with milliseconds (`2026-11-25T10:00:00.000Z`);
/// a moment before 1970 (never a real commit) prints as its number.
pub fn format_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_600_000_000; // 2026-11-25T09:46:40Z

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(
            parse_time("2026-11-25T10:00:00Z", NOW).unwrap(),
            1_795_600_800_000
        );
        assert_eq!(
            parse_time("2026-11-25T10:00:00.250Z", NOW).unwrap(),
            1_795_600_800_250
        );
        assert!(parse_time("2026-11-25T10:00:00+02:00", NOW).is_err());
        assert!(parse_time("2026-13-25T10:00:00Z", NOW).is_err());
    }

    #[test]
    fn epoch_milliseconds() {
        assert_eq!(parse_time("1795600800000", NOW).unwrap(), 1_795_600_800_000);
        assert_eq!(parse_time(" 0 ", NOW).unwrap(), 0);
    }

    #[test]
    fn durations_ago() {
        assert_eq!(parse_time("15m", NOW).unwrap(), NOW - 15 * 60_000);
        assert_eq!(parse_time("2h", NOW).unwrap(), NOW - 2 * 3_600_000);
        assert_eq!(parse_time("1d", NOW).unwrap(), NOW - 86_400_000);
        assert_eq!(parse_time("1h 30m", NOW).unwrap(), NOW - 90 * 60_000);
        assert_eq!(parse_time("500ms", NOW).unwrap(), NOW - 500);
    }

    #[test]
    fn garbage_is_an_error_that_names_the_input() {
        for bad in ["", "yesterday", "15x", "-5", "12:00"] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn formats_as_utc_with_milliseconds() {
        assert_eq!(format_time(1_795_600_800_250), "2026-11-25T10:00:00.250Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(-1), "-1");
        let ms = 1_795_600_800_123;
        assert_eq!(parse_time(&format_time(ms), NOW).unwrap(), ms);
    }
}
