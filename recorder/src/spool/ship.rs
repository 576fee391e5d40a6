//! Shipping a sealed segment: Parquet files under keys fixed by the segment, uploaded and
//! checked in the store, then the segment deleted.
//!
//! The segment's rows are grouped into files by table and UTC hour (the store's layout); file
//! `part` of segment `sequence` of spool `id` is written as writer id `{id}-{sequence}-{part}`,
//! and its time in the key is its first row's. All of that is a function of the segment's
//! content, so shipping a segment twice (a crash between upload and delete, a retry after a
//! timeout that had in fact succeeded) writes the same objects again instead of adding copies.

use std::collections::VecDeque;
use std::time::Duration;

use flow_schema::Table;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::Instant;

use super::{read_sealed, remove_shipped, Sealed, SpoolError};
use crate::batch::{Batcher, RotationPolicy};
use crate::parquet_file::{self, EncodeError, Provenance};
use crate::upload::{UploadError, UploadedFile, Uploader};

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("cannot delete shipped segment {path}: {source}")]
    Delete {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a shipping thread failed: {0}")]
    Thread(String),
}

/// What shipped segments put in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Shipped {
    pub flows: u64,
    pub lost_events: u64,
    pub files: u64,
    pub bytes: u64,
}

impl Shipped {
    fn add(&mut self, other: Shipped) {
        self.flows += other.flows;
        self.lost_events += other.lost_events;
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Ships `segment` with `uploader` (its store, node and source name the files).
pub async fn ship(
    segment: &Sealed,
    spool_id: &str,
    uploader: &Uploader,
    provenance: &Provenance,
) -> Result<Shipped, ShipError> {
    let reading = segment.clone();
    let contents = tokio::task::spawn_blocking(move || read_sealed(&reading))
        .await
        .map_err(|error| ShipError::Thread(error.to_string()))??;
    if let Some(damage) = &contents.damage {
        eprintln!("flowrec: {damage}");
    }
    // One file per table and hour, however large: a segment is bounded by the rotation policy.
    let mut batcher = Batcher::new(RotationPolicy {
        max_bytes: usize::MAX,
        max_age: Duration::MAX,
    });
    let mut files = Vec::new();
    for (table, batch) in contents.records {
        files.extend(batcher.push(table, batch));
    }
    files.extend(batcher.flush());
    let mut shipped = Shipped::default();
    for (part, file) in files.into_iter().enumerate() {
        let provenance = provenance.clone();
        let encoded = tokio::task::spawn_blocking(move || parquet_file::encode(file, &provenance))
            .await
            .map_err(|error| ShipError::Thread(error.to_string()))??;
        let writer_id = format!("{spool_id}-{:012}-{part}", segment.sequence);
        let UploadedFile {
            table, rows, bytes, ..
        } = uploader.upload_as(encoded, &writer_id).await?;
        match table {
            Table::Flows => shipped.flows += rows as u64,
            Table::LostEvents => shipped.lost_events += rows as u64,
        }
        shipped.files += 1;
        shipped.bytes += bytes as u64;
    }
    remove_shipped(segment).map_err(|source| ShipError::Delete {
        path: segment.path.display().to_string(),
        source,
    })?;
    Ok(shipped)
}

/// First wait after a failed shipment; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the shipping loop did.
#[derive(Debug, Default)]
pub struct Shipping {
    pub shipped: Shipped,
    pub segments: u64,
    /// Failed attempts (each was retried or left for the next start).
    pub retries: u64,
    /// Segments still in the spool when the loop ended (shipped at the next start).
    pub left: u64,
}

/// Ships every segment `sealed` delivers, in order, retrying a failing one with capped
/// backoff (the spool keeps it meanwhile). Once `sealed` is closed (the recorder is stopping),
/// what is left is tried until `grace` has passed, then left in the spool for the next start.
pub async fn ship_all(
    mut sealed: mpsc::Receiver<Sealed>,
    spool_id: &str,
    uploader: &Uploader,
    provenance: &Provenance,
    grace: Duration,
) -> Shipping {
    let mut shipping = Shipping::default();
    let mut queue = VecDeque::new();
    let mut deadline: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Everything already delivered; wait for more only when idle and still running.
        loop {
            match sealed.try_recv() {
                Ok(segment) => queue.push_back(segment),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    deadline.get_or_insert_with(|| Instant::now() + grace);
                    break;
                }
            }
        }
        let Some(segment) = queue.front() else {
            if deadline.is_some() {
                return shipping;
            }
            match sealed.recv().await {
                Some(segment) => queue.push_back(segment),
                None => return shipping,
            }
            continue;
        };
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            shipping.left = queue.len() as u64;
            eprintln!(
                "flowrec: stopping with {} spool segment(s) not shipped (first: {}); they stay \
                 in the spool and are shipped at the next start",
                queue.len(),
                segment.path.display()
            );
            return shipping;
        }
        match ship(segment, spool_id, uploader, provenance).await {
            Ok(shipped) => {
                shipping.shipped.add(shipped);
                shipping.segments += 1;
                backoff = FIRST_BACKOFF;
                queue.pop_front();
            }
            Err(error) => {
                shipping.retries += 1;
                let wait = remaining.map_or(backoff, |left| backoff.min(left));
                eprintln!(
                    "flowrec: cannot ship spool segment {} (kept; retrying in {wait:?}): {}",
                    segment.path.display(),
                    flow_schema::error_chain(&error)
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
