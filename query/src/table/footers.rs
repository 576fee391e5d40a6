//! Footers: fetched in parallel (one ranged read per file when the footer and page index fit
//! in it), decoded on every core, checked against the table, and put into DataFusion's file
//! metadata cache, so that opening a file to read its rows costs no second footer request.
//! Reading many small files then costs little per file, and nothing per file while planning
//! beyond the row count and time range taken from the footer.
//!
//! A file that is not a readable Parquet file of the table becomes a [`Damage`] with its
//! reason; a store that cannot be read (network, permissions) is an error. The Parquet footer
//! decoder is run under `catch_unwind`: a garbage footer must be a damaged object, not a crash
//! (the decoder's arithmetic overflows on some inputs).

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::physical_plan::parquet::CachedParquetMetaData;
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use flow_schema::footer::{ByBytes, SharedSchemas};
use flow_schema::writer::FooterInfo;
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use flow_schema::guard::quietly;

/// First read from the end of a file: the footer of a flows file with a few row groups fits
/// (a 114-column footer is ~20-40 KiB). The page index is not read: DataFusion loads it for
/// the files whose pruning needs it.
const FOOTER_HINT: u64 = 64 * 1024;

/// The smallest Parquet file: two magic numbers and a footer length.
pub const MIN_PARQUET_SIZE: u64 = 12;

/// What a table expects of its files.
#[derive(Debug)]
pub struct Expectation {
    /// The table's columns as files store them (before any read-time type change).
    pub schema: SchemaRef,
    /// The newest schema version this build knows.
    pub version: u32,
    /// Schema checks already made, by the Arrow schema the file embeds: files of one writer
    /// version share it, so thousands of small files cost one check.
    checked: ByBytes<Result<bool, String>>,
    /// Parquet schemas already decoded: a newest hour's 600 small files build and hold one
    /// descriptor, not 600 (each ~55 KiB; building them was a tenth of the query).
    schemas: SharedSchemas,
}

impl Expectation {
    pub fn new(schema: SchemaRef, version: u32) -> Expectation {
        Expectation {
            schema,
            version,
            checked: Default::default(),
            schemas: Default::default(),
        }
    }
}

/// What planning needs of a readable file.
#[derive(Debug, Clone)]
pub struct Footer {
    pub meta: ObjectMeta,
    pub rows: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    /// Bytes of the rows once decompressed (Parquet's uncompressed size of the row groups).
    pub uncompressed: u64,
    pub schema_version: u32,
    /// Nodes and sources of its rows, as its footer says.
    pub nodes: Vec<String>,
    pub sources: Vec<String>,
    /// Its columns are exactly the table's stored schema (the current version): readers may
    /// take that schema instead of decoding the one embedded in the file.
    pub exact_schema: bool,
}

/// Loads the footers of `files`: each a [`Footer`] or the reason it cannot be read as the
/// table. Errors only when the store itself fails.
pub async fn load(
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    files: Vec<ObjectMeta>,
    expect: Arc<Expectation>,
    concurrency: usize,
) -> Result<Vec<Result<Footer, (ObjectMeta, String)>>, object_store::Error> {
    // One task per file, so decoding runs on every runtime thread.
    let tasks = files.into_iter().map(|meta| {
        let (store, cache, expect) = (Arc::clone(&store), Arc::clone(&cache), Arc::clone(&expect));
        tokio::spawn(async move {
            let metadata = match cached(&cache, &meta) {
                Some(metadata) => metadata,
                None => match fetch(store.as_ref(), &meta, &expect).await? {
                    Ok(metadata) => {
                        let entry = CachedFileMetadataEntry::new(
                            meta.clone(),
                            Arc::new(CachedParquetMetaData::new(Arc::clone(&metadata))),
                        );
                        cache.put(&meta.location, entry);
                        metadata
                    }
                    Err(reason) => return Ok(Err((meta, reason))),
                },
            };
            Ok::<_, object_store::Error>(match check(&metadata, &expect) {
                Ok((info, exact_schema)) => Ok(Footer {
                    exact_schema,
                    rows: metadata.file_metadata().num_rows().max(0) as u64,
                    min_time: info.min_time,
                    max_time: info.max_time,
                    uncompressed: metadata
                        .row_groups()
                        .iter()
                        .map(|rg| rg.total_byte_size().max(0) as u64)
                        .sum(),
                    schema_version: info.schema_version,
                    nodes: info.nodes,
                    sources: info.sources,
                    meta,
                }),
                Err(reason) => Err((meta, reason)),
            })
        })
    });
    let results: Vec<_> = futures::stream::iter(tasks)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut footers = Vec::with_capacity(results.len());
    for joined in results {
        match joined {
            Ok(result) => footers.push(result?),
            Err(join) => {
                return Err(object_store::Error::Generic {
                    store: "footer",
                    source: Box::new(join),
                })
            }
        }
    }
    // Back in the order of the listing (buffer_unordered finishes in any order).
    footers.sort_by(|a, b| location(a).cmp(location(b)));
    Ok(footers)
}

fn location(result: &Result<Footer, (ObjectMeta, String)>) -> &object_store::path::Path {
    match result {
        Ok(footer) => &footer.meta.location,
        Err((meta, _)) => &meta.location,
    }
}

pub fn cached(cache: &Arc<FileMetadataCache>, meta: &ObjectMeta) -> Option<Arc<ParquetMetaData>> {
    let entry = cache.get(&meta.location)?;
    if !entry.is_valid_for(meta) {
        return None;
    }
    let cached = entry
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()?;
    Some(Arc::clone(cached.parquet_metadata()))
}

/// Reads and decodes a footer (with the page index when present). `Ok(Err(reason))`: the
/// object is not a readable Parquet file.
pub async fn fetch(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    expect: &Expectation,
) -> Result<Result<Arc<ParquetMetaData>, String>, object_store::Error> {
    let size = meta.size;
    // Sizes no Parquet file has are refused before any request.
    if let Err(reason) = footer_in(&[], size) {
        return Ok(Err(reason));
    }
    let mut start = size.saturating_sub(FOOTER_HINT);
    let mut bytes = store.get_range(&meta.location, start..size).await?;
    // The whole footer came with the first read (a flows file's does): decoded sharing the
    // schema of the files before it. Otherwise, or when that cannot be done exactly, decoded
    // the ordinary way below, which says what is wrong with a damaged one.
    match footer_in(&bytes, size) {
        Err(reason) => return Ok(Err(reason)),
        Ok(Some(footer)) => {
            if let Some(metadata) = expect.schemas.decode(footer) {
                return Ok(Ok(Arc::new(metadata)));
            }
        }
        Ok(None) => {}
    }
    let mut reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
    for _ in 0..3 {
        let parsed = quietly(|| reader.try_parse_sized(&bytes, size));
        match parsed {
            Some(Ok(())) => {
                return Ok(match quietly(|| reader.finish()) {
                    Some(Ok(metadata)) => Ok(Arc::new(metadata)),
                    Some(Err(error)) => Err(format!("unreadable footer: {error}")),
                    None => Err("unreadable footer (the decoder failed on it)".into()),
                })
            }
            Some(Err(ParquetError::NeedMoreData(needed)))
                if (needed as u64) <= size && (needed as u64) > size - start =>
            {
                start = size - needed as u64;
                bytes = fetch_range(store, meta, start, size).await?;
                if reader.has_metadata() {
                    let read = quietly(|| reader.read_page_indexes_sized(&bytes, size));
                    return Ok(match read.map(|r| r.and_then(|_| reader.finish())) {
                        Some(Ok(metadata)) => Ok(Arc::new(metadata)),
                        Some(Err(error)) => Err(format!("unreadable page index: {error}")),
                        None => Err("unreadable page index (the decoder failed on it)".into()),
                    });
                }
            }
            Some(Err(error)) => return Ok(Err(format!("unreadable footer: {error}"))),
            None => return Ok(Err("unreadable footer (the decoder failed on it)".into())),
        }
    }
    Ok(Err("unreadable footer (it never decoded)".into()))
}

/// Decodes the footer of a whole object already read (a small file read in one request):
/// the same checks and reasons as [`fetch`], without a second request. The columns'
/// statistics are left out when the schema is shared (the reader of the rows has no use for
/// them).
pub fn decode_whole(bytes: &Bytes, expect: &Expectation) -> Result<Arc<ParquetMetaData>, String> {
    let size = bytes.len() as u64;
    if let Some(footer) = footer_in(bytes, size)? {
        if let Some(metadata) = expect.schemas.decode_for_rows(footer) {
            return Ok(Arc::new(metadata));
        }
    }
    let mut reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Skip);
    match quietly(|| {
        reader
            .try_parse_sized(bytes, size)
            .and_then(|()| reader.finish())
    }) {
        Some(Ok(metadata)) => Ok(Arc::new(metadata)),
        Some(Err(error)) => Err(format!("unreadable footer: {error}")),
        None => Err("unreadable footer (the decoder failed on it)".into()),
    }
}

/// The footer's bytes in `tail`, the last bytes of an object of `size` bytes, when it holds
/// all of them; the reason when the object cannot be a Parquet file.
fn footer_in(tail: &[u8], size: u64) -> Result<Option<&[u8]>, String> {
    if size == 0 {
        return Err("empty object (0 bytes)".into());
    }
    if size < MIN_PARQUET_SIZE {
        return Err(format!("{size} bytes: too short to be a Parquet file"));
    }
    if tail.len() < 8 {
        return Ok(None);
    }
    if &tail[tail.len() - 4..] != b"PAR1" {
        return Err("not a Parquet file (no PAR1 at its end: truncated or garbage)".into());
    }
    let footer_len = u32::from_le_bytes(
        tail[tail.len() - 8..tail.len() - 4]
            .try_into()
            .expect("4 bytes"),
    );
    if u64::from(footer_len) + 8 > size {
        return Err(format!(
            "its footer claims {footer_len} bytes, more than the object holds ({size}): truncated or garbage"
        ));
    }
    Ok(tail
        .len()
        .checked_sub(8 + footer_len as usize)
        .map(|start| &tail[start..tail.len() - 8]))
}

async fn fetch_range(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    start: u64,
    end: u64,
) -> Result<Bytes, object_store::Error> {
    store.get_range(&meta.location, start..end).await
}

/// Whether a decoded footer is a file of the expected table: ours (it says its schema
/// version), not newer than this build, with columns the table has, of the same types
/// (with whether its columns are exactly the expected schema).
pub fn check(
    metadata: &ParquetMetaData,
    expect: &Expectation,
) -> Result<(FooterInfo, bool), String> {
    let file = metadata.file_metadata();
    let info = FooterInfo::from_key_values(file.key_value_metadata())
        .ok_or("not a flowsql store file (no flowsql.schema_version in its footer)")?;
    if info.schema_version > expect.version {
        return Err(format!(
            "schema version {} is newer than this build reads (up to {}): upgrade to read it",
            info.schema_version, expect.version
        ));
    }
    let embedded = file
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == "ARROW:schema"))
        .and_then(|e| e.value.as_deref());
    let Some(embedded) = embedded else {
        let exact = check_schema(file, expect)?;
        return Ok((info, exact));
    };
    let result = match expect.checked.get(embedded.as_bytes()) {
        Some(result) => result,
        None => {
            let result = check_schema(file, expect);
            expect.checked.remember(embedded.as_bytes(), result.clone());
            result
        }
    };
    let exact = result?;
    Ok((info, exact))
}

/// The file's columns are the table's, with the same types.
fn check_schema(
    file: &parquet::file::metadata::FileMetaData,
    expect: &Expectation,
) -> Result<bool, String> {
    let schema =
        quietly(|| parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata()))
            .ok_or("unreadable schema")?
            .map_err(|e| format!("unreadable schema: {e}"))?;
    for field in schema.fields() {
        let Ok(expected) = expect.schema.field_with_name(field.name()) else {
            return Err(format!(
                "column {} is not a column of this table",
                field.name()
            ));
        };
        if !same_type(field.data_type(), expected.data_type()) {
            return Err(format!(
                "column {} is {}, this table stores {}",
                field.name(),
                field.data_type(),
                expected.data_type()
            ));
        }
    }
    let time = expect.schema.field(0).name();
    if schema.field_with_name(time).is_err() {
        return Err(format!("no {time} column"));
    }
    Ok(schema.fields() == expect.schema.fields())
}

/// Equal types, counting a string read as a view and a plain one as the same.
fn same_type(file: &DataType, table: &DataType) -> bool {
    let stringy =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    file.equals_datatype(table) || (stringy(file) && stringy(table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::PutPayload;

    async fn put(store: &InMemory, name: &str, bytes: Vec<u8>) -> ObjectMeta {
        let path = Path::from(name);
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        store.head(&path).await.unwrap()
    }

    #[tokio::test]
    async fn damaged_objects_get_a_reason_never_a_panic() {
        let store = InMemory::new();
        let expect = Expectation::new(flow_schema::flow_schema(), flow_schema::SCHEMA_VERSION);
        // A plausible footer length over random bytes: the decoder itself meets the garbage.
        let mut garbage = b"PAR1".to_vec();
        garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        garbage.extend(1000u32.to_le_bytes());
        garbage.extend(b"PAR1");
        let mut claims_too_much = b"PAR1xxxxxxxx".to_vec();
        claims_too_much.extend(1_000_000u32.to_le_bytes());
        claims_too_much.extend(b"PAR1");
        let cases = [
            ("empty", Vec::new(), "empty object"),
            ("short", b"PAR1".to_vec(), "too short"),
            (
                "text",
                b"hello, this is not parquet at all".to_vec(),
                "no PAR1",
            ),
            ("garbage", garbage, "unreadable footer"),
            ("too-long-footer", claims_too_much, "truncated or garbage"),
        ];
        for (name, bytes, expected) in cases {
            let meta = put(&store, name, bytes).await;
            let reason = fetch(&store, &meta, &expect).await.unwrap().unwrap_err();
            assert!(reason.contains(expected), "{name}: {reason}");
        }
    }

    /// A Parquet file of string columns `names`, two rows.
    fn file_of(names: &[&str]) -> Vec<u8> {
        use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let columns = names
            .iter()
            .map(|_| Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    }

    #[tokio::test]
    async fn files_of_one_schema_share_its_descriptor_and_decode_as_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let expect = Expectation::new(flow_schema::flow_schema(), flow_schema::SCHEMA_VERSION);
        let mut metas = Vec::new();
        for (name, columns) in [
            ("a", &["source", "destination"][..]),
            ("b", &["source", "destination"]),
            ("c", &["source", "verdict"]),
            ("d", &["source", "verdict"]),
        ] {
            let path = Path::from(name);
            store
                .put(&path, PutPayload::from(file_of(columns)))
                .await
                .unwrap();
            metas.push(store.head(&path).await.unwrap());
        }
        let mut footers = Vec::new();
        for meta in &metas {
            footers.push(fetch(&store, meta, &expect).await.unwrap().unwrap());
        }
        let descriptor = |i: usize| footers[i].file_metadata().schema_descr_ptr();
        assert!(Arc::ptr_eq(&descriptor(0), &descriptor(1)));
        assert!(Arc::ptr_eq(&descriptor(2), &descriptor(3)));
        assert!(!Arc::ptr_eq(&descriptor(0), &descriptor(2)));
        assert_eq!(descriptor(3).column(1).name(), "verdict");
        // What each decodes to is what it decodes to alone.
        for (meta, shared) in metas.iter().zip(&footers) {
            let alone = Expectation::new(flow_schema::flow_schema(), flow_schema::SCHEMA_VERSION);
            let own = fetch(&store, meta, &alone).await.unwrap().unwrap();
            assert_eq!(**shared, *own);
        }
    }
}
