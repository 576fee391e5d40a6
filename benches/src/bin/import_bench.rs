//! import-bench: flowrec import vs DuckDB on the same Hubble JSON file, side by side.
//!
//!   cargo build --release -p flowrec -p flow-benches
//!   target/release/import-bench --flows 1000000
//!
//! Generates the file once (cached in --dir), then times, as whole processes:
//! - `flowrec import FILE --store DIR/flowrec-store`
//! - DuckDB: `COPY (SELECT * FROM read_json(FILE)) TO DIR/duckdb.parquet (FORMAT parquet,
//!   COMPRESSION zstd)` through the `duckdb` CLI (pip install duckdb-cli) or python's duckdb.
//!
//! It prints flows/s, bytes/flow, CPU seconds and peak RSS for each, best of --runs (the run
//! with the shortest wall time, and its CPU and memory).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use flow_benches::measure::{self, Measure};

struct Args {
    flows: u64,
    dir: PathBuf,
    runs: u32,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        flows: 1_000_000,
        dir: PathBuf::from("target/bench-data"),
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--flows" => args.flows = value()?.parse().map_err(|e| format!("--flows: {e}"))?,
            "--dir" => args.dir = PathBuf::from(value()?),
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: import-bench [--flows N] [--dir DIR] [--runs R]".into())
            }
            other => return Err(format!("unknown flag {other} (--help)")),
        }
    }
    Ok(args)
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn run(command: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn duckdb_command(sql: &str) -> Command {
    if Command::new("duckdb")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut command = Command::new("duckdb");
        command.args([":memory:", "-c", sql]);
        command
    } else {
        let mut command = Command::new("python3");
        command.args(["-c", &format!("import duckdb; duckdb.sql({sql:?})")]);
        command
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("import-bench: {message}");
            return ExitCode::from(2);
        }
    };
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("import-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let input = args.dir.join(format!("flows-{}.json", args.flows));
    if !input.exists() {
        eprintln!("generating {} flows into {}", args.flows, input.display());
        let tmp = input.with_extension("tmp");
        run(Command::new(flow_benches::sibling("flowgen"))
            .args(["--flows", &args.flows.to_string(), "--out"])
            .arg(&tmp))?;
        std::fs::rename(&tmp, &input).map_err(|e| e.to_string())?;
    }
    let input_bytes = std::fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let flowrec = flow_benches::sibling("flowrec");
    let store = args.dir.join("flowrec-store");
    let duck_out = args.dir.join("duckdb.parquet");
    let sql = format!(
        "COPY (SELECT * FROM read_json('{}', format='newline_delimited')) TO '{}' (FORMAT parquet, COMPRESSION zstd)",
        input.display(),
        duck_out.display()
    );
    let (mut ours, mut theirs): (Option<Measure>, Option<Measure>) = (None, None);
    let best = |kept: &mut Option<Measure>, new: Measure| {
        if kept.is_none_or(|kept| new.seconds < kept.seconds) {
            *kept = Some(new);
        }
    };
    for round in 0..args.runs {
        let _ = std::fs::remove_dir_all(&store);
        let _ = std::fs::remove_file(&duck_out);
        // Alternate who goes first so page-cache effects do not favour one side.
        let mut ours_cmd = Command::new(&flowrec);
        ours_cmd
            .args(["import", "--no-progress", "--node-name", "bench", "--store"])
            .arg(&store)
            .arg(&input);
        let mut theirs_cmd = duckdb_command(&sql);
        if round % 2 == 0 {
            best(&mut ours, measure::run(&mut ours_cmd)?);
            best(&mut theirs, measure::run(&mut theirs_cmd)?);
        } else {
            best(&mut theirs, measure::run(&mut theirs_cmd)?);
            best(&mut ours, measure::run(&mut ours_cmd)?);
        }
    }
    let (Some(ours), Some(theirs)) = (ours, theirs) else {
        return Err("--runs must be at least 1".into());
    };
    let ours_bytes = dir_bytes(&store);
    let theirs_bytes = std::fs::metadata(&duck_out).map(|m| m.len()).unwrap_or(0);
    let flows = args.flows as f64;
    println!(
        "input: {} flows, {:.1} MiB JSON ({:.0} B/flow); best of {} runs on {} cores",
        args.flows,
        input_bytes as f64 / 1048576.0,
        input_bytes as f64 / flows,
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<16} {:>10} {:>12} {:>12} {:>12} {:>10}",
        "", "seconds", "flows/s", "bytes/flow", "CPU seconds", "peak RSS"
    );
    for (name, m, bytes) in [
        ("flowrec import", &ours, ours_bytes),
        ("duckdb COPY", &theirs, theirs_bytes),
    ] {
        println!(
            "{:<16} {:>10.2} {:>12.0} {:>12.1} {:>12.2} {:>6.0} MiB",
            name,
            m.seconds,
            flows / m.seconds,
            bytes as f64 / flows,
            m.cpu_seconds,
            m.rss_mib()
        );
    }
    println!(
        "ratio: flowrec is {:.2}x DuckDB's flows/s (target >= 2); bytes/flow {:.2}x DuckDB's (target <= 1); peak RSS {:.0} MiB (target <= 300)",
        theirs.seconds / ours.seconds,
        ours_bytes as f64 / theirs_bytes.max(1) as f64,
        ours.rss_mib()
    );
    Ok(())
}
