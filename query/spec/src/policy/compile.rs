//! Policy documents -> rule sets the decision reads: each policy becomes sections (one per
//! spec and direction) with the subject they select, whether they put it in default deny,
//! and their allow and deny rules with peers, ports and L7 rules resolved to matchers. The
//! namespace rules of each kind are applied here, once (see [`Semantics`] and the reference
//! in ../shared/docs/policy-semantics.md §2).

use flow_schema::matching::Cidr;
use regex::Regex;

use super::labels::{
    Key, LabelSelector, Operator, Requirement, Selector, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX,
};
use super::load::{Document, Loaded, Origin};
use super::model::{
    CidrRule, CiliumEgressRule, CiliumIngressRule, CiliumPolicy, CiliumRule, FqdnSelector,
    IntOrString, KnpPeer, KnpPort, NetworkPolicy, PolicyType, PortRule,
};

/// Where Kubernetes NetworkPolicy and Cilium differ for a KNP: under Cilium an `ipBlock` never
/// matches a pod or a node (only addresses outside the cluster), under plain Kubernetes
/// semantics (Calico, NPM) it matches any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    Cilium,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            PolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
        }
    }
}

/// A policy's identity, as Hubble names policies (`*_allowed_by`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{} ({})", self.name, self.kind.name()),
            None => write!(f, "{} ({})", self.name, self.kind.name()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub id: PolicyId,
    pub origin: Origin,
    pub sections: Vec<Section>,
}

/// The rules of one spec of a policy for one direction.
#[derive(Debug, Clone)]
pub struct Section {
    /// Index of the spec in `specs` (0 for `spec` and for a KNP).
    pub spec: usize,
    pub direction: Direction,
    /// The endpoints the section applies to (namespace included).
    pub subject: Selector,
    /// Whether it isolates its subject for the direction (default deny).
    pub default_deny: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Allow,
    Deny,
}

/// One ingress/egress (or deny) rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its index in its list (`ingress[i]`, `egressDeny[i]`, ...).
    pub index: usize,
    pub action: Action,
    pub peers: Peers,
    /// `None`: every port and protocol.
    pub ports: Option<Vec<PortMatch>>,
    /// L7 rules of the ports (allow rules only).
    pub l7: Option<L7>,
}

#[derive(Debug, Clone)]
pub enum Peers {
    All,
    Nothing,
    Some(Vec<Peer>),
}

#[derive(Debug, Clone)]
pub enum Peer {
    /// Endpoints whose identity labels the selector matches.
    Endpoints(Selector),
    Entity(Entity),
    /// Addresses; `cluster_too`: also pods and nodes (Kubernetes semantics of `ipBlock`).
    Cidr {
        net: Cidr,
        except: Vec<Cidr>,
        cluster_too: bool,
    },
    /// DNS names (toFQDNs), as an anchored regex.
    Fqdn(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    World,
    Host,
    RemoteNode,
    KubeApiserver,
    Ingress,
    Health,
    Init,
    Unmanaged,
    Cluster,
    All,
}

impl Entity {
    fn parse(text: &str) -> Option<Entity> {
        Some(match text {
            "world" | "world-ipv4" | "world-ipv6" => Entity::World,
            "host" => Entity::Host,
            "remote-node" => Entity::RemoteNode,
            "kube-apiserver" => Entity::KubeApiserver,
            "ingress" => Entity::Ingress,
            "health" => Entity::Health,
            "init" => Entity::Init,
            "unmanaged" => Entity::Unmanaged,
            "cluster" => Entity::Cluster,
            "all" => Entity::All,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRange {
    All,
    Range(u16, u16),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMatch {
    /// `None`: any protocol (Cilium's ANY, its default).
    pub protocol: Option<Protocol>,
    pub ports: PortRange,
}

#[derive(Debug, Clone)]
pub enum L7 {
    Http(Vec<HttpMatch>),
    Dns(Vec<Regex>),
}

#[derive(Debug, Clone)]
pub struct HttpMatch {
    pub method: Option<Regex>,
    pub path: Option<Regex>,
    pub host: Option<Regex>,
    /// `Name` (present) or `Name: value`.
    pub headers: Vec<(String, Option<String>)>,
}

/// A policy that cannot be evaluated: the origin, the field and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {path}: {why}")]
pub struct CompileError {
    pub origin: Origin,
    pub path: String,
    pub why: String,
}

/// Compiles loaded documents. A KNP without a namespace is in `default_namespace`.
pub fn compile(
    documents: &[Loaded],
    semantics: Semantics,
    default_namespace: &str,
) -> Result<PolicySet, CompileError> {
    let mut policies = Vec::new();
    for loaded in documents {
        let mut context = Context {
            origin: &loaded.origin,
            semantics,
        };
        policies.push(match &loaded.document {
            Document::Kubernetes(p) => context.knp(p, default_namespace)?,
            Document::Cilium(p) => context.cilium(p, default_namespace)?,
        });
    }
    Ok(PolicySet { policies })
}

struct Context<'a> {
    origin: &'a Origin,
    semantics: Semantics,
}

/// The selector of the endpoints of `namespace`.
fn in_namespace(selector: Selector, namespace: &str) -> Selector {
    selector.and(Requirement::equals(
        &format!("k8s:{NAMESPACE_LABEL}"),
        namespace,
    ))
}

impl Context<'_> {
    fn error(&self, path: impl Into<String>, why: impl Into<String>) -> CompileError {
        CompileError {
            origin: self.origin.clone(),
            path: path.into(),
            why: why.into(),
        }
    }

    fn selector(&self, path: &str, selector: &LabelSelector) -> Result<Selector, CompileError> {
        Selector::compile(selector).map_err(|why| self.error(path, why))
    }

    fn refuse<T>(&self, path: &str, field: &Option<T>) -> Result<(), CompileError> {
        match field {
            Some(_) => Err(self.error(
                path,
                "not evaluated by the policy what-if yet; leave it out or evaluate the policy without it",
            )),
            None => Ok(()),
        }
    }

    // ---- Kubernetes NetworkPolicy ----------------------------------------------------------

    fn knp(&mut self, p: &NetworkPolicy, default_namespace: &str) -> Result<Policy, CompileError> {
        let namespace = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_owned());
        let subject = in_namespace(
            self.selector("spec.podSelector", &p.spec.pod_selector)?,
            &namespace,
        );
        // policyTypes: Ingress always, Egress when there are egress rules, unless given.
        let types = p.spec.policy_types.clone().unwrap_or_else(|| {
            let mut types = vec![PolicyType::Ingress];
            if p.spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push(PolicyType::Egress);
            }
            types
        });
        // (rule path, peers field, peers, ports) of each direction's rules.
        let ingress: Vec<_> = p
            .spec
            .ingress
            .iter()
            .flatten()
            .map(|r| ("ingress", "from", r.from.as_deref(), r.ports.as_deref()))
            .collect();
        let egress: Vec<_> = p
            .spec
            .egress
            .iter()
            .flatten()
            .map(|r| ("egress", "to", r.to.as_deref(), r.ports.as_deref()))
            .collect();
        let mut sections = Vec::new();
        for (direction, kind, list) in [
            (Direction::Ingress, PolicyType::Ingress, ingress),
            (Direction::Egress, PolicyType::Egress, egress),
        ] {
            if !types.contains(&kind) {
                continue;
            }
            let mut rules = Vec::new();
            for (i, (list, field, peers, ports)) in list.into_iter().enumerate() {
                let path = format!("spec.{list}[{i}]");
                rules.push(Rule {
                    index: i,
                    action: Action::Allow,
                    peers: self.knp_peers(&path, field, peers, &namespace)?,
                    ports: self.knp_ports(&path, ports)?,
                    l7: None,
                });
            }
            // A KNP isolates every pod it selects for each of its policy types.
            sections.push(Section {
                spec: 0,
                direction,
                subject: subject.clone(),
                default_deny: true,
                rules,
            });
        }
        Ok(Policy {
            id: PolicyId {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some(namespace),
                name: p.metadata.name.clone(),
            },
            origin: self.origin.clone(),
            sections,
        })
    }

    /// `from`/`to`: absent or empty = every peer; each element is a pod/namespace selector
    /// pair (AND) or an ipBlock; elements OR'ed.
    fn knp_peers(
        &self,
        path: &str,
        field: &str,
        peers: Option<&[KnpPeer]>,
        namespace: &str,
    ) -> Result<Peers, CompileError> {
        let Some(peers) = peers.filter(|p| !p.is_empty()) else {
            return Ok(Peers::All);
        };
        let mut out = Vec::new();
        for (i, peer) in peers.iter().enumerate() {
            let path = format!("{path}.{field}[{i}]");
            match (&peer.pod_selector, &peer.namespace_selector, &peer.ip_block) {
                (None, None, Some(block)) => {
                    let net = Cidr::parse(&block.cidr).ok_or_else(|| {
                        self.error(
                            format!("{path}.ipBlock.cidr"),
                            format!("not a CIDR: {:?}", block.cidr),
                        )
                    })?;
                    let except = self.cidrs(&format!("{path}.ipBlock.except"), &block.except)?;
                    out.push(Peer::Cidr {
                        net,
                        except,
                        cluster_too: self.semantics == Semantics::Kubernetes,
                    });
                }
                (pods, namespaces, None) if pods.is_some() || namespaces.is_some() => {
                    let mut selector = match pods {
                        Some(pods) => self.selector(&format!("{path}.podSelector"), pods)?,
                        None => Selector::default(),
                    };
                    match namespaces {
                        // Namespace labels as Cilium gives them to pod identities.
                        Some(ns) => {
                            let ns = self.selector(&format!("{path}.namespaceSelector"), ns)?;
                            for mut r in ns.requirements {
                                r.key = Key {
                                    source: Some("k8s".into()),
                                    key: format!("{NAMESPACE_LABELS_PREFIX}{}", r.key.key),
                                };
                                selector.requirements.push(r);
                            }
                            // Only pods have a namespace.
                            selector.requirements.push(Requirement {
                                key: Key::parse(&format!("k8s:{NAMESPACE_LABEL}")),
                                operator: Operator::Exists,
                                values: Vec::new(),
                            });
                        }
                        None => selector = in_namespace(selector, namespace),
                    }
                    out.push(Peer::Endpoints(selector));
                }
                _ => {
                    return Err(self.error(
                        path,
                        "a peer is a podSelector and/or namespaceSelector, or an ipBlock alone",
                    ))
                }
            }
        }
        Ok(Peers::Some(out))
    }

    fn knp_ports(
        &self,
        path: &str,
        ports: Option<&[KnpPort]>,
    ) -> Result<Option<Vec<PortMatch>>, CompileError> {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let path = format!("{path}.ports[{i}]");
            // The KNP default protocol is TCP.
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Some(Protocol::Tcp),
                "UDP" => Some(Protocol::Udp),
                "SCTP" => Some(Protocol::Sctp),
                other => {
                    return Err(self.error(
                        format!("{path}.protocol"),
                        format!("{other:?}: TCP, UDP or SCTP"),
                    ))
                }
            };
            let ports = self.port_range(&path, port.port.as_ref(), port.end_port)?;
            out.push(PortMatch { protocol, ports });
        }
        Ok(Some(out))
    }

    fn port_range(
        &self,
        path: &str,
        port: Option<&IntOrString>,
        end_port: Option<i64>,
    ) -> Result<PortRange, CompileError> {
        let number = |n: i64, field: &str| -> Result<u16, CompileError> {
            u16::try_from(n).map_err(|_| {
                self.error(
                    format!("{path}.{field}"),
                    format!("{n} is not a port (0-65535)"),
                )
            })
        };
        let start = match port {
            None => None,
            Some(IntOrString::Int(n)) => Some(number(*n, "port")?),
            Some(IntOrString::Str(s)) if s.is_empty() => None,
            Some(IntOrString::Str(s)) => match s.parse::<i64>() {
                Ok(n) => Some(number(n, "port")?),
                Err(_) => {
                    if end_port.is_some() {
                        return Err(
                            self.error(format!("{path}.endPort"), "endPort needs a numeric port")
                        );
                    }
                    return Ok(PortRange::Named(s.clone()));
                }
            },
        };
        Ok(match (start, end_port) {
            (None | Some(0), None) => PortRange::All,
            (Some(p), None) => PortRange::Range(p, p),
            (Some(p), Some(end)) => {
                let end = number(end, "endPort")?;
                if end < p {
                    return Err(self.error(
                        format!("{path}.endPort"),
                        format!("endPort {end} is below port {p}"),
                    ));
                }
                PortRange::Range(p, end)
            }
            (None, Some(_)) => {
                return Err(self.error(format!("{path}.endPort"), "endPort needs a port"))
            }
        })
    }

    fn cidrs(&self, path: &str, texts: &[String]) -> Result<Vec<Cidr>, CompileError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Cidr::parse(t)
                    .ok_or_else(|| self.error(format!("{path}[{i}]"), format!("not a CIDR: {t:?}")))
            })
            .collect()
    }

    // ---- Cilium ----------------------------------------------------------------------------

    fn cilium(
        &mut self,
        p: &CiliumPolicy,
        default_namespace: &str,
    ) -> Result<Policy, CompileError> {
        let clusterwide = p.kind == "CiliumClusterwideNetworkPolicy";
        let namespace = if clusterwide {
            None
        } else {
            Some(
                p.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.to_owned()),
            )
        };
        let specs: Vec<(String, &CiliumRule)> = match (&p.spec, &p.specs) {
            (Some(spec), None) => vec![("spec".to_owned(), spec)],
            (None, Some(specs)) => specs
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("specs[{i}]"), s))
                .collect(),
            (Some(_), Some(_)) => return Err(self.error("spec", "give spec or specs, not both")),
            (None, None) => return Err(self.error("spec", "a policy needs spec or specs")),
        };
        let mut sections = Vec::new();
        for (index, (path, rule)) in specs.into_iter().enumerate() {
            sections.extend(self.cilium_rule(&path, index, rule, namespace.as_deref())?);
        }
        Ok(Policy {
            id: PolicyId {
                kind: if clusterwide {
                    PolicyKind::CiliumClusterwideNetworkPolicy
                } else {
                    PolicyKind::CiliumNetworkPolicy
                },
                namespace,
                name: p.metadata.name.clone(),
            },
            origin: self.origin.clone(),
            sections,
        })
    }

    /// A selector of `fromEndpoints`/`toEndpoints` (or the subject) with Cilium's namespace
    /// rule: in a CNP, the policy's namespace unless the selector names a namespace (or
    /// namespace labels) or reserved labels; in a CCNP, any pod (`io.kubernetes.pod.namespace`
    /// exists) unless it names one.
    fn endpoints(
        &self,
        path: &str,
        selector: &LabelSelector,
        namespace: Option<&str>,
        subject: bool,
    ) -> Result<Selector, CompileError> {
        let selector = self.selector(path, selector)?;
        if selector.is_reserved() {
            return Ok(selector);
        }
        let names_namespace = selector.mentions(NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX);
        Ok(match namespace {
            // The subject of a CNP is always in its namespace.
            Some(ns) if subject => {
                let mut selector = selector;
                selector
                    .requirements
                    .retain(|r| r.key.key != NAMESPACE_LABEL);
                in_namespace(selector, ns)
            }
            Some(ns) if !names_namespace => in_namespace(selector, ns),
            _ if !names_namespace => selector.and(Requirement {
                key: Key::parse(&format!("k8s:{NAMESPACE_LABEL}")),
                operator: Operator::Exists,
                values: Vec::new(),
            }),
            _ => selector,
        })
    }

    fn cilium_rule(
        &self,
        path: &str,
        spec: usize,
        rule: &CiliumRule,
        namespace: Option<&str>,
    ) -> Result<Vec<Section>, CompileError> {
        self.refuse(&format!("{path}.nodeSelector"), &rule.node_selector)?;
        let Some(subject) = &rule.endpoint_selector else {
            return Err(self.error(
                format!("{path}.endpointSelector"),
                "a rule needs an endpointSelector",
            ));
        };
        let subject = self.endpoints(
            &format!("{path}.endpointSelector"),
            subject,
            namespace,
            true,
        )?;
        let defaults = rule.enable_default_deny.unwrap_or_default();
        let ingress = self.cilium_section(
            path,
            spec,
            Direction::Ingress,
            &subject,
            defaults.ingress,
            [
                (
                    "ingress",
                    Action::Allow,
                    rule.ingress.as_deref().unwrap_or_default(),
                ),
                (
                    "ingressDeny",
                    Action::Deny,
                    rule.ingress_deny.as_deref().unwrap_or_default(),
                ),
            ],
            |p, i, action, r| self.cilium_ingress(p, i, action, r, namespace),
        )?;
        let egress = self.cilium_section(
            path,
            spec,
            Direction::Egress,
            &subject,
            defaults.egress,
            [
                (
                    "egress",
                    Action::Allow,
                    rule.egress.as_deref().unwrap_or_default(),
                ),
                (
                    "egressDeny",
                    Action::Deny,
                    rule.egress_deny.as_deref().unwrap_or_default(),
                ),
            ],
            |p, i, action, r| self.cilium_egress(p, i, action, r, namespace),
        )?;
        let sections: Vec<Section> = ingress.into_iter().chain(egress).collect();
        Ok(sections)
    }

    /// One direction of a Cilium rule: its allow and deny lists as one section; none when
    /// both are empty ("if both ingress and egress are omitted, the rule has no effect").
    #[allow(clippy::too_many_arguments)]
    fn cilium_section<R>(
        &self,
        path: &str,
        spec: usize,
        direction: Direction,
        subject: &Selector,
        default_deny: Option<bool>,
        lists: [(&str, Action, &[R]); 2],
        compile: impl Fn(&str, usize, Action, &R) -> Result<Rule, CompileError>,
    ) -> Result<Option<Section>, CompileError> {
        if lists.iter().all(|(_, _, items)| items.is_empty()) {
            return Ok(None);
        }
        let mut rules = Vec::new();
        for (list, action, items) in lists {
            for (i, r) in items.iter().enumerate() {
                rules.push(compile(&format!("{path}.{list}[{i}]"), i, action, r)?);
            }
        }
        Ok(Some(Section {
            spec,
            direction,
            subject: subject.clone(),
            default_deny: default_deny.unwrap_or(true),
            rules,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn cilium_peers(
        &self,
        path: &str,
        side: &str,
        endpoints: Option<&[LabelSelector]>,
        entities: Option<&[String]>,
        cidr: Option<&[String]>,
        cidr_set: Option<&[CidrRule]>,
        fqdns: Option<&[FqdnSelector]>,
        namespace: Option<&str>,
    ) -> Result<Option<Vec<Peer>>, CompileError> {
        let given = [
            endpoints.is_some_and(|e| !e.is_empty()),
            entities.is_some_and(|e| !e.is_empty()),
            cidr.is_some_and(|e| !e.is_empty()),
            cidr_set.is_some_and(|e| !e.is_empty()),
            fqdns.is_some_and(|e| !e.is_empty()),
        ];
        if !given.contains(&true) {
            return Ok(None);
        }
        let mut peers = Vec::new();
        for (i, s) in endpoints.into_iter().flatten().enumerate() {
            peers.push(Peer::Endpoints(self.endpoints(
                &format!("{path}.{side}Endpoints[{i}]"),
                s,
                namespace,
                false,
            )?));
        }
        for (i, e) in entities.into_iter().flatten().enumerate() {
            let entity = Entity::parse(e).ok_or_else(|| {
                self.error(
                    format!("{path}.{side}Entities[{i}]"),
                    format!("unknown entity {e:?} (world, cluster, host, remote-node, kube-apiserver, ingress, health, init, unmanaged, all)"),
                )
            })?;
            peers.push(Peer::Entity(entity));
        }
        for net in self.cidrs(&format!("{path}.{side}CIDR"), cidr.unwrap_or_default())? {
            peers.push(Peer::Cidr {
                net,
                except: Vec::new(),
                cluster_too: false,
            });
        }
        for (i, set) in cidr_set.into_iter().flatten().enumerate() {
            let p = format!("{path}.{side}CIDRSet[{i}]");
            self.refuse(&format!("{p}.cidrGroupRef"), &set.cidr_group_ref)?;
            self.refuse(&format!("{p}.cidrGroupSelector"), &set.cidr_group_selector)?;
            let text = set
                .cidr
                .as_deref()
                .ok_or_else(|| self.error(format!("{p}.cidr"), "a CIDR set needs a cidr"))?;
            let net = Cidr::parse(text)
                .ok_or_else(|| self.error(format!("{p}.cidr"), format!("not a CIDR: {text:?}")))?;
            let except = self.cidrs(&format!("{p}.except"), &set.except)?;
            peers.push(Peer::Cidr {
                net,
                except,
                cluster_too: false,
            });
        }
        for (i, f) in fqdns.into_iter().flatten().enumerate() {
            peers.push(Peer::Fqdn(self.fqdn(&format!("{path}.toFQDNs[{i}]"), f)?));
        }
        Ok(Some(peers))
    }

    fn fqdn(&self, path: &str, f: &FqdnSelector) -> Result<Regex, CompileError> {
        let pattern = match (&f.match_name, &f.match_pattern) {
            (Some(name), None) => fqdn_regex(name, false),
            (None, Some(pattern)) => fqdn_regex(pattern, true),
            _ => Err("give matchName or matchPattern".to_owned()),
        };
        pattern.map_err(|why| self.error(path, why))
    }

    /// A rule's peers and ports: explicit peers; else, with toPorts, every peer (an L4-only
    /// rule); else nothing (the empty rule `{}`, which still selects for default deny).
    fn rule_of(
        &self,
        path: &str,
        index: usize,
        action: Action,
        peers: Option<Vec<Peer>>,
        to_ports: Option<&[PortRule]>,
    ) -> Result<Rule, CompileError> {
        let to_ports = to_ports.filter(|p| !p.is_empty());
        let (ports, l7) = match to_ports {
            None => (None, None),
            Some(rules) => self.cilium_ports(path, action, rules)?,
        };
        let peers = match (peers, to_ports) {
            (Some(peers), _) => Peers::Some(peers),
            (None, Some(_)) => Peers::All,
            (None, None) => Peers::Nothing,
        };
        Ok(Rule {
            index,
            action,
            peers,
            ports,
            l7,
        })
    }

    fn cilium_ingress(
        &self,
        path: &str,
        index: usize,
        action: Action,
        r: &CiliumIngressRule,
        namespace: Option<&str>,
    ) -> Result<Rule, CompileError> {
        self.refuse(&format!("{path}.icmps"), &r.icmps)?;
        self.refuse(&format!("{path}.fromRequires"), &r.from_requires)?;
        self.refuse(&format!("{path}.fromNodes"), &r.from_nodes)?;
        self.refuse(&format!("{path}.fromGroups"), &r.from_groups)?;
        self.refuse(&format!("{path}.authentication"), &r.authentication)?;
        let peers = self.cilium_peers(
            path,
            "from",
            r.from_endpoints.as_deref(),
            r.from_entities.as_deref(),
            r.from_cidr.as_deref(),
            r.from_cidr_set.as_deref(),
            None,
            namespace,
        )?;
        self.rule_of(path, index, action, peers, r.to_ports.as_deref())
    }

    fn cilium_egress(
        &self,
        path: &str,
        index: usize,
        action: Action,
        r: &CiliumEgressRule,
        namespace: Option<&str>,
    ) -> Result<Rule, CompileError> {
        self.refuse(&format!("{path}.icmps"), &r.icmps)?;
        self.refuse(&format!("{path}.toRequires"), &r.to_requires)?;
        self.refuse(&format!("{path}.toNodes"), &r.to_nodes)?;
        self.refuse(&format!("{path}.toGroups"), &r.to_groups)?;
        self.refuse(&format!("{path}.toServices"), &r.to_services)?;
        self.refuse(&format!("{path}.authentication"), &r.authentication)?;
        if action == Action::Deny && r.to_fqdns.is_some() {
            return Err(self.error(
                format!("{path}.toFQDNs"),
                "deny rules do not support toFQDNs",
            ));
        }
        let peers = self.cilium_peers(
            path,
            "to",
            r.to_endpoints.as_deref(),
            r.to_entities.as_deref(),
            r.to_cidr.as_deref(),
            r.to_cidr_set.as_deref(),
            r.to_fqdns.as_deref(),
            namespace,
        )?;
        self.rule_of(path, index, action, peers, r.to_ports.as_deref())
    }

    fn cilium_ports(
        &self,
        path: &str,
        action: Action,
        rules: &[PortRule],
    ) -> Result<(Option<Vec<PortMatch>>, Option<L7>), CompileError> {
        let mut ports = Vec::new();
        let mut l7: Option<L7> = None;
        let mut all_ports = false;
        for (i, rule) in rules.iter().enumerate() {
            let p = format!("{path}.toPorts[{i}]");
            self.refuse(&format!("{p}.terminatingTLS"), &rule.terminating_tls)?;
            self.refuse(&format!("{p}.originatingTLS"), &rule.originating_tls)?;
            self.refuse(&format!("{p}.serverNames"), &rule.server_names)?;
            self.refuse(&format!("{p}.listener"), &rule.listener)?;
            match rule.ports.as_deref().filter(|p| !p.is_empty()) {
                None => all_ports = true,
                Some(list) => {
                    for (j, port) in list.iter().enumerate() {
                        let q = format!("{p}.ports[{j}]");
                        let protocol = match port.protocol.as_deref().unwrap_or("ANY") {
                            "ANY" => None,
                            "TCP" => Some(Protocol::Tcp),
                            "UDP" => Some(Protocol::Udp),
                            "SCTP" => Some(Protocol::Sctp),
                            other => {
                                return Err(self.error(
                                    format!("{q}.protocol"),
                                    format!("{other:?}: TCP, UDP, SCTP or ANY"),
                                ))
                            }
                        };
                        let range = self.port_range(&q, port.port.as_ref(), port.end_port)?;
                        ports.push(PortMatch {
                            protocol,
                            ports: range,
                        });
                    }
                }
            }
            if let Some(rules) = &rule.rules {
                let r = format!("{p}.rules");
                if action == Action::Deny {
                    return Err(self.error(r, "deny rules do not support L7 rules"));
                }
                self.refuse(&format!("{r}.kafka"), &rules.kafka)?;
                self.refuse(&format!("{r}.l7proto"), &rules.l7proto)?;
                self.refuse(&format!("{r}.l7"), &rules.l7)?;
                let rule_l7 = match (&rules.http, &rules.dns) {
                    (Some(http), None) => L7::Http(
                        http.iter()
                            .enumerate()
                            .map(|(k, h)| self.http(&format!("{r}.http[{k}]"), h))
                            .collect::<Result<_, _>>()?,
                    ),
                    (None, Some(dns)) => L7::Dns(
                        dns.iter()
                            .enumerate()
                            .map(|(k, d)| self.fqdn(&format!("{r}.dns[{k}]"), d))
                            .collect::<Result<_, _>>()?,
                    ),
                    (None, None) => continue,
                    (Some(_), Some(_)) => {
                        return Err(self.error(r, "one L7 type per port (http or dns)"))
                    }
                };
                l7 = Some(match (l7.take(), rule_l7) {
                    (None, new) => new,
                    (Some(L7::Http(mut a)), L7::Http(b)) => {
                        a.extend(b);
                        L7::Http(a)
                    }
                    (Some(L7::Dns(mut a)), L7::Dns(b)) => {
                        a.extend(b);
                        L7::Dns(a)
                    }
                    _ => return Err(self.error(r, "one L7 type per rule (http or dns)")),
                });
            }
        }
        Ok((if all_ports { None } else { Some(ports) }, l7))
    }

    fn http(&self, path: &str, h: &super::model::HttpRule) -> Result<HttpMatch, CompileError> {
        self.refuse(&format!("{path}.headerMatches"), &h.header_matches)?;
        // Envoy matches each as a whole (RE2 full match).
        let full = |field: &str, text: &Option<String>| -> Result<Option<Regex>, CompileError> {
            text.as_ref()
                .filter(|t| !t.is_empty())
                .map(|t| {
                    Regex::new(&format!("^(?:{t})$"))
                        .map_err(|e| self.error(format!("{path}.{field}"), e.to_string()))
                })
                .transpose()
        };
        let headers = h
            .headers
            .iter()
            .flatten()
            .map(|header| match header.split_once(':') {
                Some((name, value)) => (name.trim().to_lowercase(), Some(value.trim().to_owned())),
                None => (header.trim().to_lowercase(), None),
            })
            .collect();
        Ok(HttpMatch {
            method: full("method", &h.method)?,
            path: full("path", &h.path)?,
            host: full("host", &h.host)?,
            headers,
        })
    }
}

/// Cilium's DNS name patterns: lowercased, one trailing dot ignored; `matchPattern` `*` alone
/// is every name, `*` within a label any run of name characters (not a dot), a leading `**.`
/// any number of labels (at least one).
pub fn fqdn_regex(text: &str, pattern: bool) -> Result<Regex, String> {
    let text = text.trim().to_lowercase();
    let text = text.strip_suffix('.').unwrap_or(&text);
    if text.is_empty() {
        return Err("an empty name".into());
    }
    if pattern && text == "*" {
        return Regex::new(r"^[-a-z0-9_.]+$").map_err(|e| e.to_string());
    }
    let mut regex = String::from("^");
    let mut rest = text;
    if pattern {
        if let Some(tail) = rest.strip_prefix("**.") {
            regex.push_str(r"(?:[-a-z0-9_]+\.)+");
            rest = tail;
        }
    }
    for c in rest.chars() {
        match c {
            '*' if pattern => regex.push_str("[-a-z0-9_]*"),
            '.' => regex.push_str(r"\."),
            'a'..='z' | '0'..='9' | '-' | '_' => regex.push(c),
            _ => return Err(format!("invalid character {c:?} in a DNS name")),
        }
    }
    regex.push('$');
    Regex::new(&regex).map_err(|e| e.to_string())
}
