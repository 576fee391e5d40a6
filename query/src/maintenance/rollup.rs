//! Rollups: the `flows_hourly` rows of a compacted hour, computed from exactly the files of
//! its generation (`hourly::rollup_select` over those files) and written as
//! `flows_hourly/v1/date=…/hour=…/rollup.<generation>.parquet`. A rollup needs no commit of
//! its own: its name says which generation it summarizes, and a reader that needs an exact
//! answer uses it only while that generation is the hour's (`hourly::cover`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use flow_schema::catalog::{Compaction, RollupView};
use flow_schema::layout::names::Generation;
use flow_schema::layout::{hour_prefix, Dataset};
use flow_schema::rollup::{rollup_schema, ROLLUP_SCHEMA_VERSION};
use flow_schema::writer::{encode_batches, Provenance};
use flow_schema::Table;
use object_store::ObjectMeta;

use super::cli::RollupArgs;
use super::gc;
use super::merge::{put_verified, MergeError};
use super::{Maintainer, MaintenanceError};
use crate::hourly::rollup_select;
use crate::table::StoreTable;

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("cannot compute the rollup: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("cannot convert the rollup rows: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("cannot write the rollup: {0}")]
    Write(#[from] flow_schema::writer::WriteError),
    #[error(transparent)]
    Upload(#[from] MergeError),
}

/// Writes the rollup of `generation` of the flows `hour`, whose files are `files`.
/// Returns its rows.
pub async fn roll_up(
    m: &Maintainer,
    hour: i64,
    generation: &Generation,
    files: Vec<ObjectMeta>,
) -> Result<usize, RollupError> {
    let table = format!("rollup_source_{}", generation.nonce);
    let (schema, version) = m.schemas.of(Table::Flows);
    let provider = StoreTable::pinned(Arc::clone(&m.session.reader), schema, version, files);
    m.session.ctx.register_table(&table, Arc::new(provider))?;
    let rows = m.session.ctx.sql(&rollup_select(&table, "true")).await;
    let rows = match rows {
        Ok(frame) => frame.collect().await,
        Err(error) => Err(error),
    };
    m.session.ctx.deregister_table(&table)?;
    let schema = rollup_schema();
    let batches = rows?
        .iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| convert(column, field.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(Arc::clone(&schema), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = batches.iter().map(RecordBatch::num_rows).sum();
    let provenance = Provenance {
        rollup_of: Some(generation.to_string()),
        ..Provenance::default()
    };
    let (bytes, _) = encode_batches(&batches, schema, ROLLUP_SCHEMA_VERSION, &provenance)?;
    if !m.dry_run {
        let key = format!(
            "{}{}",
            hour_prefix(Dataset::FlowsHourly, hour),
            generation.rollup_name()
        );
        put_verified(m, &key, bytes).await?;
    }
    Ok(count)
}

/// A column of the aggregation as the rollup stores it (views and 64-bit counts become the
/// rollup's dictionaries, strings and unsigned counts).
fn convert(
    column: &ArrayRef,
    to: &DataType,
) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    if column.data_type() == to {
        return Ok(Arc::clone(column));
    }
    let plain = match (column.data_type(), to) {
        (
            DataType::Utf8View | DataType::Dictionary(..),
            DataType::Dictionary(..) | DataType::Utf8,
        ) => cast(column, &DataType::Utf8)?,
        _ => Arc::clone(column),
    };
    cast(&plain, to)
}

/// `flowstore rollup`: every settled, compacted flows hour whose current generation has no
/// rollup gets one; stale rollups go after the grace period.
pub async fn run(m: &Maintainer, args: &RollupArgs) -> Result<(), MaintenanceError> {
    let range = m
        .range(&args.hours.since, &args.hours.until)
        .map_err(MaintenanceError::Other)?;
    let retention = m.catalog.retention().await?;
    let views = m
        .catalog
        .views(Dataset::Flows, range.since, range.until, &retention)
        .await?;
    let rollups = rollup_map(m, range.since, range.until).await?;
    let settled: Vec<_> = views
        .into_iter()
        .filter(|v| m.settled(v.hour, args.hours.settle))
        .collect();
    m.start_progress(settled.len() as u64, "rolling up");
    let (mut written_count, mut waiting, mut deleted) = (0, 0, gc::Deleted::default());
    for view in &settled {
        m.advance();
        let name = Maintainer::hour_name(Dataset::Flows, view.hour);
        let generation = match &view.compaction {
            Compaction::Clean(generation) => generation,
            Compaction::WithLateFiles(_) | Compaction::None => {
                waiting += 1;
                continue;
            }
        };
        let existing = rollups.get(&view.hour);
        let written = match existing.and_then(|r| r.of(generation)) {
            Some(meta) => meta.last_modified,
            None => match roll_up(m, view.hour, generation, view.live.clone()).await {
                Ok(rows) => {
                    written_count += 1;
                    m.log(format!(
                        "rolled up {name} (generation {generation}): {rows} rows"
                    ));
                    chrono::Utc::now()
                }
                Err(error) => {
                    m.problem(format!("{name}: {error}"));
                    continue;
                }
            },
        };
        if let Some(existing) = existing {
            let stale = gc::stale_rollups(m, existing, generation, written, &args.grace);
            match gc::delete(m, stale).await {
                Ok(d) => deleted.add(d),
                Err(error) => m.problem(format!("{name}: cannot delete stale rollups: {error}")),
            }
        }
    }
    m.finish_progress();
    let verb = if m.dry_run { "would write" } else { "wrote" };
    m.log(format!(
        "rollup: {verb} {written_count} rollups; {waiting} settled hours wait for compaction; {} stale rollups deleted",
        deleted.objects
    ));
    Ok(())
}

/// The rollup files of every hour, by hour.
pub async fn rollup_map(
    m: &Maintainer,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<HashMap<i64, RollupView>, MaintenanceError> {
    let retention = m.catalog.retention().await?;
    Ok(m.catalog
        .rollup_views(since, until, &retention)
        .await?
        .into_iter()
        .map(|view| (view.hour, view))
        .collect())
}
