//! `serve-bench`: `flowsql serve` over the bench-query store (10M flows over 24 h), measured
//! from a gRPC client as the hubble CLI asks: time to the first flow and flows/s streamed for
//! a 5-minute window, a filtered 24-hour scan (`--verdict DROPPED`) and `--all`, the last both
//! as `-o jsonpb` asks (whole flows) and as `hubble observe --all`'s default compact output
//! asks (the CLI's default field mask: the server reads only the columns it keeps); the server's
//! peak RSS and CPU, the client's CPU; and `flowsql replay -o jsonpb` of the same filtered
//! scan, side by side.
//!
//! Two clients, on the same 2 cores as the server: one that decodes every response into
//! prost's message tree (what the hubble CLI does, in Go), and one that takes each response
//! as bytes and only reads its kind (a relay, a recorder: `hubble_api::encoded`). The first
//! measures the pair; the second the server's streaming rate. What the decoding costs the
//! client is measured apart (its decode alone, on its thread's CPU clock): the pair's rate
//! cannot pass 2 cores over the server's and the client's CPU per flow added up.
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
use hubble_api::field_mask::CLI_DEFAULT_MASK;
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

/// User + system CPU-seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 are at 11 and 12 counting from field 3.
    (ticks(11) + ticks(12)) / 100.0
}

async fn connect(address: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Streams one request; returns the flows, the time to the first and the total time.
async fn stream(address: &str, request: GetFlowsRequest, decode: bool) -> (usize, f64, f64) {
    let channel = connect(address).await;
    let started = Instant::now();
    let (mut count, mut first) = (0usize, None);
    if decode {
        let mut client = ObserverClient::new(channel).max_decoding_message_size(64 << 20);
        let mut stream = client.get_flows(request).await.unwrap().into_inner();
        while let Some(response) = stream.message().await.unwrap() {
            if let Some(ResponseTypes::Flow(_)) = response.response_types {
                count += 1;
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
        }
    } else {
        let mut stream = hubble_api::encoded::get_flows(channel, request, 64 << 20)
            .await
            .unwrap();
        while let Some(response) = stream.message().await.unwrap() {
            // Field 1 (flow), length-delimited: the response holds a flow.
            if response.first() == Some(&0x0a) {
                count += 1;
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
        }
    }
    (count, first.unwrap_or(0.0), started.elapsed().as_secs_f64())
}

/// What decoding costs the client: streams a request as bytes and decodes each response into
/// prost's message tree apart, timing only the decode on the thread's CPU clock. Returns the
/// flows and the decode's CPU-seconds. A client that decodes one stream on one task cannot go
/// faster than one flow per that much CPU, whatever the server does; on these 2 cores it also
/// takes that CPU from the server.
async fn client_decode_cost(address: &str, request: GetFlowsRequest) -> (usize, f64) {
    use prost::Message;
    let channel = connect(address).await;
    let mut stream = hubble_api::encoded::get_flows(channel, request, 64 << 20)
        .await
        .unwrap();
    let (mut flows, mut cpu) = (0usize, 0.0);
    // Decoded a thousand at a time: reading the thread's CPU clock is a system call.
    let mut batch = Vec::with_capacity(1000);
    let mut decode = |batch: &mut Vec<prost::bytes::Bytes>| {
        let before = measure::thread_cpu();
        for response in batch.drain(..) {
            let decoded = hubble_api::observer::GetFlowsResponse::decode(response).unwrap();
            flows += usize::from(matches!(
                decoded.response_types,
                Some(ResponseTypes::Flow(_))
            ));
        }
        cpu += (measure::thread_cpu() - before).as_secs_f64();
    };
    while let Some(response) = stream.message().await.unwrap() {
        batch.push(response);
        if batch.len() == batch.capacity() {
            decode(&mut batch);
        }
    }
    decode(&mut batch);
    (flows, cpu)
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
            "--all -o jsonpb",
            GetFlowsRequest {
                number: u64::MAX,
                ..Default::default()
            },
        ),
        (
            "--all (compact: default mask)",
            GetFlowsRequest {
                number: u64::MAX,
                field_mask: Some(pbjson_types::FieldMask {
                    paths: CLI_DEFAULT_MASK.map(str::to_owned).to_vec(),
                }),
                ..Default::default()
            },
        ),
    ];
    println!(
        "| request | client | flows | first flow | total | flows/s | server CPU | client CPU | server peak RSS |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (name, request) in &cases {
        reset_peak(server.id());
        for decode in [true, false] {
            let mut best: Option<(usize, f64, f64, f64, f64)> = None;
            for _ in 0..runs {
                let cpu_before = cpu_seconds(server.id());
                let client_before = cpu_seconds(std::process::id());
                let (count, first, total) =
                    runtime.block_on(stream(&address, request.clone(), decode));
                let cpu = cpu_seconds(server.id()) - cpu_before;
                let client = cpu_seconds(std::process::id()) - client_before;
                if best.is_none_or(|(_, _, t, _, _)| total < t) {
                    best = Some((count, first, total, cpu, client));
                }
            }
            let (count, first, total, cpu, client) = best.unwrap();
            println!(
                "| {name} | {} | {count} | {:.0} ms | {total:.2} s | {:.0} | {cpu:.2} s | {client:.2} s | {:.0} MiB |",
                if decode { "prost (decodes)" } else { "bytes" },
                first * 1000.0,
                count as f64 / total,
                peak_mib(server.id())
            );
        }
    }

    for (name, request) in &cases[2..] {
        let (flows, cpu) = runtime.block_on(client_decode_cost(&address, request.clone()));
        println!(
            "client's prost decode alone, {name}: {:.2} CPU-us per flow ({:.0} flows/s on a \
             core of its own, before receiving them)",
            cpu / flows as f64 * 1e6,
            flows as f64 / cpu
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
