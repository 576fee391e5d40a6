//! `flowstore expire`: retention, applied to readers first and to objects after the grace.
//!
//! 1. The raw watermark moves to the start of the hour `--keep` ago, but never past an hour
//!    whose flows are not compacted and rolled up (its rollup is what stays); `lost_events`
//!    follows `--keep` alone, `flows_hourly` `--keep-rollups`.
//! 2. `_flowstore/retention.json` is written (one PUT): from then on readers skip the expired
//!    hours, whatever is still stored there.
//! 3. Once a watermark moved at least `--grace` ago, every object of the hours below it is
//!    deleted (queries that listed them before step 2 have finished).
//!
//! Each step is idempotent; a run killed anywhere is finished by the next.

use flow_schema::catalog::{Compaction, Retention};
use flow_schema::layout::{hour_start, rfc3339, Dataset, RETENTION_KEY};
use flow_schema::units::human_bytes;
use object_store::{ObjectStoreExt, PutPayload};

use super::cli::ExpireArgs;
use super::gc::{self, Deleted};
use super::rollup::rollup_map;
use super::{nanos, Maintainer, MaintenanceError};

pub async fn run(m: &Maintainer, args: &ExpireArgs) -> Result<(), MaintenanceError> {
    if args.keep.is_none() && args.keep_rollups.is_none() {
        return Err(MaintenanceError::Other(
            "nothing to expire: give --keep (raw flows and lost events) and/or --keep-rollups"
                .into(),
        ));
    }
    let mut retention = m.catalog.retention().await?;
    let mut moved = false;
    if let Some(keep) = args.keep {
        let target = hour_start(m.now - nanos(keep));
        let limit = rolled_up_until(m, &retention, target).await?;
        moved |= retention.advance(Dataset::Flows, limit, m.now);
        moved |= retention.advance(Dataset::LostEvents, target, m.now);
    }
    if let Some(keep) = args.keep_rollups {
        let target = hour_start(m.now - nanos(keep));
        moved |= retention.advance(Dataset::FlowsHourly, target, m.now);
    }
    if moved && !m.dry_run {
        let path = m.store.path(RETENTION_KEY);
        m.store
            .object_store
            .put(&path, PutPayload::from(retention.to_json()))
            .await
            .map_err(|e| {
                MaintenanceError::Other(format!("cannot write {}: {e}", m.store.url_of(&path)))
            })?;
    }
    for dataset in Dataset::ALL {
        if let Some(mark) = retention.expired_before(dataset) {
            m.log(format!(
                "{} expired before {}",
                dataset.name(),
                rfc3339(mark)
            ));
        }
    }
    let mut deleted = Deleted::default();
    for dataset in Dataset::ALL {
        deleted.add(delete_expired(m, &retention, dataset, args.grace).await?);
    }
    let verb = if m.dry_run { "would delete" } else { "deleted" };
    m.log(format!(
        "expire: {verb} {} objects ({}) of expired hours",
        deleted.objects,
        human_bytes(deleted.bytes)
    ));
    Ok(())
}

/// The raw flows watermark may reach `target`, or stop at the first hour before it whose
/// flows are not in a rollup yet.
async fn rolled_up_until(
    m: &Maintainer,
    retention: &Retention,
    target: i64,
) -> Result<i64, MaintenanceError> {
    let views = m
        .catalog
        .views(Dataset::Flows, None, Some(target), retention)
        .await?;
    let rollups = rollup_map(m, None, Some(target)).await?;
    for view in views {
        let rolled_up = match &view.compaction {
            Compaction::Clean(generation) => rollups
                .get(&view.hour)
                .is_some_and(|r| r.of(generation).is_some()),
            _ => view.live.is_empty(),
        };
        if !rolled_up {
            m.problem(format!(
                "flows {}: not compacted and rolled up yet (run flowstore compact): raw flows from this hour on are kept",
                rfc3339(view.hour)
            ));
            return Ok(view.hour);
        }
    }
    Ok(target)
}

/// Deletes every object of `dataset`'s hours below its watermark, once the watermark moved
/// at least `grace` ago.
async fn delete_expired(
    m: &Maintainer,
    retention: &Retention,
    dataset: Dataset,
    grace: std::time::Duration,
) -> Result<Deleted, MaintenanceError> {
    let (Some(mark), Some(moved)) = (retention.expired_before(dataset), retention.moved(dataset))
    else {
        return Ok(Deleted::default());
    };
    if moved + nanos(grace) > m.now {
        m.log(format!(
            "{}: expired hours are deleted after the grace period ({} from now)",
            dataset.name(),
            rfc3339(moved + nanos(grace))
        ));
        return Ok(Deleted::default());
    }
    // Listed without the retention rule: these are the hours it hides.
    let listings = m
        .catalog
        .listings(dataset, None, Some(mark), &Retention::default())
        .await?;
    let mut deleted = Deleted::default();
    for listing in listings.into_iter().filter(|l| l.hour < mark) {
        match gc::delete(m, listing.objects).await {
            Ok(d) => deleted.add(d),
            Err(error) => m.problem(format!(
                "{}: cannot delete: {error}",
                Maintainer::hour_name(dataset, listing.hour)
            )),
        }
    }
    Ok(deleted)
}
