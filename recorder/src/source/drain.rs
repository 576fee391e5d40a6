//! The drainer thread of `flowrec run --source ebpf`: decides when to empty the kernel's flow
//! map, turns what it took into rows (enriched with pods) and records them in the spool
//! (appended and fsynced: from then on they survive a crash), sealing segments by the rotation
//! policy for the shipper.
//!
//! A drain happens every active timeout, and earlier when the active map is nearly full: a
//! burst of new flows (a scan, a UDP flood with random ports) would otherwise find the map full
//! and go uncounted. The fill level is the kernel's own count of flows created since the map
//! was last drained, read every [`POLL`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_schema::Table;

use super::ebpf::Interfaces;
use super::{Recording, SpoolOutput, Stop};
use crate::ebpf::rows::{FlowRows, MonotonicClock};
use crate::ebpf::{Capture, CaptureError, Losses};
use crate::metrics::Metrics;
use crate::pods::PodInventory;
use crate::spool::SpoolError;

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Rows per spool record: a record is well under the segment format's limit (a flow row is a
/// few hundred bytes in Arrow IPC) whatever `--flow-map-entries` is.
const ROWS_PER_RECORD: usize = 65_536;

/// How often the fill level of the kernel map is checked between drains.
pub const POLL: Duration = Duration::from_millis(100);
/// Drain early once the active map holds this share of its capacity (numerator / 4): a quarter
/// is left for what arrives until the flip.
const NEARLY_FULL_QUARTERS: u64 = 3;

/// Why a drain happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Timeout,
    NearlyFull,
}

/// When the next drain is due.
#[derive(Debug)]
struct Schedule {
    active_timeout: Duration,
    /// Flows the kernel map holds.
    capacity: u64,
    next: Instant,
}

impl Schedule {
    fn new(active_timeout: Duration, capacity: u64, now: Instant) -> Schedule {
        Schedule {
            active_timeout,
            capacity,
            next: now + active_timeout,
        }
    }

    /// How long to sleep before looking again.
    fn sleep(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now).min(POLL)
    }

    /// Whether to drain now, given the flows created in the active map.
    fn due(&self, now: Instant, fill: u64) -> Option<Cause> {
        if now >= self.next {
            Some(Cause::Timeout)
        } else if fill * 4 >= self.capacity * NEARLY_FULL_QUARTERS {
            Some(Cause::NearlyFull)
        } else {
            None
        }
    }

    fn drained(&mut self, now: Instant) {
        self.next = now + self.active_timeout;
    }
}

/// What the drainer did, for the run's summary.
#[derive(Debug, Default)]
pub struct Drains {
    pub flows: u64,
    /// Drains before the active timeout because the map was nearly full.
    pub early: u64,
    pub losses: Losses,
    /// Flows not recorded because the spool was at its budget.
    pub lost_spool_full: u64,
    /// Flows not recorded because the spool's disk failed them (full, I/O error).
    pub lost_spool_error: u64,
}

/// How often the interfaces are listed for new ones matching `--interfaces` (a new pod's veth
/// is recorded from at most this long after it appears).
const INTERFACE_RESCAN: Duration = Duration::from_secs(1);

/// The drainer's inputs.
pub struct Drainer {
    pub capture: Capture,
    pub interfaces: Interfaces,
    /// Interfaces gone since the last drain: their names are forgotten after it.
    pub gone: Vec<u32>,
    pub rows: FlowRows,
    pub pods: Option<PodInventory>,
    pub output: SpoolOutput,
    pub active_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl Drainer {
    /// Drains until `stop` (then a last drain, and the segment sealed) or until the shipper is
    /// gone.
    pub fn run(mut self, stop: Arc<Stop>) -> Result<Drains, DrainError> {
        let metrics = Arc::clone(&self.metrics);
        let _recording = Recording(&metrics);
        let capacity = u64::from(self.capture.flow_capacity());
        let mut schedule = Schedule::new(self.active_timeout, capacity, Instant::now());
        let mut drains = Drains::default();
        let mut rescan = Instant::now() + INTERFACE_RESCAN;
        loop {
            let stopping = stop.wait(schedule.sleep(Instant::now()));
            let now = Instant::now();
            if now >= rescan && !stopping {
                let changes = self.interfaces.refresh(&mut self.capture);
                for (index, name) in &changes.attached {
                    self.rows.name_interface(*index, name);
                }
                self.gone.extend(changes.gone);
                rescan = now + INTERFACE_RESCAN;
            }
            if !stopping {
                match schedule.due(now, self.capture.fill()?) {
                    None => continue,
                    Some(Cause::NearlyFull) => {
                        drains.early += 1;
                        Metrics::add(&self.metrics.early_drains, 1);
                    }
                    Some(Cause::Timeout) => {}
                }
            }
            schedule.drained(now);
            let gone = std::mem::take(&mut self.gone);
            self.drain_once(&mut drains)?;
            self.rows.forget_interfaces(&gone);
            let delivered = self.output.seal_if_due(stopping);
            drains.losses = self.capture.losses()?;
            let metrics = &self.metrics;
            let losses = drains.losses;
            metrics
                .packets_lost_flow_map_full
                .store(losses.flow_map_full, Ordering::Relaxed);
            metrics
                .connections_lost_conn_map_full
                .store(losses.conn_map_full, Ordering::Relaxed);
            if stopping || !delivered {
                return Ok(drains);
            }
        }
    }

    /// One drain: kernel flows -> rows -> recorded in the spool.
    fn drain_once(&mut self, drains: &mut Drains) -> Result<(), DrainError> {
        let drained = self.capture.drain()?;
        if let Some(inventory) = &mut self.pods {
            refresh(inventory);
        }
        let flows = drained.flows.len() as u64;
        drains.flows += flows;
        Metrics::add(&self.metrics.flows_received, flows);
        if drained.flows.is_empty() {
            return Ok(());
        }
        let batch = self
            .rows
            .batch(&drained, MonotonicClock::now(), self.pods.as_ref());
        // Records of bounded size, however large the kernel map is.
        let mut appended = 0;
        let mut recorded = Vec::new();
        for start in (0..batch.num_rows()).step_by(ROWS_PER_RECORD) {
            let rows = batch.slice(start, ROWS_PER_RECORD.min(batch.num_rows() - start));
            let count = rows.num_rows() as u64;
            let output = &mut self.output;
            match output
                .spool
                .append_within(Table::Flows, &rows, output.budget)
            {
                Ok(true) => {
                    appended += count;
                    recorded.push(rows);
                }
                // The documented policy: what is spooled stays; these flows are not recorded.
                Ok(false) => {
                    drains.lost_spool_full += count;
                    Metrics::add(&self.metrics.flows_lost_spool_full, count);
                }
                Err(error) => self.lose(drains, count, &error),
            }
        }
        match self.output.spool.commit() {
            Ok(()) => {
                Metrics::add(&self.metrics.flows_recorded, appended);
                for rows in &recorded {
                    self.metrics.count_drops(rows);
                }
            }
            // The segment was cut back to its last sync: this drain's records are gone.
            Err(error) => self.lose(drains, appended, &error),
        }
        Ok(())
    }

    /// Flows the spool could not take (a full disk, an I/O error): counted, reported, and the
    /// recorder goes on; it records again as soon as the disk does.
    fn lose(&self, drains: &mut Drains, flows: u64, error: &SpoolError) {
        drains.lost_spool_error += flows;
        Metrics::add(&self.metrics.flows_lost_spool_error, flows);
        crate::warn!(
            "{flows} flows not recorded: {}",
            flow_schema::error_chain(error)
        );
    }
}

/// Brings the pod inventory up to date (its file re-read if it changed, the watch's updates
/// applied); a bad version of a file is reported and the previous one kept (the file is
/// rewritten by something else, and may be caught half-written).
fn refresh(inventory: &mut PodInventory) {
    match inventory.refresh() {
        Ok(true) if inventory.skipped() > 0 => crate::warn!(
            "{} re-read; {} pods without the fields needed were skipped",
            inventory.origin(),
            inventory.skipped()
        ),
        Ok(_) => {}
        Err(error) => crate::warn!("--pods: {error}; keeping the previous inventory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_at_the_timeout_or_when_three_quarters_full() {
        let start = Instant::now();
        let mut schedule = Schedule::new(Duration::from_secs(10), 1000, start);
        assert_eq!(schedule.due(start, 0), None);
        assert_eq!(schedule.due(start, 749), None);
        assert_eq!(schedule.due(start, 750), Some(Cause::NearlyFull));
        let later = start + Duration::from_secs(10);
        assert_eq!(schedule.due(later, 0), Some(Cause::Timeout));
        schedule.drained(later);
        assert_eq!(schedule.due(later + Duration::from_secs(9), 10), None);
        // Sleeps are short enough to notice a filling map, never past the deadline.
        assert_eq!(schedule.sleep(later), POLL);
        let almost = later + Duration::from_millis(9_950);
        assert_eq!(schedule.sleep(almost), Duration::from_millis(50));
        assert_eq!(
            schedule.sleep(later + Duration::from_secs(11)),
            Duration::ZERO
        );
    }
}
