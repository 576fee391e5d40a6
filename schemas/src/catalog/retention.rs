//! Retention watermarks: below its watermark, a dataset's hours are expired. Readers skip them
//! at once (retention applies at query time first, as InfluxDB does); `flowstore expire`
//! deletes their objects after the grace period.
//!
//! One object, `_flowstore/retention.json`, overwritten by `flowstore expire` (a PUT is atomic);
//! a watermark only ever moves forward.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layout::Dataset;

pub const RETENTION_FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub format: u32,
    /// Per dataset name.
    pub datasets: BTreeMap<String, Watermark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Hours starting before this instant (RFC 3339, an hour boundary) are expired.
    pub expired_before: String,
    /// When the watermark last moved (RFC 3339): deletion waits a grace period after it.
    pub moved: String,
}

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()?
        .timestamp_nanos_opt()
}

impl Retention {
    /// Where `dataset`'s expired hours end (ns), if it has a watermark.
    pub fn expired_before(&self, dataset: Dataset) -> Option<i64> {
        parse_time(&self.datasets.get(dataset.name())?.expired_before)
    }

    /// When `dataset`'s watermark last moved (ns).
    pub fn moved(&self, dataset: Dataset) -> Option<i64> {
        parse_time(&self.datasets.get(dataset.name())?.moved)
    }

    /// Moves `dataset`'s watermark to `hour` (never back); true if it moved.
    pub fn advance(&mut self, dataset: Dataset, hour: i64, now: i64) -> bool {
        if self
            .expired_before(dataset)
            .is_some_and(|current| current >= hour)
        {
            return false;
        }
        self.format = RETENTION_FORMAT;
        self.datasets.insert(
            dataset.name().to_string(),
            Watermark {
                expired_before: crate::layout::rfc3339(hour),
                moved: crate::layout::rfc3339(now),
            },
        );
        true
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("retention serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Retention, String> {
        let retention: Retention = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if retention.format > RETENTION_FORMAT {
            return Err(format!(
                "retention format {} is newer than this tool knows ({RETENTION_FORMAT})",
                retention.format
            ));
        }
        for (name, mark) in &retention.datasets {
            if parse_time(&mark.expired_before).is_none() || parse_time(&mark.moved).is_none() {
                return Err(format!("the watermark of {name} is not an RFC 3339 time"));
            }
        }
        Ok(retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_only_move_forward_and_round_trip() {
        let mut retention = Retention::default();
        assert_eq!(retention.expired_before(Dataset::Flows), None);
        assert!(retention.advance(Dataset::Flows, 7_200_000_000_000, 1));
        assert!(!retention.advance(Dataset::Flows, 3_600_000_000_000, 2));
        assert_eq!(
            retention.expired_before(Dataset::Flows),
            Some(7_200_000_000_000)
        );
        assert_eq!(retention.expired_before(Dataset::FlowsHourly), None);
        let back = Retention::from_json(&retention.to_json()).unwrap();
        assert_eq!(back, retention);
        assert!(Retention::from_json(b"{\"format\":9,\"datasets\":{}}").is_err());
    }
}
