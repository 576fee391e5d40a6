//! `flowsql replay`'s hubble filter flags (`--pod`, `--not`, `--verdict`, `--type trace:to-endpoint`,
//! …) into FlowFilter allow and deny lists: built or refused with the flag named, never a
//! panic; what is built serializes as FlowFilter JSON that the strict parser accepts again.
#![no_main]

use hubble_api::observe_flags::{build, FLAGS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One flag per line: its first character picks the flag (or `--not`), the rest is its value.
    let flags: Vec<(&'static str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut chars = line.chars();
            let pick = chars.next()? as usize % (FLAGS.len() + 1);
            let flag = FLAGS.get(pick).copied().unwrap_or("not");
            Some((flag, chars.as_str()))
        })
        .collect();
    if let Ok(lists) = build(flags) {
        for filter in lists.allow.iter().chain(&lists.deny) {
            let json = serde_json::to_string(filter).expect("a filter serializes");
            hubble_api::strict_flow_filter(&json).expect("built filters are valid FlowFilters");
        }
    }
});
