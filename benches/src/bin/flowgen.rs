//! flowgen: writes realistic Hubble JSON flows (jsonpb envelope) for benchmarks and demos.
//!
//!   cargo run --release -p flow-benches --bin flowgen -- --flows 1000000 --out flows.json
//!   ... --hours 24 --start 2026-11-01T00:00:00Z --pods 400 --seed 7

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use chrono::{DateTime, Utc};

struct Args {
    flows: u64,
    out: Option<String>,
    hours: u32,
    pods: usize,
    seed: u64,
    start: DateTime<Utc>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        flows: 1_000_000,
        out: None,
        hours: 1,
        pods: 400,
        seed: 7,
        start: "2026-11-01T00:00:00Z".parse().expect("valid"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--flows" => args.flows = value()?.parse().map_err(|e| format!("--flows: {e}"))?,
            "--out" => args.out = Some(value()?),
            "--hours" => args.hours = value()?.parse().map_err(|e| format!("--hours: {e}"))?,
            "--pods" => args.pods = value()?.parse().map_err(|e| format!("--pods: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--start" => args.start = value()?.parse().map_err(|e| format!("--start: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: flowgen [--flows N] [--out FILE] [--hours H] [--pods P] [--seed S] [--start RFC3339]".into())
            }
            other => return Err(format!("unknown flag {other} (--help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("flowgen: {message}");
            return ExitCode::from(2);
        }
    };
    let result = match &args.out {
        Some(path) => std::fs::File::create(path).and_then(|file| {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            flow_benches::generate(
                &mut out, args.flows, args.pods, args.start, args.hours, args.seed,
            )?;
            out.flush()
        }),
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            flow_benches::generate(
                &mut out, args.flows, args.pods, args.start, args.hours, args.seed,
            )
            .and_then(|_| out.flush())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flowgen: {error}");
            ExitCode::FAILURE
        }
    }
}
