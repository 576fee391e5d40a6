//! A commit: the one object whose creation makes a compaction visible.
//!
//! `_commit.<seq>.json` in the hour's partition, created with `PutMode::Create` (exclusive: two
//! compactors cannot both commit generation `seq` of an hour). It names the generation's
//! outputs and every recorded file whose rows they hold — this compaction's inputs and those
//! of every earlier generation of the hour — so a recorded file that comes back (a spool
//! shipped again after a crash, days later) stays hidden.

use serde::{Deserialize, Serialize};

use crate::layout::names::Generation;

/// Version of the commit format.
pub const COMMIT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub format: u32,
    /// `flows` or `lost_events`.
    pub dataset: String,
    /// The hour, RFC 3339.
    pub hour: String,
    pub seq: u64,
    pub nonce: String,
    /// When the compactor committed (RFC 3339), for people; deletions go by the object's time.
    pub created: String,
    /// The files of this generation: the hour's compacted rows.
    pub outputs: Vec<Output>,
    /// Recorded files (names in this partition) whose rows the outputs hold.
    pub replaced: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

impl Commit {
    pub fn generation(&self) -> Generation {
        Generation {
            seq: self.seq,
            nonce: self.nonce.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a commit serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Commit, String> {
        let commit: Commit = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if commit.format > COMMIT_FORMAT {
            return Err(format!(
                "commit format {} is newer than this tool knows ({COMMIT_FORMAT})",
                commit.format
            ));
        }
        Ok(commit)
    }
}
