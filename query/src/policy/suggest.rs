//! `flowsql policy suggest`: least-privilege policies from the connections recorded as
//! allowed in a window. One policy per workload: ingress from the peers that reached it,
//! egress to the peers it reached, each on the ports seen; peers by their stable labels
//! (`app`, `app.kubernetes.io/name`, `k8s-app`, else the service account), in their namespace;
//! outside the cluster by DNS name (`toFQDNs`, with the DNS rule that makes it work) else
//! address; reserved identities as entities; with `--l7`, the HTTP requests seen. Each rule
//! carries its counts and first/last seen as a comment. The caller checks the result with
//! the what-if engine on the same connections.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use flow_spec::policy::decide::Endpoint;
use flow_spec::policy::labels::{Label, NAMESPACE_LABEL};
use flow_spec::policy::{Request, Transport};

use super::connections::{Group, Recorded};

/// Labels that name a workload in a way that survives a rollout, most telling first.
const STABLE: [&str; 4] = [
    "app.kubernetes.io/name",
    "app",
    "k8s-app",
    "io.cilium.k8s.policy.serviceaccount",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cilium,
    Kubernetes,
}

/// How a peer is written in a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    /// A pod: its namespace and its stable label.
    Pod {
        namespace: String,
        key: String,
        value: String,
    },
    /// A pod recorded without a stable label: its whole namespace.
    Namespace(String),
    Entity(String),
    Fqdn(String),
    Cidr(String),
}

/// What a subject is selected by: its namespace and stable label.
fn stable(endpoint: &Endpoint) -> Option<(String, String, String)> {
    let namespace = endpoint
        .labels
        .iter()
        .find(|l| l.key == NAMESPACE_LABEL)?
        .value
        .clone();
    let label = STABLE.iter().find_map(|key| {
        endpoint
            .labels
            .iter()
            .find(|l: &&Label| l.source == "k8s" && l.key == *key)
    })?;
    Some((namespace, label.key.clone(), label.value.clone()))
}

/// A peer: by DNS name only where it is reached (egress: `toFQDNs`); a client outside the
/// cluster is its address.
fn peer(endpoint: &Endpoint, reached: bool) -> Option<Peer> {
    if let Some((namespace, key, value)) = stable(endpoint) {
        return Some(Peer::Pod {
            namespace,
            key,
            value,
        });
    }
    if let Some(ns) = endpoint.labels.iter().find(|l| l.key == NAMESPACE_LABEL) {
        return Some(Peer::Namespace(ns.value.clone()));
    }
    let reserved = endpoint
        .labels
        .iter()
        .find(|l| l.source == "reserved" && l.key != "world" && !l.key.starts_with("world-"));
    if let Some(r) = reserved {
        return Some(Peer::Entity(r.key.clone()));
    }
    if let Some(name) = endpoint.names.first().filter(|_| reached) {
        return Some(Peer::Fqdn(name.clone()));
    }
    endpoint.ip.as_ref().map(|ip| {
        Peer::Cidr(if ip.contains(':') {
            format!("{ip}/128")
        } else {
            format!("{ip}/32")
        })
    })
}

/// Ports of one peer, with what was seen on them.
#[derive(Debug, Default)]
struct Seen {
    flows: u64,
    first: i64,
    last: i64,
    ports: BTreeSet<(u16, &'static str)>,
    http: BTreeSet<(u16, String, String)>,
    dns: bool,
}

impl Seen {
    fn add(&mut self, g: &Group) {
        self.first = if self.flows == 0 {
            g.first_seen
        } else {
            self.first.min(g.first_seen)
        };
        self.last = self.last.max(g.last_seen);
        self.flows += g.flows;
        let protocol = match g.connection.transport {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
            Transport::Sctp => "SCTP",
            Transport::Other => return,
        };
        if g.connection.port != 0 {
            self.ports.insert((g.connection.port, protocol));
        }
        match &g.connection.request {
            Some(Request::Http { method, path, .. }) => {
                self.http
                    .insert((g.connection.port, method.clone(), path.clone()));
            }
            Some(Request::Dns { .. }) => self.dns = true,
            None => {}
        }
    }
}

type Subject = (String, String, String);

#[derive(Debug, Default)]
struct Rules {
    ingress: BTreeMap<Peer, Seen>,
    egress: BTreeMap<Peer, Seen>,
}

/// Suggested policies, as one multi-document YAML text; `namespace`/`workload` limit the
/// subjects (the workload's stable label value).
pub fn suggest(
    groups: &[Group],
    kind: Kind,
    l7: bool,
    namespace: Option<&str>,
    workload: Option<&str>,
) -> String {
    let mut subjects: BTreeMap<Subject, Rules> = BTreeMap::new();
    let wanted =
        |s: &Subject| namespace.is_none_or(|ns| s.0 == ns) && workload.is_none_or(|w| s.2 == w);
    for g in groups.iter().filter(|g| g.recorded == Recorded::Allowed) {
        if let (Some(subject), Some(p)) = (
            stable(&g.connection.destination),
            peer(&g.connection.source, false),
        ) {
            if wanted(&subject) {
                subjects
                    .entry(subject)
                    .or_default()
                    .ingress
                    .entry(p)
                    .or_default()
                    .add(g);
            }
        }
        if let (Some(subject), Some(p)) = (
            stable(&g.connection.source),
            peer(&g.connection.destination, true),
        ) {
            if wanted(&subject) {
                subjects
                    .entry(subject)
                    .or_default()
                    .egress
                    .entry(p)
                    .or_default()
                    .add(g);
            }
        }
    }
    let mut out = String::new();
    for ((namespace, key, value), rules) in &subjects {
        match kind {
            Kind::Cilium => cilium(&mut out, namespace, key, value, rules, l7),
            Kind::Kubernetes => kubernetes(&mut out, namespace, key, value, rules),
        }
    }
    out
}

fn comment(seen: &Seen) -> String {
    format!(
        "# {} flows, {} .. {}",
        seen.flows,
        flow_schema::layout::rfc3339(seen.first),
        flow_schema::layout::rfc3339(seen.last)
    )
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn name_of(value: &str) -> String {
    let name: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-least-privilege", name.trim_matches('-'))
}

fn ports_yaml(out: &mut String, indent: &str, seen: &Seen, http: bool, dns: bool) {
    if seen.ports.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}toPorts:");
    for (port, protocol) in &seen.ports {
        let _ = writeln!(out, "{indent}  - ports:\n{indent}      - port: \"{port}\"\n{indent}        protocol: {protocol}");
        let requests: Vec<&(u16, String, String)> =
            seen.http.iter().filter(|(p, _, _)| p == port).collect();
        if http && !requests.is_empty() {
            let _ = writeln!(out, "{indent}    rules:\n{indent}      http:");
            for (_, method, path) in requests {
                let _ = writeln!(
                    out,
                    "{indent}        - method: {}\n{indent}          path: {}",
                    quote(&regex::escape(method)),
                    quote(&regex::escape(path))
                );
            }
        } else if dns && *port == 53 {
            let _ = writeln!(
                out,
                "{indent}    rules:\n{indent}      dns:\n{indent}        - matchPattern: \"*\""
            );
        }
    }
}

fn cilium(out: &mut String, namespace: &str, key: &str, value: &str, rules: &Rules, l7: bool) {
    let _ = writeln!(
        out,
        "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  endpointSelector:\n    matchLabels:\n      {}: {}",
        name_of(value),
        namespace,
        quote(&format!("k8s:{key}")),
        quote(value)
    );
    // toFQDNs needs the DNS proxy to see the answers: DNS to a peer on 53 gets a DNS rule.
    let wants_fqdns = rules.egress.keys().any(|p| matches!(p, Peer::Fqdn(_)));
    for (direction, list, prefix) in [
        ("ingress", &rules.ingress, "from"),
        ("egress", &rules.egress, "to"),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {direction}:");
        for (peer, seen) in list {
            let _ = writeln!(out, "    {}", comment(seen));
            match peer {
                Peer::Pod {
                    namespace: ns,
                    key,
                    value,
                } => {
                    let _ = writeln!(
                        out,
                        "    - {prefix}Endpoints:\n        - matchLabels:\n            {}: {}\n            \"k8s:{NAMESPACE_LABEL}\": {}",
                        quote(&format!("k8s:{key}")),
                        quote(value),
                        quote(ns)
                    );
                }
                Peer::Namespace(ns) => {
                    let _ = writeln!(
                        out,
                        "    # labels not recorded for these pods: their namespace\n    - {prefix}Endpoints:\n        - matchLabels:\n            \"k8s:{NAMESPACE_LABEL}\": {}",
                        quote(ns)
                    );
                }
                Peer::Entity(entity) => {
                    let _ = writeln!(out, "    - {prefix}Entities: [{}]", quote(entity));
                }
                Peer::Fqdn(name) => {
                    let _ = writeln!(out, "    - toFQDNs:\n        - matchName: {}", quote(name));
                }
                Peer::Cidr(cidr) => {
                    let _ = writeln!(out, "    - {prefix}CIDR: [{}]", quote(cidr));
                }
            }
            ports_yaml(out, "      ", seen, l7, wants_fqdns || seen.dns);
        }
    }
}

fn kubernetes(out: &mut String, namespace: &str, key: &str, value: &str, rules: &Rules) {
    let _ = writeln!(
        out,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  podSelector:\n    matchLabels:\n      {}: {}\n  policyTypes: [Ingress, Egress]",
        name_of(value),
        namespace,
        quote(key),
        quote(value)
    );
    for (direction, list, field) in [
        ("ingress", &rules.ingress, "from"),
        ("egress", &rules.egress, "to"),
    ] {
        let _ = writeln!(
            out,
            "  {direction}:{}",
            if list.is_empty() { " []" } else { "" }
        );
        for (peer, seen) in list {
            let _ = writeln!(out, "    {}", comment(seen));
            match peer {
                Peer::Pod {
                    namespace: ns,
                    key,
                    value,
                } => {
                    let _ = writeln!(
                        out,
                        "    - {field}:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: {}\n          podSelector:\n            matchLabels:\n              {}: {}",
                        quote(ns),
                        quote(key),
                        quote(value)
                    );
                }
                Peer::Namespace(ns) => {
                    let _ = writeln!(
                        out,
                        "    - {field}:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: {}",
                        quote(ns)
                    );
                }
                // Nodes and other reserved identities have no KNP peer: the node reaches its
                // pods anyway; the rest needs a CIDR the recording does not give.
                Peer::Entity(_) | Peer::Fqdn(_) => {
                    let _ = writeln!(
                        out,
                        "    - {field}:\n        - ipBlock:\n            cidr: 0.0.0.0/0"
                    );
                }
                Peer::Cidr(cidr) => {
                    let _ = writeln!(
                        out,
                        "    - {field}:\n        - ipBlock:\n            cidr: {}",
                        quote(cidr)
                    );
                }
            }
            if !seen.ports.is_empty() {
                let _ = writeln!(out, "      ports:");
                for (port, protocol) in &seen.ports {
                    let _ = writeln!(
                        out,
                        "        - port: {port}\n          protocol: {protocol}"
                    );
                }
            }
        }
    }
}
