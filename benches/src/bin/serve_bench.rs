//! `serve-bench`: `flowsql serve` over the bench-query store (10M flows over 24 h), measured
//! from a gRPC client as the hubble CLI asks: time to the first flow and flows/s streamed for
//! a 5-minute window, a filtered 24-hour scan (`--verdict DROPPED`) and `--all`; the server's
//! peak RSS; and `flowsql replay -o jsonpb` of the same filtered scan, side by side.
//!
//! ```text
//! make bench-query   # builds the store once (target/bench-data/store-10000000-24h)
//! target/release/serve-bench [--store target/bench-data/store-10000000-24h] [--runs 3]
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use flow_benches::measure;
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::observer_client::ObserverClient;
use hubble_api::observer::GetFlowsRequest;

fn at(rfc3339: &str) -> Option<pbjson_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("a valid time");
    Some(pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

/// Peak RSS (VmHWM) of a process, in MiB.
fn peak_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Starts a new peak (VmHWM) for the process: each request's peak is its own, not the
/// statistics query's at start.
fn reset_peak(pid: u32) {
    if std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_err() {
        eprintln!("serve-bench: cannot reset the peak RSS (root needed): peaks are cumulative");
    }
}

fn main() {
    let mut store = PathBuf::from("target/bench-data/store-10000000-24h");
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => store = PathBuf::from(args.next().expect("--store PATH")),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            other => {
                eprintln!("serve-bench: unknown argument {other}\nusage: serve-bench [--store PATH] [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let flowsql = std::env::current_exe().unwrap().with_file_name("flowsql");
    let mut server = Command::new(&flowsql)
        .args([
            "--store",
            store.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowsql (cargo build --release -p flowsql)");
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("flowsql serve printed its address")
            .unwrap();
        eprintln!("{line}");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dropped = hubble_api::observe_flags::build([("verdict", "DROPPED")]).unwrap();
    let cases = [
        (
            "5-minute window",
            GetFlowsRequest {
                since: at("2026-11-01T12:00:00Z"),
                until: at("2026-11-01T12:05:00Z"),
                ..Default::default()
            },
        ),
        (
            "24 h --verdict DROPPED",
            GetFlowsRequest {
                since: at("2026-11-01T00:00:00Z"),
                until: at("2026-11-02T00:00:00Z"),
                whitelist: dropped.allow.clone(),
                ..Default::default()
            },
        ),
        (
            "--all",
            GetFlowsRequest {
                number: u64::MAX,
                ..Default::default()
            },
        ),
    ];
    println!(
        "| request | flows | first flow | total | flows/s | server peak RSS |\n|---|---|---|---|---|---|"
    );
    for (name, request) in cases {
        reset_peak(server.id());
        let mut best: Option<(usize, f64, f64)> = None;
        for _ in 0..runs {
            let (count, first, total) = runtime.block_on(async {
                let mut client = ObserverClient::connect(format!("http://{address}"))
                    .await
                    .unwrap()
                    .max_decoding_message_size(64 << 20);
                let started = Instant::now();
                let mut stream = client
                    .get_flows(request.clone())
                    .await
                    .unwrap()
                    .into_inner();
                let (mut count, mut first) = (0usize, None);
                while let Some(response) = stream.message().await.unwrap() {
                    if let Some(ResponseTypes::Flow(_)) = response.response_types {
                        count += 1;
                        first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                    }
                }
                (count, first.unwrap_or(0.0), started.elapsed().as_secs_f64())
            });
            if best.is_none_or(|(_, _, t)| total < t) {
                best = Some((count, first, total));
            }
        }
        let (count, first, total) = best.unwrap();
        println!(
            "| {name} | {count} | {:.0} ms | {total:.2} s | {:.0} | {:.0} MiB |",
            first * 1000.0,
            count as f64 / total,
            peak_mib(server.id())
        );
    }

    let mut replay = Command::new(&flowsql);
    replay.args([
        "--store",
        store.to_str().unwrap(),
        "--since",
        "2026-11-01T00:00:00Z",
        "--until",
        "2026-11-02T00:00:00Z",
        "replay",
        "--verdict",
        "DROPPED",
        "-o",
        "jsonpb",
    ]);
    let mut times: Vec<f64> = (0..runs)
        .map(|_| measure::run(&mut replay).expect("flowsql replay").seconds)
        .collect();
    println!(
        "flowsql replay --verdict DROPPED -o jsonpb (same scan): {:.2} s (median of {runs})",
        measure::median(&mut times)
    );
    let _ = server.kill();
    let _ = server.wait();
}
