//! A generator of realistic Hubble flows for benchmarks: hundreds of pods in tens of namespaces,
//! a skewed service graph (a few hot edges carry most traffic, as in real clusters), ~1% policy
//! drops and ~10% L7 (HTTP and DNS), in the jsonpb envelope Hubble exports.

pub mod dataset;
pub mod hubble;
pub mod measure;
pub mod queries;

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Small, fast, deterministic PRNG (xorshift64*): benchmarks must generate the same data on
/// every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The generator's namespaces; workload `w` is `NAMESPACES[w % 24]-ROLES[(w / 24) % 5]`.
pub const NAMESPACES: [&str; 24] = [
    "payments",
    "checkout",
    "cart",
    "catalog",
    "search",
    "users",
    "auth",
    "orders",
    "shipping",
    "inventory",
    "pricing",
    "reviews",
    "recommendations",
    "notifications",
    "email",
    "billing",
    "ledger",
    "fraud",
    "analytics",
    "reporting",
    "gateway",
    "media",
    "support",
    "kube-system",
];
pub const ROLES: [&str; 5] = ["api", "worker", "db-proxy", "cache", "frontend"];
const PATHS: [&str; 6] = [
    "/api/v1/items",
    "/api/v1/users/42",
    "/healthz",
    "/api/v2/orders",
    "/metrics",
    "/login",
];

#[derive(Clone)]
struct Pod {
    namespace: &'static str,
    workload: String,
    name: String,
    ip: String,
    identity: u32,
    node: usize,
    labels: Vec<String>,
}

/// The cluster a generator simulates.
pub struct Cluster {
    pods: Vec<Pod>,
    /// (client workload index, server workload index, port), hottest first.
    edges: Vec<(usize, usize, u32)>,
    workloads: Vec<Vec<usize>>,
    nodes: Vec<(String, Vec<String>)>,
}

impl Cluster {
    /// ~`pods` pods (3 replicas per workload) over `NAMESPACES`.
    pub fn new(rng: &mut Rng, pods: usize) -> Cluster {
        let nodes: Vec<(String, Vec<String>)> = (0..12)
            .map(|i| {
                let name = format!("bench-cluster/node-{i:02}");
                let labels = vec![
                    format!("kubernetes.io/hostname=node-{i:02}"),
                    "kubernetes.io/os=linux".to_string(),
                    "node.kubernetes.io/instance-type=m6i.2xlarge".to_string(),
                    format!(
                        "topology.kubernetes.io/zone=eu-west-1{}",
                        ["a", "b", "c"][i % 3]
                    ),
                ];
                (name, labels)
            })
            .collect();
        let mut all = Vec::new();
        let mut workloads = Vec::new();
        let mut identity = 10_000;
        let mut w = 0;
        while all.len() < pods {
            let namespace = NAMESPACES[w % NAMESPACES.len()];
            let role = ROLES[(w / NAMESPACES.len()) % ROLES.len()];
            let workload = format!("{namespace}-{role}");
            identity += 7;
            let mut members = Vec::new();
            for replica in 0..3 {
                let index = all.len();
                all.push(Pod {
                    namespace,
                    name: format!(
                        "{workload}-{:08x}-{:05x}",
                        rng.next_u64() as u32,
                        replica * 977 + w
                    ),
                    ip: format!(
                        "10.{}.{}.{}",
                        100 + (index / 60_000),
                        (index / 250) % 250,
                        index % 250 + 2
                    ),
                    identity,
                    node: rng.below(nodes.len() as u64) as usize,
                    labels: vec![
                        format!("k8s:app={workload}"),
                        format!("k8s:io.kubernetes.pod.namespace={namespace}"),
                        "k8s:io.cilium.k8s.policy.cluster=bench-cluster".into(),
                        format!("k8s:io.cilium.k8s.policy.serviceaccount={workload}"),
                    ],
                    workload: workload.clone(),
                });
                members.push(index);
            }
            workloads.push(members);
            w += 1;
        }
        let mut edges = Vec::new();
        for client in 0..workloads.len() {
            for _ in 0..1 + rng.below(3) {
                let server = rng.below(workloads.len() as u64) as usize;
                if server != client {
                    let port = [80, 8080, 443, 5432, 6379, 9090][rng.below(6) as usize];
                    edges.push((client, server, port));
                }
            }
        }
        // Shuffle so hot edges are spread over namespaces.
        for i in (1..edges.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            edges.swap(i, j);
        }
        Cluster {
            pods: all,
            edges,
            workloads,
            nodes,
        }
    }

    /// Zipf-like pick: edge k with weight 1/(k+1).
    fn pick_edge(&self, rng: &mut Rng) -> (usize, usize, u32) {
        let n = self.edges.len() as f64;
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let k = ((n + 1.0).powf(u) - 1.0).floor() as usize;
        self.edges[k.min(self.edges.len() - 1)]
    }

    fn endpoint(&self, pod: &Pod) -> Value {
        json!({"ID": pod.identity % 4000, "identity": pod.identity, "cluster_name": "bench-cluster",
               "namespace": pod.namespace, "labels": pod.labels, "pod_name": pod.name,
               "workloads": [{"name": pod.workload, "kind": "Deployment"}]})
    }

    /// One flow as a jsonpb envelope line (without the newline).
    pub fn flow(&self, rng: &mut Rng, time: DateTime<Utc>) -> String {
        let (client, server, port) = self.pick_edge(rng);
        let src = &self.pods[self.workloads[client][rng.below(3) as usize]];
        let dst = &self.pods[self.workloads[server][rng.below(3) as usize]];
        let (node_name, node_labels) = &self.nodes[src.node];
        let time = time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let sport = 32768 + rng.below(28_000) as u32;
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            rng.next_u64() as u32,
            rng.next_u64() as u16,
            rng.below(0xfff),
            rng.below(0xfff),
            rng.next_u64() & 0xffff_ffff_ffff
        );
        let mut flow = json!({
            "time": time, "uuid": uuid,
            "emitter": {"name": "Hubble", "version": "1.19.1+g4b2f1e9"},
            "verdict": "FORWARDED",
            "IP": {"source": src.ip, "destination": dst.ip, "ipVersion": "IPv4"},
            "source": self.endpoint(src), "destination": self.endpoint(dst),
            "Type": "L3_L4", "node_name": node_name, "node_labels": node_labels,
            "event_type": {"type": 4}, "traffic_direction": "EGRESS",
            "trace_observation_point": "TO_ENDPOINT", "is_reply": false,
            "interface": {"index": 10 + src.node, "name": format!("lxc{:08x}", src.identity)},
        });
        let roll = rng.below(1000);
        if roll < 10 {
            flow["verdict"] = json!("DROPPED");
            flow["drop_reason"] = json!(133);
            flow["drop_reason_desc"] = json!("POLICY_DENIED");
            flow["event_type"] = json!({"type": 1, "sub_type": 133});
            flow["l4"] = json!({"TCP": {"source_port": sport, "destination_port": port, "flags": {"SYN": true}}});
            flow["egress_denied_by"] = json!([{"name": format!("{}-egress", src.namespace), "namespace": src.namespace,
                                                "kind": "CiliumNetworkPolicy", "revision": "3"}]);
            flow["Summary"] = json!("TCP Flags: SYN");
        } else if roll < 75 {
            let path = PATHS[rng.below(PATHS.len() as u64) as usize];
            let method = if rng.chance(0.8) { "GET" } else { "POST" };
            flow["Type"] = json!("L7");
            flow["event_type"] = json!({"type": 129});
            flow["l4"] = json!({"TCP": {"source_port": sport, "destination_port": port}});
            let url = format!(
                "http://{}.{}.svc.cluster.local{path}",
                dst.workload, dst.namespace
            );
            flow["l7"] = json!({"type": "REQUEST", "http": {"method": method, "url": url, "protocol": "HTTP/1.1",
                                  "headers": [{"key": "User-Agent", "value": "bench/1.0"}]}});
            flow["Summary"] = json!(format!("HTTP/1.1 {method} {url}"));
        } else if roll < 100 {
            let name = format!("{}.{}.svc.cluster.local.", dst.workload, dst.namespace);
            flow["Type"] = json!("L7");
            flow["event_type"] = json!({"type": 129});
            flow["l4"] = json!({"UDP": {"source_port": sport, "destination_port": 53}});
            flow["l7"] = json!({"type": "REQUEST", "dns": {"query": name, "qtypes": ["A"], "observation_source": "proxy"}});
            flow["Summary"] = json!(format!("DNS Query {name} A"));
        } else {
            let flags = match rng.below(4) {
                0 => json!({"SYN": true}),
                1 => json!({"SYN": true, "ACK": true}),
                2 => json!({"ACK": true, "PSH": true}),
                _ => json!({"ACK": true, "FIN": true}),
            };
            flow["l4"] =
                json!({"TCP": {"source_port": sport, "destination_port": port, "flags": flags}});
            flow["Summary"] = json!("TCP Flags: ACK");
            flow["egress_allowed_by"] = json!([{"name": format!("{}-egress", src.namespace), "namespace": src.namespace,
                                                 "kind": "CiliumNetworkPolicy", "revision": "3"}]);
        }
        let node = flow["node_name"].clone();
        let time = flow["time"].clone();
        json!({"flow": flow, "node_name": node, "time": time}).to_string()
    }
}

/// Writes `flows` lines spread evenly over `hours` hours starting at `start`.
pub fn generate(
    out: &mut impl Write,
    flows: u64,
    pods: usize,
    start: DateTime<Utc>,
    hours: u32,
    seed: u64,
) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let cluster = Cluster::new(&mut rng, pods);
    let span_ns = i64::from(hours.max(1)) * 3_600_000_000_000;
    let step = span_ns as f64 / flows.max(1) as f64;
    let base = start.timestamp_nanos_opt().expect("start in range");
    for i in 0..flows {
        // Jitter within the flow's own slot: times stay inside [start, start + hours).
        let jitter = rng.below(step as u64) as i64;
        let time = DateTime::from_timestamp_nanos(base + (i as f64 * step) as i64 + jitter);
        writeln!(out, "{}", cluster.flow(&mut rng, time))?;
    }
    Ok(())
}

/// A binary built next to the running one (`target/release/flowrec` beside `query-bench`):
/// the benchmarks run the project's own release binaries.
pub fn sibling(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_flows_have_the_advertised_mix() {
        let mut out = Vec::new();
        let start = "2026-11-01T00:00:00Z".parse().unwrap();
        generate(&mut out, 20_000, 400, start, 2, 7).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 20_000);
        let share = |pred: &dyn Fn(&Value) -> bool| {
            lines.iter().filter(|l| pred(&l["flow"])).count() as f64 / lines.len() as f64
        };
        let dropped = share(&|f| f["verdict"] == "DROPPED");
        let l7 = share(&|f| f["Type"] == "L7");
        assert!((0.007..0.013).contains(&dropped), "drops {dropped}");
        assert!((0.08..0.12).contains(&l7), "L7 {l7}");
        let pods: std::collections::HashSet<&str> = lines
            .iter()
            .filter_map(|l| l["flow"]["source"]["pod_name"].as_str())
            .collect();
        let namespaces: std::collections::HashSet<&str> = lines
            .iter()
            .filter_map(|l| l["flow"]["source"]["namespace"].as_str())
            .collect();
        assert!(pods.len() >= 200, "{} pods", pods.len());
        assert!(namespaces.len() >= 20, "{} namespaces", namespaces.len());
        // Skewed: the busiest source pod sends far more than the median one.
        let mut per_pod: std::collections::HashMap<&str, usize> = Default::default();
        for l in &lines {
            *per_pod
                .entry(l["flow"]["source"]["pod_name"].as_str().unwrap())
                .or_default() += 1;
        }
        let mut counts: Vec<usize> = per_pod.into_values().collect();
        counts.sort_unstable();
        assert!(
            counts[counts.len() - 1] > 10 * counts[counts.len() / 2],
            "{counts:?}"
        );
        // Times stay inside the requested hours, in order.
        let times: Vec<&str> = lines.iter().map(|l| l["time"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[times.len() - 1] < "2026-11-01T02:00:00Z");
    }
}
