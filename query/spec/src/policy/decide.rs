//! The verdict of a policy set on one connection: the egress decision at the source AND the
//! ingress decision at the destination, each naming the rule that decided it. Per side: deny
//! rules first, then allow rules (an L3/L4 allow wins over L7 rules for the same traffic),
//! then default deny if a selecting policy isolates the endpoint, else allowed. What the
//! recorded flow cannot tell (a named port, an address or DNS name never recorded) is
//! UNCERTAIN with its reason, never guessed.

use super::compile::{
    Action, Direction, Entity, HttpMatch, Peer, Peers, PolicyId, PolicySet, PortMatch, PortRange,
    Protocol, Rule, L7,
};
use super::labels::{Label, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX};

/// One end of a connection, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Identity labels (`k8s:app=x`, `reserved:world`), with the namespace labels Cilium
    /// derives from the namespace added when the recording lacks them.
    pub labels: Vec<Label>,
    pub ip: Option<String>,
    /// DNS names known for the address (lowercase, no trailing dot).
    pub names: Vec<String>,
}

impl Endpoint {
    pub fn new(
        labels: &[String],
        namespace: Option<&str>,
        ip: Option<&str>,
        names: &[String],
    ) -> Endpoint {
        let mut parsed: Vec<Label> = labels.iter().map(|l| Label::parse(l)).collect();
        if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
            if !parsed.iter().any(|l| l.key == NAMESPACE_LABEL) {
                parsed.push(Label::new("k8s", NAMESPACE_LABEL, ns));
            }
            let name_label = format!("{NAMESPACE_LABELS_PREFIX}kubernetes.io/metadata.name");
            if !parsed.iter().any(|l| l.key == name_label) {
                parsed.push(Label::new("k8s", &name_label, ns));
            }
        }
        parsed.sort();
        parsed.dedup();
        let mut names: Vec<String> = names
            .iter()
            .map(|n| n.trim().trim_end_matches('.').to_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Endpoint {
            labels: parsed,
            ip: ip.filter(|i| !i.is_empty()).map(str::to_owned),
            names,
        }
    }

    fn reserved(&self, name: &str) -> bool {
        self.labels
            .iter()
            .any(|l| l.source == "reserved" && l.key == name)
    }

    fn is_pod(&self) -> bool {
        self.labels.iter().any(|l| l.key == NAMESPACE_LABEL)
    }

    /// Inside the cluster: a pod or a reserved cluster identity.
    fn in_cluster(&self) -> bool {
        self.is_pod()
            || [
                "host",
                "remote-node",
                "health",
                "init",
                "unmanaged",
                "kube-apiserver",
                "ingress",
            ]
            .iter()
            .any(|r| self.reserved(r))
    }

    fn is_world(&self) -> bool {
        ["world", "world-ipv4", "world-ipv6"]
            .iter()
            .any(|r| self.reserved(r))
            || (!self.in_cluster()
                && self
                    .labels
                    .iter()
                    .all(|l| matches!(l.source.as_str(), "cidr" | "fqdn" | "reserved")))
    }
}

/// The L4 protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
    Sctp,
    /// ICMP and others: never matched by a rule with ports.
    Other,
}

/// An L7 request, when the recording has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Request {
    Http {
        method: String,
        /// Path with the query, as Envoy's `:path`.
        path: String,
        host: String,
        /// `None`: not known for this request (grouped away); header rules are then UNCERTAIN.
        headers: Option<Vec<(String, String)>>,
    },
    Dns {
        query: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Connection {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub transport: Transport,
    pub port: u16,
    pub request: Option<Request>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Allowed,
    Denied,
    /// The recording cannot tell; the reason.
    Uncertain(&'static str),
}

/// What L7 rules did to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L7State {
    /// No L7 rule applies.
    None,
    /// Allowed into the proxy; the requests are decided one by one and none is recorded here.
    Proxied,
    /// The recorded request was decided by L7 rules.
    Decided,
}

/// The rule that decided a side: a policy rule, or the default deny of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    pub policy: PolicyId,
    pub direction: Direction,
    pub spec: usize,
    /// `None`: the policy's default deny.
    pub rule: Option<(Action, usize)>,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |action: Action| match (self.direction, action) {
            (Direction::Ingress, Action::Allow) => "ingress",
            (Direction::Ingress, Action::Deny) => "ingressDeny",
            (Direction::Egress, Action::Allow) => "egress",
            (Direction::Egress, Action::Deny) => "egressDeny",
        };
        let spec = if self.spec > 0 {
            format!("specs[{}].", self.spec)
        } else {
            String::new()
        };
        match self.rule {
            Some((action, i)) => write!(f, "{} {spec}{}[{i}]", self.policy, list(action)),
            None => write!(
                f,
                "{} default deny ({})",
                self.policy,
                self.direction.name()
            ),
        }
    }
}

impl RuleRef {
    pub fn action(&self) -> Option<Action> {
        self.rule.map(|(a, _)| a)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SideVerdict {
    pub outcome: Outcome,
    /// `None`: no policy selects the endpoint for the direction (or none decided).
    pub by: Option<RuleRef>,
    pub l7: L7State,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verdict {
    pub outcome: Outcome,
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
}

impl Verdict {
    /// The side that decided a denial or an uncertainty (egress first), else the L7 side.
    pub fn deciding(&self) -> &SideVerdict {
        let sides = [&self.egress, &self.ingress];
        sides
            .iter()
            .find(|s| s.outcome == Outcome::Denied)
            .or_else(|| {
                sides
                    .iter()
                    .find(|s| matches!(s.outcome, Outcome::Uncertain(_)))
            })
            .or_else(|| sides.iter().find(|s| s.l7 != L7State::None))
            .or_else(|| sides.iter().find(|s| s.by.is_some()))
            .copied()
            .unwrap_or(&self.egress)
    }

    pub fn l7(&self) -> L7State {
        self.egress.l7.max(self.ingress.l7)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    Unknown(&'static str),
}

impl Match {
    fn and(self, other: impl FnOnce() -> Match) -> Match {
        match self {
            Match::No => Match::No,
            Match::Yes => other(),
            Match::Unknown(r) => match other() {
                Match::No => Match::No,
                _ => Match::Unknown(r),
            },
        }
    }
}

impl PolicySet {
    /// The verdict on `connection`.
    pub fn decide(&self, connection: &Connection) -> Verdict {
        let egress = self.side(
            Direction::Egress,
            &connection.source,
            &connection.destination,
            connection,
        );
        let ingress = self.side(
            Direction::Ingress,
            &connection.destination,
            &connection.source,
            connection,
        );
        let outcome = match (egress.outcome, ingress.outcome) {
            (Outcome::Denied, _) | (_, Outcome::Denied) => Outcome::Denied,
            (Outcome::Uncertain(r), _) | (_, Outcome::Uncertain(r)) => Outcome::Uncertain(r),
            _ => Outcome::Allowed,
        };
        Verdict {
            outcome,
            egress,
            ingress,
        }
    }

    fn side(
        &self,
        direction: Direction,
        subject: &Endpoint,
        peer: &Endpoint,
        c: &Connection,
    ) -> SideVerdict {
        let unselected = SideVerdict {
            outcome: Outcome::Allowed,
            by: None,
            l7: L7State::None,
        };
        // The local node reaches its pods whatever the policies (Cilium's allow-localhost,
        // Kubernetes' node exception).
        if direction == Direction::Ingress && peer.reserved("host") {
            return unselected;
        }
        let mut isolating: Option<RuleRef> = None;
        let mut selected = Vec::new();
        for policy in &self.policies {
            for section in &policy.sections {
                if section.direction != direction || !section.subject.matches(&subject.labels) {
                    continue;
                }
                if section.default_deny && isolating.is_none() {
                    isolating = Some(RuleRef {
                        policy: policy.id.clone(),
                        direction,
                        spec: section.spec,
                        rule: None,
                    });
                }
                for rule in &section.rules {
                    selected.push((policy, section.spec, rule));
                }
            }
        }
        let reference = |policy: &super::compile::Policy, spec: usize, rule: &Rule| RuleRef {
            policy: policy.id.clone(),
            direction,
            spec,
            rule: Some((rule.action, rule.index)),
        };
        let mut uncertain: Option<(&'static str, RuleRef)> = None;
        for (policy, spec, rule) in selected.iter().filter(|(_, _, r)| r.action == Action::Deny) {
            match matches(rule, peer, c) {
                Match::Yes => {
                    return SideVerdict {
                        outcome: Outcome::Denied,
                        by: Some(reference(policy, *spec, rule)),
                        l7: L7State::None,
                    }
                }
                Match::Unknown(reason) => {
                    uncertain.get_or_insert((reason, reference(policy, *spec, rule)));
                }
                Match::No => {}
            }
        }
        if let Some((reason, by)) = uncertain {
            return SideVerdict {
                outcome: Outcome::Uncertain(reason),
                by: Some(by),
                l7: L7State::None,
            };
        }
        let mut l7_rules = Vec::new();
        for (policy, spec, rule) in selected
            .iter()
            .filter(|(_, _, r)| r.action == Action::Allow)
        {
            match matches(rule, peer, c) {
                Match::Yes if rule.l7.is_none() => {
                    return SideVerdict {
                        outcome: Outcome::Allowed,
                        by: Some(reference(policy, *spec, rule)),
                        l7: L7State::None,
                    }
                }
                Match::Yes => l7_rules.push((policy, *spec, *rule)),
                Match::Unknown(reason) => {
                    uncertain.get_or_insert((reason, reference(policy, *spec, rule)));
                }
                Match::No => {}
            }
        }
        if let Some((policy, spec, rule)) = l7_rules.first() {
            let Some(request) = &c.request else {
                return SideVerdict {
                    outcome: Outcome::Allowed,
                    by: Some(reference(policy, *spec, rule)),
                    l7: L7State::Proxied,
                };
            };
            let mut unknown = None;
            for (policy, spec, rule) in &l7_rules {
                match rule
                    .l7
                    .as_ref()
                    .map_or(Match::No, |l7| l7_allows(l7, request))
                {
                    Match::Yes => {
                        return SideVerdict {
                            outcome: Outcome::Allowed,
                            by: Some(reference(policy, *spec, rule)),
                            l7: L7State::Decided,
                        }
                    }
                    Match::Unknown(reason) => {
                        unknown.get_or_insert((reason, reference(policy, *spec, rule)));
                    }
                    Match::No => {}
                }
            }
            if let Some((reason, by)) = unknown {
                return SideVerdict {
                    outcome: Outcome::Uncertain(reason),
                    by: Some(by),
                    l7: L7State::Decided,
                };
            }
            return SideVerdict {
                outcome: Outcome::Denied,
                by: Some(reference(policy, *spec, rule)),
                l7: L7State::Decided,
            };
        }
        if let Some((reason, by)) = uncertain {
            return SideVerdict {
                outcome: Outcome::Uncertain(reason),
                by: Some(by),
                l7: L7State::None,
            };
        }
        match isolating {
            Some(by) => SideVerdict {
                outcome: Outcome::Denied,
                by: Some(by),
                l7: L7State::None,
            },
            None => unselected,
        }
    }
}

fn matches(rule: &Rule, peer: &Endpoint, c: &Connection) -> Match {
    peers_match(&rule.peers, peer).and(|| ports_match(rule.ports.as_deref(), c))
}

fn peers_match(peers: &Peers, peer: &Endpoint) -> Match {
    match peers {
        Peers::All => Match::Yes,
        Peers::Nothing => Match::No,
        Peers::Some(list) => {
            let mut result = Match::No;
            for p in list {
                match peer_match(p, peer) {
                    Match::Yes => return Match::Yes,
                    Match::Unknown(r) => result = Match::Unknown(r),
                    Match::No => {}
                }
            }
            result
        }
    }
}

fn yes(condition: bool) -> Match {
    if condition {
        Match::Yes
    } else {
        Match::No
    }
}

fn peer_match(p: &Peer, peer: &Endpoint) -> Match {
    match p {
        Peer::Endpoints(selector) => yes(selector.matches(&peer.labels)),
        Peer::Entity(entity) => yes(match entity {
            Entity::All => true,
            Entity::World => peer.is_world(),
            Entity::Cluster => peer.in_cluster(),
            Entity::Host => peer.reserved("host"),
            Entity::RemoteNode => peer.reserved("remote-node"),
            Entity::KubeApiserver => peer.reserved("kube-apiserver"),
            Entity::Ingress => peer.reserved("ingress"),
            Entity::Health => peer.reserved("health"),
            Entity::Init => peer.reserved("init"),
            Entity::Unmanaged => peer.reserved("unmanaged"),
        }),
        Peer::Cidr {
            net,
            except,
            cluster_too,
        } => {
            if !cluster_too && peer.in_cluster() {
                return Match::No;
            }
            match &peer.ip {
                None => Match::Unknown("address not recorded"),
                Some(ip) => yes(net.contains(ip) && !except.iter().any(|e| e.contains(ip))),
            }
        }
        Peer::Fqdn(regex) => {
            if peer.in_cluster() {
                Match::No
            } else if peer.names.is_empty() {
                Match::Unknown("unknown FQDN")
            } else {
                yes(peer.names.iter().any(|n| regex.is_match(n)))
            }
        }
    }
}

fn ports_match(ports: Option<&[PortMatch]>, c: &Connection) -> Match {
    let Some(ports) = ports else {
        return Match::Yes;
    };
    let protocol = match c.transport {
        Transport::Tcp => Protocol::Tcp,
        Transport::Udp => Protocol::Udp,
        Transport::Sctp => Protocol::Sctp,
        Transport::Other => return Match::No,
    };
    let mut result = Match::No;
    for p in ports {
        if p.protocol.is_some_and(|want| want != protocol) {
            continue;
        }
        match &p.ports {
            PortRange::All => return Match::Yes,
            PortRange::Range(lo, hi) if (*lo..=*hi).contains(&c.port) => return Match::Yes,
            PortRange::Range(..) => {}
            PortRange::Named(_) => result = Match::Unknown("named port"),
        }
    }
    result
}

fn l7_allows(l7: &L7, request: &Request) -> Match {
    match (l7, request) {
        (
            L7::Http(rules),
            Request::Http {
                method,
                path,
                host,
                headers,
            },
        ) => {
            let mut result = Match::No;
            for rule in rules {
                match http_allows(rule, method, path, host, headers.as_deref()) {
                    Match::Yes => return Match::Yes,
                    Match::Unknown(r) => result = Match::Unknown(r),
                    Match::No => {}
                }
            }
            result
        }
        (L7::Dns(patterns), Request::Dns { query }) => {
            let query = query.trim().trim_end_matches('.').to_lowercase();
            yes(patterns.iter().any(|p| p.is_match(&query)))
        }
        _ => Match::No,
    }
}

fn http_allows(
    rule: &HttpMatch,
    method: &str,
    path: &str,
    host: &str,
    headers: Option<&[(String, String)]>,
) -> Match {
    let line = rule.method.as_ref().is_none_or(|r| r.is_match(method))
        && rule.path.as_ref().is_none_or(|r| r.is_match(path))
        && rule.host.as_ref().is_none_or(|r| r.is_match(host));
    yes(line).and(|| match (headers, rule.headers.is_empty()) {
        (_, true) => Match::Yes,
        (None, false) => Match::Unknown("HTTP headers not evaluated"),
        (Some(headers), false) => yes(rule.headers.iter().all(|(name, value)| {
            headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case(name) && value.as_ref().is_none_or(|want| want == v)
            })
        })),
    })
}
