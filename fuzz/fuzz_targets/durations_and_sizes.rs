//! Durations and sizes as typed on every command line (`--since 2h`, `--max-file-age 5m`,
//! `--spool-max-bytes 10GiB`): an error or a value, never a panic or a wrapped-around value.
#![no_main]

use flow_schema::units::{parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_duration(text) {
        // Seconds written back read as the same seconds (no overflow hidden on the way).
        let seconds = format!("{}s", duration.as_secs());
        assert_eq!(parse_duration(&seconds).map(|d| d.as_secs()), Ok(duration.as_secs()));
    }
    if let Ok(size) = parse_size(text) {
        assert_eq!(parse_size(&size.to_string()), Ok(size));
    }
});
