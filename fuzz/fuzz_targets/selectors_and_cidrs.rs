//! Label selectors (`label_selector(...)`, `--label`, a report check's `selector`) and CIDRs
//! (`cidr_contains`, `--ip`): parsed or refused, never a panic; matching any labels and any
//! address text is total.
#![no_main]

use flow_schema::matching::{Cidr, Label, Selector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The input's first line is the selector or CIDR; the other lines are labels or addresses.
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("");
    let rest: Vec<&str> = lines.collect();
    let labels: Vec<Label> = rest.iter().map(|l| Label::parse(l)).collect();
    if let Ok(selector) = Selector::parse(head) {
        let _ = selector.matches(&labels);
    }
    for label in &labels {
        let _ = Label::parse(head).selects(label);
    }
    if let Some(cidr) = Cidr::parse(head) {
        for address in &rest {
            let _ = cidr.contains(address);
        }
        // A network contains its own address as written (a bare IP is a /32 or /128).
        if !head.contains('/') {
            assert!(cidr.contains(head.trim()), "{head:?}");
        }
    }
});
