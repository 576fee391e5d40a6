//! Deleting what no reader needs any more, never sooner:
//!
//! 1. files the latest commit replaced, and commits it superseded: once that commit is older
//!    than `--grace` (a query that listed the hour before the commit may still read them);
//! 2. compacted files no commit names (a compactor killed between writing and committing, or
//!    one that lost the race for a seq): once they are older than `--orphan-grace`, since a
//!    compactor still running writes such files until it commits;
//! 3. rollups of generations other than the hour's latest: once the latest generation's
//!    rollup is older than `--grace`.
//!
//! Deletion order inside an hour does not matter to readers: every object deleted here is one
//! the visibility rule already ignores.

use flow_schema::catalog::{GarbageKind, HourView, RollupView};
use object_store::{ObjectMeta, ObjectStoreExt};

use super::cli::GraceArgs;
use super::Maintainer;

/// What a pass deleted (or would have, with `--dry-run`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Deleted {
    pub objects: u64,
    pub bytes: u64,
}

impl Deleted {
    pub fn add(&mut self, other: Deleted) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// The garbage of `view` that may go now.
pub fn due(m: &Maintainer, view: &HourView, grace: &GraceArgs) -> Vec<ObjectMeta> {
    let commit_settled = view
        .latest_commit
        .as_ref()
        .is_some_and(|commit| m.older_than(commit.last_modified, grace.grace));
    view.garbage
        .iter()
        .filter(|(kind, meta)| match kind {
            GarbageKind::Replaced | GarbageKind::SupersededCommit => commit_settled,
            GarbageKind::Orphan => m.older_than(meta.last_modified, grace.orphan_grace),
        })
        .map(|(_, meta)| meta.clone())
        .collect()
}

/// The rollups of `rollups` that `current`'s rollup, written at `written`, made stale and
/// that may go now.
pub fn stale_rollups(
    m: &Maintainer,
    rollups: &RollupView,
    current: &flow_schema::layout::names::Generation,
    written: chrono::DateTime<chrono::Utc>,
    grace: &GraceArgs,
) -> Vec<ObjectMeta> {
    if !m.older_than(written, grace.grace) {
        return Vec::new();
    }
    rollups
        .rollups
        .iter()
        .filter(|(generation, _)| generation != current)
        .map(|(_, meta)| meta.clone())
        .collect()
}

/// Deletes `objects` (replaced data first, then commits: a reader that finds a commit finds
/// what it names, or lists again).
pub async fn delete(
    m: &Maintainer,
    mut objects: Vec<ObjectMeta>,
) -> Result<Deleted, object_store::Error> {
    objects.sort_by_key(|meta| meta.location.as_ref().ends_with(".json"));
    let mut deleted = Deleted::default();
    for meta in objects {
        if !m.dry_run {
            match m.store.object_store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        deleted.objects += 1;
        deleted.bytes += meta.size;
    }
    Ok(deleted)
}
