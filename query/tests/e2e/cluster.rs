//! Distributed flowsql: a scheduler and two executors as processes on loopback, over a store
//! in moto S3, answer every command exactly as one process does.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::*;

/// A scheduler and its executors, stopped (SIGKILL) when dropped.
struct Cluster {
    url: String,
    scheduler: Process,
    executors: Vec<Process>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn start(executors: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(&vec![Vec::new(); executors], env)
    }

    /// A scheduler and one executor per entry of `extra` (arguments added to its own).
    fn start_with(extra: &[Vec<&str>], env: &[(&str, &str)]) -> Cluster {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut scheduler = Process::spawn(command(
            &flowsql_bin(),
            &["scheduler", "--bind", &bind, "--executor-timeout", "6"],
            env,
        ));
        scheduler.wait_for("flowsql scheduler listening on");
        let executors = extra
            .iter()
            .map(|extra| {
                let (flight, grpc) = (free_port().to_string(), free_port().to_string());
                let mut args = vec![
                    "executor",
                    "--scheduler",
                    &bind,
                    "--flight-port",
                    &flight,
                    "--grpc-port",
                    &grpc,
                    "--concurrent-tasks",
                    "1",
                    "--heartbeat",
                    "1",
                ];
                args.extend(extra);
                let mut executor = Process::spawn(command(&flowsql_bin(), &args, env));
                executor.wait_for("Executor registration succeed");
                executor
            })
            .collect();
        Cluster {
            url: format!("df://127.0.0.1:{port}"),
            scheduler,
            executors,
        }
    }

    /// Tasks every executor ran so far.
    fn tasks_per_executor(&self) -> Vec<usize> {
        self.executors
            .iter()
            .map(|e| e.output().matches("Execute task").count())
            .collect()
    }
}

/// The flowsql arguments of every command the cluster must answer as one process does: the
/// seven statement shapes of the query benchmark (`benches/src/queries.rs`) over the incident,
/// a replay, a regressions, a report and a policy whatif.
fn commands(store: &str, spec: &str, markdown: &str) -> Vec<Vec<String>> {
    let sql = |q: &str| {
        vec![
            "--store".to_string(),
            store.into(),
            "--format".into(),
            "csv".into(),
            q.into(),
        ]
    };
    let mut all: Vec<Vec<String>> = [
        "select count(*) from flows where verdict = 'DROPPED'",
        "select * from flows where verdict = 'DROPPED' order by time, uuid",
        "select source_namespace, destination_namespace, drop_reason_desc, count(*) as n \
         from flows where verdict = 'DROPPED' group by 1, 2, 3 order by n desc, 1, 2, 3",
        "select * from flows where time >= timestamp '2026-11-24T09:03:00Z' \
         and time < timestamp '2026-11-24T09:08:00Z' order by time, uuid",
        "select source_pod_name, destination_pod_name, destination_port, count(*) as n \
         from flows group by 1, 2, 3 order by n desc, 1, 2, 3 limit 20",
        "with before as (select distinct source_workload, destination_workload, destination_port \
           from flows where verdict = 'FORWARDED' and time < timestamp '2026-11-24T09:05:00Z'), \
         after as (select distinct source_workload, destination_workload, destination_port \
           from flows where verdict = 'DROPPED' and drop_reason_desc = 'POLICY_DENIED' \
           and time >= timestamp '2026-11-24T09:05:00Z') \
         select * from before join after \
           using (source_workload, destination_workload, destination_port) order by 1, 2, 3",
        "select * from flows where cidr_contains('10.0.0.0/8', ip_source) \
         and has_label(source_labels, 'k8s:app=api-gateway') order by time, uuid limit 50",
    ]
    .iter()
    .map(|q| sql(q))
    .collect();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    all.push(args(&[
        "--store",
        store,
        "--since",
        "2026-11-24T09:00Z",
        "--until",
        "2026-11-24T09:10Z",
        "replay",
        "--verdict",
        "DROPPED",
        "-o",
        "jsonpb",
    ]));
    all.push(args(&[
        "--store",
        store,
        "regressions",
        "--baseline",
        "1h",
        "--window",
        "2026-11-24T09:00Z..2026-11-24T09:47Z",
        "--format",
        "csv",
    ]));
    all.push(args(&[
        "--store",
        store,
        "--since",
        "2026-11-24T08:00Z",
        "--until",
        "2026-11-24T10:00Z",
        "report",
        spec,
        "--markdown",
        markdown,
    ]));
    let policy = repo_root().join("sample-captures/policies/api-access-policy-r12-typo.yaml");
    all.push(args(&[
        "--store",
        store,
        "--since",
        "2026-11-24T08:05Z",
        "--until",
        "2026-11-24T09:05Z",
        "policy",
        "whatif",
        policy.to_str().unwrap(),
        "--fail-on",
        "newly-denied",
    ]));
    all
}

const SPEC: &str = r#"
title: cluster check
checks:
  - name: dev never reaches prod-app
    no_flows_between: {from: dev, to: prod-app}
  - name: policy drops stay rare
    policy_drops: {max_per_namespace: 10}
  - name: no policy drops into user-service
    sql: select source_workload, count(*) as n from flows where verdict = 'DROPPED' and destination_workload = 'user-service' group by 1 order by 1
    expect: empty
"#;

/// Runs flowsql with `args`; a report's Markdown (`markdown`) is added to what it printed,
/// less the line that says when it was generated.
fn answer(args: &[String], markdown: &std::path::Path, env: &[(&str, &str)]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = std::fs::remove_file(markdown);
    let mut run = flowsql(&args, env);
    if let Ok(text) = std::fs::read_to_string(markdown) {
        for line in text.lines().filter(|l| !l.contains("; generated ")) {
            run.stdout.push_str(line);
            run.stdout.push('\n');
        }
    }
    run
}

#[test]
fn a_cluster_of_two_executors_answers_every_command_like_one_process() {
    let moto = Moto::start();
    moto.create_bucket("cluster");
    let moto_env = moto.env();
    let env = env_refs(&moto_env);
    let store = "s3://cluster/store";
    import(store, &[&incident_capture()], &env).ok();
    // Compacted and rolled up: the regressions' baseline then reads rollups (a table of
    // exactly named files) and the rest reads compacted hours.
    flowstore(
        &[
            "--store", store, "compact", "--settle", "0s", "--grace", "0s",
        ],
        &env,
    )
    .ok();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let markdown = dir.path().join("report.md");
    let commands = commands(store, spec.to_str().unwrap(), markdown.to_str().unwrap());
    let local: Vec<Run> = commands
        .iter()
        .map(|args| answer(args, &markdown, &env))
        .collect();

    let cluster = Cluster::start(2, &env);
    for (args, local) in commands.iter().zip(&local) {
        let mut on_cluster = vec!["--cluster".to_string(), cluster.url.clone()];
        on_cluster.extend(args.iter().cloned());
        let remote = answer(&on_cluster, &markdown, &env);
        assert_eq!(
            (remote.status, &remote.stdout),
            (local.status, &local.stdout),
            "{args:?}\nlocal stderr: {}\ncluster stderr: {}\nscheduler: {}",
            local.stderr,
            remote.stderr,
            cluster.scheduler.output()
        );
        assert!(
            local.stdout.lines().count() >= 2,
            "{args:?} answers something: {}",
            local.stdout
        );
    }
    // EXPLAIN shows the stages; the scheduler planned only the window's hour.
    let explain = flowsql(
        &[
            "--cluster",
            &cluster.url,
            "--store",
            store,
            "--format",
            "csv",
            "explain select count(*) from flows where time >= timestamp '2026-11-24T09:10:00Z' \
             and time < timestamp '2026-11-24T09:20:00Z'",
        ],
        &env,
    )
    .ok();
    assert!(
        explain.stdout.contains("distributed_plan"),
        "{}",
        explain.stdout
    );
    assert!(explain.stdout.contains("hour=09/"), "{}", explain.stdout);
    assert!(!explain.stdout.contains("hour=08/"), "{}", explain.stdout);
    assert!(!explain.stdout.contains("hour=10/"), "{}", explain.stdout);
    // Read-only there too.
    let write = flowsql(
        &[
            "--cluster",
            &cluster.url,
            "--store",
            store,
            "create table t as select 1",
        ],
        &env,
    );
    assert_eq!(write.status, 1, "{}", write.stderr);
    assert!(write.stderr.contains("read-only"), "{}", write.stderr);
    // Both executors worked: the answers came from the cluster, not from the client.
    let tasks = cluster.tasks_per_executor();
    assert!(
        tasks.iter().all(|n| *n > 0),
        "tasks per executor: {tasks:?}"
    );
}

#[test]
fn an_unreachable_cluster_and_a_bad_url_are_named() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let port = free_port();
    let url = format!("df://127.0.0.1:{port}");
    let started = Instant::now();
    let run = flowsql(&["--store", &store, "--cluster", &url, "select 1"], &[]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&url) && run.stderr.contains("unreachable"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let run = flowsql(
        &["--store", &store, "select 1"],
        &[("FLOWSQL_CLUSTER", "http://127.0.0.1:1")],
    );
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("df://HOST:PORT"), "{}", run.stderr);
    let run = flowsql(
        &["--cluster", &url, "--cluster-timeout", "0s", "select 1"],
        &[],
    );
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--cluster-timeout"), "{}", run.stderr);
}

/// A query long enough to lose an executor in the middle of (a self-join of the incident's
/// flows on their destination port: tens of millions of pairs).
const SLOW: &str = "select count(*) from flows a join flows b \
    on a.destination_port = b.destination_port where a.uuid < b.uuid or a.time > b.time";

#[test]
fn an_executor_killed_mid_query_gives_the_answer_or_an_error_within_the_timeout() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let local = flowsql(&["--store", &store, "--format", "csv", SLOW], &[]).ok();
    let mut cluster = Cluster::start(2, &[]);
    let timeout = 25;
    let client = command(
        &flowsql_bin(),
        &[
            "--cluster",
            &cluster.url,
            "--cluster-timeout",
            &format!("{timeout}s"),
            "--store",
            &store,
            "--format",
            "csv",
            SLOW,
        ],
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Kill the first executor to receive a task, while it runs it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let busy = loop {
        if let Some(i) = cluster
            .executors
            .iter()
            .position(|e| e.output().contains("Execute task"))
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no executor got a task");
        std::thread::sleep(Duration::from_millis(10));
    };
    let started = Instant::now();
    cluster.executors.remove(busy).kill();
    let output = client.wait_with_output().unwrap();
    let waited = started.elapsed();
    let (status, stdout, stderr) = (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    // Never another answer, never a wait past the timeout (and a margin for the machine).
    assert!(
        waited < Duration::from_secs(timeout + 15),
        "waited {waited:?}: {stderr}"
    );
    match status {
        0 => assert_eq!(stdout, local.stdout, "{stderr}"),
        1 => assert!(
            stderr.contains(&cluster.url) || stderr.contains("Job"),
            "a failure names the cluster or its job: {stderr}"
        ),
        other => panic!("exit {other}: {stderr}"),
    }
    eprintln!("executor lost mid-query: exit {status} after {waited:?}: {stderr}");
}

#[test]
fn a_function_an_executor_lacks_fails_the_query_with_a_hint() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let without = vec!["--without-function", "cidr_contains"];
    let cluster = Cluster::start_with(&[without.clone(), without], &[]);
    let sql = "select count(*) from flows where cidr_contains('10.0.0.0/8', ip_source)";
    let run = flowsql(&["--cluster", &cluster.url, "--store", &store, sql], &[]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "no answer: {}", run.stdout);
    assert!(
        run.stderr.contains("another flowsql version"),
        "{}",
        run.stderr
    );
    let logs: String = cluster.executors.iter().map(|e| e.output()).collect();
    assert!(logs.contains("cidr_contains"), "{logs}");
    // The same query with the function everywhere answers.
    let full = Cluster::start(1, &[]);
    let rows = flowsql(
        &[
            "--cluster",
            &full.url,
            "--store",
            &store,
            "--format",
            "csv",
            sql,
        ],
        &[],
    )
    .ok();
    assert!(rows.stdout.lines().count() == 2, "{}", rows.stdout);
}
