//! Helpers for the end-to-end tests: the two binaries, temporary stores, a real S3-protocol
//! server (moto) on loopback, and independent counts of Hubble JSON.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A temporary folder and the path of a store inside it (created by the first import).
pub fn temp_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    (dir, store)
}

pub fn flowsql_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flowsql"))
}

/// flowrec lives in another package, so cargo does not build it for these tests:
/// `cargo build --workspace` (which .ci/run runs first) does. A binary older than its sources
/// would test old code, so it is refused with the command that fixes it. (Not Cargo.lock:
/// cargo leaves a binary alone when a lock change does not concern it.)
pub fn flowrec_bin() -> PathBuf {
    workspace_bin(
        "flowrec",
        &[
            "recorder/src",
            "schemas/src",
            "schemas/hubble-api",
            "schemas/proto",
            "ebpf",
        ],
    )
}

/// The test Hubble Observer server (benches), built like flowrec.
pub fn test_hubble_server_bin() -> PathBuf {
    workspace_bin(
        "test-hubble-server",
        &[
            "benches/src/bin/test_hubble_server.rs",
            "benches/src/lib.rs",
            "schemas/hubble-api",
            "schemas/proto",
        ],
    )
}

/// The bench suite's flow generator (Hubble JSON of a synthetic cluster), built like flowrec.
pub fn flowgen_bin() -> PathBuf {
    workspace_bin(
        "flowgen",
        &[
            "benches/src/bin/flowgen.rs",
            "benches/src/dataset.rs",
            "benches/src/lib.rs",
        ],
    )
}

fn workspace_bin(name: &str, sources: &[&str]) -> PathBuf {
    let path = flowsql_bin().with_file_name(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --workspace` first",
                path.display()
            )
        });
    let root = repo_root();
    let newer = sources
        .iter()
        .map(|source| root.join(source))
        .find_map(|p| newer_than(&p, built));
    if let Some(newer) = newer {
        panic!(
            "{} is older than {}: run `cargo build --workspace` first",
            path.display(),
            newer.display()
        );
    }
    path
}

/// A file under `path` modified after `time`.
fn newer_than(path: &Path, time: std::time::SystemTime) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return (meta.modified().ok()? > time).then(|| path.to_path_buf());
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .find_map(|e| newer_than(&e.path(), time))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn samples() -> PathBuf {
    repo_root().join("sample-captures")
}

pub fn incident_capture() -> PathBuf {
    samples().join("typo-policy-incident.jsonl.gz")
}

/// The real Hubble exports (copies of ../shared/hubble-samples, provenance in their README).
pub fn hubble_samples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples().join("hubble-samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.status, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// ndjson output as JSON objects.
    pub fn rows(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A command with a clean environment for the store settings.
pub fn command(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("FLOW_STORE")
        .env("NODE_NAME", "test-node");
    for (k, v) in env {
        command.env(k, v);
    }
    command.stdin(Stdio::null());
    command
}

pub fn flowrec(args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from(command(&flowrec_bin(), args, env).output().unwrap())
}

pub fn flowsql(args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from(command(&flowsql_bin(), args, env).output().unwrap())
}

/// Runs flowsql and returns ndjson rows.
#[track_caller]
pub fn query(store: &str, sql: &str, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    flowsql(&["--store", store, "--format", "ndjson", sql], env)
        .ok()
        .rows()
}

pub fn import(store: &str, files: &[&Path], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["import", "--store", store];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    flowrec(&args, env)
}

/// Every `.parquet` file under a folder (relative paths).
pub fn parquet_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// Reads JSON lines from a plain or gzip file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .unwrap();
        bytes = text;
    }
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Independent counts of flows by verdict, type and L4 protocol, straight from the JSON
/// (serde_json values, not the arrow decoder under test). Absent = protojson zero = NULL.
pub fn count_json(paths: &[PathBuf]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for path in paths {
        for line in json_lines(path) {
            let flow = line.get("flow").cloned().unwrap_or(line.clone());
            let verdict = flow
                .get("verdict")
                .and_then(|v| v.as_str())
                .unwrap_or("NULL");
            let kind = flow.get("Type").and_then(|v| v.as_str()).unwrap_or("NULL");
            let l4 = flow
                .get("l4")
                .and_then(|l4| l4.as_object())
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_else(|| "NULL".into());
            for key in [
                format!("verdict={verdict}"),
                format!("type={kind}"),
                format!("l4={l4}"),
            ] {
                *counts.entry(key).or_default() += 1;
            }
        }
    }
    counts
}

/// The same counts through flowsql.
pub fn count_store(store: &str, env: &[(&str, &str)]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (label, column) in [
        ("verdict", "verdict"),
        ("type", "type"),
        ("l4", "l4_protocol"),
    ] {
        let sql =
            format!("select coalesce({column}, 'NULL') as v, count(*) as n from flows group by 1");
        for row in query(store, &sql, env) {
            let key = format!("{label}={}", row["v"].as_str().unwrap());
            counts.insert(key, row["n"].as_u64().unwrap());
        }
    }
    counts
}

/// A moto S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    /// The network namespace it listens in (None: this process's).
    netns: Option<String>,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_in(None)
    }

    /// A moto server on loopback in network namespace `netns` (where a recorder under test
    /// runs), or in this process's.
    pub fn start_in(netns: Option<&str>) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = match netns {
            Some(ns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{ns}"))
                    .arg("moto_server");
                command
            }
            None => Command::new("moto_server"),
        };
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server not found: pip install 'moto[server]' (.ci/run does)");
        let moto = Moto {
            child,
            port,
            netns: netns.map(str::to_owned),
        };
        moto.wait_until_listening();
        moto
    }

    /// Runs `f` in the server's network namespace.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            Some(ns) => crate::capture::in_netns(ns, f),
            None => f(),
        }
    }

    fn wait_until_listening(&self) {
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.within(|| TcpStream::connect(("127.0.0.1", port)).is_err()) {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections are accepted by the
    /// kernel, requests hang.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS environment a user sets for this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
    }

    /// CreateBucket is a bare `PUT /bucket`; moto does not check signatures.
    pub fn create_bucket(&self, bucket: &str) {
        let mut stream = self.within(|| TcpStream::connect(("127.0.0.1", self.port)).unwrap());
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flows in Hubble JSON files (every event with a verdict), counted from the JSON.
pub fn count_flows(files: &[PathBuf]) -> u64 {
    count_json(files)
        .iter()
        .filter(|(k, _)| k.starts_with("verdict="))
        .map(|(_, v)| v)
        .sum()
}

pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The value of an unlabelled Prometheus sample.
pub fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// The number just before `pattern` in a recorder's summary line.
pub fn summary_number(summary: &str, pattern: &str) -> u64 {
    let (before, _) = summary
        .split_once(pattern)
        .unwrap_or_else(|| panic!("no {pattern:?} in {summary}"));
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// GET `path` from `address`: the status line and the body.
pub fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// A child process whose stderr is collected as it comes (so it never blocks on a full pipe);
/// killed on drop.
pub struct Process {
    child: Child,
    output: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Process {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let output = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { return };
                let mut output = collected.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        });
        Process {
            child,
            output,
            reader: Some(reader),
        }
    }

    /// The peak resident memory of the process so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        vm_hwm_kib(self.child.id()).expect("the process runs") / 1024
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output contains `pattern`; returns it. Fails if the process exits
    /// first, or after 30 s.
    pub fn wait_for(&mut self, pattern: &str) -> String {
        self.wait_for_within(pattern, Duration::from_secs(30))
    }

    /// [`Process::wait_for`] with another limit.
    pub fn wait_for_within(&mut self, pattern: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.output();
            if text.contains(pattern) {
                return text;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "exited ({status}) before printing {pattern:?}: {}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {pattern:?} after {limit:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; the exit status and everything it printed. A process still running a minute
    /// later is killed and the test fails (a hang would otherwise hold CI).
    pub fn stop(mut self) -> (ExitStatus, String) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running a minute after SIGTERM: {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        (status, self.output())
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flowrec run` with `source` arguments, spooling in `spool`, named `oracle-node`, sealing
/// every second, serving metrics on a free port; returned once it records.
pub struct LiveRecorder {
    pub process: Process,
    metrics: String,
}

impl LiveRecorder {
    pub fn start(source: &[&str], store: &str, spool: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_sealing(source, store, spool, env, &["--max-file-age", "1s"])
    }

    /// [`LiveRecorder::start`] with `sealing` flags instead of a seal every second (none:
    /// the defaults).
    pub fn start_sealing(
        source: &[&str],
        store: &str,
        spool: &Path,
        env: &[(&str, &str)],
        sealing: &[&str],
    ) -> Self {
        let mut command = Command::new(flowrec_bin());
        command
            .arg("run")
            .args(source)
            .args(["--store", store, "--spool"])
            .arg(spool)
            .args(["--node-name", "oracle-node"])
            .args(sealing)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env_remove("FLOW_STORE");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(command);
        let text = process.wait_for("recording flows");
        let metrics = text
            .split("serving metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .to_string();
        LiveRecorder { process, metrics }
    }

    pub fn scrape(&self) -> String {
        self.get("/metrics").1
    }

    /// GET `path` from the metrics server: the status line and the body.
    pub fn get(&self, path: &str) -> (String, String) {
        http_get(&self.metrics, path)
    }

    pub fn metric(&self, name: &str) -> u64 {
        metric(&self.scrape(), name)
    }

    /// Waits until `done` holds for the metrics (or fails after `limit`).
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let metrics = self.scrape();
            if done(&metrics) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not after {limit:?}:\n{metrics}\n{}",
                self.process.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `flows` flows were read (and `malformed` lines skipped) by this run.
    pub fn wait_until_read(&self, flows: u64, malformed: u64) {
        self.wait_for("the lines read", Duration::from_secs(120), |m| {
            metric(m, "flowrec_flows_received_total") == flows
                && metric(m, "flowrec_lines_malformed_total") == malformed
        });
    }

    /// Waits until the recorder found nothing more to read and shipped all it recorded (for
    /// a file no longer written to).
    pub fn wait_until_done(&self) {
        self.wait_for("caught up and shipped", Duration::from_secs(120), |m| {
            metric(m, "flowrec_source_caught_up") == 1
                && metric(m, "flowrec_source_waiting") == 0
                && metric(m, "flowrec_spool_segments_waiting") == 0
        });
    }

    /// SIGTERM; the exit status and everything it printed.
    pub fn stop(self) -> (ExitStatus, String) {
        self.process.stop()
    }

    /// SIGKILL: nothing flushed, nothing shipped.
    pub fn kill(self) {
        self.process.kill()
    }
}

/// Runs a Python script (duckdb installed by .ci/setup.sh); its stdout.
pub fn python(script: &str) -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed (pip install duckdb; .ci/run does):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub fn flowstore_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flowstore"))
}

pub fn flowstore(args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from(command(&flowstore_bin(), args, env).output().unwrap())
}

/// One Hubble flow as the exporter writes it (jsonpb envelope), with the fields the store
/// tests look at; `time_ns` is when it was observed.
pub fn flow_line(uuid: &str, time_ns: i64, node: &str, verdict: &str) -> String {
    let time = chrono::DateTime::from_timestamp_nanos(time_ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let drop = if verdict == "DROPPED" {
        r#","drop_reason_desc":"POLICY_DENIED""#
    } else {
        ""
    };
    format!(
        r#"{{"flow":{{"time":"{time}","uuid":"{uuid}","verdict":"{verdict}"{drop},"IP":{{"source":"10.0.1.{a}","destination":"10.0.2.{b}","ipVersion":"IPv4"}},"l4":{{"TCP":{{"source_port":{port},"destination_port":80}}}},"source":{{"namespace":"team-{a}","pod_name":"client-{a}-7d9f8b6c4-x2k9p","labels":["k8s:app=client-{a}"]}},"destination":{{"namespace":"prod","pod_name":"server-5c7b9d8f6-qrstu","labels":["k8s:app=server"],"workloads":[{{"name":"server","kind":"Deployment"}}]}},"Type":"L3_L4","node_name":"{node}","traffic_direction":"EGRESS","is_reply":false}},"node_name":"{node}","time":"{time}"}}"#,
        a = (time_ns / 7) % 5,
        b = (time_ns / 11) % 3,
        port = 30000 + (time_ns % 30000),
    )
}

/// A python snippet's prelude: a boto3 client of `moto`.
fn boto3(moto: &Moto) -> String {
    format!(
        "import boto3, sys, json\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing')\n",
        moto.endpoint()
    )
}

/// Every key under `prefix` of `bucket`, with its size.
pub fn s3_keys(moto: &Moto, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    let script = format!(
        "{}keys = []\nfor page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}', Prefix='{prefix}'):\n    keys += [[o['Key'], o['Size']] for o in page.get('Contents', [])]\nprint(json.dumps(keys))\n",
        boto3(moto)
    );
    let keys: Vec<(String, u64)> = serde_json::from_str(python(&script).trim()).unwrap();
    keys
}

/// The object's ETag, without its quotes: `MD5-N` for an object uploaded in N parts.
pub fn s3_etag(moto: &Moto, bucket: &str, key: &str) -> String {
    let script = format!(
        "{}print(s3.head_object(Bucket='{bucket}', Key='{key}')['ETag'].strip('\"'))\n",
        boto3(moto)
    );
    python(&script).trim().to_owned()
}

/// Uploads a local file as `key`.
pub fn s3_put(moto: &Moto, bucket: &str, key: &str, file: &Path) {
    python(&format!(
        "{}s3.upload_file('{}', '{bucket}', '{key}')\n",
        boto3(moto),
        file.display()
    ));
}

/// Downloads everything under `prefix` into `to` (keys become paths).
pub fn s3_download(moto: &Moto, bucket: &str, prefix: &str, to: &Path) {
    python(&format!(
        "{}import os\nfor page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}', Prefix='{prefix}'):\n    for o in page.get('Contents', []):\n        path = os.path.join('{}', o['Key'])\n        os.makedirs(os.path.dirname(path), exist_ok=True)\n        s3.download_file('{bucket}', o['Key'], path)\n",
        boto3(moto),
        to.display()
    ));
}

/// Runs `bin` with `args`; its exit status and stderr, or a failure if it still runs after
/// `limit` (it is killed).
pub fn exits_within(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String) {
    let mut child = command(bin, args, env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{} {args:?} still runs after {limit:?}: {}",
                bin.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A tmpfs of `size` mounted on a fresh folder (read-only if asked), unmounted and removed on
/// drop: a disk that fills up on cue, or one nothing can be written to, even by root.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(size: &str, read_only: bool) -> Tmpfs {
        // SAFETY: no arguments, no memory.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "mounting a tmpfs needs root (CI runs the suite as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flowsql-e2e-disk-")
            .tempdir()
            .unwrap();
        let options = format!("size={size}{}", if read_only { ",ro" } else { "" });
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }

    pub fn path(&self) -> &str {
        self.0.path().to_str().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A certificate authority, a server certificate for localhost / 127.0.0.1 and a client
/// certificate per name of `clients` (CN = the name), made with openssl in `dir`; a second,
/// unrelated authority, and a client `intruder` it signed.
pub fn certificates(dir: &Path, clients: &[&str]) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed by .ci/setup.sh");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (key_file, cert_file, subject) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN=flowrec test {ca}"),
        );
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
        args.extend_from_slice(&key);
        args.extend_from_slice(&["-keyout", &key_file, "-out", &cert_file]);
        openssl(&args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let ends = clients.iter().map(|c| (*c, "client.ext", "ca")).chain([
        ("server", "server.ext", "ca"),
        ("intruder", "client.ext", "other-ca"),
    ]);
    for (end, ext, ca) in ends {
        let (key_file, csr, cert, ca_cert, ca_key) = (
            format!("{end}.key"),
            format!("{end}.csr"),
            format!("{end}.crt"),
            format!("{ca}.crt"),
            format!("{ca}.key"),
        );
        let subject = format!("/CN={end}");
        let mut args = vec!["req", "-subj", &subject];
        args.extend_from_slice(&key);
        args.extend_from_slice(&["-keyout", &key_file, "-out", &csr]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            &cert,
        ]);
    }
}

/// The peak resident memory of process `pid` so far (`VmHWM`, KiB); `None` once it has exited
/// (a zombie's status has no memory lines).
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The kernel memory of the BPF maps process `pid` holds open (the memlock of each map fd in
/// /proc/PID/fdinfo), which the kernel charges to its memory cgroup beside its RSS.
pub fn bpf_maps_kib(pid: u32) -> u64 {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("the process runs");
    let bytes: u64 = fds
        .filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l.starts_with("map_type:")))
        .filter_map(|info| {
            let memlock = info.lines().find_map(|l| l.strip_prefix("memlock:"))?;
            memlock.trim().parse::<u64>().ok()
        })
        .sum();
    bytes / 1024
}
