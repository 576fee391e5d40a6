//! End-to-end scenarios: the real binaries, real files, a real S3-protocol server, DuckDB.
//! One test binary for the whole workspace (build time matters on 2 cores).

mod capture;
mod cluster;
mod deploy;
mod follow;
mod hubble;
mod policy;
mod replay;
mod report;
mod serve;
mod store;
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn real_hubble_samples_import_completely_and_count_like_the_json() {
    let (_dir, store) = temp_store();
    let files = hubble_samples();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let run = import(&store, &refs, &[]).ok();
    assert!(!run.stderr.contains("skipped"), "{}", run.stderr);
    let expected = count_json(&files);
    assert_eq!(count_store(&store, &[]), expected);
    let total: u64 = expected
        .iter()
        .filter(|(k, _)| k.starts_with("verdict="))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 412);
    assert!(run.stderr.contains("imported 412 flows"), "{}", run.stderr);
}

#[test]
fn the_typo_policy_incident_is_answered() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    assert_eq!(count_store(&store, &[]), count_json(&[incident_capture()]));

    // The motivating question, as the README asks it.
    let rows = query(
        &store,
        "select source_workload, destination_workload, destination_port, drop_reason_desc,
                egress_denied_by[1]['name'] as policy, count(*) as flows,
                min(time) as first_drop, max(time) as last_drop
         from flows where verdict = 'DROPPED' and drop_reason_desc is not null
         group by 1, 2, 3, 4, 5",
        &[],
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["source_workload"], "api-gateway");
    assert_eq!(row["destination_workload"], "user-service");
    assert_eq!(row["destination_port"], 80);
    assert_eq!(row["drop_reason_desc"], "POLICY_DENIED");
    assert_eq!(row["policy"], "api-access-policy");
    let first = row["first_drop"].as_str().unwrap();
    assert!(first.starts_with("2026-11-24T09:05"), "{first}");
    let last = row["last_drop"].as_str().unwrap();
    assert!(last.starts_with("2026-11-24T09:4"), "{last}");

    // Independent count of the same question from the JSON.
    let dropped_by_policy = json_lines(&incident_capture())
        .iter()
        .filter(|l| l["flow"]["drop_reason_desc"] == "POLICY_DENIED")
        .count() as u64;
    assert_eq!(row["flows"].as_u64().unwrap(), dropped_by_policy);

    // The exact statement from the brief works as written.
    let all_dropped = query(&store, "select * from flows where verdict='DROPPED'", &[]);
    let json_dropped = json_lines(&incident_capture())
        .iter()
        .filter(|l| l["flow"]["verdict"] == "DROPPED")
        .count();
    assert_eq!(all_dropped.len(), json_dropped);
}

#[test]
fn every_file_is_sorted_hourly_and_self_describing() {
    let (dir, store) = temp_store();
    import(
        &store,
        &[&incident_capture()],
        &[("NODE_NAME", "kind-kind/kind-worker")],
    )
    .ok();
    let files = parquet_files(&dir.path().join("store"));
    // 08:00-11:00: three hours, one file each (well under the size and age limits).
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        assert!(file.starts_with("flows/v1/date=2026-11-24/hour="), "{file}");
        assert!(file.contains("/kind-kind_kind-worker.import."), "{file}");
    }
    let script = format!(
        r#"
import duckdb, json, sys
rows = duckdb.execute("select key, value from parquet_kv_metadata('{root}/flows/**/*.parquet')").fetchall()
meta = {{}}
for k, v in rows:
    meta.setdefault(k.decode(), set()).add(v.decode())
for key in ["flowsql.schema_version", "flowsql.node", "flowsql.source", "flowsql.min_time", "flowsql.max_time", "flowsql.rows"]:
    assert key in meta, (key, meta.keys())
assert meta["flowsql.node"] == {{"kind-kind/kind-worker"}}, meta["flowsql.node"]
assert meta["flowsql.source"] == {{"import"}}
sorting = duckdb.execute("select distinct m.path_in_schema, m.bloom_filter_offset is not null as bloom, m.compression, f.num_rows from parquet_metadata('{root}/flows/**/*.parquet') m join parquet_file_metadata('{root}/flows/**/*.parquet') f using (file_name) where m.path_in_schema in ('ip_source','ip_destination','source_pod_name','destination_pod_name','verdict')").fetchall()
assert sorting, "no column chunks"
for name, bloom, compression, rows in sorting:
    assert compression == ("LZ4_RAW" if rows < {small} else "ZSTD"), (name, compression, rows)
    assert bloom == (name != "verdict"), (name, bloom)
unsorted = duckdb.execute("select count(*) from (select time < lag(time) over (partition by filename order by file_row_number) as back from read_parquet('{root}/flows/**/*.parquet', filename=true, file_row_number=true)) where back").fetchone()[0]
assert unsorted == 0, unsorted
print("ok")
"#,
        root = dir.path().join("store").display(),
        small = flow_schema::writer::SMALL_FILE_ROWS
    );
    python(&script);
}

/// A large import streams each hour into its encoder; two nodes' exports concatenated (each in
/// time order, the second starting before the first ends) put most of the second node's rows
/// behind what was already encoded. Every row must still be stored once, and every file sorted,
/// as DuckDB reads them.
#[test]
fn a_large_import_of_interleaved_exports_stores_every_row_once_in_sorted_files() {
    let (dir, store) = temp_store();
    let per_node: u64 = 40_000;
    let mut lines = String::new();
    for (node, offset_ns) in [("node-a", 0u64), ("node-b", 500)] {
        for i in 0..per_node {
            // 09:00:00 + i ms (+ offset): the two nodes interleave over the same 40 s.
            let ns = i * 1_000_000 + offset_ns;
            lines += &format!(
                r#"{{"flow":{{"time":"2026-11-24T09:00:{:02}.{:09}Z","uuid":"{node}-{i}","verdict":"FORWARDED","IP":{{"source":"10.0.0.1","destination":"10.0.0.2"}},"l4":{{"TCP":{{"source_port":{},"destination_port":80}}}}}},"node_name":"{node}"}}"#,
                ns / 1_000_000_000,
                ns % 1_000_000_000,
                1024 + i % 50_000,
            );
            lines.push('\n');
        }
    }
    let input = dir.path().join("two-nodes.json");
    std::fs::write(&input, lines).unwrap();
    import(&store, &[&input], &[]).ok();

    let files = parquet_files(&dir.path().join("store"));
    assert!(
        files.len() >= 2,
        "a streamed file and a late one: {files:?}"
    );
    let script = format!(
        r#"
import duckdb
root = '{root}/flows/**/*.parquet'
n, uuids, ports = duckdb.execute(f"select count(*), count(distinct uuid), sum(source_port) from read_parquet('{{root}}')").fetchone()
assert (n, uuids) == ({total}, {total}), (n, uuids)
assert ports == {ports}, ports
unsorted = duckdb.execute(f"select count(*) from (select time < lag(time) over (partition by filename order by file_row_number) as back from read_parquet('{{root}}', filename=true, file_row_number=true)) where back").fetchone()[0]
assert unsorted == 0, unsorted
print("ok")
"#,
        root = dir.path().join("store").display(),
        total = 2 * per_node,
        ports = 2 * (0..per_node).map(|i| 1024 + i % 50_000).sum::<u64>(),
    );
    python(&script);
    let ours = query(
        &store,
        "select count(*) as n, count(distinct uuid) as uuids from flows",
        &[],
    );
    assert_eq!(ours[0]["n"], 2 * per_node);
    assert_eq!(ours[0]["uuids"], 2 * per_node);
}

#[test]
fn duckdb_reads_the_same_rows_and_values() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let ours = query(
        &store,
        "select count(*) as n, count(*) filter (where verdict = 'DROPPED') as dropped,
                sum(destination_port) as ports, count(distinct uuid) as uuids,
                sum(array_length(source_labels)) as labels,
                sum(cast(l7_latency_ns as decimal(38,0))) as latency
         from flows",
        &[],
    );
    let script = format!(
        r#"
import duckdb
r = duckdb.execute("""select count(*), count(*) filter (where verdict = 'DROPPED'), sum(destination_port),
                         count(distinct uuid), sum(len(source_labels)), sum(l7_latency_ns::hugeint)
                  from read_parquet('{root}/flows/**/*.parquet', hive_partitioning=true)""").fetchone()
print(",".join(str(v) for v in r))
"#,
        root = dir.path().join("store").display()
    );
    let theirs = python(&script);
    let row = &ours[0];
    let expected = format!(
        "{},{},{},{},{},{}",
        row["n"],
        row["dropped"],
        row["ports"],
        row["uuids"],
        row["labels"],
        row["latency"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| row["latency"].to_string())
    );
    assert_eq!(theirs.trim(), expected);
    assert_eq!(
        row["n"].as_u64().unwrap(),
        json_lines(&incident_capture()).len() as u64
    );
}

#[test]
fn s3_round_trip_gives_the_same_rows_as_a_local_folder() {
    let moto = Moto::start();
    moto.create_bucket("flows");
    let env = moto.env();
    let env = env_refs(&env);
    let (_dir, local) = temp_store();
    let s3 = "s3://flows/prod/cluster-a";
    let files = [incident_capture(), hubble_samples()[0].clone()];
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    import(s3, &refs, &env).ok();
    import(&local, &refs, &env).ok();
    let sql = "select * from flows order by time, uuid, ip_source, source_port";
    let from_s3 = flowsql(&["--store", s3, "--format", "csv", sql], &env)
        .ok()
        .stdout;
    let from_local = flowsql(&["--store", &local, "--format", "csv", sql], &env)
        .ok()
        .stdout;
    assert_eq!(from_s3.lines().count(), 14_870 + 10 + 1);
    assert!(from_s3 == from_local, "S3 and local stores differ");
    // A time window over S3 lists only its prefixes and still answers.
    let window = query_with(
        s3,
        &INCIDENT_HOUR,
        "select count(*) as n from flows where verdict = 'DROPPED'",
        &env,
    );
    assert!(window[0]["n"].as_u64().unwrap() > 0);
}

#[test]
fn an_unreachable_s3_endpoint_is_named_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
    ];
    let started = Instant::now();
    let run = flowsql(&["--store", "s3://nowhere/prefix", "select 1"], &env);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("s3://nowhere/prefix") && run.stderr.contains(&endpoint),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );

    let run = import("s3://nowhere/prefix", &[&hubble_samples()[0]], &env);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("s3://nowhere/prefix") && run.stderr.contains(&endpoint),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_lines_are_reported_with_file_and_line_and_the_rest_is_imported() {
    let (dir, store) = temp_store();
    let good = json_lines(&hubble_samples()[0]);
    let mut text = String::new();
    for (i, line) in good.iter().enumerate() {
        text += &line.to_string();
        text += "\n";
        if i == 2 {
            text += "{\"flow\": {\"time\": \"2021-06-16T16:52:13Z\", \"verdict\": \n";
            // line 4: truncated
        }
        if i == 5 {
            text += "this is not json\n"; // line 8
        }
        if i == 6 {
            // line 10: a field from a future Cilium: imported, not an error
            text += &line.to_string().replacen(
                "{\"flow\":{",
                "{\"flow\":{\"quantum_entanglement\":{\"a\":[1]},",
                1,
            );
            text += "\n";
        }
    }
    let path = dir.path().join("mixed.json");
    std::fs::write(&path, text).unwrap();
    let run = import(&store, &[&path], &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let name = path.display().to_string();
    assert!(
        run.stderr.contains(&format!("{name}:4: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{name}:8: ")),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(&format!("{name}:10: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("2 malformed line(s) skipped"),
        "{}",
        run.stderr
    );
    let count = query(&store, "select count(*) as n from flows", &[]);
    assert_eq!(
        count[0]["n"], 11,
        "10 good lines + the one with an unknown field"
    );
}

#[test]
fn strict_mode_writes_nothing_when_any_line_is_bad() {
    let (dir, store) = temp_store();
    let path = dir.path().join("bad.json");
    let mut text = std::fs::read_to_string(&hubble_samples()[0]).unwrap();
    text += "{broken\n";
    std::fs::write(&path, &text).unwrap();
    let run = flowrec(
        &[
            "import",
            "--strict",
            "--store",
            &store,
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(":11: ") && run.stderr.contains("nothing was written"),
        "{}",
        run.stderr
    );
    assert!(parquet_files(Path::new(&store)).is_empty());

    // The same input through stdin, also strict: stdin is checked and then imported.
    let good = std::fs::read(&hubble_samples()[0]).unwrap();
    let mut child = command(
        &flowrec_bin(),
        &["import", "--strict", "--store", &store, "-"],
        &[],
    )
    .stdin(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(&good).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        query(&store, "select count(*) as n from flows", &[])[0]["n"],
        10
    );
}

#[test]
fn a_truncated_gzip_is_reported_and_its_readable_lines_are_kept() {
    let (dir, store) = temp_store();
    let full = std::fs::read(incident_capture()).unwrap();
    let path = dir.path().join("cut.json.gz");
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let zstd_path = dir.path().join("sample.json.zst");
    let plain = std::fs::read(&hubble_samples()[1]).unwrap();
    std::fs::write(&zstd_path, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    let missing = dir.path().join("missing.json");
    let run = import(&store, &[&path, &missing, &zstd_path], &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{}: unreadable after line", path.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("{}: cannot open", missing.display())),
        "{}",
        run.stderr
    );
    let imported = query(
        &store,
        "select count(*) as n from flows where capture_source = 'import'",
        &[],
    );
    let n = imported[0]["n"].as_u64().unwrap();
    // Roughly half of the incident (whole lines only) plus all 400 lines of the zstd file.
    assert!(n > 400 + 5_000 && n < 400 + 14_870, "{n}");
}

#[test]
fn node_names_with_slashes_and_dots_stay_inside_the_store() {
    let (dir, store) = temp_store();
    let run = flowrec(
        &[
            "import",
            "--store",
            &store,
            "--node-name",
            "../../kind-kind/kind-worker",
            hubble_samples()[2].to_str().unwrap(),
        ],
        &[],
    )
    .ok();
    let files = parquet_files(&dir.path().join("store"));
    assert_eq!(files.len(), 1, "{files:?} {}", run.stderr);
    assert!(
        files[0]
            .starts_with("flows/v1/date=2023-08-21/hour=12/______kind-kind_kind-worker.import."),
        "{files:?}"
    );
    // Nothing was written outside the store folder.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("store")]);
    // The flows keep the node name they came with.
    let rows = query(
        &store,
        "select distinct cast(node_name as varchar) as n from flows",
        &[],
    );
    assert_eq!(rows[0]["n"], "kind-kind/kind-worker");
}

#[test]
fn flowsql_refuses_to_write() {
    let (dir, store) = temp_store();
    import(&store, &[&hubble_samples()[0]], &[]).ok();
    let before = parquet_files(&dir.path().join("store"));
    let target = dir.path().join("store/flows/v1/evil.parquet");
    for sql in [
        "insert into flows (time) values (now())".to_string(),
        "create table evil as select * from flows".to_string(),
        format!("copy (select * from flows) to '{}'", target.display()),
        "select 1; drop table flows".to_string(),
    ] {
        let run = flowsql(&["--store", &store, &sql], &[]);
        assert_eq!(run.status, 1, "{sql}: {}", run.stderr);
        assert!(
            run.stderr.contains("flowsql is read-only"),
            "{sql}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{sql}: nothing runs: {}", run.stdout);
    }
    assert_eq!(parquet_files(&dir.path().join("store")), before);
}

#[test]
fn a_time_window_never_opens_files_of_other_hours() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    // Ordered by time, the time-sorted files are read in order (their statistics are collected
    // for such a statement): no sort of every row, whatever the history. Unfiltered, the
    // hours' files, which do not overlap, are one ordered stream (nothing to merge); filtered,
    // a group per core, merged.
    let plan = |sql: &str| {
        flowsql(&["--store", &store, "--format", "csv", sql], &[])
            .ok()
            .stdout
    };
    let all = plan("explain select * from flows order by time");
    assert!(all.contains("file_groups={1 group"), "{all}");
    assert!(!all.contains("SortPreservingMergeExec"), "{all}");
    let dropped = plan("explain select * from flows where verdict = 'DROPPED' order by time");
    assert!(!dropped.contains("file_groups={1 group"), "{dropped}");
    assert!(dropped.contains("SortPreservingMergeExec"), "{dropped}");
    for plan in [all, dropped] {
        assert!(!plan.contains("SortExec"), "{plan}");
    }
    // A corrupt file in the 08:00 partition.
    let corrupt = dir
        .path()
        .join("store/flows/v1/date=2026-11-24/hour=08/zz-corrupt.parquet");
    std::fs::write(&corrupt, b"this is not parquet").unwrap();
    let window = query_with(
        &store,
        &INCIDENT_HOUR,
        "select count(*) as n, min(time) as lo, max(time) as hi from flows",
        &[],
    );
    let expected = json_lines(&incident_capture())
        .iter()
        .filter(|l| l["time"].as_str().unwrap().starts_with("2026-11-24T09"))
        .count() as u64;
    assert_eq!(window[0]["n"].as_u64().unwrap(), expected);
    // Without the window the corrupt file is read, and the error names it: so it was pruned above.
    let run = flowsql(&["--store", &store, "select count(*) from flows"], &[]);
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("zz-corrupt.parquet") || run.stderr.to_lowercase().contains("parquet"),
        "{}",
        run.stderr
    );
    // Relative windows parse too (the capture is in the past: nothing in the last 2 hours).
    let recent = query_with(
        &store,
        &["--since", "2h"],
        "select count(*) as n from flows",
        &[],
    );
    assert_eq!(recent[0]["n"], 0);
}

/// The recorders' small files are read by flowsql's own scan (one request each, the other
/// columns decoded only for the rows a selective filter passes); with DataFusion's statistics
/// on (as for a statement sorted by time) the same files go through DataFusion's Parquet scan.
/// Both give the same rows.
#[test]
fn small_files_give_the_same_rows_through_either_scan() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let datafusion = [("DATAFUSION_EXECUTION_COLLECT_STATISTICS", "true")];
    let run = |sql: &str, env: &[(&str, &str)]| {
        let out = flowsql(&["--store", &store, "--format", "csv", sql], env).ok();
        let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let lines = json_lines(&incident_capture());
    let dropped = lines
        .iter()
        .filter(|l| l["flow"]["verdict"] == "DROPPED")
        .count();
    // Three flows, each alone in its file among the rows the filter passes.
    let uuids: Vec<&str> = [0, lines.len() / 2, lines.len() - 1]
        .iter()
        .map(|&i| lines[i]["flow"]["uuid"].as_str().unwrap())
        .collect();
    let three = format!(
        "select * from flows where uuid in ('{}', '{}', '{}')",
        uuids[0], uuids[1], uuids[2]
    );
    for (sql, rows) in [
        (
            "select * from flows where verdict = 'DROPPED'",
            Some(dropped),
        ),
        (three.as_str(), Some(3)),
        (
            "select time, uuid, source_pod_name, destination_port, source_labels \
             from flows where source_pod_name like 'api-gateway%' and destination_port = 80",
            None,
        ),
        (
            "select verdict, count(*) as n from flows group by verdict",
            None,
        ),
        ("select count(*) as n from flows", None),
        (
            "select uuid, verdict from flows \
             where time >= '2026-11-24T09:10:00Z' and time < '2026-11-24T09:20:00Z'",
            None,
        ),
    ] {
        let plan = run(&format!("explain {sql}"), &[]).join("\n");
        assert!(plan.contains("SmallFilesExec"), "{sql}: {plan}");
        let plan = run(&format!("explain {sql}"), &datafusion).join("\n");
        assert!(!plan.contains("SmallFilesExec"), "{sql}: {plan}");
        let ours = run(sql, &[]);
        assert!(ours.len() > 1, "{sql}: no rows");
        if let Some(rows) = rows {
            assert_eq!(ours.len(), rows + 1, "{sql}");
        }
        assert_eq!(ours, run(sql, &datafusion), "{sql}");
    }
    let limited = run("select uuid from flows limit 7", &[]);
    assert_eq!(limited.len(), 7 + 1);
}

#[test]
fn datafusion_options_from_the_environment() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let sql = "select * from flows order by source_pod_name, time";
    let all = flowsql(&["--store", &store, "--format", "csv", sql], &[]).ok();
    assert_eq!(all.stdout.lines().count(), 14_870 + 1);
    // A runtime option is applied (a 1 KiB pool cannot hold the sort), not silently ignored.
    let starved = flowsql(
        &["--store", &store, "--format", "csv", sql],
        &[("DATAFUSION_RUNTIME_MEMORY_LIMIT", "1K")],
    );
    assert_eq!(starved.status, 1, "{}", starved.stderr);
    assert!(
        starved.stderr.contains("Resources exhausted"),
        "{}",
        starved.stderr
    );
    for (var, value) in [
        ("DATAFUSION_RUNTIME_MEMORY_LIMIT", "lots"),
        ("DATAFUSION_RUNTIME_NO_SUCH_OPTION", "1"),
        ("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "x"),
    ] {
        let run = flowsql(&["--store", &store, "select 1"], &[(var, value)]);
        assert_eq!(run.status, 2, "{var}: {}", run.stderr);
        assert!(run.stderr.contains("DATAFUSION_"), "{var}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{var}: {}", run.stdout);
    }
}

/// The window of the typo'd policy's first hour.
const INCIDENT_HOUR: [&str; 4] = [
    "--since",
    "2026-11-24T09:00Z",
    "--until",
    "2026-11-24T10:00Z",
];

fn query_with(
    store: &str,
    extra: &[&str],
    sql: &str,
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let mut args = vec!["--store", store, "--format", "ndjson"];
    args.extend_from_slice(extra);
    args.push(sql);
    flowsql(&args, env).ok().rows()
}

#[test]
fn output_formats() {
    let (dir, store) = temp_store();
    import(&store, &[&hubble_samples()[2]], &[]).ok();
    let sql =
        "select time, verdict, source_pod_name, tcp_flags, source_labels from flows order by time";
    let table = flowsql(&["--store", &store, sql], &[]).ok().stdout;
    assert!(
        table.contains("| verdict") && table.contains("| DROPPED") && table.contains("xwing"),
        "{table}"
    );
    let csv = flowsql(&["--store", &store, "--format", "csv", sql], &[])
        .ok()
        .stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "time,verdict,source_pod_name,tcp_flags,source_labels"
    );
    assert_eq!(lines.len(), 3);
    assert!(lines[2].contains("DROPPED,xwing,[SYN]"), "{csv}");
    let json: serde_json::Value = serde_json::from_str(
        &flowsql(&["--store", &store, "--format", "json", sql], &[])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[1]["tcp_flags"], serde_json::json!(["SYN"]));
    let out = dir.path().join("out.parquet");
    flowsql(
        &[
            "--store",
            &store,
            "--format",
            "parquet",
            "--output",
            out.to_str().unwrap(),
            "select * from flows",
        ],
        &[],
    )
    .ok();
    let count = python(&format!(
        "import duckdb; print(duckdb.execute(\"select count(*) from '{}'\").fetchone()[0])",
        out.display()
    ));
    assert_eq!(count.trim(), "2");
    let empty = flowsql(
        &[
            "--store",
            &store,
            "--format",
            "json",
            "select * from flows where false",
        ],
        &[],
    )
    .ok()
    .stdout;
    assert_eq!(empty.trim(), "[]");
}

#[test]
fn forensics_functions() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let rows = query(
        &store,
        "select count(*) filter (where cidr_contains('10.0.2.0/24', ip_destination)) as to_worker2,
                count(*) filter (where has_label(source_labels, 'k8s:app=api-gateway')) as from_gateway,
                count(*) filter (where has_label(source_labels, 'app=api-gateway')) as from_gateway_any_source,
                count(*) filter (where source_workload = 'api-gateway') as gateway_workload,
                count(*) filter (where label_value(destination_labels, 'app') = 'user-service') as to_users,
                count(*) filter (where destination_workload = 'user-service') as users_workload
         from flows",
        &[],
    );
    let row = &rows[0];
    let lines = json_lines(&incident_capture());
    let to_worker2 = lines
        .iter()
        .filter(|l| {
            l["flow"]["IP"]["destination"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.0.2."))
        })
        .count();
    assert_eq!(row["to_worker2"].as_u64().unwrap(), to_worker2 as u64);
    assert_eq!(row["from_gateway"], row["gateway_workload"]);
    assert_eq!(row["from_gateway_any_source"], row["gateway_workload"]);
    assert_eq!(row["to_users"], row["users_workload"]);
    assert!(row["from_gateway"].as_u64().unwrap() > 0);
    let run = flowsql(
        &[
            "--store",
            &store,
            "select cidr_contains('10.0.0.0/33', ip_source) from flows",
        ],
        &[],
    );
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("10.0.0.0/33"), "{}", run.stderr);
}

#[test]
fn clear_errors_for_bad_flags_columns_and_stores() {
    let (_dir, store) = temp_store();
    let run = flowsql(&["--store", &store, "select 1"], &[]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains(&store) && run.stderr.contains("does not exist"),
        "{}",
        run.stderr
    );
    import(&store, &[&hubble_samples()[2]], &[]).ok();
    let run = flowsql(
        &["--store", &store, "select no_such_column from flows"],
        &[],
    );
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("no_such_column") && run.stderr.contains("\\d flows"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.len() < 400,
        "no wall of column names: {}",
        run.stderr
    );
    // Unreadable times and durations beyond what a timestamp holds are named, not panics.
    for since in ["last tuesday", "100000000d", "18446744073709551615s1s"] {
        let run = flowsql(&["--store", &store, "--since", since, "select 1"], &[]);
        assert_eq!(run.status, 2, "{since}: {}", run.stderr);
        assert!(
            run.stderr.contains("--since") && run.stderr.contains(since),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = flowsql(&["--store", &store, "--format", "xml", "select 1"], &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("--format"), "{}", run.stderr);
    for age in ["soon", "18446744073709551615s1s"] {
        let run = flowrec(&["import", "--max-file-age", age, "x.json"], &[]);
        assert_eq!(run.status, 2, "{age}: {}", run.stderr);
        assert!(run.stderr.contains("--max-file-age"), "{}", run.stderr);
    }
    let help = flowsql(&["--help"], &[]).ok().stdout;
    assert!(
        help.contains("Examples:") && help.contains("verdict='DROPPED'"),
        "{help}"
    );
    let help = flowrec(&["import", "--help"], &[]).ok().stdout;
    assert!(
        help.contains("Examples:") && help.contains("--strict"),
        "{help}"
    );
}

#[test]
fn describe_lists_columns_with_their_meaning() {
    let (_dir, store) = temp_store();
    import(&store, &[&hubble_samples()[2]], &[]).ok();
    // The shell reads commands from stdin like a user types them.
    let mut child = command(&flowsql_bin(), &["--store", &store, "--format", "csv"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\\d flows\nselect count(*) as n\n from flows;\n\\q\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("drop_reason_desc,string,\"drop reason name"),
        "{stdout}"
    );
    assert!(stdout.contains("n\n2\n"), "{stdout}");
}

#[test]
fn lost_events_go_to_their_own_table_and_other_events_are_counted() {
    let (dir, store) = temp_store();
    let path = dir.path().join("export.log");
    let mut text = std::fs::read_to_string(&hubble_samples()[2]).unwrap();
    text += r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"4096","cpu":{"value":1},"first":"2023-08-21T12:12:19Z","last":"2023-08-21T12:12:20Z"},"node_name":"kind-kind/kind-worker","time":"2023-08-21T12:12:20Z"}"#;
    text += "\n";
    text += r#"{"lost_events":{"source":2,"num_events_lost":"7"},"node_name":"kind-kind/kind-control-plane","time":"2023-08-21T13:00:00Z"}"#;
    text += "\n";
    text += r#"{"agent_event":{"type":"ENDPOINT_CREATED"},"node_name":"kind-kind/kind-worker","time":"2023-08-21T12:12:21Z"}"#;
    text += "\n";
    std::fs::write(&path, text).unwrap();
    let run = import(&store, &[&path], &[]);
    // The wrapped `cpu` ({"value":1}) is not the plain number protojson writes: that line is
    // reported, the others are kept.
    assert!(
        run.stderr.contains(&format!("{}:3: ", path.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("1 non-flow event"), "{}", run.stderr);
    let lost = query(
        &store,
        "select cast(node_name as varchar) as node, cast(source as varchar) as source, num_events_lost
         from lost_events order by time",
        &[],
    );
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["source"], "OBSERVER_EVENTS_QUEUE");
    assert_eq!(lost[0]["num_events_lost"], 7);
    assert_eq!(
        query(&store, "select count(*) as n from flows", &[])[0]["n"],
        2
    );
}

/// Every window is valid input: one after the data (a mistyped year), one before it, one
/// inside it answer exactly (counted independently of the window by the whole table); an
/// empty or reversed window is a usage error naming the flags. The same for `replay`.
#[test]
fn every_window_answers_or_says_why() {
    let (_dir, store) = temp_store();
    import(&store, &[&hubble_samples()[2]], &[]).ok();
    let count = |window: &[&str]| -> (i32, Option<u64>, String) {
        let mut args = vec!["--store", store.as_str(), "--format", "ndjson"];
        args.extend_from_slice(window);
        args.push("select count(*) as n from flows");
        let run = flowsql(&args, &[]);
        let n = (run.status == 0).then(|| run.rows()[0]["n"].as_u64().unwrap());
        (run.status, n, run.stderr)
    };
    let (_, all, _) = count(&[]);
    let all = all.expect("the whole table counts");
    assert!(all > 0);
    let bounds = query(
        &store,
        "select cast(min(time) as varchar) as lo, cast(max(time) as varchar) as hi from flows",
        &[],
    );
    let first = bounds[0]["lo"].as_str().unwrap().replace(' ', "T");
    let after_last = "2099-01-01T00:00:00Z";
    for (window, expected) in [
        (vec!["--since", "2030-01-01T00:00:00Z"], 0),
        (
            vec!["--since", "2030-01-01T00:00:00Z", "--until", after_last],
            0,
        ),
        (vec!["--until", "2000-01-01"], 0),
        (vec!["--since", "2000-01-01", "--until", "2000-01-02"], 0),
        (vec!["--since", "2000-01-01", "--until", after_last], all),
        (vec!["--since", first.as_str()], all),
        (vec!["--until", first.as_str()], 0),
    ] {
        let (status, n, stderr) = count(&window);
        assert_eq!((status, n), (0, Some(expected)), "{window:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{window:?}: {stderr}");
    }
    for window in [
        ["--since", "2026-01-02", "--until", "2026-01-01"],
        ["--since", "2026-01-01", "--until", "2026-01-01"],
    ] {
        let (status, _, stderr) = count(&window);
        assert_eq!(status, 2, "{window:?}: {stderr}");
        assert!(
            stderr.contains("--since must be earlier than --until"),
            "{stderr}"
        );
    }
    let future = flowsql(
        &[
            "--store",
            &store,
            "--since",
            "2030-01-01T00:00:00Z",
            "replay",
        ],
        &[],
    );
    assert_eq!(future.status, 0, "{}", future.stderr);
    assert!(future.stdout.is_empty(), "{}", future.stdout);
    let reversed = flowsql(
        &[
            "--store",
            &store,
            "--since",
            "2026-01-02",
            "--until",
            "2026-01-01",
            "replay",
        ],
        &[],
    );
    assert_eq!(reversed.status, 2, "{}", reversed.stderr);
}

/// A typo'd bucket is named at start, with what to fix, by every command: not as an XML blob,
/// and not as upload retries that never succeed (`flowrec run` used to retry forever).
#[test]
fn a_typod_bucket_is_named_at_start_by_every_command() {
    let moto = Moto::start();
    moto.create_bucket("flows");
    let env = moto.env();
    let env = env_refs(&env);
    let store = "s3://flwos/prod";
    let named = |what: &str, status: Option<i32>, stderr: &str| {
        assert_eq!(status, Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("s3://flwos/prod")
                && stderr.contains("the bucket does not exist")
                && stderr.contains("NoSuchBucket")
                && !stderr.contains("<Error>"),
            "{what}: {stderr}"
        );
    };
    let run = flowsql(&["--store", store, "select count(*) from flows"], &env);
    named("flowsql", Some(run.status), &run.stderr);
    let run = import(store, &[&hubble_samples()[0]], &env);
    named("flowrec import", Some(run.status), &run.stderr);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    std::fs::write(&log, "").unwrap();
    let (log, spool) = (
        log.display().to_string(),
        dir.path().join("spool").display().to_string(),
    );
    let (status, stderr) = exits_within(
        &flowrec_bin(),
        &[
            "run", "--source", "file", "--follow", &log, "--store", store, "--spool", &spool,
        ],
        &env,
        Duration::from_secs(30),
    );
    named("flowrec run", status, &stderr);
}

/// A query that spills (a grouping by flow id under a 2 MB memory limit) answers as it does
/// in memory when the spill folder has room, and when the disk fills up the error names the
/// folder and what to do (DataFusion's own message is a bare "No space left on device").
#[test]
fn a_full_disk_during_a_spill_is_named_with_what_to_do() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let sql = "select count(*), sum(n) from \
               (select uuid, source_pod_name, count(*) as n from flows group by 1, 2)";
    let in_memory = flowsql(&["--store", &store, "--format", "csv", sql], &[]).ok();
    let spilling = |disk: &Tmpfs| {
        flowsql(
            &["--store", &store, "--format", "csv", sql],
            &[
                ("DATAFUSION_RUNTIME_MEMORY_LIMIT", "2M"),
                ("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "1"),
                ("DATAFUSION_RUNTIME_TEMP_DIRECTORY", disk.path()),
            ],
        )
    };
    let roomy = Tmpfs::mount("64m", false);
    let spilled = spilling(&roomy).ok();
    assert_eq!(spilled.stdout, in_memory.stdout);
    assert!(
        in_memory.stdout.contains("14870,14870"),
        "{}",
        in_memory.stdout
    );
    let full = Tmpfs::mount("128k", false);
    let failed = spilling(&full);
    assert_eq!(failed.status, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("No space left on device")
            && failed
                .stderr
                .contains(&format!("spill files ({}) is full", full.path()))
            && failed.stderr.contains("DATAFUSION_RUNTIME_TEMP_DIRECTORY"),
        "{}",
        failed.stderr
    );
}

/// Expired session credentials are named at start with what to do. moto does not expire
/// tokens, so a loopback endpoint answers every request as S3 answers an expired
/// `AWS_SESSION_TOKEN` (400, the ExpiredToken error document).
#[test]
fn expired_credentials_are_named_at_start() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match std::io::Read::read(&mut stream, &mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            let body =
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ExpiredToken</Code>\
                        <Message>The provided token has expired.</Message>\
                        <RequestId>E2E0000000000000</RequestId></Error>";
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "expired-token"),
    ];
    let named = |what: &str, run: Run| {
        assert_eq!(run.status, 2, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains("s3://flows/prod")
                && run
                    .stderr
                    .contains("the credentials have expired: renew them")
                && run.stderr.contains("ExpiredToken")
                && !run.stderr.contains("<Error>"),
            "{what}: {}",
            run.stderr
        );
    };
    named(
        "flowsql",
        flowsql(
            &["--store", "s3://flows/prod", "select count(*) from flows"],
            &env,
        ),
    );
    named(
        "flowrec import",
        import("s3://flows/prod", &[&hubble_samples()[0]], &env),
    );
}
