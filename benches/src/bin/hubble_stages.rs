//! `hubble-stages`: the CPU of each stage a live Hubble flow goes through in `flowrec run`,
//! measured one stage at a time on one thread, without the network or the disk.
//!
//! `make bench-hubble` measures the whole recorder (receiving, decoding, the spool, shipping),
//! but its CPU moves by a third with the machine's mood, so a change worth 5% cannot be seen
//! there. This runs the same code on the same generated events (`test-hubble-server
//! --generate`), stage by stage, several times, and prints the best and the median CPU-seconds
//! per 1M flows of each:
//!
//! 1. decode: the received `GetFlowsResponse` bytes into the columns
//!    (`HubbleDecoder::decode_responses`, batches of `BATCH_EVENTS` as the source reads them);
//! 2. spool write: each batch as a spool record (Arrow IPC in LZ4 blocks, `spool::record`);
//! 3. spool read: each record back into rows of this version's schema, as the merge loads
//!    them;
//! 4. Parquet: the rows encoded as one store file (`parquet_file::FileEncoder`, zstd, bloom
//!    filters, statistics).
//!
//! What the recorder does beyond these (receiving: the socket, HTTP/2 and gRPC framing; fsync;
//! the merge's bookkeeping; threads handing over) is the difference with `make bench-hubble`.
//!
//! ```text
//! hubble-stages [--flows N] [--runs R]      (defaults: 1000000, 5)
//! ```

use std::time::Duration;

use flow_benches::measure;
use flow_schema::hubble::HubbleDecoder;
use flow_schema::{CaptureSource, Table};
use flowrec::parquet_file::{FileEncoder, Provenance};
use flowrec::spool::record;
use prost::Message;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events the live source decodes at once.
const BATCH: usize = flowrec::source::hubble::BATCH_EVENTS;

fn usage(problem: &str) -> ! {
    eprintln!("hubble-stages: {problem}\nusage: hubble-stages [--flows N] [--runs R]");
    std::process::exit(2)
}

/// Runs `stage` and returns its result with the thread's CPU time it took.
fn timed<T>(stage: impl FnOnce() -> T) -> (T, Duration) {
    let start = measure::thread_cpu();
    let out = stage();
    (out, measure::thread_cpu() - start)
}

/// CPU-seconds of each stage over all events, the events going through the stages one batch
/// at a time as in the recorder (so memory is reused as there, not faulted in anew), and the
/// spool's and the file's bytes.
fn run_once(events: &[Vec<u8>]) -> ([Duration; 4], usize, usize) {
    let decoder = HubbleDecoder::new(CaptureSource::Hubble, Some("bench-node".into()));
    let provenance = Provenance {
        node: "bench-node".into(),
        source: "hubble",
    };
    let mut file = FileEncoder::streaming(Table::Flows, 1 << 30, &provenance).expect("encoder");
    let mut cpu = [Duration::ZERO; 4];
    let mut spool_bytes = 0;
    for chunk in events.chunks(BATCH) {
        let (decoded, t) =
            timed(|| decoder.decode_responses(chunk.iter().map(Vec::as_slice), |_, _| true));
        assert!(decoded.errors.is_empty(), "generated events decode");
        cpu[0] += t;
        let (record, t) =
            timed(|| record::encode(Table::Flows, &decoded.flows).expect("a record encodes"));
        cpu[1] += t;
        drop(decoded);
        spool_bytes += record.len();
        let ((_, rows), t) = timed(|| record::decode_batch(&record, 0).expect("a record decodes"));
        cpu[2] += t;
        let ((), t) = timed(|| file.write(rows).expect("rows encode"));
        cpu[3] += t;
    }
    let (encoded, t) = timed(|| file.finish().expect("a file"));
    cpu[3] += t;
    (cpu, spool_bytes, encoded.bytes.len())
}

fn main() {
    // The recorder's allocator settings for `run`: without them, fresh pages zeroed for every
    // batch were a third of the time measured.
    flowrec::allocator::no_transparent_huge_pages();
    flowrec::allocator::purge_delay(flowrec::allocator::Purge::AfterMs(1000));
    let (mut flows, mut runs) = (1_000_000u64, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match arg.as_str() {
            "--flows" => flows = number("--flows").max(1),
            "--runs" => runs = number("--runs").max(1) as usize,
            "-h" | "--help" => {
                println!(
                    "hubble-stages: CPU-seconds per 1M flows of each stage of a live Hubble flow \
                     (decode, spool write, spool read, Parquet), one thread\n\
                     usage: hubble-stages [--flows N] [--runs R]   (defaults: 1000000, 5)\n\
                     example: hubble-stages --flows 300000 --runs 3"
                );
                return;
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    eprintln!("hubble-stages: generating {flows} events");
    let events: Vec<Vec<u8>> = flow_benches::hubble::generated(flows)
        .iter()
        .map(Message::encode_to_vec)
        .collect();
    let wire_bytes: usize = events.iter().map(Vec::len).sum();

    let names = ["decode", "spool write", "spool read", "Parquet"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut sizes = (0, 0);
    for run in 1..=runs {
        let (cpu, spool_bytes, file_bytes) = run_once(&events);
        sizes = (spool_bytes, file_bytes);
        for (stage, t) in cpu.iter().enumerate() {
            times[stage].push(t.as_secs_f64() * 1e6 / flows as f64);
        }
        eprintln!("hubble-stages: run {run}/{runs} done");
    }
    let per_flow = |bytes: usize| bytes as f64 / flows as f64;
    println!(
        "flows {flows}: {:.0} wire bytes/flow, {:.0} spool bytes/flow, {:.1} Parquet bytes/flow",
        per_flow(wire_bytes),
        per_flow(sizes.0),
        per_flow(sizes.1)
    );
    println!("CPU-seconds per 1M flows, one thread, {runs} runs:");
    println!("{:<12} {:>6} {:>7}", "stage", "best", "median");
    let (mut best_sum, mut median_sum) = (0.0, 0.0);
    for (name, mut t) in names.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        let (best, median) = (t[0], t[t.len() / 2]);
        best_sum += best;
        median_sum += median;
        println!("{name:<12} {best:>6.2} {median:>7.2}");
    }
    println!("{:<12} {best_sum:>6.2} {median_sum:>7.2}", "sum");
}
