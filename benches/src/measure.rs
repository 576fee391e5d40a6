//! Timing whole processes, as users run them: wall time, peak RSS, CPU time (wait4), and the
//! rows of the CSV a query wrote.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of a process.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    pub seconds: f64,
    pub peak_rss_kib: i64,
    /// User + system CPU of the process and the children it waited for.
    pub cpu_seconds: f64,
    /// Rows of the CSV it wrote (header excluded), when it wrote one.
    pub rows: usize,
}

impl Measure {
    pub fn rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Runs `command` to completion (stdout discarded); fails with its stderr if it fails.
///
/// Peak RSS is the child's own high-water mark (`VmHWM` of `/proc/<pid>/status`, read every
/// 5 ms until it exits): `wait4`'s `ru_maxrss` would count the memory of this process at the
/// fork, which is large once a benchmark has built a dataset in memory. Its CPU times are the
/// child's own, so they are taken from `wait4`.
pub fn run(command: &mut Command) -> Result<Measure, String> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "{} not found: install it (the duckdb CLI: `python3 -m pip install duckdb-cli`; \
                 the make bench targets do) or build the workspace in release",
                command.get_program().to_string_lossy()
            ),
            _ => format!("{command:?}: {e}"),
        })?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        use std::io::Read;
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(exited) = reap(child.id())? {
            break exited;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let text = reader.join().unwrap_or_default();
    let (status, cpu_seconds) = status;
    if !status.success() {
        return Err(format!("{command:?} failed: {text}"));
    }
    Ok(Measure {
        seconds,
        peak_rss_kib: peak_kib,
        cpu_seconds,
        rows: 0,
    })
}

/// The exit status and CPU seconds of child `pid` if it has exited (`wait4`, not blocking).
fn reap(pid: u32) -> Result<Option<(std::process::ExitStatus, f64)>, String> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: plain out-parameters; a zeroed rusage is a valid value of the struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut usage) };
    match reaped {
        0 => Ok(None),
        -1 => Err(format!("wait4: {}", std::io::Error::last_os_error())),
        _ => {
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
            Ok(Some((std::process::ExitStatus::from_raw(status), cpu)))
        }
    }
}

/// Runs a query command that writes `csv`; counts its rows.
pub fn query(command: &mut Command, csv: &Path) -> Result<Measure, String> {
    let _ = std::fs::remove_file(csv);
    let mut measure = run(command)?;
    let out = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    measure.rows = out.lines().count().saturating_sub(1);
    Ok(measure)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `flowsql --store STORE --format csv --output CSV SQL`.
pub fn flowsql(store: &Path, sql: &str, csv: &Path) -> Command {
    let mut command = Command::new(crate::sibling("flowsql"));
    command
        .arg("--store")
        .arg(store)
        .args(["--format", "csv", "--output"])
        .arg(csv)
        .arg(sql);
    command
}

/// The duckdb CLI over the store's `flows` folder (what a user of the files writes), with
/// `threads` threads, writing CSV.
pub fn duckdb(store: &Path, sql: &str, csv: &Path, threads: usize) -> Command {
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

/// Cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Medians of one query on one store.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub flowsql: f64,
    pub duckdb: Option<f64>,
    pub flowsql_rows: usize,
    pub duckdb_rows: Option<usize>,
    pub flowsql_rss_mib: f64,
}

/// Each query on `store`: one warm-up, then `runs` rounds alternating flowsql and (with
/// `with_duckdb`) DuckDB; medians, printed as a table as they come.
pub fn compare_engines(
    store: &Path,
    queries: &[&crate::queries::Query],
    runs: usize,
    csv: &Path,
    with_duckdb: bool,
) -> Result<Vec<Timing>, String> {
    let threads = cores();
    println!(
        "{:<30} {:>10} {:>10} {:>7} {:>10} {:>10} {:>12}",
        "query", "flowsql s", "duckdb s", "ratio", "rows fsql", "rows duck", "fsql RSS MiB"
    );
    let mut timings = Vec::new();
    for query in queries {
        let run_flowsql = || self::query(&mut flowsql(store, &query.flowsql, csv), csv);
        let run_duckdb = || self::query(&mut duckdb(store, &query.duckdb, csv, threads), csv);
        run_flowsql()?;
        if with_duckdb {
            run_duckdb()?;
        }
        let (mut fs, mut dd, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let (mut rows_f, mut rows_d) = (0, None);
        for _ in 0..runs.max(1) {
            let f = run_flowsql()?;
            fs.push(f.seconds);
            rss.push(f.rss_mib());
            rows_f = f.rows;
            if with_duckdb {
                let d = run_duckdb()?;
                dd.push(d.seconds);
                rows_d = Some(d.rows);
            }
        }
        let timing = Timing {
            flowsql: median(&mut fs),
            duckdb: (!dd.is_empty()).then(|| median(&mut dd)),
            flowsql_rows: rows_f,
            duckdb_rows: rows_d,
            flowsql_rss_mib: median(&mut rss),
        };
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<30} {:>10.3} {:>10} {:>7} {:>10} {:>10} {:>12.0}{}",
            query.name,
            timing.flowsql,
            or_dash(timing.duckdb.map(|d| format!("{d:.3}"))),
            or_dash(timing.duckdb.map(|d| format!("{:.2}", timing.flowsql / d))),
            rows_f,
            or_dash(rows_d.map(|r| r.to_string())),
            timing.flowsql_rss_mib,
            if rows_d.is_some_and(|d| d != rows_f) {
                "  ROW COUNTS DIFFER"
            } else {
                ""
            }
        );
        timings.push(timing);
    }
    Ok(timings)
}

/// CPU time of the calling thread (a stage measured inside a process, apart from its other
/// threads).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is supported on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
