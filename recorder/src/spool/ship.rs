//! Shipping a sealed segment: Parquet files under keys fixed by the segment, uploaded and
//! checked in the store, then the segment deleted.
//!
//! The segment's rows are grouped into files by table and UTC hour (the store's layout); file
//! `part` of segment `sequence` of spool `id` is written as writer id `{id}-{sequence}-{part}`,
//! and its time in the key is its first row's. All of that is a function of the segment's
//! content, so shipping a segment twice (a crash between upload and delete, a retry after a
//! timeout that had in fact succeeded) writes the same objects again instead of adding copies.

use std::time::Duration;

use flow_schema::Table;

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

/// What one shipped segment put in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Shipped {
    pub flows: u64,
    pub lost_events: u64,
    pub files: u64,
    pub bytes: u64,
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
