//! `flowstore files`: exactly what flowsql reads, for engines that list folders instead.
//!
//! A plain `read_parquet('…/flows/**/*.parquet')` (DuckDB) or a Hive table (Athena, Trino,
//! Spark) reads every object of a folder. Between a compaction's commit and the end of its
//! grace period that includes the replaced files (each row twice), and a compaction killed
//! before committing leaves files no commit names (rows twice until the orphan grace). This
//! command prints the visible files as of now:
//! - `list` and `duckdb`: a snapshot, readable until a later compaction replaces a file in
//!   it and `--grace` passes;
//! - `athena`: the objects to leave out, as a view over the Hive table; new recorded files
//!   show up in it, a later compaction's pending files do not: generate it again after each
//!   compaction run (as the CronJob can).

use flow_schema::layout::Dataset;

use super::cli::{FilesArgs, FilesFormat};
use super::{Maintainer, MaintenanceError};

pub async fn run(m: &Maintainer, args: &FilesArgs) -> Result<(), MaintenanceError> {
    let dataset = Dataset::parse(&args.table).ok_or_else(|| {
        MaintenanceError::Other(format!(
            "--table {:?}: the tables are flows, lost_events and flows_hourly",
            args.table
        ))
    })?;
    let range = m
        .range(&args.since, &args.until)
        .map_err(MaintenanceError::Other)?;
    let retention = m.catalog.retention().await?;
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    if dataset.table().is_some() {
        for view in m
            .catalog
            .views(dataset, range.since, range.until, &retention)
            .await?
        {
            visible.extend(view.live.iter().map(|f| m.store.url_of(&f.location)));
            hidden.extend(
                view.garbage
                    .iter()
                    .map(|(_, f)| m.store.url_of(&f.location)),
            );
            hidden.extend(view.foreign.iter().map(|f| m.store.url_of(&f.location)));
        }
    } else {
        for view in m
            .catalog
            .rollup_views(range.since, range.until, &retention)
            .await?
        {
            for (index, (_, meta)) in view.rollups.iter().enumerate() {
                let url = m.store.url_of(&meta.location);
                if index == 0 {
                    visible.push(url)
                } else {
                    hidden.push(url)
                }
            }
            hidden.extend(view.foreign.iter().map(|f| m.store.url_of(&f.location)));
        }
    }
    let quoted = |urls: &[String]| {
        urls.iter()
            .map(|u| format!("'{}'", local_path(u).replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",\n  ")
    };
    let name = dataset.name();
    match args.format {
        FilesFormat::List => {
            for url in &visible {
                println!("{url}");
            }
        }
        FilesFormat::Duckdb if visible.is_empty() => {
            return Err(MaintenanceError::Other(format!("no {name} file in that range")));
        }
        FilesFormat::Duckdb => println!(
            "-- {name} as flowsql reads it now ({} files); valid until a later compaction \
             replaces one of them and its grace period passes.\n\
             CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([\n  {}\n], union_by_name = true, hive_partitioning = false);",
            visible.len(),
            quoted(&visible)
        ),
        FilesFormat::Athena => {
            let hidden_list = if hidden.is_empty() {
                "''".to_string()
            } else {
                hidden
                    .iter()
                    .map(|u| format!("'{}'", u.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(",\n  ")
            };
            println!(
                "-- {name} as flowsql reads it: the Hive table {name} without the {} object(s) \
                 a listing shows that flowsql does not read (replaced files in their grace \
                 period, files of a compaction that never committed). Generate again after \
                 each compaction run.\n\
                 CREATE OR REPLACE VIEW {name}_exact AS SELECT * FROM {name} WHERE \"$path\" NOT IN (\n  {hidden_list}\n);",
                hidden.len()
            );
        }
    }
    Ok(())
}

/// A local store's `file:///path` as the path DuckDB takes.
fn local_path(url: &str) -> &str {
    url.strip_prefix("file://").unwrap_or(url)
}
