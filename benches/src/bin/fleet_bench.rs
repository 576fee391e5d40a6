//! fleet-bench: what a fleet-shaped store costs before and after `flowstore compact`, and what
//! compaction costs, against DuckDB on the same files.
//!
//!   cargo build --release -p flowrec -p flowsql -p flow-benches
//!   target/release/fleet-bench                  # 10M flows, 24 h, 50 nodes x a file per 5 min
//!   target/release/fleet-bench --rollup-month   # 30-day regressions answered from rollups
//!   target/release/fleet-bench --newest-hour    # one hour not compacted yet: 600 small files
//!                                               # against the same rows in one file
//!
//! Datasets are generated once under --dir: the flows of `query-bench` (flowgen | flowrec
//! import, a few files per hour), then split as `--nodes` recorders would write them (a file
//! per node per 5 minutes: 14,400 files for 50 nodes over 24 h). Every query runs as a whole
//! process writing CSV (one warm-up, then --runs rounds, medians), as in query-bench.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use flow_benches::dataset::{copy_store, fleet_store, hourly_store};
use flow_benches::measure::{self, compare_engines, median, Timing};
use flow_benches::queries::{at, hour_window, suite, Query};

struct Args {
    flows: u64,
    hours: u32,
    nodes: u32,
    dir: PathBuf,
    runs: usize,
    rollup_month: bool,
    newest_hour: bool,
    per_hour: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        flows: 10_000_000,
        hours: 24,
        nodes: 50,
        dir: PathBuf::from("target/bench-data"),
        runs: 5,
        rollup_month: false,
        newest_hour: false,
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
            "--nodes" => args.nodes = number("--nodes", value()?)? as u32,
            "--dir" => args.dir = PathBuf::from(value()?),
            "--runs" => args.runs = number("--runs", value()?)? as usize,
            "--per-hour" => args.per_hour = number("--per-hour", value()?)?,
            "--rollup-month" => args.rollup_month = true,
            "--newest-hour" => args.newest_hour = true,
            "-h" | "--help" => {
                return Err(
                    "usage: fleet-bench [--flows N] [--hours H] [--nodes N] [--dir DIR] \
                            [--runs R] [--newest-hour] | --rollup-month [--per-hour N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other} (--help)")),
        }
    }
    Ok(args)
}

fn flowstore(store: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(flow_benches::sibling("flowstore"));
    command.arg("--store").arg(store).args(args);
    command
}

/// `flowsql regressions` as a query of the suite: the last hour against the hours before.
fn regressions(store: &Path, hours: u32, csv: &Path) -> Command {
    let t = |h: u32| at(f64::from(h)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut command = Command::new(flow_benches::sibling("flowsql"));
    command
        .arg("--store")
        .arg(store)
        .args(["--format", "csv", "--output"])
        .arg(csv)
        .args([
            "regressions",
            "--baseline",
            &format!("{}..{}", t(0), t(hours - 1)),
            "--window",
            &format!("{}..{}", t(hours - 1), t(hours)),
        ]);
    command
}

fn time_regressions(
    store: &Path,
    hours: u32,
    runs: usize,
    csv: &Path,
) -> Result<(f64, usize), String> {
    measure::query(&mut regressions(store, hours, csv), csv)?;
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..runs.max(1) {
        let m = measure::query(&mut regressions(store, hours, csv), csv)?;
        times.push(m.seconds);
        rows = m.rows;
    }
    Ok((median(&mut times), rows))
}

/// The DuckDB side of compaction: every hour's files into one sorted zstd file.
fn duckdb_compaction(store: &Path, out: &Path) -> Result<(f64, u64), String> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let mut script = format!("SET threads = {};\n", measure::cores());
    let mut rows = 0u64;
    let flows = store.join("flows/v1");
    let mut days: Vec<_> = std::fs::read_dir(&flows)
        .map_err(|e| format!("{}: {e}", flows.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    days.sort();
    for day in days {
        let mut hours: Vec<_> = std::fs::read_dir(&day)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .collect();
        hours.sort();
        for hour in hours {
            let name = format!(
                "{}-{}",
                day.file_name().unwrap().to_string_lossy(),
                hour.file_name().unwrap().to_string_lossy()
            );
            script.push_str(&format!(
                "COPY (SELECT * FROM read_parquet('{}/*.parquet') ORDER BY time) TO '{}/{name}.parquet' (FORMAT parquet, COMPRESSION zstd);\n",
                hour.display(),
                out.display()
            ));
        }
    }
    let count = Command::new("duckdb")
        .args([":memory:", "-csv", "-noheader", "-c"])
        .arg(format!(
            "SELECT count(*) FROM read_parquet('{}/**/*.parquet')",
            flows.display()
        ))
        .output()
        .map_err(|e| format!("duckdb: {e}"))?;
    rows += String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("duckdb count: {e}"))?;
    let mut command = Command::new("duckdb");
    command.args([":memory:", "-c", &script]);
    let m = measure::run(&mut command)?;
    Ok((m.seconds, rows))
}

fn fleet(args: &Args) -> Result<(), String> {
    let hourly = hourly_store(&args.dir, args.flows, args.hours)?;
    let fleet = fleet_store(&hourly, &args.dir, args.nodes)?;
    let csv = args.dir.join("out.csv");
    let mut queries: Vec<Query> = suite(args.hours);
    queries.extend(hour_window(args.hours / 2));
    let queries: Vec<&Query> = queries.iter().collect();

    println!(
        "\n== one file per hour-ish (flowrec import): {}",
        hourly.display()
    );
    let reference = compare_engines(&hourly, &queries, args.runs, &csv, true)?;
    let reference_regressions = time_regressions(&hourly, args.hours, args.runs, &csv)?;
    println!(
        "regressions 24h: {:.3} s, {} rows",
        reference_regressions.0, reference_regressions.1
    );

    // DuckDB lists every one of the 14,400 files for every query (19 s for the hour of dropped
    // rows, measured once): the before-compaction table compares flowsql with itself.
    println!(
        "\n== fleet-shaped, before compaction (flowsql only): {}",
        fleet.display()
    );
    let before = compare_engines(&fleet, &queries, args.runs, &csv, false)?;
    let before_regressions = time_regressions(&fleet, args.hours, args.runs, &csv)?;
    println!(
        "regressions 24h: {:.3} s, {} rows",
        before_regressions.0, before_regressions.1
    );

    println!("\n== compaction");
    let work = args.dir.join("fleet-compacted");
    copy_store(&fleet, &work)?;
    let compaction = measure::run(&mut flowstore(
        &work,
        &["compact", "--settle", "0s", "--grace", "0s"],
    ))?;
    let (duck_seconds, rows) = duckdb_compaction(&fleet, &args.dir.join("duckdb-compacted"))?;
    println!(
        "flowstore compact: {:.1} s, {:.0} flows/s, peak RSS {:.0} MiB (merge + commit + rollup + deletion of the inputs)",
        compaction.seconds,
        rows as f64 / compaction.seconds,
        compaction.rss_mib()
    );
    println!(
        "DuckDB COPY (SELECT * FROM read_parquet(<hour>) ORDER BY time) TO ... (COMPRESSION zstd), per hour: {:.1} s, {:.0} flows/s",
        duck_seconds,
        rows as f64 / duck_seconds
    );
    println!(
        "flowstore/DuckDB flows/s: {:.2}",
        duck_seconds / compaction.seconds
    );

    println!("\n== fleet-shaped, after compaction: {}", work.display());
    let after = compare_engines(&work, &queries, args.runs, &csv, true)?;
    let after_regressions = time_regressions(&work, args.hours, args.runs, &csv)?;
    println!(
        "regressions 24h: {:.3} s, {} rows",
        after_regressions.0, after_regressions.1
    );

    println!("\n== summary (flowsql medians, s)");
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "query", "hourly", "before", "after", "after/hourly", "after/duckdb"
    );
    let line = |name: &str, r: &Timing, b: &Timing, a: &Timing| {
        println!(
            "{name:<30} {:>10.3} {:>10.3} {:>10.3} {:>12.2} {:>14}",
            r.flowsql,
            b.flowsql,
            a.flowsql,
            a.flowsql / r.flowsql,
            a.duckdb
                .map(|d| format!("{:.2}", a.flowsql / d))
                .unwrap_or_else(|| "-".into())
        );
    };
    for (i, query) in queries.iter().enumerate() {
        line(query.name, &reference[i], &before[i], &after[i]);
    }
    println!(
        "{:<30} {:>10.3} {:>10.3} {:>10.3} {:>12.2} {:>14}",
        "regressions 24h",
        reference_regressions.0,
        before_regressions.0,
        after_regressions.0,
        after_regressions.0 / reference_regressions.0,
        "-"
    );
    Ok(())
}

/// The hour a query meets before compaction: the middle hour of the fleet store alone (its
/// one file per node per 5 minutes), against the same hour compacted into one file; flowsql
/// and DuckDB over each (DuckDB's glob then lists only that hour).
fn newest_hour(args: &Args) -> Result<(), String> {
    let hourly = hourly_store(&args.dir, args.flows, args.hours)?;
    let fleet = fleet_store(&hourly, &args.dir, args.nodes)?;
    let hour = args.hours / 2;
    let folder = at(f64::from(hour))
        .format("flows/v1/date=%Y-%m-%d/hour=%H")
        .to_string();
    let small = args.dir.join("newest-hour-small");
    let one = args.dir.join("newest-hour-one-file");
    for store in [&small, &one] {
        let to = store.join(&folder);
        std::fs::create_dir_all(to.parent().expect("an hour has a day"))
            .map_err(|e| e.to_string())?;
        copy_store(&fleet.join(&folder), &to)?;
    }
    measure::run(&mut flowstore(
        &one,
        &["compact", "--settle", "0s", "--grace", "0s"],
    ))?;
    let files = |store: &Path| {
        std::fs::read_dir(store.join(&folder))
            .map(|dir| {
                dir.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    let csv = args.dir.join("out.csv");
    let queries = hour_window(hour);
    let queries: Vec<&Query> = queries.iter().collect();
    println!(
        "\n== one hour, {} small files: {}",
        files(&small),
        small.display()
    );
    let before = compare_engines(&small, &queries, args.runs, &csv, true)?;
    println!(
        "\n== the same hour, {} file(s): {}",
        files(&one),
        one.display()
    );
    let after = compare_engines(&one, &queries, args.runs, &csv, true)?;
    println!("\n== small files / one file (flowsql; target <= 3)");
    for (i, query) in queries.iter().enumerate() {
        println!(
            "{:<30} {:>8.2}   (DuckDB {})",
            query.name,
            before[i].flowsql / after[i].flowsql,
            match (before[i].duckdb, after[i].duckdb) {
                (Some(b), Some(a)) => format!("{:.2}", b / a),
                _ => "-".into(),
            }
        );
    }
    Ok(())
}

/// A month at `per_hour` flows an hour, compacted and rolled up; then `regressions
/// --baseline 30d --window 1h` as a user runs it.
fn rollup_month(args: &Args) -> Result<(), String> {
    let hours = 24 * 31;
    let hourly = hourly_store(&args.dir, args.per_hour * u64::from(hours), hours)?;
    let work = args.dir.join(format!("month-compacted-{}", args.per_hour));
    let done = work.join(".compacted");
    if !done.exists() {
        copy_store(&hourly, &work)?;
        let m = measure::run(&mut flowstore(
            &work,
            &["compact", "--settle", "0s", "--grace", "0s"],
        ))?;
        println!(
            "compacted {hours} hours in {:.1} s (peak RSS {:.0} MiB)",
            m.seconds,
            m.rss_mib()
        );
        std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    }
    let csv = args.dir.join("out.csv");
    let t = |h: u32| at(f64::from(h)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let window = format!("{}..{}", t(hours - 1), t(hours));
    for (name, store) in [("raw (not compacted)", &hourly), ("rollups", &work)] {
        let run = || {
            let mut command = Command::new(flow_benches::sibling("flowsql"));
            command
                .arg("--store")
                .arg(store)
                .args(["--format", "csv", "--output"])
                .arg(&csv)
                .args(["regressions", "--baseline", "30d", "--window", &window]);
            measure::query(&mut command, &csv)
        };
        run()?;
        let mut times = Vec::new();
        let mut rss = Vec::new();
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let m = run()?;
            times.push(m.seconds);
            rss.push(m.rss_mib());
            rows = m.rows;
        }
        println!(
            "regressions --baseline 30d --window 1h, {name}: median {:.3} s, {rows} rows, peak RSS {:.0} MiB",
            median(&mut times),
            median(&mut rss)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("fleet-bench: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("fleet-bench: {}: {e}", args.dir.display());
        return ExitCode::FAILURE;
    }
    let result = if args.rollup_month {
        rollup_month(&args)
    } else if args.newest_hour {
        newest_hour(&args)
    } else {
        fleet(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fleet-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
