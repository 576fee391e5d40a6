//! `follow`: after the history part, the flows of files as they land in the store.
//!
//! The store has no change feed, so a follower lists the hours from [`LOOKBACK_HOURS`] before
//! now every `--poll` and reads the files it has not seen (each file's flows in time order,
//! through the same filters). A file seen once is never read again; a compaction output is
//! never read (its flows are those of files already seen, or of hours older than the
//! lookback). Freshness: a flow reaches a follower when its file lands (the recorder seals a
//! file every `--max-file-age`, 5 minutes by default) plus at most one poll.
//!
//! The history part and the follow share a boundary: the files of the lookback hours are
//! listed before the history part runs, and a file that lands while it starts may be read by
//! both; flows of the history part's last [`DEDUP_NANOS`] are remembered by uuid so that such
//! a file's flows are sent once.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use flow_schema::catalog::Retention;
use flow_schema::layout::Dataset;
use flow_schema::store::Store;
use flow_schema::timerange::TimeRange;
use flow_schema::Table;
use object_store::ObjectMeta;

use crate::session::{FlowSession, ReadOptions};

/// How far back a follower looks for new files (recorders ship within minutes; a spool
/// drained after a longer outage lands in hours a follower no longer lists).
pub const LOOKBACK_HOURS: i64 = 3;

/// The stretch at the end of the history part whose flows are remembered (by uuid).
pub const DEDUP_NANOS: i64 = 10 * 60 * 1_000_000_000;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Files of both recorded tables a follower has already read (or chosen not to).
#[derive(Debug, Default)]
pub struct Seen {
    files: HashSet<String>,
}

/// New files of a poll, per table.
#[derive(Debug, Default)]
pub struct NewFiles {
    pub flows: Vec<ObjectMeta>,
    pub lost_events: Vec<ObjectMeta>,
}

impl NewFiles {
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.lost_events.is_empty()
    }
}

impl Seen {
    /// Lists the lookback hours; returns the files not seen before (and marks them seen).
    pub async fn poll(&mut self, store: &Store, now_ns: i64) -> Result<NewFiles, String> {
        let catalog = flow_schema::catalog::Catalog::new(store.clone());
        let retention: Retention = catalog.retention().await.map_err(|e| e.to_string())?;
        let since = Some(now_ns - LOOKBACK_HOURS * NANOS_PER_HOUR);
        let mut new = NewFiles::default();
        for (dataset, into) in [
            (Dataset::Flows, &mut new.flows),
            (Dataset::LostEvents, &mut new.lost_events),
        ] {
            let views = catalog
                .views(dataset, since, None, &retention)
                .await
                .map_err(|e| e.to_string())?;
            for file in views.into_iter().flat_map(|view| view.live) {
                let key = file.location.to_string();
                if !self.files.insert(key) {
                    continue;
                }
                if !is_compaction_output(&file) {
                    into.push(file);
                }
            }
        }
        Ok(new)
    }
}

fn is_compaction_output(file: &ObjectMeta) -> bool {
    file.location
        .filename()
        .is_some_and(|name| name.starts_with("compacted."))
}

/// A session reading exactly `files`, limited to `[.., until)`.
pub async fn session_of(
    store: &Store,
    options: ReadOptions,
    files: NewFiles,
    until: Option<i64>,
) -> Result<FlowSession, String> {
    let range = TimeRange { since: None, until };
    let session = FlowSession::with_store(store.clone(), range, options)
        .await
        .map_err(|e| e.to_string())?;
    session
        .pin(Table::Flows, files.flows)
        .map_err(|e| e.to_string())?;
    session
        .pin(Table::LostEvents, files.lost_events)
        .map_err(|e| e.to_string())?;
    Ok(session)
}

/// Uuids of the newest flows sent (within [`DEDUP_NANOS`] of the newest), to skip their
/// repetition by the first polls.
#[derive(Debug, Default)]
pub struct Recent {
    flows: VecDeque<(i64, String)>,
    uuids: HashSet<String>,
}

impl Recent {
    pub fn remember(&mut self, time_ns: i64, uuid: &str) {
        if uuid.is_empty() {
            return;
        }
        self.flows.push_back((time_ns, uuid.to_owned()));
        self.uuids.insert(uuid.to_owned());
        while let Some((oldest, _)) = self.flows.front() {
            if *oldest >= time_ns - DEDUP_NANOS {
                break;
            }
            let (_, uuid) = self.flows.pop_front().expect("front exists");
            self.uuids.remove(&uuid);
        }
    }

    pub fn contains(&self, uuid: &str) -> bool {
        !uuid.is_empty() && self.uuids.contains(uuid)
    }
}

/// How long a follower waits between polls.
pub fn poll_interval(poll: Duration) -> Duration {
    poll.max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_flows_are_remembered_for_a_stretch_of_time() {
        let mut recent = Recent::default();
        recent.remember(0, "a");
        recent.remember(DEDUP_NANOS, "b");
        assert!(recent.contains("a") && recent.contains("b"));
        recent.remember(DEDUP_NANOS + 1, "c");
        assert!(!recent.contains("a") && recent.contains("b") && recent.contains("c"));
        recent.remember(5, "");
        assert!(!recent.contains(""));
    }
}
