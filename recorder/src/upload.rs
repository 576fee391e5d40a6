//! Upload: puts encoded files into the store under their layout key.
//!
//! A PUT is atomic on S3; on a local folder object_store writes a temporary name and renames it,
//! and temporary names do not end in `.parquet`, so a reader never sees a partial file.

use flow_schema::layout::FileName;
use flow_schema::store::Store;
use object_store::{ObjectStoreExt, PutPayload};

use crate::parquet_file::EncodedFile;

/// Asks the store once before recording: a wrong bucket or wrong credentials are refused now,
/// naming what to fix, instead of surfacing as upload retries that never succeed; an outage
/// only warns (uploads retry, a `run` spools meanwhile).
pub async fn check_store(store: &Store) -> Result<(), flow_schema::store::ProbeError> {
    match store.probe().await {
        Ok(()) => Ok(()),
        Err(error) if error.misconfigured.is_some() => Err(error),
        Err(error) => {
            crate::warn!("{error}; going on, uploads will retry");
            Ok(())
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {url} ({endpoint}): {source}")]
pub struct UploadError {
    url: String,
    endpoint: String,
    #[source]
    source: object_store::Error,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct UploadedFile {
    pub table: flow_schema::Table,
    pub key: String,
    pub rows: usize,
    pub bytes: usize,
}

/// Writes the files of one recorder run.
pub struct Uploader {
    store: Store,
    node: String,
    source: &'static str,
    /// Unique per process run, so two runs never pick the same key.
    run_id: String,
    sequence: u64,
}

impl Uploader {
    pub fn new(store: Store, node: String, source: &'static str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let run_id = format!("{:x}", now ^ (u64::from(std::process::id()) << 40));
        Uploader {
            store,
            node,
            source,
            run_id,
            sequence: 0,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Uploads under a writer id unique to this run (an import: running it again writes
    /// new objects).
    pub async fn upload(&mut self, file: EncodedFile) -> Result<UploadedFile, UploadError> {
        self.sequence += 1;
        let writer_id = format!("{}-{:06}", self.run_id, self.sequence);
        self.put(file, &writer_id).await
    }

    /// Uploads under `writer_id` chosen by the caller (the spool: a function of the segment,
    /// so that shipping it again overwrites), then reads the object's size back: the segment
    /// is deleted only after this returns.
    pub async fn upload_as(
        &self,
        file: EncodedFile,
        writer_id: &str,
    ) -> Result<UploadedFile, UploadError> {
        let uploaded = self.put(file, writer_id).await?;
        let path = self.store.path(&uploaded.key);
        let meta = self
            .store
            .object_store
            .head(&path)
            .await
            .map_err(|source| self.error(&uploaded.key, source))?;
        if meta.size != uploaded.bytes as u64 {
            let message = format!(
                "stored object has {} bytes, {} were written",
                meta.size, uploaded.bytes
            );
            return Err(self.error(
                &uploaded.key,
                object_store::Error::Generic {
                    store: "verify",
                    source: message.into(),
                },
            ));
        }
        Ok(uploaded)
    }

    async fn put(&self, file: EncodedFile, writer_id: &str) -> Result<UploadedFile, UploadError> {
        let key = FileName {
            table: file.table,
            node: &self.node,
            source: self.source,
            first_time_ns: file.first_time_ns,
            writer_id,
        }
        .key();
        let path = self.store.path(&key);
        let bytes = file.bytes.len();
        self.store
            .object_store
            .put(&path, PutPayload::from(file.bytes))
            .await
            .map_err(|source| self.error(&key, source))?;
        Ok(UploadedFile {
            table: file.table,
            key,
            rows: file.rows,
            bytes,
        })
    }

    fn error(&self, key: &str, source: object_store::Error) -> UploadError {
        UploadError {
            url: format!("{}/{key}", self.store.location),
            endpoint: self.store.describe(),
            source,
        }
    }
}
