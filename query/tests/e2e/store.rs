//! Store maintenance (`flowstore`): compaction under concurrent writers, readers and SIGKILL,
//! rollups against an independent aggregation, retention, damaged objects, schema versions,
//! and the CronJob manifest.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

const HOUR: i64 = 3_600_000_000_000;

/// A small deterministic PRNG (xorshift64*), seeded per run and printed, so a failing run can
/// be replayed with FLOWSTORE_ORACLE_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// Writes `count` flows with uuids `{prefix}-{i}`, at random times in `[from, from + span)`.
fn flows_file(
    dir: &Path,
    name: &str,
    prefix: &str,
    count: u64,
    from: i64,
    span: i64,
    rng: &mut Rng,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..count {
        let time = from + rng.below(span as u64) as i64;
        let verdict = if rng.below(10) == 0 {
            "DROPPED"
        } else {
            "FORWARDED"
        };
        writeln!(
            out,
            "{}",
            flow_line(&format!("{prefix}-{i}"), time, prefix, verdict)
        )
        .unwrap();
    }
    out.flush().unwrap();
    path
}

/// (count, distinct uuids) of `flows`.
fn counts(store: &str, env: &[(&str, &str)]) -> (u64, u64) {
    let run = flowsql(
        &[
            "--store",
            store,
            "--format",
            "csv",
            "select count(*), count(distinct uuid) from flows",
        ],
        env,
    )
    .ok();
    let line = run.stdout.lines().nth(1).unwrap().to_string();
    let (a, b) = line.split_once(',').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn compaction_killed_at_random_moments_never_shows_a_flow_twice_or_misses_one() {
    let seed: u64 = std::env::var("FLOWSTORE_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ns() as u64 | 1);
    let rounds: u64 = std::env::var("FLOWSTORE_ORACLE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("oracle: FLOWSTORE_ORACLE_SEED={seed} FLOWSTORE_ORACLE_ROUNDS={rounds}");
    let moto = Moto::start();
    moto.create_bucket("oracle");
    let env = moto.env();
    let store = "s3://oracle/fleet";
    let dir = tempfile::tempdir().unwrap();
    // Three settled hours, a few hours back: every import lands in hours a compactor works on.
    let base = (now_ns() - 6 * HOUR).div_euclid(HOUR) * HOUR;
    let started = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for writer in 0..2u64 {
            let (started, committed, env, dir) =
                (started.clone(), committed.clone(), env.clone(), dir.path());
            writers.push(scope.spawn(move || {
                let env = env_refs(&env);
                let mut rng = Rng(seed ^ (writer + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for round in 0..rounds {
                    let count = 50 + rng.below(300);
                    let name = format!("w{writer}-{round}.jsonl");
                    let prefix = format!("w{writer}-{round}");
                    let file = flows_file(dir, &name, &prefix, count, base, 3 * HOUR, &mut rng);
                    started.fetch_add(count, Ordering::SeqCst);
                    let node = format!("writer-{writer}");
                    let run = flowrec(
                        &[
                            "import",
                            "--store",
                            store,
                            "--node-name",
                            &node,
                            file.to_str().unwrap(),
                        ],
                        &env,
                    );
                    assert_eq!(run.status, 0, "import: {}", run.stderr);
                    committed.fetch_add(count, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(rng.below(300)));
                }
            }));
        }
        // The compactor, in a loop: every other run is SIGKILLed at a random moment of the
        // time a run takes, the others run to the end; until the writers are done and both
        // happened a few times.
        let compactor_done = Arc::new(AtomicBool::new(false));
        let compactor = {
            let (writers_done, compactor_done, env) =
                (writers_done.clone(), compactor_done.clone(), env.clone());
            scope.spawn(move || {
                let mut rng = Rng(seed.rotate_left(17) | 1);
                let (mut completed, mut kills) = (0, 0);
                let mut typical = Duration::from_secs(2);
                let started_at = Instant::now();
                while !(writers_done.load(Ordering::SeqCst) && completed >= 3 && kills >= 3)
                    && started_at.elapsed() < Duration::from_secs(240)
                {
                    let kill = (completed + kills) % 2 == 1;
                    let mut child = command(
                        &flowstore_bin(),
                        &[
                            "--store",
                            store,
                            "compact",
                            "--settle",
                            "0s",
                            "--grace",
                            "5s",
                            "--orphan-grace",
                            "0s",
                        ],
                        &env_refs(&env),
                    )
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                    let run_started = Instant::now();
                    let deadline = run_started + typical.mul_f64(rng.below(1000) as f64 / 1000.0);
                    loop {
                        if let Some(status) = child.try_wait().unwrap() {
                            let mut stderr = String::new();
                            std::io::Read::read_to_string(
                                child.stderr.as_mut().unwrap(),
                                &mut stderr,
                            )
                            .unwrap();
                            assert!(status.success(), "compact failed: {stderr}");
                            completed += 1;
                            typical = run_started.elapsed();
                            break;
                        }
                        if kill && Instant::now() >= deadline {
                            child.kill().unwrap();
                            child.wait().unwrap();
                            kills += 1;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                compactor_done.store(true, Ordering::SeqCst);
                (completed, kills)
            })
        };
        // The reader: while writers write, every answer lies between what was imported before
        // it started and what had started being imported when it ended; afterwards, it is the
        // total. Never a flow twice.
        let (mut reads, mut exact_reads) = (0, 0);
        let env_r = env_refs(&env);
        while !compactor_done.load(Ordering::SeqCst) {
            let writing = writers.iter().any(|w| !w.is_finished());
            let low = committed.load(Ordering::SeqCst);
            let (count, distinct) = counts(store, &env_r);
            let high = started.load(Ordering::SeqCst);
            assert_eq!(count, distinct, "a flow was read twice (seed {seed})");
            assert!(
                low <= count && count <= high,
                "{low} <= {count} <= {high} (seed {seed})"
            );
            if !writing {
                writers_done.store(true, Ordering::SeqCst);
                assert_eq!(
                    count, high,
                    "flows missing after the writers finished (seed {seed})"
                );
                exact_reads += 1;
            }
            reads += 1;
        }
        for writer in writers {
            writer.join().unwrap();
        }
        let (completed, kills) = compactor.join().unwrap();
        eprintln!("oracle: {reads} reads ({exact_reads} after the writers), {completed} compactor runs completed, {kills} killed");
        assert!(
            reads >= 5 && exact_reads >= 1 && completed >= 3 && kills >= 3,
            "the oracle did not exercise enough"
        );
    });
    // Everything settles: one more run finishes what the killed ones left, and deletes it.
    let total = committed.load(Ordering::SeqCst);
    let env_r = env_refs(&env);
    assert_eq!(counts(store, &env_r), (total, total));
    let finish = [
        "--store",
        store,
        "compact",
        "--settle",
        "0s",
        "--grace",
        "0s",
        "--orphan-grace",
        "0s",
    ];
    flowstore(&finish, &env_r).ok();
    flowstore(&finish, &env_r).ok();
    assert_eq!(counts(store, &env_r), (total, total));
    // Each hour: one compacted file (they are far below the size target), its commit, nothing
    // else; and its rollup.
    let keys = s3_keys(&moto, "oracle", "fleet/flows/v1/");
    let mut hours = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (key, _) in &keys {
        let (hour, name) = key.rsplit_once('/').unwrap();
        hours
            .entry(hour.to_string())
            .or_default()
            .push(name.to_string());
    }
    assert_eq!(hours.len(), 3, "{keys:?}");
    for (hour, names) in &hours {
        let compacted = names.iter().filter(|n| n.starts_with("compacted.")).count();
        let commits = names.iter().filter(|n| n.starts_with("_commit.")).count();
        assert_eq!(
            (compacted, commits, names.len()),
            (1, 1, 2),
            "{hour}: {names:?}"
        );
    }
    let rollups = s3_keys(&moto, "oracle", "fleet/flows_hourly/v1/");
    assert_eq!(rollups.len(), 3, "{rollups:?}");
    let rolled = flowsql(
        &[
            "--store",
            store,
            "--format",
            "csv",
            "select sum(flows) from flows_hourly",
        ],
        &env_r,
    )
    .ok();
    assert_eq!(rolled.stdout.lines().nth(1).unwrap(), total.to_string());
}

/// What a user sees of the store: every answer the tools give over the incident's hours.
fn answers(store: &str) -> Vec<String> {
    let sql = |sql: &str| {
        flowsql(&["--store", store, "--format", "csv", sql], &[])
            .ok()
            .stdout
    };
    let replay = flowsql(
        &[
            "--store",
            store,
            "--since",
            "2026-11-24T09:05Z",
            "--until",
            "2026-11-24T09:10Z",
            "replay",
            "-n",
            "prod-app",
            "--verdict",
            "DROPPED",
            "--first",
            "0",
        ],
        &[],
    )
    .ok()
    .stdout;
    let regressions = flowsql(
        &[
            "--store",
            store,
            "--format",
            "csv",
            "regressions",
            "--baseline",
            "1h",
            "--window",
            "2026-11-24T09:00Z..2026-11-24T09:47Z",
            "--also-newly-allowed",
        ],
        &[],
    )
    .ok()
    .stdout;
    vec![
        sql("select * from flows order by time, uuid, node_name"),
        sql("select verdict, drop_reason_desc, count(*) from flows group by 1, 2 order by 1, 2"),
        sql("select * from lost_events order by time, node_name"),
        replay,
        regressions,
    ]
}

/// Every `.parquet` file under the flows folder, as a plain glob reader (DuckDB) sees them.
fn duckdb_count(store: &str) -> u64 {
    python(&format!(
        "import duckdb\nprint(duckdb.execute(\"select count(*) from read_parquet('{store}/flows/**/*.parquet')\").fetchone()[0])"
    ))
    .trim()
    .parse()
    .unwrap()
}

/// `flowstore compact` of every hour at once, replaced files deleted at once; the incident
/// hour is merged from 2 files into 1.
fn compact_settled(store: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "--store", store, "compact", "--settle", "0s", "--grace", "0s",
    ];
    args.extend_from_slice(extra);
    let run = flowstore(&args, &[]).ok();
    assert!(
        run.stderr
            .contains("compacted flows 2026-11-24T09:00:00Z: 2 files into 1"),
        "{}",
        run.stderr
    );
    run
}

#[test]
fn compacted_hours_answer_exactly_like_the_files_they_replaced() {
    let (_dir, store) = temp_store();
    let samples = hubble_samples();
    for node in ["node-a", "node-b"] {
        let mut args = vec!["import", "--store", &store, "--node-name", node];
        let capture = incident_capture().display().to_string();
        args.push(&capture);
        let names: Vec<String> = samples.iter().map(|p| p.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        flowrec(&args, &[]).ok();
    }
    let before = answers(&store);
    let files_before = parquet_files(Path::new(&store));
    let flows: u64 = before[0].lines().count() as u64 - 1;

    // --dry-run says what it would do and changes nothing.
    let dry = flowstore(
        &["--store", &store, "--dry-run", "compact", "--settle", "0s"],
        &[],
    )
    .ok();
    assert!(
        dry.stderr
            .contains("would compact flows 2026-11-24T09:00:00Z: 2 files"),
        "{}",
        dry.stderr
    );
    assert_eq!(parquet_files(Path::new(&store)), files_before);

    // Merged through sorted runs on local disk (an hour with more overlapping inputs than
    // --merge-width, as a large fleet's hours have): the same answers.
    let (_runs_dir, runs_store) = temp_store();
    let copied = std::process::Command::new("cp")
        .args(["-a", &format!("{store}/."), &runs_store])
        .status()
        .unwrap();
    assert!(copied.success());
    let run = compact_settled(&runs_store, &["--merge-width", "1"]);
    assert!(
        run.stderr
            .contains("2 overlapping sequences of files: merged through 2 sorted runs"),
        "{}",
        run.stderr
    );
    assert_eq!(answers(&runs_store), before);
    let bad = flowstore(
        &["--store", &runs_store, "compact", "--merge-width", "0"],
        &[],
    );
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--merge-width"), "{}", bad.stderr);

    // Compacted with the default grace: readers see the merged files only, the replaced ones
    // stay for the grace period (a plain glob reader sees both meanwhile).
    let run = flowstore(&["--store", &store, "compact", "--settle", "0s"], &[]).ok();
    assert!(
        run.stderr
            .contains("compacted flows 2026-11-24T09:00:00Z: 2 files into 1"),
        "{}",
        run.stderr
    );
    assert_eq!(answers(&store), before);
    assert_eq!(duckdb_count(&store), 2 * flows);
    // ... and flowstore files gives DuckDB a view of exactly what flowsql reads.
    let view = flowstore(&["--store", &store, "files", "--format", "duckdb"], &[]).ok();
    let exact = python(&format!(
        "import duckdb\nduckdb.execute({:?})\nprint(duckdb.execute('select count(*) from flows').fetchone()[0])",
        view.stdout
    ));
    assert_eq!(exact.trim(), flows.to_string(), "{}", view.stdout);
    let du = flowstore(&["--store", &store, "du", "--format", "csv"], &[]).ok();
    let incident_day = du
        .stdout
        .lines()
        .find(|l| l.starts_with("flows,2026-11-24,"))
        .unwrap();
    // table,date,hours,compacted_hours,files,rows,bytes,pending_delete_objects,...
    let fields: Vec<&str> = incident_day.split(',').collect();
    assert_eq!(
        (fields[2], fields[3], fields[4]),
        ("3", "3", "3"),
        "{}",
        du.stdout
    );
    assert_eq!(fields[7], "6", "{}", du.stdout);

    // After the grace period, the replaced files go; nothing else changes.
    flowstore(
        &[
            "--store", &store, "compact", "--settle", "0s", "--grace", "0s",
        ],
        &[],
    )
    .ok();
    assert_eq!(answers(&store), before);
    assert_eq!(duckdb_count(&store), flows);
    let files: Vec<String> = parquet_files(Path::new(&store))
        .into_iter()
        .filter(|f| f.starts_with("flows/"))
        .collect();
    assert!(files.iter().all(|f| f.contains("/compacted.")), "{files:?}");

    // A late file lands in a compacted hour: visible at once, compacted again with it (a new
    // generation, one file), and its rollup follows.
    flowrec(
        &[
            "import",
            "--store",
            &store,
            "--node-name",
            "node-late",
            incident_capture().to_str().unwrap(),
        ],
        &[],
    )
    .ok();
    let (count, _) = counts(&store, &[]);
    assert_eq!(count, flows + 14_870);
    compact_settled(&store, &[]);
    let hour = Path::new(&store).join("flows/v1/date=2026-11-24/hour=09");
    let mut names: Vec<String> = std::fs::read_dir(&hour)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].starts_with("_commit.00000002") && names[1].starts_with("compacted.00000002."),
        "{names:?}"
    );
    let rolled = flowsql(
        &[
            "--store",
            &store,
            "--format",
            "csv",
            "select sum(flows) from flows_hourly",
        ],
        &[],
    )
    .ok();
    assert_eq!(
        rolled.stdout.lines().nth(1).unwrap(),
        (flows + 14_870).to_string()
    );
    let rollups = parquet_files(&Path::new(&store).join("flows_hourly"));
    let hours: std::collections::BTreeSet<String> = parquet_files(&Path::new(&store).join("flows"))
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(
        rollups.len(),
        hours.len(),
        "one rollup per hour (stale ones deleted): {rollups:?}"
    );

    // \d documents the rollup table.
    let mut child = command(&flowsql_bin(), &["--store", &store, "--format", "csv"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\\d flows_hourly\n\\q\n")
        .unwrap();
    let describe = child.wait_with_output().unwrap();
    let describe = String::from_utf8_lossy(&describe.stdout);
    assert!(
        describe.contains("policy_verdicts,") && describe.contains("destination_workload,string"),
        "{describe}"
    );
}

/// The rollup rows, aggregated independently by DuckDB from the raw Parquet files under
/// `raw`, and read by DuckDB from the rollup files under `rollups`: both as sorted JSON
/// tuples (hour, key columns, flows, policy verdicts, packets, bytes, first and last ns).
fn duckdb_rollups(raw: &Path, rollups: &Path) -> (Vec<String>, Vec<String>) {
    let peer = |side: &str, ip: &str| {
        format!(
            "coalesce({side}_workload, CASE WHEN {side}_pod_name IS NOT NULL THEN \
             regexp_replace({side}_pod_name, '(-[bcdfghjklmnpqrstvwxz2456789]{{6,10}})?-[bcdfghjklmnpqrstvwxz2456789]{{5}}$', '') END, \
             {side}_names[1], list_filter({side}_labels, lambda x: starts_with(x, 'reserved:'))[1], {ip})"
        )
    };
    let policies = |kind: &str| {
        format!(
            "nullif(array_to_string(list_concat(coalesce(list_transform(egress_{kind}_by, lambda p: p.name), []), \
             coalesce(list_transform(ingress_{kind}_by, lambda p: p.name), [])), ', '), '')"
        )
    };
    let path = "CASE WHEN http_url IS NULL THEN NULL ELSE coalesce(nullif(url_decode(regexp_extract(http_url, \
                '^(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)?(/[^?#]*)?', 1)), ''), '/') END";
    let raw_sql = format!(
        "SELECT strftime(date_trunc('hour', time), '%Y-%m-%dT%H'), source_namespace, {}, destination_namespace, {}, \
           destination_port, l4_protocol, traffic_direction, is_reply, verdict, drop_reason_desc, {}, {}, \
           l7_protocol, http_method, {path}, count(*), count(*) FILTER (WHERE event_type = 5), sum(packets), \
           sum(bytes), epoch_ns(min(time)), epoch_ns(max(time)) \
         FROM read_parquet('{}/**/*.parquet', hive_partitioning = false) GROUP BY ALL",
        peer("source", "ip_source"),
        peer("destination", "ip_destination"),
        policies("allowed"),
        policies("denied"),
        raw.display()
    );
    let rollup_sql = format!(
        "SELECT strftime(time, '%Y-%m-%dT%H'), source_namespace, source_workload, destination_namespace, \
           destination_workload, destination_port, l4_protocol, traffic_direction, is_reply, verdict, \
           drop_reason_desc, allowed_by, denied_by, l7_protocol, http_method, http_path, flows, policy_verdicts, \
           packets, bytes, epoch_ns(first_seen), epoch_ns(last_seen) \
         FROM read_parquet('{}/**/*.parquet', hive_partitioning = false)",
        rollups.display()
    );
    let script = format!(
        "import duckdb, json\nduckdb.execute(\"SET TimeZone = 'UTC'\")\n\
         rows = lambda sql: sorted(json.dumps([None if v is None else (v if isinstance(v, (int, bool)) else str(v)) for v in r]) for r in duckdb.execute(sql).fetchall())\n\
         print(json.dumps([rows({raw_sql:?}), rows({rollup_sql:?})]))\n"
    );
    serde_json::from_str(python(&script).trim()).unwrap()
}

#[test]
fn expire_keeps_rollups_equal_to_an_independent_aggregation_of_the_raw_flows() {
    let moto = Moto::start();
    moto.create_bucket("expire");
    let env = moto.env();
    let env = env_refs(&env);
    let store = "s3://expire/store";
    let mut files = vec![incident_capture()];
    files.extend(hubble_samples());
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    import(store, &refs, &env).ok();
    // A later hour, imported but not compacted: expiry must stop there.
    let dir = tempfile::tempdir().unwrap();
    let late_hour = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    let late = flows_file(
        dir.path(),
        "late.jsonl",
        "late",
        100,
        late_hour,
        HOUR,
        &mut Rng(7),
    );
    // An earlier hour of the same connections: the baseline of a regression query below.
    let earlier = flows_file(
        dir.path(),
        "earlier.jsonl",
        "earlier",
        200,
        late_hour - 14 * HOUR,
        HOUR,
        &mut Rng(8),
    );
    import(store, &[&late, &earlier], &env).ok();
    let (total, _) = counts(store, &env);
    flowstore(
        &[
            "--store",
            store,
            "compact",
            "--settle",
            "0s",
            "--grace",
            "0s",
            "--until",
            "2026-11-25T00:00Z",
        ],
        &env,
    )
    .ok();

    // The rollups equal DuckDB's own aggregation of the raw files they summarize.
    let copy = dir.path().join("copy");
    s3_download(&moto, "expire", "store/", &copy);
    let (independent, rolled) = duckdb_rollups(
        &copy.join("store/flows/v1"),
        &copy.join("store/flows_hourly/v1"),
    );
    assert!(independent.len() > 50, "{independent:?}");
    // The late hour is not rolled up: compare the others.
    let late_prefix = "[\"2026-11-25T10\"";
    let independent: Vec<String> = independent
        .into_iter()
        .filter(|r| !r.starts_with(late_prefix))
        .collect();
    assert_eq!(rolled, independent);

    // Expiry stops at the hour that is not rolled up (exit 1, named), expires the rest.
    let run = flowstore(
        &["--store", store, "expire", "--keep", "1d", "--grace", "0s"],
        &env,
    );
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("flows 2026-11-25T10:00:00Z: not compacted and rolled up yet"),
        "{}",
        run.stderr
    );
    let raw: Vec<String> = s3_keys(&moto, "expire", "store/flows/v1/")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        !raw.is_empty() && raw.iter().all(|k| k.contains("date=2026-11-25/hour=10/")),
        "{raw:?}"
    );
    assert_eq!(counts(store, &env).0, 100);
    let sum = |sql: &str| -> u64 {
        let run = flowsql(&["--store", store, "--format", "csv", sql], &env).ok();
        run.stdout.lines().nth(1).unwrap().parse().unwrap_or(0)
    };
    assert_eq!(sum("select sum(flows) from flows_hourly"), total - 100);
    // A baseline whose raw flows are gone is answered from its rollups.
    assert_eq!(
        sum("select count(*) from flows where time >= '2026-11-24T20:00:00Z' and time < '2026-11-24T21:00:00Z'"),
        0
    );
    let regressions = flowsql(
        &[
            "--store",
            store,
            "--format",
            "ndjson",
            "regressions",
            "--baseline",
            "2026-11-24T20:00Z..2026-11-24T21:00Z",
            "--window",
            "2026-11-25T10:00Z..2026-11-25T11:00Z",
        ],
        &env,
    )
    .ok()
    .rows();
    assert!(
        !regressions.is_empty(),
        "no regression found from the rollups"
    );
    assert!(
        regressions
            .iter()
            .all(|r| r["baseline_flows"].as_u64().unwrap() > 0
                && r["destination_workload"] == "server"),
        "{regressions:?}"
    );

    // Compacted and rolled up, the last hour expires too; a second run has nothing to do.
    flowstore(
        &[
            "--store", store, "compact", "--settle", "0s", "--grace", "0s",
        ],
        &env,
    )
    .ok();
    flowstore(
        &["--store", store, "expire", "--keep", "1d", "--grace", "0s"],
        &env,
    )
    .ok();
    let again = flowstore(
        &["--store", store, "expire", "--keep", "1d", "--grace", "0s"],
        &env,
    )
    .ok();
    assert!(
        again.stderr.contains("deleted 0 objects"),
        "{}",
        again.stderr
    );
    assert!(s3_keys(&moto, "expire", "store/flows/v1/").is_empty());
    assert_eq!(counts(store, &env).0, 0);
    assert_eq!(sum("select sum(flows) from flows_hourly"), total);

    // Rollups have their own retention.
    flowstore(
        &[
            "--store",
            store,
            "expire",
            "--keep-rollups",
            "1d",
            "--grace",
            "0s",
        ],
        &env,
    )
    .ok();
    assert!(s3_keys(&moto, "expire", "store/flows_hourly/v1/").is_empty());
    assert_eq!(sum("select coalesce(sum(flows), 0) from flows_hourly"), 0);
}

/// 2026-11-24T09:15:00Z, inside the incident's hours.
const NEWER_FLOW_TIME: i64 = 1_795_511_700_000_000_000;

/// Damaged objects of every kind, under names a recorder writes (so only their content is
/// wrong), and one under a name nobody writes; each becomes a file of `dir`.
fn damaged_objects(dir: &Path, good: &Path) -> Vec<(String, std::path::PathBuf, &'static str)> {
    let good_bytes = std::fs::read(good).unwrap();
    let mut garbage = b"PAR1".to_vec();
    garbage.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    garbage.extend(800u32.to_le_bytes());
    garbage.extend(b"PAR1");
    let newer = {
        use flow_schema::writer::{encode_batches, Provenance};
        let decoded = flow_schema::hubble::HubbleDecoder::new(
            flow_schema::CaptureSource::Import,
            Some("n".into()),
        )
        .decode(
            format!(
                "{}\n",
                flow_line("newer-1", NEWER_FLOW_TIME, "n", "FORWARDED")
            )
            .as_bytes(),
            1,
        );
        encode_batches(
            &[decoded.flows],
            flow_schema::Table::Flows.schema(),
            99,
            &Provenance::recorder("n", "import"),
        )
        .unwrap()
        .0
    };
    let foreign = dir.join("foreign-src.parquet");
    python(&format!(
        "import duckdb\nduckdb.execute(\"copy (select 1 as a) to '{}' (format parquet)\")",
        foreign.display()
    ));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero", Vec::new(), "empty object"),
        (
            "truncated",
            good_bytes[..good_bytes.len() / 2].to_vec(),
            "no PAR1",
        ),
        ("garbage", garbage, "unreadable footer"),
        (
            "foreign",
            std::fs::read(&foreign).unwrap(),
            "no flowsql.schema_version",
        ),
        ("newer", newer, "schema version 99 is newer"),
    ];
    let mut out = Vec::new();
    for (kind, bytes, reason) in cases {
        let path = dir.join(kind);
        std::fs::write(&path, bytes).unwrap();
        out.push((
            format!("bad.import.20261124T091500000000000Z.{kind}-1.parquet"),
            path,
            reason,
        ));
    }
    let path = dir.join("notes");
    std::fs::write(&path, &good_bytes).unwrap();
    out.push(("notes.parquet".to_string(), path, "not a name"));
    out
}

#[test]
fn damaged_objects_are_named_by_verify_and_left_out_by_every_reader() {
    let moto = Moto::start();
    moto.create_bucket("damaged");
    let moto_env = moto.env();
    let (_dir, local) = temp_store();
    let scratch = tempfile::tempdir().unwrap();
    let mut damaged = Vec::new();
    for store in [local.as_str(), "s3://damaged/store"] {
        let env = if store.starts_with("s3://") {
            env_refs(&moto_env)
        } else {
            Vec::new()
        };
        import(store, &[&incident_capture()], &env).ok();
        let (good, _) = counts(store, &env);
        let hour = "flows/v1/date=2026-11-24/hour=09";
        if damaged.is_empty() {
            let good_file = std::fs::read_dir(Path::new(&local).join(hour))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "parquet"))
                .unwrap();
            damaged = damaged_objects(scratch.path(), &good_file);
        }
        for (name, path, _) in &damaged {
            match store.strip_prefix("s3://damaged/") {
                Some(prefix) => s3_put(&moto, "damaged", &format!("{prefix}/{hour}/{name}"), path),
                None => {
                    std::fs::copy(path, Path::new(store).join(hour).join(name)).unwrap();
                }
            }
        }
        // verify names every one, with its reason.
        let verify = flowstore(&["--store", store, "verify"], &env);
        assert_eq!(verify.status, 1, "{}", verify.stderr);
        for (name, _, reason) in &damaged {
            let line = verify.stderr.lines().find(|l| l.contains(name.as_str()));
            assert!(
                line.is_some_and(|l| l.contains(reason)),
                "{store} {name}: {}",
                verify.stderr
            );
        }
        // A query goes on without them, names each, and says the answer is partial (exit 1).
        let run = flowsql(
            &[
                "--store",
                store,
                "--format",
                "csv",
                "select count(*) from flows",
            ],
            &env,
        );
        assert_eq!(run.status, 1, "{}", run.stderr);
        assert_eq!(
            run.stdout.lines().nth(1),
            Some(good.to_string().as_str()),
            "{}",
            run.stderr
        );
        for (name, _, reason) in &damaged {
            let line = run.stderr.lines().find(|l| l.contains(name.as_str()));
            assert!(
                line.is_some_and(|l| l.contains("skipped") && l.contains(reason)),
                "{store} {name}: {}",
                run.stderr
            );
        }
        // Outside the damaged hour nothing is said.
        let clean = flowsql(
            &[
                "--store",
                store,
                "--since",
                "2026-11-24T10:00Z",
                "--until",
                "2026-11-24T11:00Z",
                "select count(*) from flows",
            ],
            &env,
        );
        assert_eq!(clean.status, 0, "{}", clean.stderr);
        // --strict-store fails instead, naming the object.
        let strict = flowsql(
            &[
                "--store",
                store,
                "--strict-store",
                "select count(*) from flows",
            ],
            &env,
        );
        assert_eq!(strict.status, 1);
        assert!(
            strict.stderr.contains("damaged store object") && strict.stderr.contains("hour=09/"),
            "{}",
            strict.stderr
        );
        // Replay and regressions follow the same policy.
        let replay = flowsql(
            &[
                "--store",
                store,
                "--since",
                "2026-11-24T09:00Z",
                "--until",
                "2026-11-24T10:00Z",
                "replay",
                "--last",
                "1",
            ],
            &env,
        );
        assert_eq!(replay.status, 1, "{}", replay.stderr);
        assert!(
            replay.stderr.contains("skipped") && !replay.stdout.is_empty(),
            "{}",
            replay.stderr
        );
        // A report lists what it left out in its JSON, and exits 1 even when every check
        // passed.
        let work = tempfile::tempdir().unwrap();
        let spec = work.path().join("spec.yaml");
        std::fs::write(
            &spec,
            "checks:\n- name: recorded\n  sql: select 1 from flows where false\n",
        )
        .unwrap();
        let json = work.path().join("report.json");
        let report = flowsql(
            &[
                "--store",
                store,
                "--since",
                "2026-11-24T09:00Z",
                "--until",
                "2026-11-24T10:00Z",
                "report",
                spec.to_str().unwrap(),
                "--json",
                json.to_str().unwrap(),
            ],
            &env,
        );
        assert_eq!(report.status, 1, "{}", report.stderr);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let skipped = report["skipped_objects"].as_array().unwrap();
        for (name, _, _) in &damaged {
            assert!(
                skipped
                    .iter()
                    .any(|o| o.as_str().is_some_and(|o| o.contains(name.as_str()))),
                "{name}: {skipped:?}"
            );
        }
        // Compaction leaves the hour as it is (it never drops rows), does the others.
        let compact = flowstore(
            &[
                "--store", store, "compact", "--settle", "0s", "--grace", "0s",
            ],
            &env,
        );
        assert_eq!(compact.status, 1, "{}", compact.stderr);
        assert!(
            compact.stderr.contains("the hour is left as it is"),
            "{}",
            compact.stderr
        );
        assert!(
            compact
                .stderr
                .contains("compacted flows 2026-11-24T10:00:00Z"),
            "{}",
            compact.stderr
        );
        assert!(
            !compact
                .stderr
                .contains("compacted flows 2026-11-24T09:00:00Z"),
            "{}",
            compact.stderr
        );
        assert_eq!(
            flowsql(
                &[
                    "--store",
                    store,
                    "--format",
                    "csv",
                    "select count(*) from flows"
                ],
                &env
            )
            .stdout
            .lines()
            .nth(1),
            Some(good.to_string().as_str())
        );
    }
    // A scan of many files (a whole hour of a large fleet) reads each footer only when it
    // opens the file: the same policy applies there.
    let hour = Path::new(&local).join("flows/v1/date=2026-11-24/hour=11");
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-24T11:00:00Z")
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    let small = flows_file(
        dir.path(),
        "small.jsonl",
        "small",
        3,
        start,
        HOUR,
        &mut Rng(3),
    );
    import(&local, &[&small], &[]).ok();
    let one = std::fs::read_dir(&hour)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for i in 0..1100 {
        let name = format!("copy-{i}.import.20261124T110000000000000Z.w-{i}.parquet");
        std::fs::copy(&one, hour.join(name)).unwrap();
    }
    for (name, path, _) in &damaged {
        std::fs::copy(path, hour.join(name)).unwrap();
    }
    let window = [
        "--since",
        "2026-11-24T11:00Z",
        "--until",
        "2026-11-24T12:00Z",
    ];
    let run = flowsql(
        &[
            &["--store", &local, "--format", "csv"][..],
            &window,
            &["select count(*) from flows"],
        ]
        .concat(),
        &[],
    );
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert_eq!(run.stdout.lines().nth(1), Some("3303"), "{}", run.stderr);
    for (name, _, reason) in &damaged {
        let line = run.stderr.lines().find(|l| l.contains(name.as_str()));
        assert!(
            line.is_some_and(|l| l.contains(reason)),
            "{name}: {}",
            run.stderr
        );
    }
    let strict = flowsql(
        &[
            &["--store", &local, "--strict-store"][..],
            &window,
            &["select count(*) from flows"],
        ]
        .concat(),
        &[],
    );
    assert_eq!(strict.status, 1);
    assert!(
        strict.stderr.contains("damaged store object"),
        "{}",
        strict.stderr
    );
}

/// A later schema version made by hand: version 1 plus one column, as a newer Cilium field
/// would arrive.
fn schema_v2() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let v1 = flow_schema::Table::Flows.schema();
    let mut fields: Vec<Field> = v1.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(
        "tunnel_flags",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        true,
    ));
    std::sync::Arc::new(Schema::new(fields))
}

/// Writes `count` version-2 flows into the incident's 09:00 hour, as a newer recorder would.
fn write_v2_file(store: &Path, count: usize) {
    use datafusion::arrow::array::{DictionaryArray, RecordBatch};
    use datafusion::arrow::datatypes::Int32Type;
    let lines: String = (0..count)
        .map(|i| {
            flow_line(
                &format!("v2-{i}"),
                NEWER_FLOW_TIME + i as i64 * 1_000_000,
                "v2-node",
                "FORWARDED",
            ) + "\n"
        })
        .collect();
    let decoded = flow_schema::hubble::HubbleDecoder::new(flow_schema::CaptureSource::Import, None)
        .decode(lines.as_bytes(), 1);
    assert_eq!(decoded.flows.num_rows(), count);
    let v2 = schema_v2();
    let conformed = flow_schema::schema::conform(&decoded.flows, &v2).unwrap();
    let mut columns = conformed.columns().to_vec();
    let flags: DictionaryArray<Int32Type> = std::iter::repeat_n(Some("ENCRYPTED"), count).collect();
    *columns.last_mut().unwrap() = std::sync::Arc::new(flags);
    let batch = RecordBatch::try_new(v2.clone(), columns).unwrap();
    let (bytes, _) = flow_schema::writer::encode_batches(
        &[batch],
        v2,
        2,
        &flow_schema::writer::Provenance::recorder("v2-node", "import"),
    )
    .unwrap();
    let key = flow_schema::layout::FileName {
        table: flow_schema::Table::Flows,
        node: "v2-node",
        source: "import",
        first_time_ns: NEWER_FLOW_TIME,
        writer_id: "v2",
    }
    .key();
    std::fs::write(store.join(key), bytes).unwrap();
}

#[test]
fn a_hand_made_schema_version_2_is_read_as_one_table_and_compacted_into() {
    use flowsql::maintenance::cli::{CompactArgs, GraceArgs, HourArgs};
    use flowsql::maintenance::{Maintainer, Schemas};
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    write_v2_file(Path::new(&store), 5);

    // This build knows version 1: the newer file is named and left out (upgrade readers first).
    let run = flowsql(
        &[
            "--store",
            &store,
            "--format",
            "csv",
            "select count(*) from flows",
        ],
        &[],
    );
    assert_eq!(run.status, 1);
    assert_eq!(run.stdout.lines().nth(1), Some("14870"));
    assert!(
        run.stderr
            .contains("schema version 2 is newer than this build reads (up to 1)"),
        "{}",
        run.stderr
    );

    // A build that knows version 2 reads both as one table: NULL where version 1 had no column.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let v2_counts = |store: &str| -> Vec<String> {
        runtime.block_on(async {
            let session = flowsql::session::FlowSession::open(
                store,
                Default::default(),
                flowsql::session::ReadOptions::FLOWSQL,
            )
            .await
            .unwrap();
            let table = flowsql::table::StoreTable::recorded_as(
                session.reader.clone(),
                flow_schema::Table::Flows,
                schema_v2(),
                2,
            );
            session.ctx.register_table("flows_v2", std::sync::Arc::new(table)).unwrap();
            let batches = session
                .ctx
                .sql("select count(*), count(tunnel_flags), count(*) filter (where tunnel_flags = 'ENCRYPTED' and uuid like 'v2-%') from flows_v2")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert!(!session.damaged());
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
                .lines()
                .nth(3)
                .unwrap()
                .split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
    };
    assert_eq!(v2_counts(&store), vec!["14875", "5", "5"]);

    // Compaction by that build merges both versions into version 2.
    runtime.block_on(async {
        let schemas = Schemas {
            flows: (schema_v2(), 2),
            ..Schemas::current()
        };
        let maintainer = Maintainer::open(&store, false, schemas).await.unwrap();
        let args = CompactArgs {
            hours: HourArgs {
                settle: std::time::Duration::ZERO,
                since: None,
                until: None,
            },
            grace: GraceArgs {
                grace: std::time::Duration::ZERO,
                orphan_grace: std::time::Duration::ZERO,
            },
            target_size: 512 << 20,
            merge_width: 12,
            no_rollup: false,
            max_hours: None,
        };
        maintainer.compact(&args).await.unwrap();
        assert_eq!(maintainer.problem_count(), 0);
    });
    let hour = Path::new(&store).join("flows/v1/date=2026-11-24/hour=09");
    let compacted: Vec<std::path::PathBuf> = std::fs::read_dir(&hour)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(compacted.len(), 1, "{compacted:?}");
    let footer = python(&format!(
        "import duckdb\nprint(duckdb.execute(\"select value from parquet_kv_metadata('{}') where key = 'flowsql.schema_version'\").fetchone()[0].decode())",
        compacted[0].display()
    ));
    assert_eq!(footer.trim(), "2");
    assert_eq!(v2_counts(&store), vec!["14875", "5", "5"]);
}
