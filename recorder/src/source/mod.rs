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
use std::time::Duration;

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

/// Marks the source as stopped in the metrics (/health answers 503) however it ends: a
/// stop, an error, a panic.
pub struct Recording<'a>(pub &'a Metrics);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.0.recording.store(false, Ordering::Relaxed);
    }
}
