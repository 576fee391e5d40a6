//! Names and control objects found in a store (any object anyone put there): object names,
//! dataset folders, hour keys, `_commit.*.json`, `retention.json`, a Parquet footer's
//! key-value metadata. Parsed or refused, never a panic.
#![no_main]

use flow_schema::catalog::{commit::Commit, retention::Retention};
use flow_schema::layout::{self, names::ObjectName, Dataset};
use flow_schema::writer::FooterInfo;
use libfuzzer_sys::fuzz_target;
use parquet::file::metadata::KeyValue;

fuzz_target!(|data: &[u8]| {
    let _ = Commit::from_json(data);
    let _ = Retention::from_json(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ObjectName::parse(text);
    let _ = Dataset::parse(text);
    let _ = layout::hour_of_key(text);
    let _ = layout::day_of_folder(text);
    let pairs: Vec<KeyValue> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((key, value)) => KeyValue::new(key.to_string(), value.to_string()),
            None => KeyValue::new(line.to_string(), None),
        })
        .collect();
    let _ = FooterInfo::from_key_values(Some(&pairs));
});
