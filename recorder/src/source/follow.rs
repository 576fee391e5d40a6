//! `--source file --follow PATH`: a Hubble exporter file, followed across rotations (`tail`),
//! decoded (`flow_schema::hubble`) and recorded in the spool.
//!
//! Every chunk of lines read is recorded as one spool transaction: its flows and lost events
//! together with the position after them. So after a crash the recorder resumes exactly where
//! the last recorded lines end: a line is neither skipped nor recorded twice.
//!
//! When the spool reaches `--spool-max-bytes` (the store is down for long), reading pauses:
//! the lines wait in the file, and nothing is lost unless the exporter's rotation deletes the
//! backup holding them first (`hubble-export-file-max-backups`). A write the spool's disk
//! fails is retried the same way (`SpoolOutput::record_waiting`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flow_schema::hubble::HubbleDecoder;
use flow_schema::Table;

use super::tail::{Lines, Position, Tail, TailError};
use super::{Recording, SpoolOutput, Stop};
use crate::metrics::Metrics;

/// `--source file` settings.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The exporter's file (`--follow`).
    pub path: PathBuf,
}

/// Bytes of lines read and recorded at once: bounds a spool record (and the fsync rate when
/// the file grows fast). At most a quarter of the spool's budget, so that records of a few
/// chunks fit at once (a record, LZ4-compressed Arrow, is several times smaller than its JSON
/// lines; an empty spool takes any record).
const CHUNK_BYTES: usize = 4 << 20;
/// How often the file is looked at when nothing new was in it.
const POLL: Duration = Duration::from_millis(200);
/// Malformed lines printed; the rest are counted (`flowrec_lines_malformed_total`).
const ERRORS_SHOWN: u64 = 100;

/// What a follower did, for the run's summary.
#[derive(Debug, Default)]
pub struct Followed {
    pub lines: u64,
    pub flows: u64,
    pub lost_events: u64,
    pub malformed: u64,
}

impl Followed {
    pub fn describe(&self) -> String {
        format!(
            "read {} lines: {} flows and {} lost events recorded, {} malformed lines skipped",
            self.lines, self.flows, self.lost_events, self.malformed
        )
    }
}

pub struct Follower {
    tail: Tail,
    decoder: HubbleDecoder,
    output: SpoolOutput,
    metrics: Arc<Metrics>,
    followed: Followed,
    chunk_bytes: usize,
}

impl Follower {
    /// Follows `config.path` from the position the spool recorded last (its checkpoint), or
    /// from the file's start; lines are decoded by `decoder` (which redacts).
    pub fn new(
        config: &FollowConfig,
        decoder: HubbleDecoder,
        output: SpoolOutput,
        metrics: Arc<Metrics>,
    ) -> Result<Follower, TailError> {
        let position = output
            .spool
            .checkpoint()
            .map(Position::decode)
            .transpose()?;
        if let Some(position) = &position {
            crate::info!(
                "--follow {}: resuming after line {} of the file read last (inode {})",
                config.path.display(),
                position.line,
                position.ino
            );
        }
        check_path(&config.path)?;
        Ok(Follower {
            tail: Tail::resume(&config.path, position)?,
            decoder,
            chunk_bytes: CHUNK_BYTES.min(usize::try_from(output.budget / 4).unwrap_or(usize::MAX)),
            output,
            metrics,
            followed: Followed::default(),
        })
    }
}

/// A followed file may appear later (the exporter starts after us), its folder may not: a
/// missing folder is a wrong path or a missing mount, which waiting would never fix.
fn check_path(path: &std::path::Path) -> Result<(), TailError> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => std::path::Path::new("."),
    };
    if !folder.is_dir() {
        return Err(TailError::NoFolder {
            path: path.display().to_string(),
            folder: folder.display().to_string(),
        });
    }
    if !path.exists() {
        crate::warn!(
            "--follow {}: no such file yet; waiting for it to appear",
            path.display()
        );
    }
    Ok(())
}

impl Follower {
    /// Reads and records until `stop` (then the segment is sealed) or the shipper is gone.
    pub fn run(mut self, stop: Arc<Stop>) -> Followed {
        let metrics = Arc::clone(&self.metrics);
        let _recording = Recording(&metrics);
        while !stop.requested() {
            let idle = match self.tail.read(self.chunk_bytes) {
                Ok(Some(lines)) => {
                    crate::panics::fault_point("follow");
                    self.metrics.source_caught_up.store(0, Ordering::Relaxed);
                    if !self.record(&lines, &stop) {
                        break;
                    }
                    false
                }
                Ok(None) => {
                    self.metrics.source_caught_up.store(1, Ordering::Relaxed);
                    true
                }
                Err(error) => {
                    crate::warn!("{}; trying again", flow_schema::error_chain(&error));
                    true
                }
            };
            if !self.output.seal_if_due(false) {
                return self.followed;
            }
            if idle && stop.wait(POLL) {
                break;
            }
        }
        self.output.seal_if_due(true);
        self.followed
    }

    /// Records `lines` and the position after them, waiting as long as the spool cannot take
    /// them; false if a stop came first (then they are read again at the next start).
    fn record(&mut self, lines: &Lines, stop: &Stop) -> bool {
        let decoded = self.decoder.decode(&lines.bytes, lines.first_line);
        for error in &decoded.errors {
            self.followed.malformed += 1;
            if self.followed.malformed <= ERRORS_SHOWN {
                crate::warn!("{}:{}: {}", lines.file.display(), error.line, error.reason);
            }
            if self.followed.malformed == ERRORS_SHOWN {
                crate::warn!(
                    "further malformed lines are only counted \
                     (flowrec_lines_malformed_total)"
                );
            }
        }
        Metrics::add(&self.metrics.lines_malformed, decoded.errors.len() as u64);
        let flows = decoded.flows.num_rows() as u64;
        let lost_events = decoded.lost_events.num_rows() as u64;
        Metrics::add(&self.metrics.flows_received, flows);
        let batches = [
            (Table::Flows, decoded.flows),
            (Table::LostEvents, decoded.lost_events),
        ];
        let source = format!("--follow {}", self.tail.path().display());
        let paused = "reading paused (the lines wait in the file)";
        if !self.output.record_waiting(
            &batches,
            &lines.position.encode(),
            stop,
            &self.metrics,
            (&source, paused),
        ) {
            return false;
        }
        let read = lines.position.line + 1 - lines.first_line;
        self.followed.lines += read;
        self.followed.flows += flows;
        self.followed.lost_events += lost_events;
        Metrics::add(&self.metrics.flows_recorded, flows);
        true
    }
}
