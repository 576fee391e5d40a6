//! How DataFusion reads our files: footers through the session's metadata cache (so a footer
//! loaded while planning is not fetched again), each checked against the table when it is
//! opened. A file that turns out not to be a readable file of the table (damaged after
//! planning, or met by a scan that did not load footers while planning) is reported by the
//! damage policy and read as a file without rows, or fails the query under `--strict-store`:
//! the same policy whenever the damage is found.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetMetaData;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

use super::damage::{Damage, DamageLog};
use super::footers::{self, Expectation};

/// Readers of one scan's files.
#[derive(Debug)]
pub struct CheckedReaderFactory {
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<FileMetadataCache>,
    pub expect: Arc<Expectation>,
    pub damage: DamageLog,
    /// How an object's URL is written in a message.
    pub url_prefix: String,
    /// The footer of a file of the table without rows: what a damaged file reads as.
    pub empty: Arc<ParquetMetaData>,
    /// Whether footers read at open go into the cache: not for a scan of more files than it
    /// holds (each is opened once; caching only churns memory).
    pub cache_footers: bool,
}

impl ParquetFileReaderFactory for CheckedReaderFactory {
    fn create_reader(
        &self,
        _partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        _metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        Ok(Box::new(CheckedReader {
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            expect: Arc::clone(&self.expect),
            damage: self.damage.clone(),
            url: format!("{}{}", self.url_prefix, file.object_meta.location),
            empty: Arc::clone(&self.empty),
            cache_footers: self.cache_footers,
            meta: file.object_meta,
        }))
    }
}

struct CheckedReader {
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    expect: Arc<Expectation>,
    damage: DamageLog,
    url: String,
    empty: Arc<ParquetMetaData>,
    cache_footers: bool,
    meta: ObjectMeta,
}

impl CheckedReader {
    async fn metadata(&self) -> parquet::errors::Result<Arc<ParquetMetaData>> {
        let metadata = match footers::cached(&self.cache, &self.meta) {
            Some(metadata) => Ok(metadata),
            None => match footers::fetch(self.store.as_ref(), &self.meta, &self.expect).await {
                Ok(Ok(metadata)) => {
                    if self.cache_footers {
                        let entry = CachedFileMetadataEntry::new(
                            self.meta.clone(),
                            Arc::new(CachedParquetMetaData::new(Arc::clone(&metadata))),
                        );
                        self.cache.put(&self.meta.location, entry);
                    }
                    Ok(metadata)
                }
                Ok(Err(reason)) => Err(reason),
                Err(error) => return Err(ParquetError::External(Box::new(error))),
            },
        };
        let reason = match metadata {
            Ok(metadata) => match footers::check(&metadata, &self.expect) {
                Ok(_) => return Ok(metadata),
                Err(reason) => reason,
            },
            Err(reason) => reason,
        };
        let damage = Damage {
            url: self.url.clone(),
            reason,
        };
        match self.damage.report(damage) {
            Ok(()) => Ok(Arc::clone(&self.empty)),
            Err(strict) => Err(ParquetError::External(Box::new(strict))),
        }
    }
}

impl AsyncFileReader for CheckedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.meta.location, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.meta.location, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.metadata().boxed()
    }
}

/// The footer of a Parquet file of `schema` without rows.
pub fn empty_footer(
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> parquet::errors::Result<Arc<ParquetMetaData>> {
    let mut bytes = Vec::new();
    let writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, Arc::clone(schema), None)?;
    writer.close()?;
    let reader = parquet::file::reader::SerializedFileReader::new(Bytes::from(bytes))?;
    Ok(Arc::new(
        parquet::file::reader::FileReader::metadata(&reader).clone(),
    ))
}
