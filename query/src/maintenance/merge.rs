//! Merging an hour: the rows of many time-sorted files into a few time-sorted files, with
//! bounded memory.
//!
//! DataFusion reads the inputs as time-ordered, non-overlapping chains of files (one stream
//! per chain, one file of a chain open at a time) and merges the streams (a k-way merge:
//! `SortPreservingMergeExec`); a plan that would sort instead is refused, so memory never
//! grows with the hour. Older files are read as the current schema (missing columns NULL).
//! A blocking thread encodes the merged batches (the writer of `flow_schema::writer`, as a
//! recorder would) while the runtime reads the next ones and uploads finished parts: both
//! cores work. The number of parts is fixed before the first row, from the inputs'
//! uncompressed size and the size target, so every part's name says how many there are.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use flow_schema::catalog::Output;
use flow_schema::layout::names::Generation;
use flow_schema::layout::{hour_prefix, Dataset, NANOS_PER_HOUR};
use flow_schema::writer::{Provenance, StoreFileWriter, Written};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use super::{runs, Maintainer};
use crate::table::footers::Footer;
use crate::table::StoreTable;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot plan the merge: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("the inputs cannot be merged in order (the plan would sort them in memory); is a file's time range missing from its footer?")]
    WouldSort,
    #[error("cannot write a merged file: {0}")]
    Write(#[from] flow_schema::writer::WriteError),
    #[error("cannot upload {url}: {source}")]
    Upload {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url} has {found} bytes in the store, {written} were written")]
    SizeMismatch {
        url: String,
        found: u64,
        written: u64,
    },
    #[error("the merged files hold {found} rows, the inputs {expected}: not committed")]
    RowsMismatch { found: u64, expected: u64 },
    #[error("merged rows span {min}..{max}, outside the hour: an input holds rows of another hour; not committed")]
    OutsideHour { min: String, max: String },
    #[error("the encoding thread failed: {0}")]
    Thread(String),
    #[error("cannot write or read a temporary run: {0}")]
    Run(String),
}

/// What the merge wrote.
#[derive(Debug, Clone)]
pub struct Merged {
    pub outputs: Vec<Output>,
    pub rows: u64,
    pub bytes: u64,
}

/// How an hour's rows are cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub count: u32,
    pub rows_each: u64,
}

impl Parts {
    /// As few parts as `target` (uncompressed bytes per part) allows, the rows shared evenly.
    pub fn plan(rows: u64, uncompressed: u64, target: u64) -> Parts {
        if rows == 0 {
            return Parts {
                count: 0,
                rows_each: 1,
            };
        }
        let wanted = uncompressed.div_ceil(target.max(1)).max(1);
        let rows_each = rows.div_ceil(wanted).max(1);
        Parts {
            count: rows.div_ceil(rows_each) as u32,
            rows_each,
        }
    }
}

/// Merges `inputs` (the visible files of `dataset`'s `hour`) into the parts of `generation`,
/// uploaded under their names. Nothing is committed here.
#[allow(clippy::too_many_arguments)]
pub async fn merge(
    m: &Maintainer,
    dataset: Dataset,
    hour: i64,
    inputs: &[Footer],
    schema: SchemaRef,
    version: u32,
    generation: &Generation,
    limits: Limits,
) -> Result<Merged, MergeError> {
    let expected_rows: u64 = inputs.iter().map(|f| f.rows).sum();
    let uncompressed: u64 = inputs.iter().map(|f| f.uncompressed).sum();
    let parts = Parts::plan(expected_rows, uncompressed, limits.target_size);
    let provenance = provenance(inputs, generation);

    let (batches_tx, batches_rx) = mpsc::channel::<RecordBatch>(4);
    let (parts_tx, mut parts_rx) = mpsc::channel(1);
    let writer = {
        let schema = Arc::clone(&schema);
        tokio::task::spawn_blocking(move || {
            write_parts(
                batches_rx,
                parts_tx,
                schema,
                version,
                parts.rows_each,
                provenance,
            )
        })
    };
    // Few chains of files: one DataFusion merge. Many (an hour of a large fleet): merged a
    // bucket of chains at a time into local runs, then the runs merged (`runs`).
    let ranges: Vec<(i64, i64)> = inputs
        .iter()
        .map(|f| {
            (
                f.min_time.unwrap_or(hour),
                f.max_time.unwrap_or(hour + NANOS_PER_HOUR),
            )
        })
        .collect();
    let chains = runs::chains(&ranges);
    let source = if chains.len() <= limits.width {
        Feed::Stream(merged_stream(m, dataset, generation, inputs, &schema, version).await?)
    } else {
        let (paths, dir) = sorted_runs(
            m,
            dataset,
            generation,
            inputs,
            &chains,
            limits.width,
            &schema,
            version,
        )
        .await?;
        Feed::Runs(paths, dir)
    };
    let feed = async move {
        match source {
            Feed::Stream(mut stream) => {
                while let Some(batch) = stream.next().await {
                    if batches_tx.send(batch?).await.is_err() {
                        break; // the writer stopped: its error says why
                    }
                }
            }
            Feed::Runs(paths, dir) => {
                tokio::task::spawn_blocking(move || {
                    let merged = runs::merge_all(paths, dir.path(), &batches_tx);
                    drop(dir);
                    merged
                })
                .await
                .map_err(|e| MergeError::Thread(e.to_string()))??;
            }
        }
        Ok::<_, MergeError>(())
    };
    let prefix = hour_prefix(dataset, hour);
    let upload = async {
        let mut outputs = Vec::new();
        while let Some(part) = parts_rx.recv().await {
            let (index, bytes, written): (u32, Vec<u8>, Written) = part?;
            let name = generation.output_name(index, parts.count);
            let size = bytes.len() as u64;
            if !m.dry_run {
                put_verified(m, &format!("{prefix}{name}"), bytes).await?;
            }
            outputs.push((name, written, size));
        }
        Ok::<_, MergeError>(outputs)
    };
    let (fed, uploaded) = tokio::join!(feed, upload);
    let written = writer
        .await
        .map_err(|e| MergeError::Thread(e.to_string()))?;
    written?;
    fed?;
    let uploaded = uploaded?;

    // Verify before anything is committed: every row, inside the hour.
    let rows: u64 = uploaded.iter().map(|(_, w, _)| w.rows).sum();
    if rows != expected_rows || uploaded.len() as u32 != parts.count {
        return Err(MergeError::RowsMismatch {
            found: rows,
            expected: expected_rows,
        });
    }
    let min = uploaded.iter().filter_map(|(_, w, _)| w.min_time).min();
    let max = uploaded.iter().filter_map(|(_, w, _)| w.max_time).max();
    if let (Some(min), Some(max)) = (min, max) {
        if min < hour || max >= hour + NANOS_PER_HOUR {
            return Err(MergeError::OutsideHour {
                min: flow_schema::layout::rfc3339(min),
                max: flow_schema::layout::rfc3339(max),
            });
        }
    }
    Ok(Merged {
        rows,
        bytes: uploaded.iter().map(|(_, _, size)| size).sum(),
        outputs: uploaded
            .into_iter()
            .map(|(name, written, bytes)| Output {
                name,
                rows: written.rows,
                bytes,
            })
            .collect(),
    })
}

/// The rows of `chains` (indices into `inputs`) as sorted runs in a new local temporary
/// folder, `width` chains merged by DataFusion into each.
#[allow(clippy::too_many_arguments)]
async fn sorted_runs(
    m: &Maintainer,
    dataset: Dataset,
    generation: &Generation,
    inputs: &[Footer],
    chains: &[Vec<usize>],
    width: usize,
    schema: &SchemaRef,
    version: u32,
) -> Result<(Vec<std::path::PathBuf>, tempfile::TempDir), MergeError> {
    let buckets = chains.len().div_ceil(width);
    let per_bucket = chains.len().div_ceil(buckets);
    m.log(format!(
        "  {} overlapping sequences of files: merged through {buckets} sorted runs on local disk",
        chains.len()
    ));
    let dir = tempfile::Builder::new()
        .prefix("flowstore-runs-")
        .tempdir()
        .map_err(|e| MergeError::Run(e.to_string()))?;
    let mut paths = Vec::new();
    for (index, bucket) in chains.chunks(per_bucket).enumerate() {
        let files: Vec<Footer> = bucket
            .iter()
            .flatten()
            .map(|&i| inputs[i].clone())
            .collect();
        let mut stream = merged_stream(m, dataset, generation, &files, schema, version).await?;
        let mut run = runs::RunWriter::create(&dir.path().join(format!("run-{index}")), schema)?;
        while let Some(batch) = stream.next().await {
            // The plan's schema may differ from the table's in metadata only; a run has one.
            let batch = batch?
                .with_schema(Arc::clone(schema))
                .map_err(|e| MergeError::Run(e.to_string()))?;
            run.write(&batch)?;
        }
        paths.push(run.finish()?);
    }
    Ok((paths, dir))
}

/// What bounds a merge's output files and its memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Uncompressed bytes per output file.
    pub target_size: u64,
    /// Chains of inputs one DataFusion merge reads at once; more go through sorted runs.
    pub width: usize,
}

/// Where the merged rows come from.
enum Feed {
    Stream(datafusion::physical_plan::SendableRecordBatchStream),
    /// Runs on local disk (the folder goes when they are merged).
    Runs(Vec<std::path::PathBuf>, tempfile::TempDir),
}

/// The rows of `files` merged in time order by DataFusion.
async fn merged_stream(
    m: &Maintainer,
    dataset: Dataset,
    generation: &Generation,
    files: &[Footer],
    schema: &SchemaRef,
    version: u32,
) -> Result<datafusion::physical_plan::SendableRecordBatchStream, MergeError> {
    let table = format!("merge_{}_{}", dataset.name(), generation.nonce);
    let provider = StoreTable::merge_inputs(
        Arc::clone(&m.session.reader),
        Arc::clone(schema),
        version,
        files.iter().map(|f| f.meta.clone()).collect(),
    );
    m.session.ctx.register_table(&table, Arc::new(provider))?;
    let planned = plan(m, &table).await;
    m.session.ctx.deregister_table(&table)?;
    Ok(execute_stream(planned?, m.session.ctx.task_ctx())?)
}

/// `SELECT * … ORDER BY time` over the inputs, refused if DataFusion would sort.
async fn plan(m: &Maintainer, table: &str) -> Result<Arc<dyn ExecutionPlan>, MergeError> {
    let frame = m
        .session
        .ctx
        .sql(&format!("SELECT * FROM {table} ORDER BY time"))
        .await?;
    let plan = frame.create_physical_plan().await?;
    if sorts(plan.as_ref()) {
        return Err(MergeError::WouldSort);
    }
    Ok(plan)
}

fn sorts(plan: &dyn ExecutionPlan) -> bool {
    plan.name() == "SortExec" || plan.children().iter().any(|child| sorts(child.as_ref()))
}

/// Nodes and sources of the inputs' rows, for the merged files' footers.
fn provenance(inputs: &[Footer], generation: &Generation) -> Provenance {
    let mut nodes: Vec<String> = inputs
        .iter()
        .flat_map(|f| f.nodes.iter().cloned())
        .collect();
    let mut sources: Vec<String> = inputs
        .iter()
        .flat_map(|f| f.sources.iter().cloned())
        .collect();
    nodes.sort();
    nodes.dedup();
    sources.sort();
    sources.dedup();
    Provenance {
        nodes,
        sources,
        compacted: Some(generation.to_string()),
        rollup_of: None,
    }
}

type Part = Result<(u32, Vec<u8>, Written), MergeError>;

/// The encoding thread: cuts the merged rows into parts of `rows_each` rows and encodes each.
fn write_parts(
    mut batches: mpsc::Receiver<RecordBatch>,
    parts: mpsc::Sender<Part>,
    schema: SchemaRef,
    version: u32,
    rows_each: u64,
    provenance: Provenance,
) -> Result<(), MergeError> {
    let mut writer: Option<StoreFileWriter<Vec<u8>>> = None;
    let mut index = 0u32;
    let finish = |writer: StoreFileWriter<Vec<u8>>, index: &mut u32| -> bool {
        let part = writer
            .finish(&provenance)
            .map(|(bytes, written)| (*index, bytes, written))
            .map_err(MergeError::from);
        *index += 1;
        parts.blocking_send(part).is_ok()
    };
    while let Some(batch) = batches.blocking_recv() {
        // The plan's rows are the table's columns; the writer wants its exact schema.
        let batch = RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec())
            .map_err(|e| MergeError::Write(flow_schema::writer::WriteError::Parquet(e.into())))?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let current = match writer.as_mut() {
                Some(current) => current,
                None => writer.insert(StoreFileWriter::try_new(
                    Vec::new(),
                    Arc::clone(&schema),
                    version,
                    Some(rows_each as usize),
                )?),
            };
            let room = (rows_each - current.rows()) as usize;
            let take = room.min(batch.num_rows() - offset);
            current.write(&batch.slice(offset, take))?;
            offset += take;
            if current.rows() == rows_each {
                let full = writer.take().expect("a writer is open");
                if !finish(full, &mut index) {
                    return Ok(()); // the uploader stopped: its error says why
                }
            }
        }
    }
    if let Some(last) = writer.take() {
        finish(last, &mut index);
    }
    Ok(())
}

/// PUTs `bytes` at `key` and checks the stored size.
pub async fn put_verified(m: &Maintainer, key: &str, bytes: Vec<u8>) -> Result<(), MergeError> {
    let path = m.store.path(key);
    let url = m.store.url_of(&path);
    let written = bytes.len() as u64;
    m.store
        .object_store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|source| MergeError::Upload {
            url: url.clone(),
            source,
        })?;
    let found = m
        .store
        .object_store
        .head(&path)
        .await
        .map_err(|source| MergeError::Upload {
            url: url.clone(),
            source,
        })?
        .size;
    if found != written {
        return Err(MergeError::SizeMismatch {
            url,
            found,
            written,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_as_few_as_the_target_allows() {
        let mib = 1 << 20;
        assert_eq!(
            Parts::plan(1000, 10 * mib, 512 * mib),
            Parts {
                count: 1,
                rows_each: 1000
            }
        );
        assert_eq!(
            Parts::plan(1000, 1024 * mib, 512 * mib),
            Parts {
                count: 2,
                rows_each: 500
            }
        );
        assert_eq!(
            Parts::plan(1001, 1025 * mib, 512 * mib),
            Parts {
                count: 3,
                rows_each: 334
            }
        );
        // Never a part without rows.
        assert_eq!(
            Parts::plan(4, 3 * mib, mib),
            Parts {
                count: 2,
                rows_each: 2
            }
        );
        assert_eq!(Parts::plan(0, 0, mib).count, 0);
    }
}
