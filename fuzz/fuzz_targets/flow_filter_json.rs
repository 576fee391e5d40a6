//! `--allowlist` / `--denylist` FlowFilter JSON (flowrec run --source hubble, flowsql replay).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(filter) = hubble_api::strict_flow_filter(text) {
            // What was accepted writes back as JSON that is accepted again.
            let again = serde_json::to_string(&filter).expect("a filter serializes");
            hubble_api::strict_flow_filter(&again).expect("its own JSON is accepted");
        }
    }
});
