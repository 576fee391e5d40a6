//! `flowstore verify`: every object of every hour, as a reader would meet it. Data files: the
//! footer is read and checked against the table (and with `--deep`, every page is decoded);
//! commits: parsed, and what they name is listed; anything else ending in `.parquet` is
//! foreign. Each problem is named with the object's URL (exit 1); nothing is changed.

use std::sync::Arc;

use bytes::Bytes;
use flow_schema::layout::names::ObjectName;
use flow_schema::layout::Dataset;
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::cli::VerifyArgs;
use super::{Maintainer, MaintenanceError};
use crate::table::footers::Expectation;
use flow_schema::guard::quietly;

pub async fn run(m: &Maintainer, args: &VerifyArgs) -> Result<(), MaintenanceError> {
    let range = m
        .range(&args.since, &args.until)
        .map_err(MaintenanceError::Other)?;
    let retention = m.catalog.retention().await?;
    let (mut objects, mut data, mut damaged) = (0u64, 0u64, 0u64);
    for dataset in Dataset::ALL {
        let expect = m.expectation(dataset);
        let listings = m
            .catalog
            .listings(dataset, range.since, range.until, &retention)
            .await?;
        m.start_progress(
            listings.len() as u64,
            &format!("verifying {}", dataset.name()),
        );
        for listing in listings {
            m.advance();
            let mut files = Vec::new();
            for meta in &listing.objects {
                objects += 1;
                let file = meta.location.filename().unwrap_or_default();
                match ObjectName::parse(file) {
                    ObjectName::ForeignParquet => {
                        damaged += 1;
                        report(m, meta, "not a name flowrec or flowstore writes");
                    }
                    ObjectName::Commit { .. } => {
                        if let Err(error) = m.catalog.read_commit(meta).await {
                            damaged += 1;
                            m.problem(error.to_string());
                        }
                    }
                    ObjectName::Other => {}
                    _ => files.push(meta.clone()),
                }
            }
            if dataset.table().is_some() {
                // The hour as readers see it: a commit naming a missing file is damage too.
                if let Err(error) = m.catalog.view(listing.clone()).await {
                    damaged += 1;
                    m.problem(error.to_string());
                }
            }
            data += files.len() as u64;
            damaged += check(m, files, &expect, args.deep).await?;
        }
        m.finish_progress();
    }
    m.log(format!(
        "verify: {objects} objects, {data} data files{}: {damaged} problem(s)",
        if args.deep {
            " (every page decoded)"
        } else {
            " (footers)"
        }
    ));
    Ok(())
}

fn report(m: &Maintainer, meta: &ObjectMeta, reason: &str) {
    m.problem(format!("{}: {reason}", m.store.url_of(&meta.location)));
}

/// Checks `files`; the number of damaged ones.
async fn check(
    m: &Maintainer,
    files: Vec<ObjectMeta>,
    expect: &Arc<Expectation>,
    deep: bool,
) -> Result<u64, MaintenanceError> {
    let footers = m
        .footers(files, expect)
        .await
        .map_err(|e| MaintenanceError::Other(format!("cannot read the store: {e}")))?;
    let mut damaged = 0;
    let mut readable = Vec::new();
    for footer in footers {
        match footer {
            Ok(footer) => readable.push(footer.meta),
            Err((meta, reason)) => {
                damaged += 1;
                report(m, &meta, &reason);
            }
        }
    }
    if deep {
        let results: Vec<_> = futures::stream::iter(readable)
            .map(|meta| async move { (decode_all(m, &meta).await, meta) })
            .buffer_unordered(2)
            .collect()
            .await;
        for (result, meta) in results {
            if let Err(reason) = result {
                damaged += 1;
                report(m, &meta, &reason);
            }
        }
    }
    Ok(damaged)
}

/// Reads a whole object and decodes every page of every column.
async fn decode_all(m: &Maintainer, meta: &ObjectMeta) -> Result<(), String> {
    let bytes = m
        .store
        .object_store
        .get(&meta.location)
        .await
        .map_err(|e| format!("cannot read: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    tokio::task::spawn_blocking(move || decode(bytes))
        .await
        .map_err(|e| format!("the decoder failed: {e}"))?
}

fn decode(bytes: Bytes) -> Result<(), String> {
    let run = || -> Result<u64, String> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?;
        let mut rows = 0;
        for batch in reader {
            rows += batch.map_err(|e| e.to_string())?.num_rows() as u64;
        }
        Ok(rows)
    };
    match quietly(run) {
        Some(Ok(_)) => Ok(()),
        Some(Err(reason)) => Err(format!("a page does not decode: {reason}")),
        None => Err("a page does not decode (the decoder failed on it)".into()),
    }
}
