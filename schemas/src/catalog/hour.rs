//! The visibility rule for one hour partition, as a pure function of what a listing of the
//! partition returned and, when needed, the content of its latest commit.
//!
//! - No commit: the live files are the recorded ones. Compacted files are orphans (a
//!   compaction that never committed) and are not read.
//! - Commits: only the latest (highest seq) counts. Live = its outputs, plus every recorded
//!   file it does not name as replaced (files that arrived after it: late spools). Compacted
//!   files other than its outputs are not read: outputs of earlier generations (replaced by
//!   this one) or of attempts that never committed.
//! - A commit naming an output the listing does not show is an inconsistency (a torn listing:
//!   the caller lists again), never a reason to read less.
//!
//! The latest commit needs to be read only when recorded files sit next to it (late files, or
//! inputs not deleted yet) or its outputs are ambiguous; a compacted hour at rest
//! (`_commit.<seq>.json` + `compacted.<seq>.<nonce>.*`, complete) is decided from names alone.

use std::collections::{BTreeMap, HashSet};

use object_store::ObjectMeta;

use super::commit::Commit;
use crate::layout::names::{Generation, ObjectName};
use crate::layout::Dataset;

/// Everything a listing of one hour partition returned.
#[derive(Debug, Clone)]
pub struct HourListing {
    pub dataset: Dataset,
    /// Start of the hour (ns).
    pub hour: i64,
    pub objects: Vec<ObjectMeta>,
}

/// Where an hour stands with compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compaction {
    /// Never compacted: recorded files only.
    None,
    /// Exactly the outputs of this generation are live.
    Clean(Generation),
    /// This generation's outputs and recorded files that arrived after it.
    WithLateFiles(Generation),
}

impl Compaction {
    pub fn generation(&self) -> Option<&Generation> {
        match self {
            Compaction::None => None,
            Compaction::Clean(g) | Compaction::WithLateFiles(g) => Some(g),
        }
    }
}

/// Why an object is no longer (or never was) visible, which decides when it may be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarbageKind {
    /// Its rows are in the latest generation: deletable once that commit is older than the
    /// grace period (queries that listed before the commit may still read it).
    Replaced,
    /// A commit older than the latest: deletable after the same grace period.
    SupersededCommit,
    /// A compacted file no commit names: a crashed or losing attempt, or one still running.
    /// Deletable only once it is older than the orphan grace.
    Orphan,
}

/// What a reader and a maintainer need to know about one hour.
#[derive(Debug, Clone)]
pub struct HourView {
    pub dataset: Dataset,
    pub hour: i64,
    /// The data files to read, sorted by name.
    pub live: Vec<ObjectMeta>,
    /// Objects ending in `.parquet` that are not ours: never read, always reported.
    pub foreign: Vec<ObjectMeta>,
    pub compaction: Compaction,
    /// The latest commit object, if any.
    pub latest_commit: Option<ObjectMeta>,
    /// Recorded names the latest commit replaced (empty when it was not read).
    pub replaced: Vec<String>,
    pub garbage: Vec<(GarbageKind, ObjectMeta)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    #[error("commit {commit} names {output}, which the listing does not show")]
    MissingOutput { commit: String, output: String },
    #[error("commit {commit} says seq {found}, its name says {expected}")]
    WrongSeq {
        commit: String,
        found: u64,
        expected: u64,
    },
    #[error("the latest commit of the hour must be read to decide what is visible")]
    CommitNeeded,
}

fn name(meta: &ObjectMeta) -> &str {
    meta.location.filename().unwrap_or_default()
}

struct Classified<'a> {
    recorded: Vec<&'a ObjectMeta>,
    compacted: Vec<(Generation, u32, u32, &'a ObjectMeta)>,
    commits: Vec<(u64, &'a ObjectMeta)>,
    foreign: Vec<&'a ObjectMeta>,
}

impl HourListing {
    fn classify(&self) -> Classified<'_> {
        let mut classified = Classified {
            recorded: Vec::new(),
            compacted: Vec::new(),
            commits: Vec::new(),
            foreign: Vec::new(),
        };
        for meta in &self.objects {
            match ObjectName::parse(name(meta)) {
                ObjectName::Recorded { .. } => classified.recorded.push(meta),
                ObjectName::Compacted {
                    generation,
                    part,
                    parts,
                } => classified.compacted.push((generation, part, parts, meta)),
                ObjectName::Commit { seq } => classified.commits.push((seq, meta)),
                // A rollup belongs in flows_hourly, not among raw rows.
                ObjectName::ForeignParquet | ObjectName::Rollup { .. } => {
                    classified.foreign.push(meta)
                }
                ObjectName::Other => {}
            }
        }
        classified
    }

    /// The latest commit object, which [`HourListing::view`] needs unless
    /// [`HourListing::decidable_from_names`].
    pub fn latest_commit(&self) -> Option<(u64, &ObjectMeta)> {
        self.classify()
            .commits
            .into_iter()
            .max_by_key(|(seq, _)| *seq)
    }

    /// Whether the visible files follow from the names alone: a compacted hour at rest (no
    /// recorded file, one attempt of the latest seq, all its parts).
    pub fn decidable_from_names(&self) -> bool {
        let classified = self.classify();
        let Some(latest) = classified.commits.iter().map(|(seq, _)| *seq).max() else {
            return true;
        };
        classified.recorded.is_empty() && latest_outputs_by_name(&classified, latest).is_some()
    }

    /// The hour as the rule sees it. `commit` is the content of [`HourListing::latest_commit`]
    /// (`None` is accepted only when the hour is [`HourListing::decidable_from_names`]).
    pub fn view(&self, commit: Option<&Commit>) -> Result<HourView, Inconsistency> {
        let classified = self.classify();
        let mut view = HourView {
            dataset: self.dataset,
            hour: self.hour,
            live: Vec::new(),
            foreign: classified.foreign.iter().map(|m| (*m).clone()).collect(),
            compaction: Compaction::None,
            latest_commit: None,
            replaced: Vec::new(),
            garbage: Vec::new(),
        };
        let Some((latest, latest_meta)) = classified.commits.iter().max_by_key(|(seq, _)| *seq)
        else {
            view.live = classified.recorded.iter().map(|m| (*m).clone()).collect();
            for (_, _, _, meta) in &classified.compacted {
                view.garbage.push((GarbageKind::Orphan, (*meta).clone()));
            }
            sort(&mut view.live);
            return Ok(view);
        };
        let (latest, latest_meta) = (*latest, *latest_meta);
        view.latest_commit = Some(latest_meta.clone());
        for (seq, meta) in &classified.commits {
            if *seq < latest {
                view.garbage
                    .push((GarbageKind::SupersededCommit, (*meta).clone()));
            }
        }
        // The latest generation and its outputs, from the commit or from the names.
        let (generation, outputs): (Generation, HashSet<String>) = match commit {
            Some(commit) => {
                if commit.seq != latest {
                    return Err(Inconsistency::WrongSeq {
                        commit: name(latest_meta).to_string(),
                        found: commit.seq,
                        expected: latest,
                    });
                }
                let listed: HashSet<&str> = self.objects.iter().map(name).collect();
                for output in &commit.outputs {
                    if !listed.contains(output.name.as_str()) {
                        return Err(Inconsistency::MissingOutput {
                            commit: name(latest_meta).to_string(),
                            output: output.name.clone(),
                        });
                    }
                }
                view.replaced = commit.replaced.clone();
                let outputs = commit.outputs.iter().map(|o| o.name.clone()).collect();
                (commit.generation(), outputs)
            }
            None => {
                if !classified.recorded.is_empty() {
                    return Err(Inconsistency::CommitNeeded);
                }
                latest_outputs_by_name(&classified, latest).ok_or(Inconsistency::CommitNeeded)?
            }
        };
        let replaced: HashSet<&str> = view.replaced.iter().map(String::as_str).collect();
        let mut late = false;
        for meta in &classified.recorded {
            if replaced.contains(name(meta)) {
                view.garbage.push((GarbageKind::Replaced, (*meta).clone()));
            } else {
                view.live.push((*meta).clone());
                late = true;
            }
        }
        for (file_generation, _, _, meta) in &classified.compacted {
            if outputs.contains(name(meta)) {
                view.live.push((*meta).clone());
            } else if file_generation.seq < latest {
                view.garbage.push((GarbageKind::Replaced, (*meta).clone()));
            } else {
                view.garbage.push((GarbageKind::Orphan, (*meta).clone()));
            }
        }
        view.compaction = if late {
            Compaction::WithLateFiles(generation)
        } else {
            Compaction::Clean(generation)
        };
        sort(&mut view.live);
        Ok(view)
    }
}

/// The outputs of generation `latest`, if the names leave no doubt: one nonce, every part.
fn latest_outputs_by_name(
    classified: &Classified<'_>,
    latest: u64,
) -> Option<(Generation, HashSet<String>)> {
    let mut attempts: BTreeMap<&str, (u32, HashSet<u32>, Vec<&str>)> = BTreeMap::new();
    for (generation, part, parts, meta) in &classified.compacted {
        if generation.seq == latest {
            let entry = attempts.entry(generation.nonce.as_str()).or_insert((
                *parts,
                HashSet::new(),
                Vec::new(),
            ));
            if entry.0 != *parts {
                return None;
            }
            entry.1.insert(*part);
            entry.2.push(name(meta));
        }
    }
    if attempts.len() != 1 {
        return None;
    }
    let (nonce, (parts, seen, names)) = attempts.into_iter().next()?;
    (seen.len() == parts as usize).then(|| {
        (
            Generation {
                seq: latest,
                nonce: nonce.to_string(),
            },
            names.into_iter().map(str::to_string).collect(),
        )
    })
}

fn sort(files: &mut [ObjectMeta]) {
    files.sort_by(|a, b| a.location.cmp(&b.location));
}

/// The rollup files of one `flows_hourly` partition.
#[derive(Debug, Clone)]
pub struct RollupView {
    pub hour: i64,
    /// Each rollup file and the raw generation it summarizes, latest generation first.
    pub rollups: Vec<(Generation, ObjectMeta)>,
    pub foreign: Vec<ObjectMeta>,
}

impl RollupView {
    pub fn from_listing(listing: &HourListing) -> RollupView {
        let mut rollups = Vec::new();
        let mut foreign = Vec::new();
        for meta in &listing.objects {
            match ObjectName::parse(name(meta)) {
                ObjectName::Rollup { generation } => rollups.push((generation, meta.clone())),
                ObjectName::Other => {}
                _ => foreign.push(meta.clone()),
            }
        }
        rollups.sort_by(|a, b| b.0.cmp(&a.0));
        RollupView {
            hour: listing.hour,
            rollups,
            foreign,
        }
    }

    /// The rollup of `generation`, if written.
    pub fn of(&self, generation: &Generation) -> Option<&ObjectMeta> {
        self.rollups
            .iter()
            .find(|(g, _)| g == generation)
            .map(|(_, meta)| meta)
    }

    /// The newest rollup (what `flows_hourly` shows for the hour).
    pub fn latest(&self) -> Option<&(Generation, ObjectMeta)> {
        self.rollups.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::commit::{Output, COMMIT_FORMAT};
    use crate::layout::names::commit_name;
    use object_store::path::Path;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(format!("flows/v1/date=2026-11-01/hour=00/{name}")),
            last_modified: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            size: 10,
            e_tag: None,
            version: None,
        }
    }

    fn recorded(i: u32) -> String {
        format!("node-{i}.ebpf.20261101T000{i}00000000000Z.w-{i}.parquet")
    }

    fn listing(names: &[String]) -> HourListing {
        HourListing {
            dataset: Dataset::Flows,
            hour: 0,
            objects: names.iter().map(|n| meta(n)).collect(),
        }
    }

    fn commit(generation: &Generation, parts: u32, replaced: &[String]) -> Commit {
        Commit {
            format: COMMIT_FORMAT,
            dataset: "flows".into(),
            hour: "2026-11-01T00:00:00Z".into(),
            seq: generation.seq,
            nonce: generation.nonce.clone(),
            created: "2026-11-01T02:00:00Z".into(),
            outputs: (0..parts)
                .map(|p| Output {
                    name: generation.output_name(p, parts),
                    rows: 1,
                    bytes: 1,
                })
                .collect(),
            replaced: replaced.to_vec(),
        }
    }

    fn live(view: &HourView) -> Vec<&str> {
        view.live.iter().map(name).collect()
    }

    #[test]
    fn every_step_of_a_compaction_shows_each_row_once() {
        let inputs = vec![recorded(1), recorded(2)];
        let g = Generation {
            seq: 1,
            nonce: "aaaaaa".into(),
        };
        let out = g.output_name(0, 1);
        // 1. Before: the recorded files.
        let before = listing(&inputs).view(None).unwrap();
        assert_eq!(live(&before), vec![inputs[0].as_str(), inputs[1].as_str()]);
        assert_eq!(before.compaction, Compaction::None);
        // 2. Output written, not committed: still the recorded files; the output is an orphan.
        let mut names = inputs.clone();
        names.push(out.clone());
        let written = listing(&names).view(None).unwrap();
        assert_eq!(live(&written).len(), 2);
        assert!(!live(&written).contains(&out.as_str()));
        assert_eq!(written.garbage, vec![(GarbageKind::Orphan, meta(&out))]);
        // 3. Committed, inputs still there: the output only; the commit must be read.
        names.push(commit_name(1));
        let committed = listing(&names);
        assert!(!committed.decidable_from_names());
        assert_eq!(
            committed.view(None).unwrap_err(),
            Inconsistency::CommitNeeded
        );
        let c = commit(&g, 1, &inputs);
        let view = committed.view(Some(&c)).unwrap();
        assert_eq!(live(&view), vec![out.as_str()]);
        assert_eq!(view.compaction, Compaction::Clean(g.clone()));
        assert_eq!(view.garbage.len(), 2);
        assert!(view
            .garbage
            .iter()
            .all(|(k, _)| *k == GarbageKind::Replaced));
        // 4. Inputs deleted: decided from the names alone.
        let at_rest = listing(&[out.clone(), commit_name(1)]);
        assert!(at_rest.decidable_from_names());
        assert_eq!(live(&at_rest.view(None).unwrap()), vec![out.as_str()]);
        // 5. A recorded input shipped again after a crash stays hidden.
        let back = listing(&[out.clone(), commit_name(1), inputs[0].clone()]);
        let view = back.view(Some(&c)).unwrap();
        assert_eq!(live(&view), vec![out.as_str()]);
    }

    #[test]
    fn late_files_stay_visible_and_the_next_generation_replaces_everything() {
        let g1 = Generation {
            seq: 1,
            nonce: "aaaaaa".into(),
        };
        let g2 = Generation {
            seq: 2,
            nonce: "bbbbbb".into(),
        };
        let c1 = commit(&g1, 1, &[recorded(1)]);
        let late = listing(&[g1.output_name(0, 1), commit_name(1), recorded(7)]);
        let view = late.view(Some(&c1)).unwrap();
        assert_eq!(
            live(&view),
            vec![g1.output_name(0, 1).as_str(), recorded(7).as_str()]
        );
        assert_eq!(view.compaction, Compaction::WithLateFiles(g1.clone()));
        // Generation 2 merged the output of 1 and the late file; 2 has two parts.
        let c2 = commit(&g2, 2, &[recorded(1), recorded(7)]);
        let names = vec![
            g1.output_name(0, 1),
            commit_name(1),
            recorded(7),
            g2.output_name(0, 2),
            g2.output_name(1, 2),
            commit_name(2),
        ];
        let view = listing(&names).view(Some(&c2)).unwrap();
        assert_eq!(
            live(&view),
            vec![g2.output_name(0, 2).as_str(), g2.output_name(1, 2).as_str()]
        );
        let kinds: Vec<GarbageKind> = view.garbage.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == GarbageKind::Replaced)
                .count(),
            2
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == GarbageKind::SupersededCommit)
                .count(),
            1
        );
    }

    #[test]
    fn attempts_that_lost_or_crashed_are_never_read() {
        let winner = Generation {
            seq: 2,
            nonce: "winner".into(),
        };
        let loser = Generation {
            seq: 2,
            nonce: "loser0".into(),
        };
        let running = Generation {
            seq: 3,
            nonce: "later0".into(),
        };
        let names = vec![
            winner.output_name(0, 1),
            loser.output_name(0, 1),
            running.output_name(0, 1),
            commit_name(2),
        ];
        let hour = listing(&names);
        // Two attempts of seq 2: the names cannot tell which committed.
        assert!(!hour.decidable_from_names());
        let view = hour.view(Some(&commit(&winner, 1, &[]))).unwrap();
        assert_eq!(live(&view), vec![winner.output_name(0, 1).as_str()]);
        let orphans: Vec<&str> = view
            .garbage
            .iter()
            .filter(|(k, _)| *k == GarbageKind::Orphan)
            .map(|(_, m)| name(m))
            .collect();
        assert_eq!(orphans.len(), 2);
    }

    #[test]
    fn a_commit_whose_output_is_not_listed_is_an_inconsistency() {
        let g = Generation {
            seq: 1,
            nonce: "aaaaaa".into(),
        };
        let hour = listing(&[g.output_name(0, 2), commit_name(1)]);
        // Part 1 of 2 missing: not decidable, and reading the commit says why.
        assert!(!hour.decidable_from_names());
        assert!(matches!(
            hour.view(Some(&commit(&g, 2, &[]))),
            Err(Inconsistency::MissingOutput { .. })
        ));
    }

    /// A model of the store: which rows each data file holds. Every state a compactor can
    /// leave an hour in (two generations, a late file, a crash before each commit, deletions
    /// after grace) is listed, and every listing shows each row exactly once.
    #[test]
    fn every_state_of_two_generations_shows_each_row_once() {
        use std::collections::BTreeMap;
        let g1 = Generation {
            seq: 1,
            nonce: "aaaaaa".into(),
        };
        let g2 = Generation {
            seq: 2,
            nonce: "bbbbbb".into(),
        };
        let crashed = Generation {
            seq: 2,
            nonce: "crash0".into(),
        };
        let (r1, r2, late) = (recorded(1), recorded(2), recorded(7));
        let c1 = commit(&g1, 1, &[r1.clone(), r2.clone()]);
        let c2 = commit(&g2, 1, &[r1.clone(), r2.clone(), late.clone()]);
        let mut rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        rows.insert(r1.clone(), vec![1, 2]);
        rows.insert(r2.clone(), vec![3]);
        rows.insert(late.clone(), vec![4]);
        rows.insert(g1.output_name(0, 1), vec![1, 2, 3]);
        rows.insert(crashed.output_name(0, 1), vec![1, 2, 3, 4]);
        rows.insert(g2.output_name(0, 1), vec![1, 2, 3, 4]);
        // The compactor's steps, in order; each adds (+) or deletes (-) an object.
        let steps: Vec<(bool, String)> = vec![
            (true, r1.clone()),
            (true, r2.clone()),
            (true, g1.output_name(0, 1)),
            (true, commit_name(1)),
            (false, r1.clone()),
            (false, r2.clone()),
            (true, late.clone()),
            (true, crashed.output_name(0, 1)), // killed before its commit
            (true, g2.output_name(0, 1)),
            (true, commit_name(2)),
            (false, late.clone()),
            (false, g1.output_name(0, 1)),
            (false, crashed.output_name(0, 1)),
            (false, commit_name(1)),
        ];
        let mut present: Vec<String> = Vec::new();
        for (step, (add, object)) in steps.iter().enumerate() {
            if *add {
                present.push(object.clone());
            } else {
                present.retain(|o| o != object);
            }
            let hour = listing(&present);
            let commit = match hour.latest_commit().map(|(seq, _)| seq) {
                Some(1) => Some(&c1),
                Some(2) => Some(&c2),
                _ => None,
            };
            let view = hour.view(commit).unwrap();
            let mut seen: Vec<u32> = view
                .live
                .iter()
                .flat_map(|m| rows[name(m)].clone())
                .collect();
            seen.sort();
            // Every row recorded so far, whatever was compacted or deleted since.
            let mut expected: Vec<u32> = steps[..=step]
                .iter()
                .filter(|(add, o)| *add && o.starts_with("node-"))
                .flat_map(|(_, o)| rows[o].clone())
                .collect();
            expected.sort();
            assert_eq!(seen, expected, "after step {step} ({present:?})");
            if hour.decidable_from_names() {
                // Deciding from names alone gives the same answer as reading the commit.
                let by_names = hour.view(None).unwrap();
                assert_eq!(live(&by_names), live(&view), "after step {step}");
            }
        }
    }

    #[test]
    fn foreign_parquet_is_reported_not_read() {
        let view = listing(&[
            "notes.parquet".to_string(),
            recorded(1),
            "x.parquet#1".to_string(),
        ])
        .view(None)
        .unwrap();
        assert_eq!(live(&view), vec![recorded(1).as_str()]);
        assert_eq!(view.foreign.len(), 1);
    }
}
