//! `--since` / `--until`: RFC 3339 instants (`2026-11-24T09:00:00Z`, also without seconds as in
//! `2026-11-24T09:00Z`, or a bare date), or durations back from now (`2h`, `7d`, `1h30m`), as
//! `hubble observe` takes them. Times without an offset are UTC.

use crate::units::parse_duration;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A half-open window `[since, until)` in ns since the epoch; `None` = unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: expected an RFC 3339 time (2026-11-24T09:00:00Z) or a duration back from now (30m, 2h, 7d), within the years 1678-2261")]
pub struct TimeError {
    flag: &'static str,
    value: String,
}

impl TimeRange {
    /// `[since, until)`: SQL's window, where `--until` is the first instant left out.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, TimeRangeError> {
        Self::parse_bounds(since, until, now, false)
    }

    /// `[since, until]`, as `hubble observe` reads them (both ends inclusive; `since` equal to
    /// `until` is one instant), returned half-open like every range.
    pub fn parse_inclusive(
        since: Option<&str>,
        until: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, TimeRangeError> {
        Self::parse_bounds(since, until, now, true)
    }

    fn parse_bounds(
        since: Option<&str>,
        until: Option<&str>,
        now: DateTime<Utc>,
        inclusive: bool,
    ) -> Result<Self, TimeRangeError> {
        let parse = |flag: &'static str, value: Option<&str>| {
            value
                .map(|v| {
                    parse_instant(v, now).ok_or_else(|| TimeError {
                        flag,
                        value: v.into(),
                    })
                })
                .transpose()
        };
        let since = parse("--since", since)?;
        let mut until = parse("--until", until)?;
        if inclusive {
            until = until.map(|u| u.saturating_add(1));
        }
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(TimeRangeError::Empty);
            }
        }
        Ok(TimeRange { since, until })
    }

    pub fn is_unbounded(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TimeRangeError {
    #[error(transparent)]
    Invalid(#[from] TimeError),
    #[error("--since must be earlier than --until (replay: not later than)")]
    Empty,
}

/// One instant, in ns since the epoch.
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Option<i64> {
    let text = text.trim();
    if text == "now" {
        return now.timestamp_nanos_opt();
    }
    if let Ok(ago) = parse_duration(text) {
        let ago = chrono::Duration::from_std(ago).ok()?;
        return now.checked_sub_signed(ago)?.timestamp_nanos_opt();
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt();
    }
    // RFC 3339 without seconds: "2026-11-24T09:00Z", "2026-11-24T10:00+01:00".
    if text.len() > 16 && text.is_char_boundary(16) && text.as_bytes()[10] == b'T' {
        let with_seconds = format!("{}:00{}", &text[..16], &text[16..]);
        if let Ok(t) = DateTime::parse_from_rfc3339(&with_seconds) {
            return t.timestamp_nanos_opt();
        }
    }
    // No offset at all: UTC.
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_utc().timestamp_nanos_opt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T13:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ns(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn instants() {
        assert_eq!(
            parse_instant("2026-11-24T09:00Z", now()),
            Some(ns("2026-11-24T09:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-11-24T09:00:00.5Z", now()),
            Some(ns("2026-11-24T09:00:00.5Z"))
        );
        assert_eq!(
            parse_instant("2026-11-24T10:00+01:00", now()),
            Some(ns("2026-11-24T09:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-11-24", now()),
            Some(ns("2026-11-24T00:00:00Z"))
        );
        assert_eq!(parse_instant("2h", now()), Some(ns("2026-11-26T11:00:00Z")));
        assert_eq!(parse_instant("7d", now()), Some(ns("2026-11-19T13:00:00Z")));
        assert_eq!(parse_instant("tuesday", now()), None);
        // Beyond what a timestamp in ns holds: no instant (an error for the flag), no panic.
        assert_eq!(parse_instant("100000000d", now()), None);
        assert_eq!(parse_instant("18446744073709551615s", now()), None);
        assert_eq!(parse_instant("2300-01-01T00:00:00Z", now()), None);
    }

    #[test]
    fn ranges() {
        let r = TimeRange::parse(Some("2h"), None, now()).unwrap();
        assert_eq!(r.since, Some(ns("2026-11-26T11:00:00Z")));
        let err = TimeRange::parse(Some("yesterday"), None, now())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--since") && err.contains("yesterday"),
            "{err}"
        );
        assert!(TimeRange::parse(Some("1h"), Some("2h"), now()).is_err());
    }
}
