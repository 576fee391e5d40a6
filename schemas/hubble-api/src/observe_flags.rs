//! `hubble observe` filter flags -> Hubble `FlowFilter` allow and deny lists, exactly as the
//! hubble CLI builds them (`hubble/cmd/observe/flows_filter.go`), so that a command line means
//! the same thing here as against a live agent.
//!
//! The rules, in short: a filter flag either sets a field on both sides of the filter pair
//! (`--verdict`, `--from-pod`, …) or, for the symmetric flags (`--pod`, `--ip`, `--label`,
//! `--port`), the source field on the left filter and the destination field on the right one;
//! the pair is OR'ed, fields within a filter AND'ed, values within a field OR'ed. `--not` sends
//! the next flag to the deny list instead (built the same way). Namespaces are folded into the
//! pod and service fields as `ns/` prefixes when the lists are materialised.

use crate::flow::{
    flow_filter, DropReason, EventTypeFilter, FlowFilter, TcpFlags, TrafficDirection, Verdict,
    Workload,
};

/// Errors in the filter flags; each names the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("consecutive --not statements")]
    ConsecutiveNot,
    #[error("trailing --not: it must be followed by a filter flag")]
    TrailingNot,
    #[error("filters --{0} and --{1} cannot be combined")]
    Conflict(&'static str, &'static str),
    #[error("namespace conflict: {namespace:?} does not contain {pod:?}")]
    Namespace { namespace: String, pod: String },
    #[error("namespace of service {service:?} conflicts with pod namespace {namespace:?}")]
    ServiceNamespace { service: String, namespace: String },
    #[error("invalid --{flag} value {value:?}: {why}")]
    Value {
        flag: &'static str,
        value: String,
        why: String,
    },
}

/// The filter flags, by long name (without `--`), as clap ids and Hubble names them.
pub const FLAGS: &[&str] = &[
    "namespace",
    "from-namespace",
    "to-namespace",
    "pod",
    "from-pod",
    "to-pod",
    "label",
    "from-label",
    "to-label",
    "ip",
    "from-ip",
    "to-ip",
    "port",
    "from-port",
    "to-port",
    "fqdn",
    "from-fqdn",
    "to-fqdn",
    "service",
    "from-service",
    "to-service",
    "workload",
    "from-workload",
    "to-workload",
    "identity",
    "from-identity",
    "to-identity",
    "cluster",
    "from-cluster",
    "to-cluster",
    "verdict",
    "drop-reason-desc",
    "protocol",
    "tcp-flags",
    "http-method",
    "http-path",
    "http-url",
    "http-status",
    "node-name",
    "type",
    "traffic-direction",
    "uuid",
    "cel-expression",
];

/// Flags that cannot be used together in one list (hubble's conflict groups, for the flags we
/// have).
const CONFLICTS: &[&[&str]] = &[
    &[
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
    ],
    &["from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"],
    &[
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
    ],
    &["to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"],
    &["to-pod", "namespace"],
    &["from-pod", "namespace"],
    &["to-service", "namespace"],
    &["from-service", "namespace"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
    &["workload", "to-workload"],
    &["workload", "from-workload"],
];

/// Reserved security identities by number, as Hubble names them.
pub const RESERVED_IDENTITIES: [&str; 11] = [
    "unknown",
    "host",
    "world",
    "unmanaged",
    "health",
    "init",
    "remote-node",
    "kube-apiserver",
    "ingress",
    "world-ipv4",
    "world-ipv6",
];

/// The allow list (a flow must match one, if any) and the deny list (a flow must match none).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FilterLists {
    pub allow: Vec<FlowFilter>,
    pub deny: Vec<FlowFilter>,
}

/// One list under construction: the left/right filter pair and the namespaces to fold in.
#[derive(Debug, Default)]
struct Tracker {
    left: Option<FlowFilter>,
    right: Option<FlowFilter>,
    namespaces: Vec<String>,
    source_namespaces: Vec<String>,
    destination_namespaces: Vec<String>,
    used: Vec<&'static str>,
}

impl Tracker {
    fn both(&mut self, set: impl Fn(&mut FlowFilter)) {
        set(self.left.get_or_insert_with(FlowFilter::default));
        set(self.right.get_or_insert_with(FlowFilter::default));
    }

    /// A symmetric flag: `left` gets the source field, `right` the destination field.
    fn sides<T: Clone>(
        &mut self,
        value: T,
        left: fn(&mut FlowFilter) -> &mut Vec<T>,
        right: fn(&mut FlowFilter) -> &mut Vec<T>,
    ) {
        left(self.left.get_or_insert_with(FlowFilter::default)).push(value.clone());
        right(self.right.get_or_insert_with(FlowFilter::default)).push(value);
    }

    fn apply(&mut self, flag: &'static str, value: &str) -> Result<(), FilterError> {
        let v = value.to_owned();
        let bad = |why: &str| FilterError::Value {
            flag,
            value: value.to_owned(),
            why: why.to_owned(),
        };
        match flag {
            "namespace" => self.namespaces.push(v),
            "from-namespace" => self.source_namespaces.push(v),
            "to-namespace" => self.destination_namespaces.push(v),
            "pod" => self.sides(v, |f| &mut f.source_pod, |f| &mut f.destination_pod),
            "from-pod" => self.both(|f| f.source_pod.push(v.clone())),
            "to-pod" => self.both(|f| f.destination_pod.push(v.clone())),
            "label" => self.sides(v, |f| &mut f.source_label, |f| &mut f.destination_label),
            "from-label" => self.both(|f| f.source_label.push(v.clone())),
            "to-label" => self.both(|f| f.destination_label.push(v.clone())),
            "ip" => self.sides(v, |f| &mut f.source_ip, |f| &mut f.destination_ip),
            "from-ip" => self.both(|f| f.source_ip.push(v.clone())),
            "to-ip" => self.both(|f| f.destination_ip.push(v.clone())),
            "port" => self.sides(v, |f| &mut f.source_port, |f| &mut f.destination_port),
            "from-port" => self.both(|f| f.source_port.push(v.clone())),
            "to-port" => self.both(|f| f.destination_port.push(v.clone())),
            "fqdn" => self.sides(v, |f| &mut f.source_fqdn, |f| &mut f.destination_fqdn),
            "from-fqdn" => self.both(|f| f.source_fqdn.push(v.clone())),
            "to-fqdn" => self.both(|f| f.destination_fqdn.push(v.clone())),
            "service" => self.sides(v, |f| &mut f.source_service, |f| &mut f.destination_service),
            "from-service" => self.both(|f| f.source_service.push(v.clone())),
            "to-service" => self.both(|f| f.destination_service.push(v.clone())),
            "workload" => self.sides(
                workload(value),
                |f| &mut f.source_workload,
                |f| &mut f.destination_workload,
            ),
            "from-workload" => self.both(|f| f.source_workload.push(workload(value))),
            "to-workload" => self.both(|f| f.destination_workload.push(workload(value))),
            "identity" | "from-identity" | "to-identity" => {
                let id = identity(value).ok_or_else(|| {
                    bad(&format!(
                        "expected a numeric identity or one of {}",
                        RESERVED_IDENTITIES.join(", ")
                    ))
                })?;
                match flag {
                    "identity" => self.sides(
                        id,
                        |f| &mut f.source_identity,
                        |f| &mut f.destination_identity,
                    ),
                    "from-identity" => self.both(|f| f.source_identity.push(id)),
                    _ => self.both(|f| f.destination_identity.push(id)),
                }
            }
            "cluster" => self.sides(
                v,
                |f| &mut f.source_cluster_name,
                |f| &mut f.destination_cluster_name,
            ),
            "from-cluster" => self.both(|f| f.source_cluster_name.push(v.clone())),
            "to-cluster" => self.both(|f| f.destination_cluster_name.push(v.clone())),
            "tcp-flags" => {
                let flags = tcp_flags(value).map_err(|why| bad(&why))?;
                self.both(|f| f.tcp_flags.push(flags));
            }
            "http-url" => self.both(|f| f.http_url.push(v.clone())),
            "cel-expression" => self.both(|f| {
                f.experimental
                    .get_or_insert_with(flow_filter::Experimental::default)
                    .cel_expression
                    .push(v.clone())
            }),
            "verdict" => {
                let verdict = Verdict::from_str_name(value)
                    .ok_or_else(|| bad("expected FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED or TRANSLATED"))?;
                self.both(|f| f.verdict.push(verdict as i32));
            }
            "drop-reason-desc" => {
                let reason = DropReason::from_str_name(value)
                    .ok_or_else(|| bad("expected a drop reason name such as POLICY_DENIED"))?;
                self.both(|f| f.drop_reason_desc.push(reason as i32));
            }
            "traffic-direction" => {
                let direction = TrafficDirection::from_str_name(&value.to_uppercase())
                    .filter(|d| *d != TrafficDirection::Unknown)
                    .ok_or_else(|| bad("expected ingress or egress"))?;
                self.both(|f| f.traffic_direction.push(direction as i32));
            }
            "type" => {
                let filter = event_type(value).map_err(|why| bad(&why))?;
                self.both(|f| f.event_type.push(filter));
            }
            "protocol" => self.both(|f| f.protocol.push(v.clone())),
            "http-method" => self.both(|f| f.http_method.push(v.clone())),
            "http-path" => self.both(|f| f.http_path.push(v.clone())),
            "http-status" => self.both(|f| f.http_status_code.push(v.clone())),
            "node-name" => self.both(|f| f.node_name.push(v.clone())),
            "uuid" => self.both(|f| f.uuid.push(v.clone())),
            other => unreachable!("{other} is not a filter flag"),
        }
        if !self.used.contains(&flag) {
            self.used.push(flag);
        }
        self.check_conflicts()?;
        self.check_namespaces()
    }

    fn check_conflicts(&self) -> Result<(), FilterError> {
        for group in CONFLICTS {
            let mut set = group.iter().filter(|flag| self.used.contains(flag));
            if let (Some(first), Some(second)) = (set.next(), set.next()) {
                return Err(FilterError::Conflict(first, second));
            }
        }
        Ok(())
    }

    /// A pod given as `ns/pod` must be in the namespace given with `-n` for its side.
    fn check_namespaces(&self) -> Result<(), FilterError> {
        let sides = [(&self.left, true), (&self.right, false)];
        for (filter, left) in sides {
            let Some(filter) = filter else { continue };
            let (pods, services) = if left {
                (&filter.source_pod, &filter.source_service)
            } else {
                (&filter.destination_pod, &filter.destination_service)
            };
            let checks = [
                (&self.source_namespaces, &filter.source_pod),
                (&self.source_namespaces, &filter.source_service),
                (&self.destination_namespaces, &filter.destination_pod),
                (&self.destination_namespaces, &filter.destination_service),
                (&self.namespaces, pods),
                (&self.namespaces, services),
            ];
            for (namespaces, names) in checks {
                for namespace in namespaces {
                    let prefix = format!("{namespace}/");
                    if let Some(name) = names
                        .iter()
                        .find(|name| name.contains('/') && !name.starts_with(&prefix))
                    {
                        return Err(FilterError::Namespace {
                            namespace: namespace.clone(),
                            pod: name.clone(),
                        });
                    }
                }
            }
            for (pods, services) in [
                (&filter.source_pod, &filter.source_service),
                (&filter.destination_pod, &filter.destination_service),
            ] {
                for pod in pods.iter().filter_map(|p| p.split_once('/')) {
                    if let Some(service) = services
                        .iter()
                        .find(|s| s.split_once('/').map(|(ns, _)| ns) != Some(pod.0))
                    {
                        return Err(FilterError::ServiceNamespace {
                            service: service.clone(),
                            namespace: pod.0.to_owned(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The list of filters: none when nothing was set, one when both sides are the same.
    fn filters(self) -> Vec<FlowFilter> {
        let no_namespaces = self.namespaces.is_empty()
            && self.source_namespaces.is_empty()
            && self.destination_namespaces.is_empty();
        if self.left.is_none() && self.right.is_none() && no_namespaces {
            return Vec::new();
        }
        let mut left = self.left.unwrap_or_default();
        let mut right = self.right.unwrap_or_default();
        for filter in [&mut left, &mut right] {
            fold(
                &mut filter.destination_pod,
                &mut filter.destination_service,
                &self.destination_namespaces,
            );
            fold(
                &mut filter.source_pod,
                &mut filter.source_service,
                &self.source_namespaces,
            );
        }
        fold(
            &mut left.source_pod,
            &mut left.source_service,
            &self.namespaces,
        );
        fold(
            &mut right.destination_pod,
            &mut right.destination_service,
            &self.namespaces,
        );
        if left == right {
            vec![left]
        } else {
            vec![left, right]
        }
    }
}

/// Puts one side's pods and services without a namespace into each of `namespaces` (`-n X`
/// alone selects the pods `X/`).
fn fold(pods: &mut Vec<String>, services: &mut Vec<String>, namespaces: &[String]) {
    if namespaces.is_empty() {
        return;
    }
    if pods.is_empty() && services.is_empty() {
        pods.push(String::new());
    }
    for names in [pods, services] {
        let mut folded = Vec::new();
        for name in names.iter() {
            if name.contains('/') {
                folded.push(name.clone());
            } else {
                folded.extend(namespaces.iter().map(|ns| format!("{ns}/{name}")));
            }
        }
        *names = folded;
    }
}

/// `[Kind/]name`, as hubble reads `--workload` (either part may be empty).
fn workload(text: &str) -> Workload {
    match text.split_once('/') {
        Some((kind, name)) => Workload {
            kind: kind.to_owned(),
            name: name.to_owned(),
        },
        None => Workload {
            kind: String::new(),
            name: text.to_owned(),
        },
    }
}

/// A numeric security identity or a reserved identity's name.
fn identity(text: &str) -> Option<u32> {
    RESERVED_IDENTITIES
        .iter()
        .position(|name| *name == text)
        .map(|id| id as u32)
        .or_else(|| text.parse().ok())
}

/// `SYN,ACK`: the flags that must all be set (any case).
fn tcp_flags(text: &str) -> Result<TcpFlags, String> {
    let mut flags = TcpFlags::default();
    for flag in text.split(',') {
        let set = match flag.to_uppercase().as_str() {
            "FIN" => &mut flags.fin,
            "SYN" => &mut flags.syn,
            "RST" => &mut flags.rst,
            "PSH" => &mut flags.psh,
            "ACK" => &mut flags.ack,
            "URG" => &mut flags.urg,
            "ECE" => &mut flags.ece,
            "CWR" => &mut flags.cwr,
            "NS" => &mut flags.ns,
            _ => {
                return Err(format!(
                    "unknown tcp flag {flag:?} (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS)"
                ))
            }
        };
        *set = true;
    }
    Ok(flags)
}

/// Event type names of `-t` (monitor message types) and trace observation points.
const EVENT_TYPES: &[(&str, i32)] = &[
    ("drop", 1),
    ("debug", 2),
    ("capture", 3),
    ("trace", 4),
    ("policy-verdict", 5),
    ("trace-sock", 7),
    ("l7", 129),
    ("agent", 130),
];

/// `TYPE[:SUBTYPE]`: a name or number, and for `trace` an observation point name or number.
fn event_type(text: &str) -> Result<EventTypeFilter, String> {
    let (name, sub) = match text.split_once(':') {
        Some((name, sub)) => (name, Some(sub)),
        None => (text, None),
    };
    let named = EVENT_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t);
    let r#type = match named {
        Some(t) => t,
        None => name.parse::<i32>().map_err(|_| {
            let names: Vec<&str> = EVENT_TYPES.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown type (expected one of {} or a number)",
                names.join(", ")
            )
        })?,
    };
    let sub_type = match sub {
        None => None,
        Some(sub) => Some(match TRACE_POINTS.iter().position(|n| *n == sub) {
            Some(point) if named == Some(4) => point as i32,
            _ => sub
                .parse::<i32>()
                .map_err(|_| format!("unknown sub-type {sub:?}"))?,
        }),
    };
    Ok(EventTypeFilter {
        r#type,
        match_sub_type: sub_type.is_some(),
        sub_type: sub_type.unwrap_or_default(),
    })
}

/// Builds the lists from the filter flags in command-line order; `"not"` marks the next flag
/// as a deny.
pub fn build<'a>(
    flags: impl IntoIterator<Item = (&'static str, &'a str)>,
) -> Result<FilterLists, FilterError> {
    let mut allow = Tracker::default();
    let mut deny = Tracker::default();
    let mut negate = false;
    for (flag, value) in flags {
        if flag == "not" {
            if negate {
                return Err(FilterError::ConsecutiveNot);
            }
            negate = true;
            continue;
        }
        let tracker = if negate { &mut deny } else { &mut allow };
        tracker.apply(flag, value)?;
        negate = false;
    }
    if negate {
        return Err(FilterError::TrailingNot);
    }
    Ok(FilterLists {
        allow: allow.filters(),
        deny: deny.filters(),
    })
}

/// Monitor trace observation points: the event sub-types of `trace` events, by number.
pub const TRACE_POINTS: [&str; 14] = [
    "to-endpoint",
    "to-proxy",
    "to-host",
    "to-stack",
    "to-overlay",
    "from-endpoint",
    "from-proxy",
    "from-host",
    "from-stack",
    "from-overlay",
    "from-network",
    "to-network",
    "from-crypto",
    "to-crypto",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(args: &[(&'static str, &str)]) -> FilterLists {
        build(args.iter().copied()).unwrap()
    }

    fn filter(set: impl FnOnce(&mut FlowFilter)) -> FlowFilter {
        let mut f = FlowFilter::default();
        set(&mut f);
        f
    }

    #[test]
    fn namespace_alone_selects_either_side() {
        assert_eq!(
            lists(&[("namespace", "X")]).allow,
            vec![
                filter(|f| f.source_pod = vec!["X/".into()]),
                filter(|f| f.destination_pod = vec!["X/".into()]),
            ]
        );
        assert_eq!(
            lists(&[("from-namespace", "X")]).allow,
            vec![filter(|f| f.source_pod = vec!["X/".into()])]
        );
    }

    #[test]
    fn namespace_folds_into_pods_and_ports_pair_up() {
        assert_eq!(
            lists(&[("namespace", "X"), ("pod", "foo")]).allow,
            vec![
                filter(|f| f.source_pod = vec!["X/foo".into()]),
                filter(|f| f.destination_pod = vec!["X/foo".into()]),
            ]
        );
        assert_eq!(
            lists(&[("to-namespace", "X"), ("port", "443")]).allow,
            vec![
                filter(|f| {
                    f.destination_pod = vec!["X/".into()];
                    f.source_port = vec!["443".into()];
                }),
                filter(|f| {
                    f.destination_pod = vec!["X/".into()];
                    f.destination_port = vec!["443".into()];
                }),
            ]
        );
    }

    #[test]
    fn not_applies_to_the_next_flag_only_and_negated_flags_share_one_list() {
        let built = lists(&[
            ("verdict", "DROPPED"),
            ("not", ""),
            ("pod", "deathstar"),
            ("not", ""),
            ("http-status", "200"),
        ]);
        assert_eq!(
            built.allow,
            vec![filter(|f| f.verdict = vec![Verdict::Dropped as i32])]
        );
        assert_eq!(
            built.deny,
            vec![
                filter(|f| {
                    f.source_pod = vec!["deathstar".into()];
                    f.http_status_code = vec!["200".into()];
                }),
                filter(|f| {
                    f.destination_pod = vec!["deathstar".into()];
                    f.http_status_code = vec!["200".into()];
                }),
            ]
        );
    }

    #[test]
    fn misuse_is_named() {
        let err = |args: &[(&'static str, &str)]| build(args.iter().copied()).unwrap_err();
        assert_eq!(
            err(&[("not", ""), ("not", "")]),
            FilterError::ConsecutiveNot
        );
        assert_eq!(err(&[("pod", "a"), ("not", "")]), FilterError::TrailingNot);
        assert_eq!(
            err(&[("pod", "a"), ("from-pod", "b")]),
            FilterError::Conflict("from-pod", "pod")
        );
        assert_eq!(
            err(&[("namespace", "a"), ("from-pod", "b")]),
            FilterError::Conflict("from-pod", "namespace")
        );
        assert!(matches!(
            err(&[("namespace", "X"), ("pod", "Y/foo")]),
            FilterError::Namespace { .. }
        ));
        assert!(matches!(
            err(&[("verdict", "dropped")]),
            FilterError::Value {
                flag: "verdict",
                ..
            }
        ));
        assert!(matches!(
            err(&[("type", "nope")]),
            FilterError::Value { flag: "type", .. }
        ));
        // Different lists do not conflict.
        assert!(build([("pod", "a"), ("not", ""), ("from-pod", "b")]).is_ok());
    }

    #[test]
    fn services_take_the_namespace_and_workloads_flags_identities_parse_as_hubble() {
        assert_eq!(
            lists(&[("from-namespace", "X"), ("service", "api")]).allow,
            vec![
                filter(|f| f.source_service = vec!["X/api".into()]),
                filter(|f| {
                    f.source_pod = vec!["X/".into()];
                    f.destination_service = vec!["api".into()];
                }),
            ]
        );
        assert_eq!(
            lists(&[("from-workload", "Deployment/api"), ("to-workload", "db")]).allow,
            vec![filter(|f| {
                f.source_workload = vec![Workload {
                    kind: "Deployment".into(),
                    name: "api".into(),
                }];
                f.destination_workload = vec![Workload {
                    kind: String::new(),
                    name: "db".into(),
                }];
            })]
        );
        let built = lists(&[("tcp-flags", "syn,ACK"), ("identity", "world")]).allow;
        assert_eq!(built.len(), 2);
        assert_eq!(built[0].source_identity, vec![2]);
        assert_eq!(built[1].destination_identity, vec![2]);
        assert!(built[0].tcp_flags[0].syn && built[0].tcp_flags[0].ack);
        assert!(!built[0].tcp_flags[0].fin);
        assert_eq!(
            lists(&[("cluster", "east"), ("from-fqdn", "*.example.com")]).allow[1],
            filter(|f| {
                f.destination_cluster_name = vec!["east".into()];
                f.source_fqdn = vec!["*.example.com".into()];
            })
        );
        let err = |args: &[(&'static str, &str)]| build(args.iter().copied()).unwrap_err();
        assert!(matches!(
            err(&[("tcp-flags", "SYN,NOPE")]),
            FilterError::Value {
                flag: "tcp-flags",
                ..
            }
        ));
        assert!(matches!(
            err(&[("identity", "wrld")]),
            FilterError::Value {
                flag: "identity",
                ..
            }
        ));
        assert_eq!(
            err(&[("fqdn", "a.b"), ("from-ip", "1.1.1.1")]),
            FilterError::Conflict("from-ip", "fqdn")
        );
        assert!(matches!(
            err(&[("from-pod", "a/x"), ("from-service", "b/y")]),
            FilterError::ServiceNamespace { .. }
        ));
    }

    #[test]
    fn event_types() {
        assert_eq!(
            event_type("trace:to-endpoint").unwrap(),
            EventTypeFilter {
                r#type: 4,
                match_sub_type: true,
                sub_type: 0
            }
        );
        assert_eq!(event_type("drop").unwrap().r#type, 1);
        assert!(!event_type("l7").unwrap().match_sub_type);
        assert_eq!(event_type("drop:133").unwrap().sub_type, 133);
        assert!(event_type("4:to-endpoint").is_err());
    }
}
