//! `flowstore compact`, hour by hour, oldest first, for `flows` and `lost_events`:
//!
//! 1. delete what earlier commits replaced, once their grace period has passed (`gc`);
//! 2. a settled hour with recorded files (never compacted, or late files since) is merged
//!    (`merge`): every visible file, any node and source, into as few files as the size
//!    target allows, written under a new generation's names;
//! 3. the generation's commit is created exclusively (`_commit.<seq>.json`, `PutMode::Create`):
//!    the one step readers see. It names the outputs and every recorded file merged into the
//!    hour so far. Losing the race for the seq discards this run's files;
//! 4. `flows` hours get the rollup of their generation (`rollup`).
//!
//! An hour with a damaged input is left as it is (and named): compaction never drops rows.

use std::collections::HashMap;
use std::time::Instant;

use flow_schema::catalog::commit::{Output, COMMIT_FORMAT};
use flow_schema::catalog::RollupView;
use flow_schema::catalog::{Commit, Compaction, HourView};
use flow_schema::layout::names::{commit_name, Generation, ObjectName};
use flow_schema::layout::{hour_prefix, rfc3339, Dataset};
use flow_schema::units::human_bytes;
use object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::cli::CompactArgs;
use super::gc::{self, Deleted};
use super::merge::{self, Merged};
use super::rollup::{roll_up, rollup_map};
use super::{Maintainer, MaintenanceError};
use crate::table::footers::Footer;

#[derive(Debug, Default)]
struct Summary {
    hours: u64,
    files_in: u64,
    files_out: u64,
    rows: u64,
    bytes_in: u64,
    bytes_out: u64,
    rollups: u64,
    deleted: Deleted,
}

pub async fn run(m: &Maintainer, args: &CompactArgs) -> Result<(), MaintenanceError> {
    let started = Instant::now();
    let range = m
        .range(&args.hours.since, &args.hours.until)
        .map_err(MaintenanceError::Other)?;
    let retention = m.catalog.retention().await?;
    let mut rollups = if args.no_rollup {
        HashMap::new()
    } else {
        rollup_map(m, range.since, range.until).await?
    };
    let mut summary = Summary::default();
    let mut budget = args.max_hours.unwrap_or(usize::MAX);
    for dataset in [Dataset::Flows, Dataset::LostEvents] {
        let views = m
            .catalog
            .views(dataset, range.since, range.until, &retention)
            .await?;
        let due = views
            .iter()
            .filter(|v| m.settled(v.hour, args.hours.settle) && needs_compaction(v))
            .count();
        m.start_progress(
            due.min(budget) as u64,
            &format!("compacting {}", dataset.name()),
        );
        for view in views {
            let name = Maintainer::hour_name(dataset, view.hour);
            let settled = m.settled(view.hour, args.hours.settle);
            match gc::delete(m, gc::due(m, &view, &args.grace)).await {
                Ok(deleted) => summary.deleted.add(deleted),
                Err(error) => m.problem(format!("{name}: cannot delete replaced objects: {error}")),
            }
            let mut current = match &view.compaction {
                Compaction::Clean(generation) => Some((generation.clone(), view.live.clone())),
                _ => None,
            };
            if settled && needs_compaction(&view) && budget > 0 {
                budget -= 1;
                m.advance();
                match compact_hour(m, dataset, &view, args, &mut summary).await {
                    Ok(Some(done)) => current = Some(done),
                    Ok(None) => {}
                    Err(error) => m.problem(format!("{name}: {error}")),
                }
            }
            if dataset == Dataset::Flows && !args.no_rollup && settled {
                if let Some((generation, files)) = current {
                    let view_of_hour = rollups.remove(&view.hour);
                    ensure_rollup(
                        m,
                        view.hour,
                        &generation,
                        files,
                        view_of_hour,
                        args,
                        &mut summary,
                    )
                    .await;
                }
            }
            m.forget_footers();
        }
        m.finish_progress();
    }
    let verb = if m.dry_run {
        "would compact"
    } else {
        "compacted"
    };
    m.log(format!(
        "compact: {verb} {} hours ({} files into {}, {} rows, {} into {}), {} rollups, \
         deleted {} replaced objects ({}) in {:.1}s",
        summary.hours,
        summary.files_in,
        summary.files_out,
        summary.rows,
        human_bytes(summary.bytes_in),
        human_bytes(summary.bytes_out),
        summary.rollups,
        summary.deleted.objects,
        human_bytes(summary.deleted.bytes),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Recorded files that are not yet in a generation: never compacted, or late.
pub fn needs_compaction(view: &HourView) -> bool {
    match view.compaction {
        Compaction::None => !view.live.is_empty(),
        Compaction::WithLateFiles(_) => true,
        Compaction::Clean(_) => false,
    }
}

#[derive(Debug, thiserror::Error)]
enum CompactError {
    #[error(transparent)]
    Catalog(#[from] flow_schema::catalog::CatalogError),
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    #[error("cannot read the inputs' footers: {0}")]
    Footers(object_store::Error),
    #[error("cannot commit {url}: {source}")]
    Commit {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Compacts one hour; the new generation and its files, or `None` when it was left alone.
async fn compact_hour(
    m: &Maintainer,
    dataset: Dataset,
    view: &HourView,
    args: &CompactArgs,
    summary: &mut Summary,
) -> Result<Option<(Generation, Vec<ObjectMeta>)>, CompactError> {
    let started = Instant::now();
    let name = Maintainer::hour_name(dataset, view.hour);
    let table = dataset.table().expect("a recorded table");
    let (schema, version) = m.schemas.of(table);
    let loaded = m
        .footers(view.live.clone(), &m.expectation(dataset))
        .await
        .map_err(CompactError::Footers)?;
    let mut inputs: Vec<Footer> = Vec::with_capacity(loaded.len());
    let mut damaged = false;
    for footer in loaded {
        match footer {
            Ok(footer) => inputs.push(footer),
            Err((meta, reason)) => {
                damaged = true;
                m.problem(format!(
                    "{name}: {}: {reason}; the hour is left as it is (compaction never drops rows)",
                    m.store.url_of(&meta.location)
                ));
            }
        }
    }
    if damaged {
        return Ok(None);
    }
    let previous = match &view.latest_commit {
        Some(meta) => Some(m.catalog.read_commit(meta).await?),
        None => None,
    };
    let generation = Generation {
        seq: previous.as_ref().map_or(1, |c| c.seq + 1),
        nonce: Generation::new_nonce(),
    };
    let rows: u64 = inputs.iter().map(|f| f.rows).sum();
    let bytes_in: u64 = inputs.iter().map(|f| f.meta.size).sum();
    if m.dry_run {
        let parts = merge::Parts::plan(
            rows,
            inputs.iter().map(|f| f.uncompressed).sum(),
            args.target_size,
        );
        m.log(format!(
            "would compact {name}: {} files ({rows} rows, {}) into {} file(s)",
            inputs.len(),
            human_bytes(bytes_in),
            parts.count
        ));
        summary.hours += 1;
        summary.files_in += inputs.len() as u64;
        summary.files_out += u64::from(parts.count);
        summary.rows += rows;
        summary.bytes_in += bytes_in;
        return Ok(None);
    }
    let merged = merge::merge(
        m,
        dataset,
        view.hour,
        &inputs,
        schema,
        version,
        &generation,
        merge::Limits {
            target_size: args.target_size,
            width: usize::from(args.merge_width),
        },
    )
    .await;
    let merged = match merged {
        Ok(merged) => merged,
        Err(error) => {
            discard(m, dataset, view.hour, &generation).await;
            return Err(error.into());
        }
    };
    let mut replaced: Vec<String> = previous.map(|c| c.replaced).unwrap_or_default();
    for input in &inputs {
        let file = input.meta.location.filename().unwrap_or_default();
        if matches!(ObjectName::parse(file), ObjectName::Recorded { .. }) {
            replaced.push(file.to_string());
        }
    }
    replaced.sort();
    replaced.dedup();
    let commit = Commit {
        format: COMMIT_FORMAT,
        dataset: dataset.name().to_string(),
        hour: rfc3339(view.hour),
        seq: generation.seq,
        nonce: generation.nonce.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        outputs: merged.outputs.clone(),
        replaced,
    };
    let key = format!(
        "{}{}",
        hour_prefix(dataset, view.hour),
        commit_name(generation.seq)
    );
    let path = m.store.path(&key);
    let put = m
        .store
        .object_store
        .put_opts(
            &path,
            PutPayload::from(commit.to_json()),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match put {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            discard(m, dataset, view.hour, &generation).await;
            m.problem(format!(
                "{name}: another flowstore committed generation {} first; this run's files are discarded",
                generation.seq
            ));
            return Ok(None);
        }
        Err(source) => {
            discard(m, dataset, view.hour, &generation).await;
            return Err(CompactError::Commit {
                url: m.store.url_of(&path),
                source,
            });
        }
    }
    let Merged {
        outputs,
        rows,
        bytes,
    } = merged;
    summary.hours += 1;
    summary.files_in += inputs.len() as u64;
    summary.files_out += outputs.len() as u64;
    summary.rows += rows;
    summary.bytes_in += bytes_in;
    summary.bytes_out += bytes;
    m.log(format!(
        "compacted {name}: {} files into {} ({rows} rows, {} into {}) in {:.1}s",
        inputs.len(),
        outputs.len(),
        human_bytes(bytes_in),
        human_bytes(bytes),
        started.elapsed().as_secs_f64()
    ));
    // What this commit replaced may go at once when the grace period is zero.
    if let Ok(listing) = m
        .catalog
        .listings(
            dataset,
            Some(view.hour),
            Some(view.hour + 1),
            &Default::default(),
        )
        .await
    {
        if let Some(listing) = listing.into_iter().next() {
            if let Ok(after) = m.catalog.view(listing).await {
                match gc::delete(m, gc::due(m, &after, &args.grace)).await {
                    Ok(deleted) => summary.deleted.add(deleted),
                    Err(error) => {
                        m.problem(format!("{name}: cannot delete replaced objects: {error}"))
                    }
                }
            }
        }
    }
    let files = outputs
        .iter()
        .map(|output| output_meta(m, dataset, view.hour, output))
        .collect();
    Ok(Some((generation, files)))
}

fn output_meta(m: &Maintainer, dataset: Dataset, hour: i64, output: &Output) -> ObjectMeta {
    ObjectMeta {
        location: m
            .store
            .path(&format!("{}{}", hour_prefix(dataset, hour), output.name)),
        last_modified: chrono::Utc::now(),
        size: output.bytes,
        e_tag: None,
        version: None,
    }
}

/// Best-effort removal of an attempt's uncommitted files (left to the orphan grace if it
/// fails: no reader sees them anyway).
async fn discard(m: &Maintainer, dataset: Dataset, hour: i64, generation: &Generation) {
    let prefix = m.store.path(&hour_prefix(dataset, hour));
    let listed: Vec<ObjectMeta> =
        match futures::TryStreamExt::try_collect(m.store.object_store.list(Some(&prefix))).await {
            Ok(listed) => listed,
            Err(_) => return,
        };
    for meta in listed {
        let file = meta.location.filename().unwrap_or_default();
        let ours = matches!(ObjectName::parse(file), ObjectName::Compacted { generation: g, .. } if g == *generation);
        if ours {
            let _ = m.store.object_store.delete(&meta.location).await;
        }
    }
}

/// Writes the rollup of `generation` unless it exists; deletes stale rollups after the grace.
async fn ensure_rollup(
    m: &Maintainer,
    hour: i64,
    generation: &Generation,
    files: Vec<ObjectMeta>,
    existing: Option<RollupView>,
    args: &CompactArgs,
    summary: &mut Summary,
) {
    let name = Maintainer::hour_name(Dataset::Flows, hour);
    let written = match existing.as_ref().and_then(|r| r.of(generation)) {
        Some(meta) => meta.last_modified,
        None => match roll_up(m, hour, generation, files).await {
            Ok(_) => {
                summary.rollups += 1;
                chrono::Utc::now()
            }
            Err(error) => {
                m.problem(format!("{name}: rollup: {error}"));
                return;
            }
        },
    };
    if let Some(existing) = existing {
        let stale = gc::stale_rollups(m, &existing, generation, written, &args.grace);
        match gc::delete(m, stale).await {
            Ok(deleted) => summary.deleted.add(deleted),
            Err(error) => m.problem(format!("{name}: cannot delete stale rollups: {error}")),
        }
    }
}
