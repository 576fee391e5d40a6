//! The store layout: where a file goes, what it is called, what its metadata says, and which
//! prefixes a time range maps to. flowrec writes with it, flowsql prunes with it.
//!
//! ```text
//! <store>/flows/v1/date=2026-11-26/hour=13/<node>.<source>.<first-time>.<writer>.parquet
//! <store>/lost_events/v1/date=2026-11-26/hour=13/…
//! ```
//!
//! Invariants a reader may rely on:
//! - a file holds rows of one table, one UTC hour (the one its path names), one writer node;
//! - rows are sorted by `time` (declared in the Parquet `sorting_columns`);
//! - a file appears complete or not at all (object PUT; temp name + rename on a local folder);
//! - only names ending in `.parquet` are data files.

use chrono::{DateTime, NaiveDate, Timelike, Utc};

use crate::schema::Table;

/// Key-value metadata keys written into every Parquet file footer.
pub mod metadata {
    pub const SCHEMA_VERSION: &str = "flowsql.schema_version";
    pub const NODE: &str = "flowsql.node";
    pub const SOURCE: &str = "flowsql.source";
    pub const MIN_TIME: &str = "flowsql.min_time";
    pub const MAX_TIME: &str = "flowsql.max_time";
    pub const ROWS: &str = "flowsql.rows";
}

pub const FILE_EXTENSION: &str = ".parquet";

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Top folder of a table: `flows/v1`.
pub fn table_prefix(table: Table) -> String {
    format!("{}/v{}", table.name(), crate::SCHEMA_VERSION)
}

/// Start of the UTC hour holding `time_ns`.
pub fn hour_start(time_ns: i64) -> i64 {
    time_ns.div_euclid(NANOS_PER_HOUR) * NANOS_PER_HOUR
}

fn to_datetime(time_ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(time_ns)
}

/// `flows/v1/date=2026-11-26/hour=13/` for the hour holding `time_ns`.
pub fn hour_prefix(table: Table, time_ns: i64) -> String {
    let t = to_datetime(time_ns);
    format!(
        "{}/date={}/hour={:02}/",
        table_prefix(table),
        t.format("%Y-%m-%d"),
        t.hour()
    )
}

fn day_prefix(table: Table, day: NaiveDate) -> String {
    format!("{}/date={}/", table_prefix(table), day.format("%Y-%m-%d"))
}

/// Makes a node name safe as one file-name component: Hubble's `cluster/node` must not create a
/// folder and `..` must not climb out of the prefix. Keeps `[A-Za-z0-9_-]`, maps the rest
/// (`/`, `.`, spaces, …) to `_`, caps the length, and never returns an empty string.
pub fn sanitize_node_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(96)
        .collect();
    if cleaned.is_empty() {
        "unknown-node".into()
    } else {
        cleaned
    }
}

/// Everything that names a data file.
#[derive(Debug, Clone)]
pub struct FileName<'a> {
    pub table: Table,
    /// The writer's node (sanitized here).
    pub node: &'a str,
    pub source: &'a str,
    /// Time of the file's first (earliest) row.
    pub first_time_ns: i64,
    /// Distinguishes files of one writer that start at the same instant (writer run + sequence).
    pub writer_id: &'a str,
}

impl FileName<'_> {
    /// The object key, relative to the store root.
    pub fn key(&self) -> String {
        let t = to_datetime(self.first_time_ns);
        format!(
            "{}{}.{}.{}.{}{}",
            hour_prefix(self.table, self.first_time_ns),
            sanitize_node_name(self.node),
            self.source,
            t.format("%Y%m%dT%H%M%S%9fZ"),
            sanitize_node_name(self.writer_id),
            FILE_EXTENSION
        )
    }
}

/// The prefixes (relative to the store root) that hold every row of `table` with
/// `since <= time < until`: whole days as `date=` prefixes, partial days hour by hour.
/// A query then lists and opens nothing outside them.
pub fn prefixes_for_range(table: Table, since_ns: i64, until_ns: i64) -> Vec<String> {
    let mut prefixes = Vec::new();
    if until_ns <= since_ns {
        return prefixes;
    }
    let mut hour = hour_start(since_ns);
    while hour < until_ns {
        let t = to_datetime(hour);
        let day_end = hour + (24 - t.hour() as i64) * NANOS_PER_HOUR;
        if t.hour() == 0 && day_end <= hour_start(until_ns - 1) + NANOS_PER_HOUR {
            prefixes.push(day_prefix(table, t.date_naive()));
            hour = day_end;
        } else {
            prefixes.push(hour_prefix(table, hour));
            hour += NANOS_PER_HOUR;
        }
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn node_names_cannot_create_folders_or_escape() {
        assert_eq!(
            sanitize_node_name("kind-kind/kind-worker"),
            "kind-kind_kind-worker"
        );
        assert_eq!(sanitize_node_name("../../etc"), "______etc");
        assert_eq!(sanitize_node_name(".."), "__");
        assert_eq!(sanitize_node_name(""), "unknown-node");
        let key = FileName {
            table: Table::Flows,
            node: "../x/y",
            source: "import",
            first_time_ns: ns("2026-11-26T13:05:00Z"),
            writer_id: "../w",
        }
        .key();
        assert_eq!(key.matches('/').count(), 4, "{key}");
        assert!(!key.contains(".."), "{key}");
        assert!(
            key.starts_with("flows/v1/date=2026-11-26/hour=13/"),
            "{key}"
        );
    }

    #[test]
    fn a_short_range_maps_to_its_hours_only() {
        let p = prefixes_for_range(
            Table::Flows,
            ns("2026-11-24T09:00:00Z"),
            ns("2026-11-24T09:15:00Z"),
        );
        assert_eq!(p, vec!["flows/v1/date=2026-11-24/hour=09/"]);
        let p = prefixes_for_range(
            Table::Flows,
            ns("2026-11-24T22:30:00Z"),
            ns("2026-11-25T01:00:00Z"),
        );
        assert_eq!(
            p,
            vec![
                "flows/v1/date=2026-11-24/hour=22/",
                "flows/v1/date=2026-11-24/hour=23/",
                "flows/v1/date=2026-11-25/hour=00/",
            ]
        );
    }

    #[test]
    fn whole_days_collapse_to_date_prefixes() {
        let p = prefixes_for_range(
            Table::LostEvents,
            ns("2026-11-23T23:00:00Z"),
            ns("2026-11-26T00:30:00Z"),
        );
        assert_eq!(
            p,
            vec![
                "lost_events/v1/date=2026-11-23/hour=23/",
                "lost_events/v1/date=2026-11-24/",
                "lost_events/v1/date=2026-11-25/",
                "lost_events/v1/date=2026-11-26/hour=00/",
            ]
        );
        assert!(prefixes_for_range(Table::Flows, 10, 10).is_empty());
    }
}
