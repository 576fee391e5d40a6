//! The forensic query suite every query benchmark runs, written for flowsql and for DuckDB.

use chrono::{DateTime, Utc};

/// Where generated datasets start.
pub const START: &str = "2026-11-01T00:00:00Z";

/// `hours` after [`START`].
pub fn at(hours: f64) -> DateTime<Utc> {
    let start: DateTime<Utc> = START.parse().expect("valid");
    start + chrono::Duration::milliseconds((hours * 3_600_000.0) as i64)
}

/// How an engine writes a timestamp literal.
type Literal<'a> = &'a dyn Fn(DateTime<Utc>) -> String;

/// One query, as each engine spells it.
pub struct Query {
    pub name: &'static str,
    pub flowsql: String,
    pub duckdb: String,
}

fn flowsql_time(t: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%SZ"))
}

fn duckdb_time(t: DateTime<Utc>) -> String {
    format!("TIMESTAMPTZ '{}'", t.format("%Y-%m-%d %H:%M:%S+00"))
}

fn same(name: &'static str, sql: &str) -> Query {
    Query {
        name,
        flowsql: sql.to_owned(),
        duckdb: sql.to_owned(),
    }
}

fn both(name: &'static str, sql: &dyn Fn(Literal) -> String) -> Query {
    Query {
        name,
        flowsql: sql(&flowsql_time),
        duckdb: sql(&duckdb_time),
    }
}

/// The suite; `hours` places the window and the regression time inside the data.
pub fn suite(hours: u32) -> Vec<Query> {
    let w0 = at(f64::from(hours) / 2.0);
    let w1 = w0 + chrono::Duration::minutes(5);
    let t = at(f64::from(hours) / 2.0);
    vec![
        same(
            "1 count dropped",
            "SELECT count(*) FROM flows WHERE verdict = 'DROPPED'",
        ),
        same(
            "2 all dropped rows",
            "SELECT * FROM flows WHERE verdict = 'DROPPED'",
        ),
        same(
            "3 drops by namespaces+reason",
            "SELECT source_namespace, destination_namespace, drop_reason_desc, count(*) AS n \
             FROM flows WHERE verdict = 'DROPPED' GROUP BY 1, 2, 3 ORDER BY n DESC, 1, 2, 3",
        ),
        both("4 5-minute window", &|ts| {
            format!(
                "SELECT * FROM flows WHERE time >= {} AND time < {} ORDER BY time",
                ts(w0),
                ts(w1)
            )
        }),
        same(
            "5 top 20 pod pairs",
            "SELECT source_pod_name, destination_pod_name, destination_port, count(*) AS n \
             FROM flows GROUP BY 1, 2, 3 ORDER BY n DESC, 1, 2, 3 LIMIT 20",
        ),
        both("6 regression join", &|ts| {
            format!(
                "WITH before AS (SELECT DISTINCT source_workload, destination_workload, \
                   destination_port FROM flows WHERE verdict = 'FORWARDED' AND time < {t}), \
                 after AS (SELECT DISTINCT source_workload, destination_workload, \
                   destination_port FROM flows WHERE verdict = 'DROPPED' \
                   AND drop_reason_desc = 'POLICY_DENIED' AND time >= {t}) \
                 SELECT * FROM before JOIN after \
                   USING (source_workload, destination_workload, destination_port) \
                 ORDER BY 1, 2, 3",
                t = ts(t)
            )
        }),
        same(
            "7 flows of one IP",
            "SELECT * FROM flows WHERE ip_source = '10.100.0.17' OR ip_destination = '10.100.0.17'",
        ),
    ]
}

/// Queries over one whole hour (`hour` hours after [`START`]): what the newest, not yet
/// compacted hour costs.
pub fn hour_window(hour: u32) -> Vec<Query> {
    let h0 = at(f64::from(hour));
    let h1 = at(f64::from(hour + 1));
    vec![
        both("hour: verdicts", &|ts| {
            format!(
                "SELECT verdict, count(*) AS n FROM flows WHERE time >= {} AND time < {} \
                 GROUP BY 1 ORDER BY 1",
                ts(h0),
                ts(h1)
            )
        }),
        both("hour: dropped rows", &|ts| {
            format!(
                "SELECT * FROM flows WHERE time >= {} AND time < {} AND verdict = 'DROPPED'",
                ts(h0),
                ts(h1)
            )
        }),
    ]
}
