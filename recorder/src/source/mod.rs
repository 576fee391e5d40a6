//! Where `flowrec run` takes flows from, and what every source shares: writing into the spool
//! and sealing its segments for the shipper ([`SpoolOutput`]), being told to stop ([`Stop`]).
//!
//! - `ebpf` + `drain`: the recorder's own capture (kernel flow maps drained on a schedule);
//! - `tail` + `follow`: a Hubble exporter file followed across rotations, resuming from the
//!   position recorded with the last lines;
//! - `hubble`: a Hubble server or Relay over the Observer gRPC API, resuming from the time of
//!   the last flow recorded.

pub mod drain;
pub mod ebpf;
pub mod follow;
pub mod hubble;
pub mod tail;

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use flow_schema::Table;

use tokio::sync::mpsc;

use crate::batch::RotationPolicy;
use crate::metrics::Metrics;
use crate::spool::{Sealed, Spool};

/// Set when the run should end; wakes the source from its wait.
#[derive(Default)]
pub struct Stop {
    requested: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub fn request(&self) {
        *self.requested.lock().expect("never poisoned") = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout`; true once a stop was requested.
    pub fn wait(&self, timeout: Duration) -> bool {
        let requested = self.requested.lock().expect("never poisoned");
        let (requested, _) = self
            .wake
            .wait_timeout_while(requested, timeout, |stop| !*stop)
            .expect("never poisoned");
        *requested
    }

    pub fn requested(&self) -> bool {
        *self.requested.lock().expect("never poisoned")
    }
}

/// The spool as a source writes into it: segments sealed by the rotation policy and handed
/// to the shipper.
pub struct SpoolOutput {
    pub spool: Spool,
    /// Most bytes the spool may hold (`--spool-max-bytes`).
    pub budget: u64,
    /// When the active segment is sealed for shipping: its size and age.
    pub rotation: RotationPolicy,
    pub sealed: mpsc::UnboundedSender<Sealed>,
}

impl SpoolOutput {
    /// Seals the active segment if the rotation policy says so, or `now`; false once the
    /// shipper is gone (the source should stop).
    pub fn seal_if_due(&mut self, now: bool) -> bool {
        let (bytes, age) = self.spool.active_size();
        if !now && bytes < self.rotation.max_bytes as u64 && age < self.rotation.max_age {
            return true;
        }
        match self.spool.seal() {
            Ok(Some(segment)) => self.sealed.send(segment).is_ok(),
            Ok(None) => true,
            // What is in the segment is recorded; it is sealed at a later try.
            Err(error) => {
                crate::warn!(
                    "cannot seal the spool segment (kept, sealed later): {}",
                    flow_schema::error_chain(&error)
                );
                true
            }
        }
    }
}

/// How long to wait before trying the spool again: full (room comes with every segment
/// shipped, and checking is cheap), or its disk failing.
const RETRY_FULL: Duration = Duration::from_millis(50);
const RETRY_FAILING: Duration = Duration::from_secs(1);
/// A wait for a full spool is reported once it lasts this long (a spool at its budget while
/// the shipper catches up is routine); a failing disk at once.
const REPORT_WAIT_AFTER: Duration = Duration::from_secs(2);

impl SpoolOutput {
    /// Records one transaction (rows and the source's position after them), waiting as long as
    /// the spool cannot take it: for a source whose input waits for it (a file, a server's
    /// buffer), waiting loses nothing. While it waits `flowrec_source_waiting` is 1; a long
    /// wait is reported as `{source}: {problem}: {paused} until it can be recorded`. False if a
    /// stop (or the shipper's end) came first: then nothing of it is recorded.
    pub fn record_waiting(
        &mut self,
        batches: &[(Table, RecordBatch)],
        checkpoint: &[u8],
        stop: &Stop,
        metrics: &Metrics,
        (source, paused): (&str, &str),
    ) -> bool {
        let mut waiting: Option<Instant> = None;
        let mut reported = false;
        loop {
            let (problem, retry) =
                match self
                    .spool
                    .append_transaction_within(batches, checkpoint, self.budget)
                {
                    Ok(true) => match self.spool.commit() {
                        Ok(()) => break,
                        Err(error) => (flow_schema::error_chain(&error), RETRY_FAILING),
                    },
                    Ok(false) => {
                        // The segment being written counts against the budget too: sealed, it
                        // can be shipped and make room. (No shipper: the run is ending.)
                        if !self.seal_if_due(true) {
                            return false;
                        }
                        let problem = format!("the spool is at --spool-max-bytes {}", self.budget);
                        (problem, RETRY_FULL)
                    }
                    Err(error) => (flow_schema::error_chain(&error), RETRY_FAILING),
                };
            let since = *waiting.get_or_insert_with(Instant::now);
            metrics.source_waiting.store(1, Ordering::Relaxed);
            if !reported && (since.elapsed() >= REPORT_WAIT_AFTER || retry == RETRY_FAILING) {
                crate::warn!("{source}: {problem}: {paused} until it can be recorded");
                reported = true;
            }
            if stop.wait(retry) {
                metrics.source_waiting.store(0, Ordering::Relaxed);
                return false;
            }
        }
        metrics.source_waiting.store(0, Ordering::Relaxed);
        for (table, rows) in batches {
            if *table == Table::Flows {
                metrics.count_drops(rows);
            }
        }
        if reported {
            crate::info!("{source}: recording again");
        }
        true
    }
}

/// Marks the source as stopped in the metrics (/health answers 503) however it ends: a
/// stop, an error, a panic.
pub struct Recording<'a>(pub &'a Metrics);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.0.recording.store(false, Ordering::Relaxed);
    }
}
