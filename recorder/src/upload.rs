//! Upload: puts encoded files into the store under their layout key, whole (one PUT) or in
//! parts sent while the file is encoded ([`PartsUpload`], a multipart upload).
//!
//! Either is atomic on S3 (a multipart upload shows nothing before it completes); on a local
//! folder object_store writes a temporary name and renames it, and temporary names do not end
//! in `.parquet`, so a reader never sees a partial file.

use flow_schema::layout::FileName;
use flow_schema::store::Store;
use flow_schema::Table;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};

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
        self.verify(&uploaded).await?;
        Ok(uploaded)
    }

    /// Starts a file sent in parts as it is encoded (S3's multipart upload; on a local folder, a
    /// temporary file renamed at the end), under the key [`Uploader::upload_as`] would give it.
    /// Nothing is visible under the key before [`PartsUpload::finish`].
    pub async fn start_as(
        &self,
        table: Table,
        first_time_ns: i64,
        writer_id: &str,
    ) -> Result<PartsUpload<'_>, UploadError> {
        let key = self.key(table, first_time_ns, writer_id);
        let upload = self
            .store
            .object_store
            .put_multipart(&self.store.path(&key))
            .await
            .map_err(|source| self.error(&key, source))?;
        Ok(PartsUpload {
            uploader: self,
            key,
            upload,
            bytes: 0,
        })
    }

    fn key(&self, table: Table, first_time_ns: i64, writer_id: &str) -> String {
        FileName {
            table,
            node: &self.node,
            source: self.source,
            first_time_ns,
            writer_id,
        }
        .key()
    }

    /// Reads the object's size back and compares it with what was written.
    async fn verify(&self, uploaded: &UploadedFile) -> Result<(), UploadError> {
        let meta = self
            .store
            .object_store
            .head(&self.store.path(&uploaded.key))
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
        Ok(())
    }

    async fn put(&self, file: EncodedFile, writer_id: &str) -> Result<UploadedFile, UploadError> {
        let key = self.key(file.table, file.first_time_ns, writer_id);
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

/// A file being sent in parts ([`Uploader::start_as`]). Every part but the last must hold at
/// least 5 MiB on S3. Dropped without [`PartsUpload::finish`], nothing appears under its key;
/// call [`PartsUpload::abort`] so that S3 does not keep the parts (a bucket's lifecycle rule
/// for incomplete multipart uploads removes those a crash leaves).
pub struct PartsUpload<'a> {
    uploader: &'a Uploader,
    key: String,
    upload: Box<dyn MultipartUpload>,
    bytes: usize,
}

impl PartsUpload<'_> {
    /// Sends the file's next bytes; returns when the store has them.
    pub async fn put_part(&mut self, bytes: Vec<u8>) -> Result<(), UploadError> {
        self.bytes += bytes.len();
        self.upload
            .put_part(PutPayload::from(bytes))
            .await
            .map_err(|source| self.uploader.error(&self.key, source))
    }

    /// Sends the file's last bytes (`tail`, as [`crate::parquet_file::FileEncoder::finish`]
    /// gives them after the parts), makes the file visible, and reads its size back.
    /// When it fails before the file is complete, the parts sent are discarded.
    pub async fn finish(mut self, tail: EncodedFile) -> Result<UploadedFile, UploadError> {
        let completed = match self.put_part(tail.bytes).await {
            Ok(()) => self
                .upload
                .complete()
                .await
                .map_err(|source| self.uploader.error(&self.key, source)),
            Err(error) => Err(error),
        };
        if let Err(error) = completed {
            self.abort().await;
            return Err(error);
        }
        let uploaded = UploadedFile {
            table: tail.table,
            key: self.key,
            rows: tail.rows,
            bytes: self.bytes,
        };
        self.uploader.verify(&uploaded).await?;
        Ok(uploaded)
    }

    /// Gives up the file: the parts sent are discarded (best effort: a store that cannot be
    /// reached keeps them until its lifecycle rule removes them).
    pub async fn abort(mut self) {
        if let Err(source) = self.upload.abort().await {
            crate::warn!(
                "cannot discard the parts sent: {}",
                self.uploader.error(&self.key, source)
            );
        }
    }
}
