//! query-bench: flowsql vs DuckDB on the same Parquet files, over the forensic query suite.
//!
//!   cargo build --release -p flowrec -p flowsql -p flow-benches
//!   target/release/query-bench                      # 10M flows over 24 hourly partitions
//!   target/release/query-bench --scaling            # a 5-minute window: 1 day vs 30 days
//!   target/release/query-bench --cluster 2          # local vs a scheduler + 2 executors
//!
//! With `--cluster N` the same suite runs in one flowsql process and on a cluster of flowsql's
//! scheduler and N executors started on loopback (`flowsql scheduler`, `flowsql executor`, one
//! task at a time each), alternating; medians, their ratio, and both row counts.
//!
//! The dataset is generated once by `flowgen` (realistic cardinalities: hundreds of pods, tens
//! of namespaces, ~1% drops, ~10% L7) and written by `flowrec import` into a local store under
//! --dir (kept between runs). Each query runs as a whole process writing CSV, as a user would
//! run it: `flowsql --format csv --output F SQL` and the `duckdb` CLI (pip install duckdb-cli)
//! over `read_parquet('…/flows/**/*.parquet', hive_partitioning=true)` with threads = cores.
//! One warm-up each, then --runs rounds alternating the two; medians, their ratio, peak RSS of
//! flowsql, and both row counts (which must be equal).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use flow_benches::dataset::hourly_store as dataset;
use flow_benches::measure::{compare_engines, flowsql, median, query as measure};
use flow_benches::queries::{suite, Query};

struct Args {
    flows: u64,
    hours: u32,
    dir: PathBuf,
    runs: usize,
    only: Option<Vec<usize>>,
    scaling: bool,
    per_hour: u64,
    cluster: Option<usize>,
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
        cluster: None,
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
            "--cluster" => args.cluster = Some(number("--cluster", value()?)? as usize),
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
                            [--only 1,4,7] [--cluster EXECUTORS] | --scaling [--per-hour N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other} (--help)")),
        }
    }
    Ok(args)
}

fn compare(args: &Args, store: &Path, queries: &[Query]) -> Result<(), String> {
    let selected: Vec<&Query> = queries
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            args.only
                .as_ref()
                .is_none_or(|only| only.contains(&(i + 1)))
        })
        .map(|(_, q)| q)
        .collect();
    compare_engines(store, &selected, args.runs, &args.dir.join("out.csv"), true)?;
    Ok(())
}

/// Child processes killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A scheduler and `executors` executors on loopback; its `df://` URL.
fn start_cluster(executors: usize, dir: &Path) -> Result<(Children, String), String> {
    let flowsql = flow_benches::sibling("flowsql");
    let log = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map(Stdio::from)
            .map_err(|e| e.to_string())
    };
    let port = free_port()?;
    let bind = format!("127.0.0.1:{port}");
    let mut children = Children(Vec::new());
    let spawn = |args: &[&str], name: &str| {
        Command::new(&flowsql)
            .args(args)
            .env("FLOWSQL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log(name)?)
            .spawn()
            .map_err(|e| e.to_string())
    };
    children
        .0
        .push(spawn(&["scheduler", "--bind", &bind], "scheduler.log")?);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..executors {
        let (flight, grpc) = (free_port()?.to_string(), free_port()?.to_string());
        children.0.push(spawn(
            &[
                "executor",
                "--scheduler",
                &bind,
                "--flight-port",
                &flight,
                "--grpc-port",
                &grpc,
                "--concurrent-tasks",
                "1",
            ],
            &format!("executor-{i}.log"),
        )?);
    }
    // Registered at their first heartbeat.
    std::thread::sleep(Duration::from_secs(2));
    Ok((children, format!("df://{bind}")))
}

/// The suite in one process and on a cluster of `executors`, alternating.
fn cluster(args: &Args, executors: usize, store: &Path, queries: &[Query]) -> Result<(), String> {
    let (_cluster, url) = start_cluster(executors, &args.dir)?;
    let csv = args.dir.join("out.csv");
    let on = |cluster: bool, sql: &str| {
        let mut command = flowsql(store, sql, &csv);
        if cluster {
            command.args(["--cluster", &url]);
        }
        measure(&mut command, &csv)
    };
    println!(
        "{:<30} {:>9} {:>9} {:>7} {:>10} {:>10}",
        "query (median s)", "local", "cluster", "ratio", "rows", "cluster rows"
    );
    for query in queries {
        on(false, &query.flowsql)?;
        on(true, &query.flowsql)?;
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        let (mut rows, mut remote_rows) = (0, 0);
        for _ in 0..args.runs.max(1) {
            let m = on(false, &query.flowsql)?;
            local.push(m.seconds);
            rows = m.rows;
            let m = on(true, &query.flowsql)?;
            remote.push(m.seconds);
            remote_rows = m.rows;
        }
        let (local, remote) = (median(&mut local), median(&mut remote));
        println!(
            "{:<30} {local:>9.3} {remote:>9.3} {:>7.2} {rows:>10} {remote_rows:>10}",
            query.name,
            remote / local
        );
        if rows != remote_rows {
            return Err(format!(
                "{}: {rows} rows locally, {remote_rows} on the cluster",
                query.name
            ));
        }
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
    } else if let Some(executors) = args.cluster {
        dataset(&args.dir, args.flows, args.hours)
            .and_then(|store| cluster(&args, executors, &store, &suite(args.hours)))
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
