//! kube-pods: the memory and time of `--kube` over a large cluster. A stand-in API server
//! (recorder/tests-data/kube-api-server.py) lists N generated pods (realistic: a Deployment's
//! ReplicaSet owner, six labels, an IPv4 address each) 500 per page, then plays a churn of
//! watch events; the recorder's own code (`flowrec::pods::kube`) lists, watches and keeps the
//! inventory. Prints the time to the first complete inventory and this process's resident
//! memory before the watch and at its peak (VmHWM, reset after the scenario is written).
//!
//!   kube-pods [--pods N] [--churn N]     (defaults: 100000, 10000; run from the repository)

use std::io::Write;
use std::time::{Duration, Instant};

use flowrec::pods::PodInventory;
use serde_json::json;

/// The recorder's allocator, as `flowrec run` has it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn pod(i: usize, start: &str) -> serde_json::Value {
    let app = format!("app-{}", i / 20);
    let hash = format!("{:x}", 0x5f9c8d6b7u64 + (i / 20) as u64);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{app}-{hash}-{i:05x}"), "namespace": format!("team-{}", i / 2000),
            "uid": format!("uid-{i:08}"), "creationTimestamp": start, "resourceVersion": "1",
            "labels": {"app": app, "pod-template-hash": hash, "tier": "backend",
                       "team": format!("team-{}", i / 2000), "version": "v1", "env": "prod"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                                 "name": format!("{app}-{hash}"), "uid": format!("rs-{}", i / 20)}],
        },
        "spec": {"nodeName": format!("node-{}", i % 50),
                 "containers": [{"name": "main", "image": "registry.example.com/app:1.0"}]},
        "status": {"phase": "Running", "startTime": start,
                   "podIP": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                   "podIPs": [{"ip": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)}]},
    })
}

fn main() {
    let mut pods = 100_000usize;
    let mut churn = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> usize {
            args.next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{flag} N"))
        };
        match arg.as_str() {
            "--pods" => pods = number("--pods"),
            "--churn" => churn = number("--churn"),
            "--help" | "-h" => {
                println!("usage: kube-pods [--pods N] [--churn N]   (defaults: 100000, 10000)");
                return;
            }
            other => {
                eprintln!("kube-pods: unknown argument {other} (try --help)");
                std::process::exit(2);
            }
        }
    }
    flowrec::allocator::no_transparent_huge_pages();
    flowrec::allocator::purge_delay(flowrec::allocator::Purge::AfterMs(1000));
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // The scenario, written pod by pod: this process never holds it.
    let scenario = dir.path().join("scenario.json");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&scenario).unwrap());
    write!(
        out,
        "{{\"pace\": 0, \"lists\": [{{\"resourceVersion\": \"100\", \"items\": ["
    )
    .unwrap();
    for i in 0..pods {
        if i > 0 {
            out.write_all(b",").unwrap();
        }
        serde_json::to_writer(&mut out, &pod(i, &start)).unwrap();
    }
    write!(
        out,
        "]}}], \"watches\": {{\"100\": {{\"then\": \"hold\", \"events\": ["
    )
    .unwrap();
    // Churn: pods replaced by new ones (a rollout), each a DELETED and an ADDED.
    for i in 0..churn {
        if i > 0 {
            out.write_all(b",").unwrap();
        }
        let gone = pod(i, &start);
        let new = pod(pods + i, &start);
        write!(out, "{{\"type\": \"DELETED\", \"object\": ").unwrap();
        serde_json::to_writer(&mut out, &gone).unwrap();
        write!(out, "}}, {{\"type\": \"ADDED\", \"object\": ").unwrap();
        serde_json::to_writer(&mut out, &new).unwrap();
        out.write_all(b"}").unwrap();
    }
    out.write_all(b"]}}}").unwrap();
    out.flush().unwrap();
    drop(out);
    let size = std::fs::metadata(&scenario).unwrap().len();
    let port_file = dir.path().join("port");
    let mut server = std::process::Command::new("python3")
        .arg("recorder/tests-data/kube-api-server.py")
        .arg(&scenario)
        .arg(&port_file)
        .spawn()
        .expect("python3 and recorder/tests-data/kube-api-server.py (run from the repository)");
    let port = loop {
        match std::fs::read_to_string(&port_file) {
            Ok(port) if !port.is_empty() => break port,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: b\n\
             clusters: [{{name: b, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: b, user: {{token: b}}}}]\n\
             contexts: [{{name: b, context: {{cluster: b, user: b}}}}]\n"
        ),
    )
    .unwrap();
    let before = status_kib("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let began = Instant::now();
    let updates = runtime
        .block_on(flowrec::pods::kube::watch_kubeconfig(&kubeconfig))
        .unwrap();
    let mut inventory = PodInventory::watching(updates);
    let last_ip: std::net::IpAddr = {
        let i = pods + churn - 1;
        format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
            .parse()
            .unwrap()
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let mut listed = None;
    loop {
        inventory.refresh().unwrap();
        let first: std::net::IpAddr = "10.0.0.0".parse().unwrap();
        if listed.is_none() && inventory.lookup(first, now).is_some() {
            listed = Some(began.elapsed());
        }
        if inventory.lookup(last_ip, now).is_some() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(600),
            "the churn never completed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = began.elapsed();
    // Freed memory goes back to the system after the allocator's purge delay (1 s).
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        inventory.refresh().unwrap();
        drop(Vec::<u8>::with_capacity(1 << 16));
    }
    let after = status_kib("VmRSS:");
    let peak = status_kib("VmHWM:");
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "kube-pods: {pods} pods ({:.0} MiB of JSON with the churn) listed in {:.1} s, {churn} \
         pods replaced (watch events) by {:.1} s",
        size as f64 / 1048576.0,
        listed.unwrap_or(done).as_secs_f64(),
        done.as_secs_f64()
    );
    println!(
        "kube-pods: RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB: the inventory and the \
         watch of {} pods take {:.1} MiB",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
        pods + churn,
        (after.saturating_sub(before)) as f64 / 1024.0
    );
}
