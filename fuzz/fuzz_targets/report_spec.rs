//! `flowsql report SPEC.yaml`: any text is a spec or an error naming the file (and the check,
//! when one is at fault), never a panic; what is accepted is what a report can run.
#![no_main]

use flow_spec::report::{CheckKind, Spec, SpecError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Spec::parse("spec.yaml", text) {
        Ok(spec) => {
            assert!(!spec.checks.is_empty(), "a spec without checks was accepted");
            for (i, check) in spec.checks.iter().enumerate() {
                assert!(!check.name.trim().is_empty(), "check #{i} has no name");
                assert!(
                    spec.checks[..i].iter().all(|c| c.name != check.name),
                    "two checks named {:?}",
                    check.name
                );
                if let CheckKind::Sql { sql, .. } = &check.kind {
                    assert!(!sql.trim().is_empty(), "check {:?}: empty SQL", check.name);
                }
            }
            // Parsing is a function of the text.
            assert_eq!(Spec::parse("spec.yaml", text).ok(), Some(spec));
        }
        Err(SpecError::File { file, .. } | SpecError::Check { file, .. }) => {
            assert_eq!(file, "spec.yaml")
        }
    }
});
