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
    let run = flowstore(
        &[
            "--store", &store, "compact", "--settle", "0s", "--grace", "0s",
        ],
        &[],
    )
    .ok();
    assert!(
        run.stderr
            .contains("compacted flows 2026-11-24T09:00:00Z: 2 files into 1"),
        "{}",
        run.stderr
    );
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
    import(store, &[&late], &env).ok();
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
