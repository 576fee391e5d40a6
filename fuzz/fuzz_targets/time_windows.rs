//! `--since` / `--until` as typed (RFC 3339, dates, durations back from now): a window, or an
//! error naming the flag; never a panic, and a window is never empty or reversed.
#![no_main]

use chrono::{DateTime, Utc};
use flow_schema::timerange::TimeRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = DateTime::<Utc>::from_timestamp(1_795_000_000, 0).expect("a time");
    let (since, until) = text.split_once('\n').unwrap_or((text, ""));
    let until = (!until.is_empty()).then_some(until);
    if let Ok(range) = TimeRange::parse(Some(since), until, now) {
        if let (Some(s), Some(u)) = (range.since, range.until) {
            assert!(s < u, "{range:?}");
        }
    }
});
