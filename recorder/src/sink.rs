//! The write side of an import: files sealed as rows are encoded as Parquet (one per core, on
//! blocking threads, while the source keeps producing), files streamed into their encoder
//! arrive encoded, and all are uploaded in the order they were sealed.

use std::collections::VecDeque;

use flow_schema::Table;
use tokio::sync::mpsc;

use crate::batch::Staged;
use crate::parquet_file::{self, EncodeError, EncodedFile, Provenance};
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

/// A file on its way to the uploader, which takes files in the order they were sealed.
enum Encoding {
    Running(tokio::task::JoinHandle<Result<EncodedFile, EncodeError>>),
    Done(Result<EncodedFile, EncodeError>),
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
    mut files: mpsc::Receiver<Staged>,
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
                Some(Staged::Rows(file)) => {
                    let provenance = provenance.clone();
                    encoding.push_back(Encoding::Running(tokio::task::spawn_blocking(move || {
                        parquet_file::encode(file, &provenance)
                    })));
                    continue;
                }
                Some(Staged::Encoded(file)) => {
                    encoding.push_back(Encoding::Done(file));
                    continue;
                }
                None => input_done = true,
            }
        }
        let Some(next) = encoding.pop_front() else {
            return (written, None);
        };
        let encoded = match next {
            Encoding::Done(file) => file,
            Encoding::Running(task) => match task.await {
                Ok(file) => file,
                Err(error) => return (written, Some(SinkError::Encoder(error.to_string()))),
            },
        };
        let uploaded = match encoded {
            Ok(encoded) => uploader.upload(encoded).await.map_err(SinkError::from),
            Err(error) => Err(error.into()),
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
