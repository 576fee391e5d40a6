//! The write side every source shares: sealed files are encoded as Parquet (one per core, on
//! blocking threads, while the source keeps producing) and uploaded in the order they were
//! sealed.

use std::collections::VecDeque;

use flow_schema::Table;
use tokio::sync::mpsc;

use crate::batch::SealedFile;
use crate::parquet_file::{self, EncodeError, Provenance};
use crate::upload::{UploadError, Uploader};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("an encoding thread failed: {0}")]
    Encoder(String),
}

/// What reached the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub flows: u64,
    pub lost_events: u64,
    pub files: u64,
    pub bytes: u64,
}

/// Encodes and uploads every file `files` delivers until it closes, or until the first
/// failure, which is returned with what was written before it. Dropping the receiver on
/// failure tells the source to stop.
pub async fn write_all(
    mut files: mpsc::Receiver<SealedFile>,
    uploader: &mut Uploader,
    provenance: &Provenance,
) -> (Written, Option<SinkError>) {
    let mut written = Written::default();
    // An import ends by sealing every open hour at once: encoding those one after the other
    // would leave cores idle (measured: the tail of a 1M-flow import ran on one core).
    let encoders = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut encoding = VecDeque::new();
    let mut input_done = false;
    loop {
        if !input_done && encoding.len() < encoders {
            match files.recv().await {
                Some(file) => {
                    let provenance = provenance.clone();
                    encoding.push_back(tokio::task::spawn_blocking(move || {
                        parquet_file::encode(file, &provenance)
                    }));
                    continue;
                }
                None => input_done = true,
            }
        }
        let Some(next) = encoding.pop_front() else {
            return (written, None);
        };
        let uploaded = match next.await {
            Ok(Ok(encoded)) => uploader.upload(encoded).await.map_err(SinkError::from),
            Ok(Err(error)) => Err(error.into()),
            Err(error) => Err(SinkError::Encoder(error.to_string())),
        };
        match uploaded {
            Ok(file) => {
                match file.table {
                    Table::LostEvents => written.lost_events += file.rows as u64,
                    Table::Flows => written.flows += file.rows as u64,
                }
                written.files += 1;
                written.bytes += file.bytes as u64;
            }
            Err(error) => return (written, Some(error)),
        }
    }
}
