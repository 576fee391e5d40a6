//! `flowrec run --source file --follow`: a Hubble exporter file rotated under the recorder,
//! the recorder killed at random moments, the S3 store cut off and frozen. The oracle is
//! always the same: every line written is in the store exactly once (unique flow uuids,
//! counted through flowsql).

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::*;

/// The exporter's file, written like Cilium's: one jsonpb envelope per line, renamed to a
/// timestamped backup when "full" (lumberjack), every other backup gzipped (and the plain one
/// removed).
struct Exporter {
    dir: PathBuf,
    written: u64,
    rotations: u64,
}

impl Exporter {
    fn new(dir: &Path) -> Exporter {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::File::create(dir.join("events.log")).unwrap();
        Exporter {
            dir: dir.to_path_buf(),
            written: 0,
            rotations: 0,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("events.log")
    }

    /// A flow with a unique uuid, one millisecond after the previous one.
    fn line(id: u64) -> String {
        let (seconds, millis) = (id / 1000, id % 1000);
        let time = format!(
            "2026-11-26T{:02}:{:02}:{:02}.{millis:03}000000Z",
            10 + seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
        format!(
            r#"{{"flow":{{"time":"{time}","uuid":"oracle-{id:09}","verdict":"FORWARDED","IP":{{"source":"10.0.1.{a}","destination":"10.0.2.{b}","ipVersion":"IPv4"}},"l4":{{"TCP":{{"source_port":{port},"destination_port":80,"flags":{{"SYN":true}}}}}},"source":{{"namespace":"shop","pod_name":"api-gateway-7d9f","labels":["k8s:app=api-gateway"]}},"destination":{{"namespace":"shop","pod_name":"user-service-5c4b","labels":["k8s:app=user-service"]}},"Type":"L3_L4","node_name":"oracle-node","event_type":{{"type":4}},"traffic_direction":"EGRESS","is_reply":false,"Summary":"TCP Flags: SYN"}},"node_name":"oracle-node","time":"{time}"}}"#,
            a = id % 250 + 1,
            b = id / 250 % 250 + 1,
            port = 10_000 + id % 50_000,
        )
    }

    fn write(&mut self, lines: u64) {
        let mut text = String::new();
        for _ in 0..lines {
            text.push_str(&Exporter::line(self.written));
            text.push('\n');
            self.written += 1;
        }
        self.append(text.as_bytes());
    }

    fn append(&self, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.path())
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn rotate(&mut self, gzip: bool) {
        self.rotations += 1;
        let backup = self.dir.join(format!(
            "events-2026-11-26T10-{:02}-{:02}.000.log",
            self.rotations / 60,
            self.rotations % 60
        ));
        std::fs::rename(self.path(), &backup).unwrap();
        std::fs::File::create(self.path()).unwrap();
        if gzip {
            let data = std::fs::read(&backup).unwrap();
            let mut gz = backup.as_os_str().to_owned();
            gz.push(".gz");
            let mut encoder = flate2::write::GzEncoder::new(
                std::fs::File::create(&gz).unwrap(),
                flate2::Compression::fast(),
            );
            encoder.write_all(&data).unwrap();
            encoder.finish().unwrap();
            std::fs::remove_file(&backup).unwrap();
        }
    }

    /// Writes `lines_per_tick` lines every 10 ms, rotating every `rotate_every` lines, until
    /// `stop`; gives the exporter back (with its count).
    fn spawn(
        mut self,
        lines_per_tick: u64,
        rotate_every: u64,
        stop: Arc<AtomicBool>,
    ) -> JoinHandle<Exporter> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                self.write(lines_per_tick);
                if self.written % rotate_every < lines_per_tick {
                    let gzip = self.rotations % 2 == 1;
                    self.rotate(gzip);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self
        })
    }
}

/// `flowrec run --source file --follow PATH`, with the options every test here uses.
fn file_recorder(
    follow: &Path,
    store: &str,
    spool: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> LiveRecorder {
    let follow = follow.display().to_string();
    let mut args = vec!["--source", "file", "--follow", &follow];
    args.extend_from_slice(extra);
    LiveRecorder::start(&args, store, spool, env)
}

/// Flows in the store, distinct uuids among them, and how many of them the generator wrote.
fn oracle_counts(store: &str, env: &[(&str, &str)]) -> (u64, u64) {
    let rows = query(
        store,
        "select count(*) as flows, count(distinct uuid) as ids from flows \
         where uuid like 'oracle-%'",
        env,
    );
    let number = |key: &str| rows[0][key].as_u64().unwrap();
    (number("flows"), number("ids"))
}

/// Rename + recreate and rename + gzip while the recorder follows; a malformed line is
/// reported with its file and line; a restart reads nothing twice (and logs JSON if asked).
#[test]
fn followed_file_rotations_lose_nothing_and_a_restart_repeats_nothing() {
    let (dir, store) = temp_store();
    let spool = dir.path().join("spool");
    let mut exporter = Exporter::new(&dir.path().join("hubble"));
    exporter.write(1500);
    let recorder = file_recorder(&exporter.path(), &store, &spool, &[], &[]);
    exporter.write(1500);
    exporter.rotate(false);
    exporter.write(1500);
    exporter.rotate(true);
    exporter.write(1000);
    exporter.append(b"{\"flow\": not json}\n");
    exporter.write(500);
    recorder.wait_until_read(6000, 1);
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    assert_eq!(
        summary_number(&output, " flows and 0 lost events recorded"),
        6000
    );
    assert!(
        output.contains(&format!("{}:1001: ", exporter.path().display())),
        "the malformed line is named by file:line: {output}"
    );
    assert!(output.contains("1 malformed lines skipped"), "{output}");
    assert_eq!(oracle_counts(&store, &[]), (6000, 6000));

    // A restart resumes after the last line: nothing is read again. (Logged as JSON lines.)
    exporter.write(10);
    let json = ["--log-format", "json"];
    let recorder = file_recorder(&exporter.path(), &store, &spool, &json, &[]);
    recorder.wait_until_read(10, 0);
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    assert!(output.contains("read 10 lines"), "{output}");
    for line in output.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
        assert!(
            event["level"].is_string() && event["message"].is_string(),
            "{line}"
        );
    }
    assert_eq!(oracle_counts(&store, &[]), (6010, 6010));
}

/// A small xorshift generator: the kill moments are random but reproducible from the seed
/// printed at the start.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The oracle: an exporter writes flows with unique ids (rotating, half the backups gzipped)
/// while the recorder is SIGKILLed at random moments and restarted; at the end every id is
/// in the store exactly once. `FLOWREC_ORACLE_CYCLES` (default 20; `make oracle` runs 100)
/// and `FLOWREC_ORACLE_SEED` reproduce a run.
#[test]
fn followed_file_sigkilled_at_random_moments_records_every_line_exactly_once() {
    let cycles: u64 = std::env::var("FLOWREC_ORACLE_CYCLES")
        .map(|v| v.parse().expect("FLOWREC_ORACLE_CYCLES: a number"))
        .unwrap_or(20);
    let seed: u64 = std::env::var("FLOWREC_ORACLE_SEED")
        .map(|v| v.parse().expect("FLOWREC_ORACLE_SEED: a number"))
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("oracle: {cycles} SIGKILL cycles, FLOWREC_ORACLE_SEED={seed}");
    let mut random = Random(seed);
    let (dir, store) = temp_store();
    let spool = dir.path().join("spool");
    let exporter = Exporter::new(&dir.path().join("hubble"));
    let path = exporter.path();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = exporter.spawn(40, 5000, Arc::clone(&stop));
    for _ in 0..cycles {
        let recorder = file_recorder(&path, &store, &spool, &[], &[]);
        std::thread::sleep(Duration::from_millis(50 + random.below(1500)));
        recorder.kill();
    }
    stop.store(true, Ordering::Relaxed);
    let exporter = writer.join().unwrap();
    let recorder = file_recorder(&path, &store, &spool, &[], &[]);
    recorder.wait_until_done();
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    eprintln!(
        "oracle: {} lines in {} files ({} rotations)",
        exporter.written,
        exporter.rotations + 1,
        exporter.rotations
    );
    assert_eq!(
        oracle_counts(&store, &[]),
        (exporter.written, exporter.written),
        "(flows, distinct ids) in the store; seed {seed}"
    );
}

/// A TCP proxy in front of the S3 server that can be cut: while cut, its port refuses
/// connections and the connections it carried are reset.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (cut_flag, stop_flag) = (Arc::clone(&cut), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut listener = Some(listener);
            let mut carried: Vec<TcpStream> = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) {
                if cut_flag.load(Ordering::Relaxed) {
                    if listener.take().is_some() {
                        for stream in carried.drain(..) {
                            let _ = stream.shutdown(Shutdown::Both);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let accepting = listener.get_or_insert_with(|| {
                    TcpListener::bind(("127.0.0.1", port)).expect("the proxy's port again")
                });
                accepting.set_nonblocking(true).unwrap();
                match accepting.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        carried.push(client.try_clone().unwrap());
                        carried.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy {
            port,
            cut,
            stop,
            thread: Some(thread),
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The S3 store goes away twice for `FLOWREC_OUTAGE_SECONDS` (default 30) while flows keep
/// coming: first refusing connections (a proxy cut), then hanging (the server frozen with
/// SIGSTOP). The recorder keeps reading into its spool until the spool's small budget is
/// reached, then pauses (the documented policy for a file: the lines wait in the file, none is
/// lost); retries show in the metrics; once the store is back, every flow lands exactly once
/// and the spool metrics return to zero.
#[test]
fn followed_file_through_s3_outages_lands_every_flow_once() {
    let outage = Duration::from_secs(
        std::env::var("FLOWREC_OUTAGE_SECONDS")
            .map(|v| v.parse().expect("FLOWREC_OUTAGE_SECONDS: a number"))
            .unwrap_or(30),
    );
    let moto = Moto::start();
    moto.create_bucket("outage");
    let proxy = Proxy::start(moto.port);
    let mut env = moto.env();
    env.retain(|(key, _)| *key != "AWS_ENDPOINT_URL");
    env.push((
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", proxy.port),
    ));
    let env = env_refs(&env);
    let store = "s3://outage/flows";
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let exporter = Exporter::new(&dir.path().join("hubble"));
    let path = exporter.path();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = exporter.spawn(4, 3000, Arc::clone(&stop));
    let recorder = file_recorder(
        &path,
        store,
        &spool,
        &["--spool-max-bytes", "256KiB", "--upload-timeout", "3s"],
        &env,
    );
    recorder.wait_for("first flows shipped", Duration::from_secs(30), |m| {
        metric(m, "flowrec_flows_shipped_total") > 0
    });
    // While flows keep coming a segment is sealed every second: "back to normal" is at most
    // the newest one waiting, for at most a couple of seconds.
    let back_to_normal = |recorder: &LiveRecorder| {
        recorder.wait_for("the spool emptied", Duration::from_secs(120), |m| {
            metric(m, "flowrec_spool_segments_waiting") <= 1
                && metric(m, "flowrec_spool_oldest_age_seconds") <= 2
                && metric(m, "flowrec_source_waiting") == 0
        })
    };
    let outages: [(&str, &dyn Fn(bool)); 2] = [
        ("refused", &|on| proxy.set_cut(on)),
        ("frozen", &|on| moto.freeze(on)),
    ];
    for (kind, outage_on) in outages {
        let errors = recorder.metric("flowrec_upload_errors_total");
        outage_on(true);
        std::thread::sleep(outage);
        let during = recorder.scrape();
        outage_on(false);
        assert!(
            metric(&during, "flowrec_upload_errors_total") > errors,
            "{kind}: uploads failed and were retried:\n{during}"
        );
        assert!(
            metric(&during, "flowrec_spool_segments_waiting") > 0,
            "{kind}: segments waited in the spool:\n{during}"
        );
        assert_eq!(
            metric(&during, "flowrec_source_waiting"),
            1,
            "{kind}: the spool's budget was reached and reading paused:\n{during}"
        );
        back_to_normal(&recorder);
    }
    stop.store(true, Ordering::Relaxed);
    let exporter = writer.join().unwrap();
    recorder.wait_until_read(exporter.written, 0);
    recorder.wait_until_done();
    let metrics = recorder.scrape();
    assert_eq!(
        metric(&metrics, "flowrec_spool_oldest_age_seconds"),
        0,
        "{metrics}"
    );
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    assert!(output.contains("reading paused"), "{output}");
    assert_eq!(
        oracle_counts(store, &env),
        (exporter.written, exporter.written),
        "(flows, distinct ids) in the store\n{output}"
    );
}

/// Spool segments damaged while the recorder was down (one cut mid-record, one with a flipped
/// byte) are recovered up to their last good record, each with a log line naming the file and
/// the byte offset; what is recovered lands once. The newest segment's torn records took their
/// positions with them, so their lines are read again from the file (recovered); the lines of
/// the older segment's lost records are not (a newer position was recorded): they are missing.
#[test]
fn damaged_spool_segments_are_cut_at_their_last_good_record_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // A store under a regular file cannot be written: segments stay in the spool.
    std::fs::write(dir.path().join("not-a-folder"), b"").unwrap();
    let unwritable = dir.path().join("not-a-folder/store").display().to_string();
    let mut exporter = Exporter::new(&dir.path().join("hubble"));
    // A small budget makes small chunks: several records per segment.
    let extra = ["--spool-max-bytes", "2MiB", "--stop-grace", "1s"];
    let recorder = file_recorder(&exporter.path(), &unwritable, &spool, &extra, &[]);
    for _ in 0..2 {
        exporter.write(2000);
        recorder.wait_for("the lines read", Duration::from_secs(30), |m| {
            metric(m, "flowrec_flows_received_total") == exporter.written
        });
        // Sealed (--max-file-age 1s) before the next batch: one segment per batch.
        recorder.wait_for("the segment sealed", Duration::from_secs(30), |m| {
            metric(m, "flowrec_spool_segments_waiting") * 2000 >= exporter.written
        });
    }
    recorder.kill();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(spool.join("segments"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| std::fs::metadata(path).unwrap().len() > 8)
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    let (flipped, cut) = (&segments[0], &segments[segments.len() - 1]);
    let mut data = std::fs::read(flipped).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x40;
    std::fs::write(flipped, &data).unwrap();
    let length = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(length - 100)
        .unwrap();

    let store = dir.path().join("store").display().to_string();
    let recorder = file_recorder(&exporter.path(), &store, &spool, &[], &[]);
    let startup = recorder.process.output();
    for (segment, damage) in [(flipped, "checksum mismatch"), (cut, "torn write")] {
        let named = format!("spool segment {}: ", segment.display());
        let line = startup
            .lines()
            .find(|line| line.contains(&named))
            .unwrap_or_else(|| panic!("no log line names {named}: {startup}"));
        assert!(line.contains(damage), "{line}");
        let offset: u64 = line
            .split(" at byte ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no offset in {line}"));
        assert!(
            offset > 8 && offset <= middle as u64 || segment == cut,
            "{line}"
        );
        assert!(line.contains("records before it are kept"), "{line}");
    }
    let resumed: u64 = startup
        .split("resuming after line ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no resume position: {startup}"));
    assert!(resumed < exporter.written, "{startup}");
    recorder.wait_until_done();
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    let again = exporter.written - resumed;
    assert!(
        output.contains(&format!("read {again} lines")),
        "the torn tail's lines are read again: {output}"
    );
    let (flows, ids) = oracle_counts(&store, &[]);
    assert_eq!(flows, ids, "nothing twice");
    assert!(
        flows > 0 && flows < exporter.written,
        "{flows} of {}: the records before the damage, not the rest",
        exporter.written
    );
}

/// A followed file may appear later, its folder may not: a missing folder (a wrong path, a
/// missing mount) stops the run at once, naming it, instead of waiting forever in silence; a
/// missing file in an existing folder is waited for, with a warning.
#[test]
fn a_followed_file_in_a_missing_folder_is_named_at_start() {
    let (dir, store) = temp_store();
    let spool = dir.path().join("spool").display().to_string();
    let missing = dir
        .path()
        .join("no-such-folder/events.log")
        .display()
        .to_string();
    let args = [
        "run", "--source", "file", "--follow", &missing, "--store", &store, "--spool", &spool,
    ];
    let (status, stderr) = exits_within(&flowrec_bin(), &args, &[], Duration::from_secs(30));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("no-such-folder") && stderr.contains("does not exist"),
        "{stderr}"
    );

    let later = dir.path().join("events.log");
    let recorder = file_recorder(&later, &store, &dir.path().join("spool2"), &[], &[]);
    let (status, text) = recorder.stop();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("no such file yet; waiting for it to appear"),
        "{text}"
    );
}

/// A spool folder nothing can be written to (a read-only mount) is named at start with what
/// to do, before any flow is accepted.
#[test]
fn an_unwritable_spool_is_named_at_start() {
    let (dir, store) = temp_store();
    let log = dir.path().join("events.log");
    std::fs::write(&log, "").unwrap();
    let read_only = Tmpfs::mount("1m", true);
    let spool = format!("{}/spool", read_only.path());
    let args = [
        "run",
        "--source",
        "file",
        "--follow",
        log.to_str().unwrap(),
        "--store",
        &store,
        "--spool",
        &spool,
    ];
    let (status, stderr) = exits_within(&flowrec_bin(), &args, &[], Duration::from_secs(30));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--spool {spool}: cannot create it"))
            && stderr.contains("must be a writable folder"),
        "{stderr}"
    );
}

/// A panic in a running recorder's thread (injected in the follower) ends the process with
/// status 70 and a log line naming the thread and the place, instead of leaving a process
/// that serves /health and records nothing; the restart records every line once.
#[test]
fn a_panic_in_a_recorder_thread_ends_the_run_and_the_restart_loses_nothing() {
    let (dir, store) = temp_store();
    let spool = dir.path().join("spool");
    let mut exporter = Exporter::new(&dir.path().join("log"));
    exporter.write(20);
    let path = exporter.path().display().to_string();
    let spool_arg = spool.display().to_string();
    let args = [
        "run",
        "--source",
        "file",
        "--follow",
        &path,
        "--store",
        &store,
        "--spool",
        &spool_arg,
        "--log-format",
        "json",
    ];
    let (status, stderr) = exits_within(
        &flowrec_bin(),
        &args,
        &[("FLOWREC_PANIC_AT", "follow")],
        Duration::from_secs(60),
    );
    assert_eq!(status, Some(70), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("panicked"))
        .unwrap_or_else(|| panic!("no panic logged: {stderr}"));
    let logged: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(logged["level"], "error", "{line}");
    let message = logged["message"].as_str().unwrap();
    assert!(
        message.contains("thread source panicked at recorder/src/source/follow.rs:"),
        "{line}"
    );

    let recorder = file_recorder(&exporter.path(), &store, &spool, &[], &[]);
    assert_eq!(
        recorder.metric("flowrec_panics_total"),
        1,
        "the panic is counted"
    );
    recorder.wait_until_read(20, 0);
    recorder.wait_until_done();
    let (status, text) = recorder.stop();
    assert!(status.success(), "{text}");
    let rows = query(
        &store,
        "select count(*) as n, count(distinct uuid) as d from flows",
        &[],
    );
    assert_eq!(
        (rows[0]["n"].as_u64(), rows[0]["d"].as_u64()),
        (Some(20), Some(20))
    );
}

/// `flowrec_drops_total` (hubble_drop_total's labels: reason, protocol, source and
/// destination namespaces) counts what was recorded: for the incident capture followed as a
/// Hubble export, every series equals the store's count of DROPPED flows with those values.
#[test]
fn the_drop_metric_counts_the_recorded_drops_by_reason_protocol_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.log");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(incident_capture()).unwrap()),
        &mut text,
    )
    .unwrap();
    std::fs::write(&events, &text).unwrap();
    let store = dir.path().join("store").display().to_string();
    let recorder = file_recorder(&events, &store, &dir.path().join("spool"), &[], &[]);
    recorder.wait_until_done();
    let exposition = recorder.scrape();
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    let metric: std::collections::BTreeMap<String, u64> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("flowrec_drops_total{"))
        .map(|l| {
            let (labels, value) = l.rsplit_once("} ").unwrap();
            (labels.to_owned(), value.parse().unwrap())
        })
        .collect();
    let stored: std::collections::BTreeMap<String, u64> = query(
        &store,
        "select coalesce(drop_reason_desc, '') as reason, coalesce(l4_protocol, '') as protocol, \
         coalesce(source_namespace, '') as source, \
         coalesce(destination_namespace, '') as destination, count(*) as n \
         from flows where verdict = 'DROPPED' group by all",
        &[],
    )
    .iter()
    .map(|row| {
        let label = |k: &str| row[k].as_str().unwrap().to_owned();
        (
            format!(
                "reason=\"{}\",protocol=\"{}\",source=\"{}\",destination=\"{}\"",
                label("reason"),
                label("protocol"),
                label("source"),
                label("destination")
            ),
            row["n"].as_u64().unwrap(),
        )
    })
    .collect();
    let policy_denied: u64 = stored
        .iter()
        .filter(|(k, _)| k.starts_with("reason=\"POLICY_DENIED\""))
        .map(|(_, n)| n)
        .sum();
    assert!(policy_denied > 0, "{stored:?}");
    assert_eq!(metric, stored, "{exposition}");
}

/// A file larger than a part (5 MiB) goes to S3 in parts while it is encoded (a multipart
/// upload, on moto), so shipping holds a few parts, not the file; a smaller one in one PUT.
/// Read back, the files hold every flow once.
#[test]
fn a_large_file_ships_to_s3_in_parts_and_reads_back_whole() {
    const FLOWS: u64 = 300_000;
    let moto = Moto::start();
    moto.create_bucket("parts");
    let env = moto.env();
    let env = env_refs(&env);
    let store = "s3://parts/flows";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flows.json");
    let generated = std::process::Command::new(flowgen_bin())
        .args(["--flows", &FLOWS.to_string(), "--hours", "1"])
        .args(["--start", "2026-11-24T09:00:00Z", "--out"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(generated.success());
    // The default sealing: the stop seals the one segment, which ships as one file.
    let follow = input.display().to_string();
    let recorder = LiveRecorder::start_sealing(
        &["--source", "file", "--follow", &follow],
        store,
        &dir.path().join("spool"),
        &env,
        &[],
    );
    recorder.wait_until_read(FLOWS, 0);
    let (status, summary) = recorder.stop();
    assert!(status.success(), "{summary}");
    let files: Vec<(String, u64)> = s3_keys(&moto, "parts", "flows/")
        .into_iter()
        .filter(|(key, _)| key.ends_with(".parquet") && key.contains("/flows/"))
        .collect();
    // A segment seals at 256 MiB of rows in memory (~200k of these flows): one file of more
    // than a part, sent in parts, and one smaller, sent whole.
    let parts_of = |key: &str| {
        let etag = s3_etag(&moto, "parts", key);
        etag.rsplit_once('-')
            .map(|(_, n)| n.parse::<u32>().unwrap())
    };
    let mut in_parts = 0;
    for (key, size) in &files {
        match parts_of(key) {
            Some(parts) => {
                in_parts += 1;
                assert!(
                    parts >= 2 && *size > 5 << 20,
                    "{key}: {size} bytes in {parts} part(s)"
                );
            }
            None => assert!(*size <= 12 << 20, "{key}: {size} bytes sent whole"),
        }
    }
    assert!(in_parts > 0, "no file was sent in parts: {files:?}");
    let rows = query(
        store,
        "select count(*) as flows, count(distinct uuid) as ids from flows",
        &env,
    );
    assert_eq!(rows[0]["flows"], FLOWS);
    assert_eq!(rows[0]["ids"], FLOWS);
    assert_eq!(count_store(store, &env), count_json(&[input]));
}
