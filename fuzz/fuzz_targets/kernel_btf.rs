//! A kernel BTF file (`--kernel-btf`, a user's file): parsed and asked what the recorder asks
//! of it (the kernel's facts, drop reason names), or refused, never a panic or a hang.
#![no_main]

use std::path::Path;

use flowrec::ebpf::btf::Btf;
use flowrec::ebpf::kernel::BtfFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::parse(data.to_vec()) {
        let facts = BtfFacts::from_btf(Path::new("fuzz"), &btf);
        if let Some(reasons) = facts.drop_reasons {
            let _ = reasons.name(3);
        }
        for id in 0..8 {
            let _ = btf.type_name(id);
        }
    }
});
