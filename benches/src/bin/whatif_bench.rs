//! `whatif-bench`: `flowsql policy whatif` of a 50-policy set over 24 hours of the bench-query
//! store (10M flows), beside `flowsql regressions` over the same 24 hours (its target: at most
//! 2x), and the distinct connections the engine decided per second.
//!
//! ```text
//! make bench-query   # builds the store once (target/bench-data/store-10000000-24h)
//! target/release/whatif-bench [--store target/bench-data/store-10000000-24h] [--runs 3]
//! ```
//!
//! The policies follow the generator's cluster (flow_benches): one CiliumNetworkPolicy per
//! workload `NAMESPACE-ROLE` for the first 50 workloads, allowing ingress from three other
//! namespaces on the generator's ports, so most recorded connections meet a policy.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use flow_benches::{measure, NAMESPACES, ROLES};

fn policies(dir: &std::path::Path) {
    for w in 0..50 {
        let namespace = NAMESPACES[w % NAMESPACES.len()];
        let role = ROLES[(w / NAMESPACES.len()) % ROLES.len()];
        let peers: Vec<String> = (1..4)
            .map(|k| {
                format!(
                    "        - matchLabels:\n            k8s:io.kubernetes.pod.namespace: {}\n",
                    NAMESPACES[(w + k * 5) % NAMESPACES.len()]
                )
            })
            .collect();
        let yaml = format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {namespace}-{role}-ingress\n  namespace: {namespace}\nspec:\n  endpointSelector:\n    matchLabels:\n      app: {namespace}-{role}\n  ingress:\n    - fromEndpoints:\n{}      toPorts:\n        - ports:\n            - port: \"80\"\n            - port: \"8080\"\n            - port: \"443\"\n              protocol: TCP\n",
            peers.concat()
        );
        std::fs::write(dir.join(format!("{w:02}-{namespace}-{role}.yaml")), yaml)
            .expect("write a policy");
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
                eprintln!("whatif-bench: unknown argument {other}\nusage: whatif-bench [--store PATH] [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("whatif-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    policies(&dir);
    let flowsql = flow_benches::sibling("flowsql");
    let store = store.to_str().expect("a UTF-8 path").to_owned();
    let (since, until) = ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z");
    let mut whatif_times = Vec::new();
    let mut evaluated = 0usize;
    let (mut engine, mut grouping) = (0.0f64, 0.0f64);
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new(&flowsql)
            .args([
                "--store", &store, "--since", since, "--until", until, "policy", "whatif",
            ])
            .arg(&dir)
            .args(["--format", "csv"])
            .output()
            .expect("flowsql (cargo build --release --workspace)");
        whatif_times.push(started.elapsed().as_secs_f64());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "flowsql policy whatif failed: {stderr}"
        );
        // "... N distinct connections evaluated by the engine in E s, after Q s grouping ..."
        let timing = stderr
            .lines()
            .find(|l| l.contains("evaluated by the engine"))
            .unwrap_or_default();
        let number = |after: &str| -> f64 {
            timing
                .split(after)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0)
        };
        evaluated = number("whatif: ") as usize;
        engine = number("engine in ");
        grouping = number("after ");
        eprintln!("{}", stderr.lines().next().unwrap_or_default());
        eprintln!("{timing}");
    }
    let mut regressions = Command::new(&flowsql);
    regressions.args([
        "--store",
        &store,
        "regressions",
        "--baseline",
        "2026-11-01T00:00:00Z..2026-11-01T12:00:00Z",
        "--window",
        "2026-11-01T12:00:00Z..2026-11-02T00:00:00Z",
        "--format",
        "csv",
    ]);
    let mut regression_times: Vec<f64> = (0..runs)
        .map(|_| {
            measure::run(&mut regressions)
                .expect("flowsql regressions")
                .seconds
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let whatif = measure::median(&mut whatif_times);
    let regressions = measure::median(&mut regression_times);
    println!("| command (24 h, 10M flows) | median of {runs} |\n|---|---|");
    println!("| policy whatif, 50 policies | {whatif:.2} s |");
    println!("| regressions | {regressions:.2} s |");
    println!(
        "\nratio whatif/regressions: {:.2} (target <= 2); {evaluated} distinct connections decided by the engine in {engine:.3} s ({:.0}/s), after {grouping:.2} s of grouping the flows",
        whatif / regressions,
        evaluated as f64 / engine.max(1e-9)
    );
}
