//! query-bench: flowsql vs DuckDB on the same Parquet files, over the forensic query suite.
//!
//!   cargo build --release -p flowrec -p flowsql -p flow-benches
//!   target/release/query-bench                      # 10M flows over 24 hourly partitions
//!   target/release/query-bench --scaling            # a 5-minute window: 1 day vs 30 days
//!
//! The dataset is generated once by `flowgen` (realistic cardinalities: hundreds of pods, tens
//! of namespaces, ~1% drops, ~10% L7) and written by `flowrec import` into a local store under
//! --dir (kept between runs). Each query runs as a whole process writing CSV, as a user would
//! run it: `flowsql --format csv --output F SQL` and the `duckdb` CLI (pip install duckdb-cli)
//! over `read_parquet('…/flows/**/*.parquet', hive_partitioning=true)` with threads = cores.
//! One warm-up each, then --runs rounds alternating the two; medians, their ratio, peak RSS of
//! flowsql, and both row counts (which must be equal).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use chrono::{DateTime, Utc};

struct Args {
    flows: u64,
    hours: u32,
    dir: PathBuf,
    runs: usize,
    only: Option<Vec<usize>>,
    scaling: bool,
    per_hour: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        flows: 10_000_000,
        hours: 24,
        dir: PathBuf::from("target/bench-data"),
        runs: 5,
        only: None,
        scaling: false,
        per_hour: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |flag: &str, text: String| -> Result<u64, String> {
            text.parse().map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--flows" => args.flows = number("--flows", value()?)?,
            "--hours" => args.hours = number("--hours", value()?)? as u32,
            "--dir" => args.dir = PathBuf::from(value()?),
            "--runs" => args.runs = number("--runs", value()?)? as usize,
            "--per-hour" => args.per_hour = number("--per-hour", value()?)?,
            "--scaling" => args.scaling = true,
            "--only" => {
                let list = value()?;
                let queries = list
                    .split(',')
                    .map(|q| number("--only", q.to_owned()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?;
                args.only = Some(queries);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: query-bench [--flows N] [--hours H] [--dir DIR] [--runs R] \
                            [--only 1,4,7] | --scaling [--per-hour N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other} (--help)")),
        }
    }
    Ok(args)
}

const START: &str = "2026-11-01T00:00:00Z";

/// A store of `flows` flows over `hours` hours, generated once.
fn dataset(dir: &Path, flows: u64, hours: u32) -> Result<PathBuf, String> {
    let store = dir.join(format!("store-{flows}-{hours}h"));
    let done = store.join(".complete");
    if done.exists() {
        return Ok(store);
    }
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    eprintln!(
        "query-bench: generating {flows} flows over {hours} h into {}",
        store.display()
    );
    let started = Instant::now();
    let mut generator = Command::new(flow_benches::sibling("flowgen"))
        .args([
            "--flows",
            &flows.to_string(),
            "--hours",
            &hours.to_string(),
            "--start",
            START,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("flowgen: {e}"))?;
    let import = Command::new(flow_benches::sibling("flowrec"))
        .args(["import", "-", "--store"])
        .arg(&store)
        .stdin(generator.stdout.take().expect("piped"))
        .status()
        .map_err(|e| format!("flowrec: {e}"))?;
    let generated = generator.wait().map_err(|e| format!("flowgen: {e}"))?;
    if !import.success() || !generated.success() {
        return Err("generating the dataset failed".into());
    }
    std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    eprintln!(
        "query-bench: dataset ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(store)
}

/// How an engine writes a timestamp literal.
type Literal<'a> = &'a dyn Fn(DateTime<Utc>) -> String;

struct Query {
    name: &'static str,
    flowsql: String,
    duckdb: String,
}

fn at(hours: f64) -> DateTime<Utc> {
    let start: DateTime<Utc> = START.parse().expect("valid");
    start + chrono::Duration::milliseconds((hours * 3_600_000.0) as i64)
}

/// The suite; `hours` places the window and the regression time inside the data.
fn suite(hours: u32) -> Vec<Query> {
    let w0 = at(f64::from(hours) / 2.0);
    let w1 = w0 + chrono::Duration::minutes(5);
    let t = at(f64::from(hours) / 2.0);
    let df = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%SZ"));
    let dd = |t: DateTime<Utc>| format!("TIMESTAMPTZ '{}'", t.format("%Y-%m-%d %H:%M:%S+00"));
    let same = |name, sql: &str| Query {
        name,
        flowsql: sql.to_owned(),
        duckdb: sql.to_owned(),
    };
    let both = |name, sql: &dyn Fn(Literal) -> String| Query {
        name,
        flowsql: sql(&df),
        duckdb: sql(&dd),
    };
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

struct Measure {
    seconds: f64,
    peak_rss_kib: i64,
    rows: usize,
}

/// Runs a command to completion: wall time, its peak RSS (wait4), rows in the CSV it wrote.
fn measure(command: &mut Command, csv: &Path) -> Result<Measure, String> {
    let _ = std::fs::remove_file(csv);
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{command:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let stderr = child.stderr;
    // SAFETY: waiting for our own child, once.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut text = String::new();
        if let Some(mut err) = stderr {
            use std::io::Read;
            let _ = err.read_to_string(&mut text);
        }
        return Err(format!("{command:?} failed: {text}"));
    }
    let out = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    Ok(Measure {
        seconds,
        peak_rss_kib: usage.ru_maxrss,
        rows: out.lines().count().saturating_sub(1),
    })
}

fn flowsql(store: &Path, sql: &str, csv: &Path) -> Command {
    let mut command = Command::new(flow_benches::sibling("flowsql"));
    command
        .arg("--store")
        .arg(store)
        .args(["--format", "csv", "--output"])
        .arg(csv)
        .arg(sql);
    command
}

fn duckdb(store: &Path, sql: &str, csv: &Path, threads: usize) -> Command {
    let script = format!(
        "SET threads = {threads}; \
         CREATE VIEW flows AS SELECT * EXCLUDE (date, hour) FROM \
           read_parquet('{}/flows/**/*.parquet', hive_partitioning = true); \
         COPY ({sql}) TO '{}' (HEADER, DELIMITER ',');",
        store.display(),
        csv.display()
    );
    let mut command = Command::new("duckdb");
    command.args([":memory:", "-c", &script]);
    command
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn compare(args: &Args, store: &Path, queries: &[Query]) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let csv = args.dir.join("out.csv");
    println!(
        "{:<30} {:>10} {:>10} {:>7} {:>10} {:>10} {:>12}",
        "query", "flowsql s", "duckdb s", "ratio", "rows fsql", "rows duck", "fsql RSS MiB"
    );
    for (i, query) in queries.iter().enumerate() {
        if args
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&(i + 1)))
        {
            continue;
        }
        let run_flowsql = || measure(&mut flowsql(store, &query.flowsql, &csv), &csv);
        let run_duckdb = || measure(&mut duckdb(store, &query.duckdb, &csv, threads), &csv);
        run_flowsql()?;
        run_duckdb()?;
        let (mut fs, mut dd, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let (mut rows_f, mut rows_d) = (0, 0);
        for _ in 0..args.runs.max(1) {
            let f = run_flowsql()?;
            let d = run_duckdb()?;
            fs.push(f.seconds);
            dd.push(d.seconds);
            rss.push(f.peak_rss_kib as f64 / 1024.0);
            (rows_f, rows_d) = (f.rows, d.rows);
        }
        let (f, d) = (median(&mut fs), median(&mut dd));
        println!(
            "{:<30} {:>10.3} {:>10.3} {:>7.2} {:>10} {:>10} {:>12.0}{}",
            query.name,
            f,
            d,
            f / d,
            rows_f,
            rows_d,
            median(&mut rss),
            if rows_f == rows_d {
                ""
            } else {
                "  ROW COUNTS DIFFER"
            }
        );
    }
    Ok(())
}

/// The 5-minute window over 1 day and over 30 days of the same hourly density, with what
/// flowsql opened (EXPLAIN ANALYZE metrics).
fn scaling(args: &Args) -> Result<(), String> {
    let short = dataset(&args.dir, args.per_hour * 24, 24)?;
    let long = dataset(&args.dir, args.per_hour * 24 * 30, 24 * 30)?;
    let window = suite(24).remove(3);
    let mut medians = Vec::new();
    for (name, store) in [("1 day", &short), ("30 days", &long)] {
        let csv = args.dir.join("out.csv");
        measure(&mut flowsql(store, &window.flowsql, &csv), &csv)?;
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let m = measure(&mut flowsql(store, &window.flowsql, &csv), &csv)?;
            times.push(m.seconds);
            rows = m.rows;
        }
        let median = median(&mut times);
        medians.push(median);
        let explain = Command::new(flow_benches::sibling("flowsql"))
            .arg("--store")
            .arg(store)
            .args(["--format", "csv"])
            .arg(format!("EXPLAIN ANALYZE {}", window.flowsql))
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&explain.stdout);
        // `key=value` as EXPLAIN ANALYZE prints it (`bytes_scanned=278.8 K`), every occurrence.
        let metric = |key: &str| -> Vec<String> {
            text.match_indices(key)
                .map(|(at, _)| {
                    let rest = &text[at..];
                    let end = rest.find([',', ']']).unwrap_or(rest.len());
                    rest[..end].trim().to_owned()
                })
                .collect()
        };
        println!(
            "{name:<8} median {median:.3} s, {rows} rows; {} {} {}",
            metric("bytes_scanned=").join(" "),
            metric("files_ranges_pruned_statistics=").join(" "),
            metric("row_groups_pruned_statistics=").join(" "),
        );
    }
    println!("30-day / 1-day: {:.2}", medians[1] / medians[0]);
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("query-bench: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("query-bench: {}: {e}", args.dir.display());
        return ExitCode::FAILURE;
    }
    let result = if args.scaling {
        scaling(&args)
    } else {
        dataset(&args.dir, args.flows, args.hours)
            .and_then(|store| compare(&args, &store, &suite(args.hours)))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("query-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
