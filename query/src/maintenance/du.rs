//! `flowstore du`: what the store holds, per table and day, as readers see it (visible files,
//! their rows and bytes) and what awaits deletion (replaced files in their grace period,
//! orphans): the cost of the history, and whether maintenance keeps up.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use flow_schema::catalog::{Compaction, HourView};
use flow_schema::layout::Dataset;

use super::cli::DuArgs;
use super::{Maintainer, MaintenanceError};
use crate::print::{OutputFormat, Printer};

#[derive(Debug, Default)]
struct Day {
    hours: u64,
    compacted_hours: u64,
    files: u64,
    rows: u64,
    bytes: u64,
    pending_objects: u64,
    pending_bytes: u64,
}

pub async fn run(m: &Maintainer, args: &DuArgs) -> Result<(), MaintenanceError> {
    let retention = m.catalog.retention().await?;
    let mut days: BTreeMap<(Dataset, String), Day> = BTreeMap::new();
    for dataset in Dataset::ALL {
        let views: Vec<HourView> = match dataset.table() {
            Some(_) => m.catalog.views(dataset, None, None, &retention).await?,
            None => {
                let views = m.catalog.rollup_views(None, None, &retention).await?;
                let views = views
                    .into_iter()
                    .map(|r| HourView {
                        dataset,
                        hour: r.hour,
                        live: r
                            .latest()
                            .map(|(_, meta)| meta.clone())
                            .into_iter()
                            .collect(),
                        foreign: r.foreign.clone(),
                        compaction: Compaction::None,
                        latest_commit: None,
                        replaced: Vec::new(),
                        garbage: r
                            .rollups
                            .iter()
                            .skip(1)
                            .map(|(_, meta)| {
                                (flow_schema::catalog::GarbageKind::Replaced, meta.clone())
                            })
                            .collect(),
                    })
                    .collect();
                views
            }
        };
        m.start_progress(views.len() as u64, &format!("reading {}", dataset.name()));
        let expect = m.expectation(dataset);
        for view in views {
            m.advance();
            let day = flow_schema::layout::rfc3339(view.hour)[..10].to_string();
            let entry = days.entry((dataset, day)).or_default();
            entry.hours += 1;
            entry.compacted_hours += u64::from(matches!(view.compaction, Compaction::Clean(_)));
            entry.files += view.live.len() as u64;
            entry.bytes += view.live.iter().map(|f| f.size).sum::<u64>();
            entry.pending_objects += view.garbage.len() as u64;
            entry.pending_bytes += view.garbage.iter().map(|(_, f)| f.size).sum::<u64>();
            let footers = m
                .footers(view.live.clone(), &expect)
                .await
                .map_err(|e| MaintenanceError::Other(format!("cannot read the store: {e}")))?;
            for footer in footers {
                match footer {
                    Ok(footer) => entry.rows += footer.rows,
                    Err((meta, reason)) => {
                        m.problem(format!("{}: {reason}", m.store.url_of(&meta.location)))
                    }
                }
            }
        }
        m.finish_progress();
    }
    print(days, args.format.unwrap_or(OutputFormat::Table))
        .await
        .map_err(|e| MaintenanceError::Other(e.to_string()))
}

async fn print(
    days: BTreeMap<(Dataset, String), Day>,
    format: OutputFormat,
) -> Result<(), crate::print::PrintError> {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let number = |name: &str| Field::new(name, DataType::UInt64, false);
    let schema = Arc::new(Schema::new(vec![
        text("table"),
        text("date"),
        number("hours"),
        number("compacted_hours"),
        number("files"),
        number("rows"),
        number("bytes"),
        number("pending_delete_objects"),
        number("pending_delete_bytes"),
    ]));
    let column = |f: &dyn Fn(&Day) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(days.values().map(f)))
    };
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from_iter_values(
                days.keys().map(|(d, _)| d.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                days.keys().map(|(_, day)| day.as_str()),
            )),
            column(&|d| d.hours),
            column(&|d| d.compacted_hours),
            column(&|d| d.files),
            column(&|d| d.rows),
            column(&|d| d.bytes),
            column(&|d| d.pending_objects),
            column(&|d| d.pending_bytes),
        ],
    )
    .expect("matching columns");
    let mut printer = Printer::new(format, None)?;
    printer.print_batches(schema, vec![batch]).await.map(|_| ())
}
