//! `flowrec run --source hubble`: the recorder against the project's test Observer server
//! (`test-hubble-server`, tonic) over a unix socket and over TCP with mTLS, a stream cut mid-way,
//! and the errors an operator meets (wrong address, wrong certificate, not a Hubble server).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// The test server, serving `files` (`args` say where and how); returned once it listens.
fn hubble_server(args: &[&str], files: &[PathBuf]) -> Process {
    let mut command = Command::new(test_hubble_server_bin());
    command.args(args).args(files);
    let mut server = Process::spawn(command);
    server.wait_for(" events on ");
    server
}

/// The Hubble samples and the incident capture: every flow the project has.
fn all_captures() -> Vec<PathBuf> {
    let mut files = hubble_samples();
    files.push(incident_capture());
    files
}

/// Every flow column but `capture_source` (import vs hubble), in one order, as JSON lines.
fn rows(store: &str) -> String {
    let run = flowsql(
        &[
            "--store",
            store,
            "--format",
            "ndjson",
            "select * exclude (capture_source) from flows \
             order by time, ip_source, source_port, destination_port, uuid, summary",
        ],
        &[],
    )
    .ok();
    run.stdout
}

fn imported(files: &[PathBuf], dir: &Path) -> String {
    let store = dir.join("imported").display().to_string();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    import(&store, &refs, &[]).ok();
    rows(&store)
}

/// `flowrec run --source hubble --hubble-server ADDR` with `extra` flags.
fn hubble_recorder(address: &str, extra: &[&str], store: &str, spool: &Path) -> LiveRecorder {
    let mut args = vec!["--source", "hubble", "--hubble-server", address];
    args.extend_from_slice(extra);
    LiveRecorder::start(&args, store, spool, &[])
}

/// The test server on a unix socket in `dir` (with `server_flags`) serving `files`, and a
/// recorder (with `recorder_flags`) storing into `dir/live`, spooling in `dir/spool`.
fn live_on_a_socket(
    dir: &Path,
    server_flags: &[&str],
    files: &[PathBuf],
    recorder_flags: &[&str],
) -> (Process, String, String, LiveRecorder) {
    let socket = dir.join("hubble.sock").display().to_string();
    let server = hubble_server(&[&["--unix", &socket], server_flags].concat(), files);
    let address = format!("unix://{socket}");
    let store = dir.join("live").display().to_string();
    let recorder = hubble_recorder(&address, recorder_flags, &store, &dir.join("spool"));
    (server, address, store, recorder)
}

/// Records until `flows` were recorded and shipped, then stops cleanly; the summary.
fn record_all(recorder: LiveRecorder, flows: u64) -> String {
    recorder.wait_for(
        "every flow recorded",
        std::time::Duration::from_secs(60),
        |m| {
            metric(m, "flowrec_flows_recorded_total") == flows
                && metric(m, "flowrec_spool_segments_waiting") == 0
        },
    );
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    output
}

#[test]
fn hubble_live_over_a_unix_socket_records_the_rows_an_import_gives() {
    let dir = tempfile::tempdir().unwrap();
    let files = all_captures();
    let (server, address, store, recorder) = live_on_a_socket(dir.path(), &[], &files, &[]);
    let summary = record_all(recorder, count_flows(&files));
    assert!(summary.contains(" 0 reconnects,"), "{summary}");
    // A restart on the same spool asks for what follows the last flow recorded: nothing new,
    // the boundary flows dropped as duplicates, the time away recorded as a gap.
    let again = hubble_recorder(&address, &[], &store, &dir.path().join("spool"));
    again.wait_for(
        "the restart's first stream",
        std::time::Duration::from_secs(30),
        |m| metric(m, "flowrec_spool_segments_waiting") == 0 && metric(m, "flowrec_source_up") == 1,
    );
    assert_eq!(again.get("/health").0, "HTTP/1.1 200 OK");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (status, summary) = again.stop();
    assert!(status.success(), "{summary}");
    assert!(summary.contains("received 0 flows"), "{summary}");
    drop(server);
    let gaps = query(
        &store,
        "select count(*) as n from lost_events where source = 'FLOWREC_DISCONNECTED'",
        &[],
    );
    assert_eq!(gaps[0]["n"], 1, "the restart's gap: {summary}");
    let live = rows(&store);
    assert_eq!(live.lines().count() as u64, count_flows(&files));
    assert!(
        live == imported(&files, dir.path()),
        "live rows differ from imported ones"
    );
    let sources = query(&store, "select distinct capture_source from flows", &[]);
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["capture_source"], "hubble");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn hubble_live_over_tcp_with_mtls_and_a_wrong_certificate_refused() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path(), &["client"]);
    let file = |name: &str| dir.path().join(name).display().to_string();
    let files = hubble_samples();
    let address = format!("127.0.0.1:{}", free_port());
    let server = hubble_server(
        &[
            "--listen",
            &address,
            "--tls-cert",
            &file("server.crt"),
            "--tls-key",
            &file("server.key"),
            "--client-ca",
            &file("ca.crt"),
        ],
        &files,
    );
    let store = file("live");
    let tls = |ca: &str| {
        vec![
            "--hubble-tls-ca".to_string(),
            file(ca),
            "--hubble-tls-cert".into(),
            file("client.crt"),
            "--hubble-tls-key".into(),
            file("client.key"),
            "--hubble-tls-server-name".into(),
            "localhost".into(),
        ]
    };
    let good = tls("ca.crt");
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let recorder = hubble_recorder(&address, &good, &store, &dir.path().join("spool"));
    record_all(recorder, count_flows(&files));
    assert!(rows(&store) == imported(&files, dir.path()));

    // A server certificate from another authority: refused, named, retried, no crash.
    let wrong = tls("other-ca.crt");
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let mut recorder = hubble_recorder(
        &address,
        &wrong,
        &file("never"),
        &dir.path().join("spool-wrong"),
    );
    let output = recorder.process.wait_for("retrying in 2s");
    assert!(
        output.contains(&format!("--hubble-server {address}: ")),
        "{output}"
    );
    assert!(
        output.to_lowercase().contains("certificate"),
        "the cause is named: {output}"
    );
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    drop(server);
}

#[test]
fn hubble_errors_name_the_address_and_the_cause_and_are_retried() {
    let (dir, store) = temp_store();
    // Nothing listens there.
    let address = format!("127.0.0.1:{}", free_port());
    let unready = ["--unready-after", "2s"];
    let mut recorder = hubble_recorder(&address, &unready, &store, &dir.path().join("spool-1"));
    // Live all along; ready during --unready-after, then not: the stream was never up.
    assert_eq!(recorder.get("/health").0, "HTTP/1.1 200 OK");
    let output = recorder.process.wait_for("retrying in 2s");
    assert!(
        output.contains(&format!("--hubble-server {address}: ")),
        "{output}"
    );
    assert!(output.contains("onnection refused"), "{output}");
    recorder.wait_for("the source down", Duration::from_secs(10), |m| {
        metric(m, "flowrec_source_up") == 0
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = recorder.get("/health");
        if status.contains("503") || std::time::Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
    assert!(body.contains("over --unready-after 2 s"), "{body}");
    assert_eq!(recorder.get("/livez").0, "HTTP/1.1 200 OK");
    let (status, output) = recorder.stop();
    assert!(status.success(), "a stop while retrying is clean: {output}");

    // A gRPC server without the Observer service.
    let socket = dir.path().join("other.sock").display().to_string();
    let server = hubble_server(&["--unix", &socket, "--no-observer"], &[]);
    let mut recorder = hubble_recorder(
        &format!("unix://{socket}"),
        &[],
        &store,
        &dir.path().join("spool-2"),
    );
    let output = recorder.process.wait_for("retrying in");
    assert!(
        output.contains("does not implement the Hubble Observer API"),
        "{output}"
    );
    recorder.stop();
    drop(server);

    // Bad flags are refused before anything runs (exit 2), naming the flag.
    let refused = |flags: &[&str], expected: &str| {
        let mut args = vec!["run", "--source", "hubble", "--store", &store];
        args.extend_from_slice(flags);
        let run = flowrec(&args, &[]);
        assert_eq!(run.status, 2, "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{flags:?}: {}", run.stderr);
    };
    refused(&["--hubble-server", "relay"], "--hubble-server \"relay\"");
    let server = ["--hubble-server", "relay:4245"];
    refused(
        &[&server[..], &["--hubble-allowlist", "{\"verdict\": 7"]].concat(),
        "--hubble-allowlist",
    );
    // A misspelt field would make a filter that matches everything.
    refused(
        &[
            &server[..],
            &["--hubble-denylist", "{\"verdicts\": [\"DROPPED\"]}"],
        ]
        .concat(),
        "--hubble-denylist: verdicts not Hubble FlowFilter field",
    );
    refused(
        &[
            "--hubble-server",
            "unix:///x.sock",
            "--hubble-tls-ca",
            "/dev/null",
        ],
        "not to a unix:// socket",
    );
}

/// The server cuts the first stream after 100 events; the recorder reconnects asking for flows
/// since the last one it recorded: nothing missing, nothing twice, and the time without a
/// stream is a FLOWREC_DISCONNECTED lost event. With `--lose 7` the server also loses the 7
/// events after the cut (its ring buffer wrapped): exactly those are missing.
#[test]
fn hubble_stream_cut_midway_resumes_without_gaps_or_duplicates() {
    let files = hubble_samples();
    let total = count_flows(&files);
    for lose in [0u64, 7] {
        let dir = tempfile::tempdir().unwrap();
        let lost = lose.to_string();
        let cut = ["--drop-after", "100", "--lose", &lost];
        let (server, _, store, recorder) = live_on_a_socket(dir.path(), &cut, &files, &[]);
        let summary = record_all(recorder, total - lose);
        assert!(summary.contains(" 1 reconnects,"), "{summary}");
        drop(server);
        let stored = query(
            &store,
            "select count(*) as n, (select count(*) from (select distinct time, ip_source, \
             source_port, destination_port, summary from flows)) as distinct_flows from flows",
            &[],
        );
        assert_eq!(stored[0]["n"], total - lose, "lose {lose}: {summary}");
        assert_eq!(stored[0]["distinct_flows"], stored[0]["n"], "nothing twice");
        let gaps = query(
            &store,
            "select count(*) as n, min(first) <= min(last) as ordered from lost_events \
             where source = 'FLOWREC_DISCONNECTED'",
            &[],
        );
        assert_eq!(gaps[0]["n"], 1, "the gap is recorded: {summary}");
        assert_eq!(gaps[0]["ordered"], true);
    }
}

/// An HTTP request carrying a password, a query token, a bearer token and a Kafka API key.
const SECRETS: &str = concat!(
    r#"{"flow":{"time":"2026-11-26T10:00:00.000000001Z","uuid":"secret-http","verdict":"FORWARDED","Type":"L7","#,
    r#""node_name":"n1","source":{"namespace":"shop","pod_name":"web"},"destination":{"namespace":"shop","pod_name":"api"},"#,
    r#""l7":{"type":"REQUEST","http":{"method":"GET","url":"http://alice:pa55word@api.shop/pay?token=t0ken#fr4g","#,
    r#""protocol":"HTTP/1.1","headers":[{"key":"Authorization","value":"Bearer b3arer"},{"key":"User-Agent","value":"curl/8"}]}},"#,
    r#""Summary":"HTTP/1.1 GET http://alice:pa55word@api.shop/pay?token=t0ken#fr4g"},"node_name":"n1","time":"2026-11-26T10:00:00.000000001Z"}"#,
    "\n",
    r#"{"flow":{"time":"2026-11-26T10:00:00.000000002Z","uuid":"secret-kafka","verdict":"FORWARDED","Type":"L7","#,
    r#""node_name":"n1","l7":{"type":"REQUEST","kafka":{"api_key":"pr0duce","topic":"orders","api_version":1}}},"#,
    r#""node_name":"n1","time":"2026-11-26T10:00:00.000000002Z"}"#,
    "\n",
);

/// Every value of every flow row in the Parquet files under `root`, read by DuckDB (not by
/// flowsql): what is really stored.
fn stored_text(root: &str) -> String {
    python(&format!(
        "import duckdb\nprint(repr(duckdb.execute(\"select * from \
         read_parquet('{root}/flows/**/*.parquet')\").fetchall()))"
    ))
}

#[test]
fn redaction_keeps_secrets_out_of_the_parquet_files_for_imports_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, SECRETS).unwrap();
    let flags = [
        "--redact-http-urlquery",
        "--redact-http-headers-deny",
        "authorization",
        "--redact-kafka-apikey",
    ];
    let imported = dir.path().join("imported").display().to_string();
    let path = file.display().to_string();
    let mut args = vec!["import", "--store", &imported, &path];
    args.extend_from_slice(&flags);
    flowrec(&args, &[]).ok();

    let (server, _, live, recorder) =
        live_on_a_socket(dir.path(), &[], std::slice::from_ref(&file), &flags);
    record_all(recorder, 2);
    drop(server);
    for store in [&imported, &live] {
        let text = stored_text(store);
        for secret in ["pa55word", "t0ken", "fr4g", "b3arer", "pr0duce"] {
            assert!(!text.contains(secret), "{secret} stored in {store}: {text}");
        }
        assert!(
            text.contains("http://alice:HUBBLE_REDACTED@api.shop/pay"),
            "{text}"
        );
        assert!(
            text.contains("curl/8"),
            "headers not denied are kept: {text}"
        );
    }

    // By default, as in Hubble, only the password goes.
    let default = dir.path().join("default").display().to_string();
    flowrec(&["import", "--store", &default, &path], &[]).ok();
    let text = stored_text(&default);
    assert!(!text.contains("pa55word") && text.contains("t0ken") && text.contains("b3arer"));

    // Allow and deny lists together are refused, as by Hubble.
    let both = flowrec(
        &[
            "import",
            "--store",
            &default,
            &path,
            "--redact-http-headers-allow",
            "user-agent",
            "--redact-http-headers-deny",
            "authorization",
        ],
        &[],
    );
    assert_eq!(both.status, 2);
    assert!(
        both.stderr.contains("--redact-http-headers-allow"),
        "{}",
        both.stderr
    );
}

/// The recorder's memory bound (README, "flowrec run --source hubble"): with the default
/// flags, under a sustained stream of generated flows (as fast as the recorder takes them) long
/// enough to seal and ship full 256 MiB segments while it records, the peak resident memory
/// stays under 200 MiB. Read from /proc (VmHWM), not timed.
#[test]
fn hubble_live_recording_keeps_its_memory_within_the_documented_bound() {
    const FLOWS: u64 = 450_000;
    const BOUND_MIB: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hubble.sock").display().to_string();
    let mut command = Command::new(test_hubble_server_bin());
    command.args(["--unix", &socket, "--generate", &FLOWS.to_string()]);
    let mut server = Process::spawn(command);
    // Generating them takes a debug build a while.
    server.wait_for_within(" events on ", std::time::Duration::from_secs(300));
    let store = dir.path().join("live").display().to_string();
    let recorder = LiveRecorder::start_sealing(
        &[
            "--source",
            "hubble",
            "--hubble-server",
            &format!("unix://{socket}"),
        ],
        &store,
        &dir.path().join("spool"),
        &[],
        &[],
    );
    recorder.wait_for(
        "every flow recorded and the full segments shipped",
        std::time::Duration::from_secs(600),
        |m| {
            metric(m, "flowrec_flows_recorded_total") == FLOWS
                && metric(m, "flowrec_files_uploaded_total") >= 2
        },
    );
    let peak = recorder.process.peak_rss_mib();
    let (status, summary) = recorder.stop();
    assert!(status.success(), "{summary}");
    eprintln!("recorder peak RSS: {peak} MiB for {FLOWS} flows");
    assert!(
        peak <= BOUND_MIB,
        "peak RSS {peak} MiB over the documented {BOUND_MIB} MiB"
    );
    // The DaemonSet's limit leaves room above the measured peak.
    let limit = crate::deploy::recorder_memory_limit_mib("overlays/hubble");
    assert!(
        peak < limit,
        "peak RSS {peak} MiB over the manifest's limit {limit} MiB"
    );
    drop(server);
    let stored = query(&store, "select count(*) as n from flows", &[]);
    assert_eq!(stored[0]["n"], FLOWS);
}
