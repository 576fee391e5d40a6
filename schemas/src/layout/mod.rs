//! The store layout: where a file goes, what it is called, what its metadata says, and which
//! prefixes a time range maps to. flowrec writes with it, flowsql and flowstore read and
//! maintain the store with it.
//!
//! ```text
//! <store>/flows/v1/date=2026-11-26/hour=13/<node>.<source>.<first-time>.<writer>.parquet  recorded
//! <store>/flows/v1/date=2026-11-26/hour=13/compacted.<seq>.<nonce>.<part>of<parts>.parquet
//! <store>/flows/v1/date=2026-11-26/hour=13/_commit.<seq>.json                       (catalog)
//! <store>/lost_events/v1/date=2026-11-26/hour=13/…                                  same rules
//! <store>/flows_hourly/v1/date=2026-11-26/hour=13/rollup.<seq>.<nonce>.parquet      rollups
//! <store>/_flowstore/retention.json                                                 (catalog)
//! ```
//!
//! `v1` is the layout version ([`LAYOUT_VERSION`]): how keys and partitions are arranged. It
//! is not the schema version, which every file carries in its footer
//! ([`metadata::SCHEMA_VERSION`]): files of several schema versions live side by side in one
//! layout (see `schema` for the rules). Which files of a partition a reader may see is the
//! catalog's business (`crate::catalog`); the names it reasons about are in [`names`].

pub mod names;

use chrono::{DateTime, NaiveDate, Timelike, Utc};

use crate::schema::Table;

/// Version of the key layout (the `v1` in `flows/v1/…`). Changing how keys or partitions are
/// arranged, or removing/renaming/retyping a column, needs a new layout version.
pub const LAYOUT_VERSION: u32 = 1;

/// Key-value metadata keys written into every Parquet file footer.
pub mod metadata {
    pub const SCHEMA_VERSION: &str = "flowsql.schema_version";
    /// The writer's node; for a compacted file, the nodes of its rows, comma-separated.
    pub const NODE: &str = "flowsql.node";
    /// `import`, `hubble` or `ebpf`; for a compacted file, the sources of its rows.
    pub const SOURCE: &str = "flowsql.source";
    pub const MIN_TIME: &str = "flowsql.min_time";
    pub const MAX_TIME: &str = "flowsql.max_time";
    pub const ROWS: &str = "flowsql.rows";
    /// Set on files written by `flowstore compact`: the generation (`<seq>.<nonce>`) whose
    /// commit made them visible.
    pub const COMPACTED: &str = "flowsql.compacted";
    /// Set on rollup files: the generation of the raw hour they summarize.
    pub const ROLLUP_OF: &str = "flowsql.rollup_of";
}

pub const FILE_EXTENSION: &str = ".parquet";

/// Objects of the store that are not table data: the retention watermarks, and nothing a
/// Hive-style reader of `flows/v1/…` ever lists.
pub const CONTROL_PREFIX: &str = "_flowstore";
/// The retention watermarks of every dataset (one JSON object, see `catalog::retention`).
pub const RETENTION_KEY: &str = "_flowstore/retention.json";

pub const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// What the store holds, each under its own prefix: the two recorded tables, and the hourly
/// rollup `flowstore` derives from `flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dataset {
    Flows,
    LostEvents,
    FlowsHourly,
}

impl Dataset {
    pub const ALL: [Dataset; 3] = [Dataset::Flows, Dataset::LostEvents, Dataset::FlowsHourly];

    /// The SQL table name, also the dataset's top-level folder.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Flows => "flows",
            Dataset::LostEvents => "lost_events",
            Dataset::FlowsHourly => "flows_hourly",
        }
    }

    /// The recorded table this dataset is, if it is one (rollups are derived).
    pub fn table(self) -> Option<Table> {
        match self {
            Dataset::Flows => Some(Table::Flows),
            Dataset::LostEvents => Some(Table::LostEvents),
            Dataset::FlowsHourly => None,
        }
    }

    pub fn parse(name: &str) -> Option<Dataset> {
        Dataset::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl From<Table> for Dataset {
    fn from(table: Table) -> Dataset {
        match table {
            Table::Flows => Dataset::Flows,
            Table::LostEvents => Dataset::LostEvents,
        }
    }
}

/// Top folder of a dataset: `flows/v1`.
pub fn table_prefix(dataset: impl Into<Dataset>) -> String {
    format!("{}/v{}", dataset.into().name(), LAYOUT_VERSION)
}

/// Start of the UTC hour holding `time_ns`.
pub fn hour_start(time_ns: i64) -> i64 {
    time_ns.div_euclid(NANOS_PER_HOUR) * NANOS_PER_HOUR
}

fn to_datetime(time_ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(time_ns)
}

/// `flows/v1/date=2026-11-26/hour=13/` for the hour holding `time_ns`.
pub fn hour_prefix(dataset: impl Into<Dataset>, time_ns: i64) -> String {
    let t = to_datetime(time_ns);
    format!(
        "{}/date={}/hour={:02}/",
        table_prefix(dataset),
        t.format("%Y-%m-%d"),
        t.hour()
    )
}

/// `flows/v1/date=2026-11-26/` for the day holding `time_ns`.
pub fn day_prefix(dataset: impl Into<Dataset>, time_ns: i64) -> String {
    day_prefix_of(dataset.into(), to_datetime(time_ns).date_naive())
}

fn day_prefix_of(dataset: Dataset, day: NaiveDate) -> String {
    format!("{}/date={}/", table_prefix(dataset), day.format("%Y-%m-%d"))
}

/// The hour (start, ns) a key's `date=…/hour=…/` folders name, wherever they are in the key.
pub fn hour_of_key(key: &str) -> Option<i64> {
    let mut parts = key.split('/');
    let date = parts.find_map(|p| p.strip_prefix("date="))?;
    let hour = parts.next()?.strip_prefix("hour=")?;
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let hour: u32 = hour.parse().ok().filter(|h| *h < 24)?;
    day.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_nanos_opt()
}

/// The day (start, ns) a `date=YYYY-MM-DD` folder name means.
pub fn day_of_folder(folder: &str) -> Option<i64> {
    let day = folder.trim_end_matches('/').rsplit('/').next()?;
    let day = NaiveDate::parse_from_str(day.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
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

/// Everything that names a recorded data file.
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
            t.format(names::RECORDED_TIME_FORMAT),
            sanitize_node_name(self.writer_id),
            FILE_EXTENSION
        )
    }
}

/// The prefixes (relative to the store root) that hold every row of `dataset` with
/// `since <= time < until`: whole days as `date=` prefixes, partial days hour by hour.
/// A query then lists and opens nothing outside them.
pub fn prefixes_for_range(
    dataset: impl Into<Dataset>,
    since_ns: i64,
    until_ns: i64,
) -> Vec<String> {
    let dataset = dataset.into();
    let mut prefixes = Vec::new();
    if until_ns <= since_ns {
        return prefixes;
    }
    let mut hour = hour_start(since_ns);
    while hour < until_ns {
        let t = to_datetime(hour);
        let day_end = hour + (24 - t.hour() as i64) * NANOS_PER_HOUR;
        if t.hour() == 0 && day_end <= hour_start(until_ns - 1) + NANOS_PER_HOUR {
            prefixes.push(day_prefix_of(dataset, t.date_naive()));
            hour = day_end;
        } else {
            prefixes.push(hour_prefix(dataset, hour));
            hour += NANOS_PER_HOUR;
        }
    }
    prefixes
}

/// An hour as RFC 3339 (`2026-11-26T13:00:00Z`), as logs and commits write it.
pub fn rfc3339(time_ns: i64) -> String {
    to_datetime(time_ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
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
        assert_eq!(hour_of_key(&key), Some(ns("2026-11-26T13:00:00Z")));
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
        assert_eq!(
            prefixes_for_range(
                Dataset::FlowsHourly,
                ns("2026-11-24T00:00:00Z"),
                ns("2026-11-25T00:00:00Z")
            ),
            vec!["flows_hourly/v1/date=2026-11-24/"]
        );
    }

    #[test]
    fn hours_and_days_from_keys() {
        assert_eq!(
            hour_of_key("prod/flows/v1/date=2026-11-24/hour=07/x.parquet"),
            Some(ns("2026-11-24T07:00:00Z"))
        );
        assert_eq!(hour_of_key("flows/v1/date=2026-11-24/hour=24/x"), None);
        assert_eq!(hour_of_key("flows/v1/date=2026-11-24/x"), None);
        assert_eq!(
            day_of_folder("prod/flows/v1/date=2026-11-24/"),
            Some(ns("2026-11-24T00:00:00Z"))
        );
        assert_eq!(day_of_folder("prod/flows/v1/_tmp/"), None);
    }
}
