//! Hubble `FlowFilter` allow/deny lists -> one DataFusion predicate over the `flows` table,
//! with the matching rules of Hubble's server-side filters (`pkg/hubble/filters`), so the
//! query engine prunes and filters instead of every row being read back into a `Flow`.
//!
//! A filter is the AND of its fields, a field the OR of its values; a flow passes when it
//! matches one allow filter (or there are none) and no deny filter. Every filter is wrapped
//! in `IS TRUE`, so a NULL column never lets a flow through an allow list nor keeps it out via
//! a deny list.

use datafusion::functions::expr_fn::{concat, regexp_like, starts_with, strpos, upper};
use datafusion::functions_nested::expr_fn::{array_has_all, make_array};
use datafusion::logical_expr::lit;
use datafusion::prelude::{col, when, Expr};
use hubble_api::flow::{DropReason, FlowFilter, TcpFlags, TrafficDirection, Verdict, Workload};

use crate::udf;
use hubble_api::observe_flags::FilterLists;

/// A filter value the server would have refused, or a FlowFilter field replay cannot apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PredicateError {
    #[error("invalid {} value {value:?}: {why}", flags_of(field))]
    Value {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("FlowFilter field(s) {0} cannot be replayed (not recorded, or not supported yet); leave them out of --allowlist/--denylist")]
    Unsupported(String),
    #[error("--cel-expression (experimental.cel_expression) is not supported over the recorded history yet; express the condition with the other filter flags, or in SQL: flowsql \"select ... from flows where ...\"")]
    Cel,
}

/// The command-line flags that set a FlowFilter field, for messages.
fn flags_of(field: &str) -> String {
    let flags = match field {
        "source_ip" => "--ip/--from-ip",
        "destination_ip" => "--ip/--to-ip",
        "source_pod" => "--pod/--from-pod/-n",
        "destination_pod" => "--pod/--to-pod/-n",
        "source_label" => "--label/--from-label",
        "destination_label" => "--label/--to-label",
        "source_port" => "--port/--from-port",
        "destination_port" => "--port/--to-port",
        "protocol" => "--protocol",
        "http_status_code" => "--http-status",
        "http_path" => "--http-path",
        "http_url" => "--http-url",
        "http" => "--http-* with -t",
        "node_name" => "--node-name",
        "dns_query" => "dns_query",
        "source_fqdn" => "--fqdn/--from-fqdn",
        "destination_fqdn" => "--fqdn/--to-fqdn",
        "source_service" => "--service/--from-service",
        "destination_service" => "--service/--to-service",
        "source_cluster_name" => "--cluster/--from-cluster",
        "destination_cluster_name" => "--cluster/--to-cluster",
        _ => return field.to_owned(),
    };
    format!("{flags} ({field})")
}

fn invalid(field: &'static str, value: &str, why: impl Into<String>) -> PredicateError {
    PredicateError::Value {
        field,
        value: value.to_owned(),
        why: why.into(),
    }
}

/// The fields [`matches`] applies; any other set field is refused rather than ignored (an
/// ignored field would make the filter match more than the user asked for).
fn check_supported(f: &FlowFilter) -> Result<(), PredicateError> {
    let mut rest = f.clone();
    rest.uuid.clear();
    rest.source_ip.clear();
    rest.destination_ip.clear();
    rest.source_pod.clear();
    rest.destination_pod.clear();
    rest.source_label.clear();
    rest.destination_label.clear();
    rest.source_port.clear();
    rest.destination_port.clear();
    rest.source_identity.clear();
    rest.destination_identity.clear();
    rest.verdict.clear();
    rest.drop_reason_desc.clear();
    rest.traffic_direction.clear();
    rest.event_type.clear();
    rest.protocol.clear();
    rest.reply.clear();
    rest.dns_query.clear();
    rest.http_status_code.clear();
    rest.http_method.clear();
    rest.http_path.clear();
    rest.http_url.clear();
    rest.node_name.clear();
    rest.source_fqdn.clear();
    rest.destination_fqdn.clear();
    rest.source_service.clear();
    rest.destination_service.clear();
    rest.source_workload.clear();
    rest.destination_workload.clear();
    rest.source_cluster_name.clear();
    rest.destination_cluster_name.clear();
    rest.tcp_flags.clear();
    if rest
        .experimental
        .as_ref()
        .is_some_and(|e| !e.cel_expression.is_empty())
    {
        return Err(PredicateError::Cel);
    }
    if rest == FlowFilter::default() {
        return Ok(());
    }
    let json = serde_json::to_value(&rest).unwrap_or_default();
    let fields: Vec<String> = json
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    Err(PredicateError::Unsupported(fields.join(", ")))
}

/// The predicate of the lists; `None` when they select every flow.
pub fn predicate(lists: &FilterLists) -> Result<Option<Expr>, PredicateError> {
    let allow = any(&lists.allow)?;
    let deny = any(&lists.deny)?;
    Ok(match (allow, deny) {
        (None, None) => None,
        (Some(allow), None) => Some(allow),
        (None, Some(deny)) => Some(!deny),
        (Some(allow), Some(deny)) => Some(allow.and(!deny)),
    })
}

/// OR of the filters, each `IS TRUE`.
fn any(filters: &[FlowFilter]) -> Result<Option<Expr>, PredicateError> {
    let mut exprs = Vec::new();
    for filter in filters {
        exprs.push(matches(filter)?.map_or(lit(true), Expr::is_true));
    }
    Ok(exprs.into_iter().reduce(Expr::or))
}

fn or_all(exprs: Vec<Expr>) -> Option<Expr> {
    exprs.into_iter().reduce(Expr::or)
}

fn in_names(column: &str, names: Vec<&'static str>) -> Expr {
    col(column).in_list(names.into_iter().map(lit).collect(), false)
}

/// The AND of a filter's fields; `None` when it constrains nothing.
fn matches(f: &FlowFilter) -> Result<Option<Expr>, PredicateError> {
    check_supported(f)?;
    let mut all: Vec<Expr> = Vec::new();
    if !f.uuid.is_empty() {
        all.push(col("uuid").in_list(f.uuid.iter().map(|u| lit(u.as_str())).collect(), false));
    }
    all.extend(ips("source_ip", "ip_source", &f.source_ip)?);
    all.extend(ips("destination_ip", "ip_destination", &f.destination_ip)?);
    all.extend(names("source_pod", "source", "pod_name", &f.source_pod)?);
    all.extend(names(
        "destination_pod",
        "destination",
        "pod_name",
        &f.destination_pod,
    )?);
    all.extend(names(
        "source_service",
        "source_service",
        "name",
        &f.source_service,
    )?);
    all.extend(names(
        "destination_service",
        "destination_service",
        "name",
        &f.destination_service,
    )?);
    all.extend(workloads("source", &f.source_workload));
    all.extend(workloads("destination", &f.destination_workload));
    all.extend(clusters(
        "source_cluster_name",
        "source",
        &f.source_cluster_name,
    )?);
    all.extend(clusters(
        "destination_cluster_name",
        "destination",
        &f.destination_cluster_name,
    )?);
    all.extend(tcp_flags(&f.tcp_flags));
    all.extend(labels("source_label", "source_labels", &f.source_label)?);
    all.extend(labels(
        "destination_label",
        "destination_labels",
        &f.destination_label,
    )?);
    for (column, ids) in [
        ("source_identity", &f.source_identity),
        ("destination_identity", &f.destination_identity),
    ] {
        if !ids.is_empty() {
            all.push(col(column).in_list(ids.iter().map(|id| lit(*id)).collect(), false));
        }
    }
    if !f.reply.is_empty() {
        // A flow without is_reply matches no reply filter, except a dropped one, which Hubble
        // takes as not a reply (filters/reply.go: older clients, the Hubble UI among them,
        // filter on the deprecated `reply`, always false on drops; the UI always sends
        // `reply: [false]`).
        let replies = f.reply.iter().map(|r| lit(*r)).collect();
        let unknown_drop = when(col("verdict").eq(lit("DROPPED")), lit(false))
            .end()
            .expect("one branch");
        let is_reply =
            datafusion::functions::expr_fn::coalesce(vec![col("is_reply"), unknown_drop]);
        all.push(is_reply.in_list(replies, false));
    }
    all.extend(fqdns("source_fqdn", "source_names", &f.source_fqdn)?);
    all.extend(fqdns(
        "destination_fqdn",
        "destination_names",
        &f.destination_fqdn,
    )?);
    all.extend(regexes("dns_query", col("dns_query"), &f.dns_query)?);
    all.extend(regexes("http_url", col("http_url"), &f.http_url)?);
    all.extend(ports("source_port", &f.source_port)?);
    all.extend(ports("destination_port", &f.destination_port)?);
    if !f.verdict.is_empty() {
        let names = f
            .verdict
            .iter()
            .map(|v| Verdict::try_from(*v).map_or("?", |v| v.as_str_name()))
            .collect::<Vec<_>>();
        // A flow without a verdict is VERDICT_UNKNOWN.
        let verdict = when(col("verdict").is_null(), lit("VERDICT_UNKNOWN"))
            .otherwise(col("verdict"))
            .expect("a CASE with one branch");
        all.push(verdict.in_list(names.into_iter().map(lit).collect(), false));
    }
    if !f.drop_reason_desc.is_empty() {
        let names = f
            .drop_reason_desc
            .iter()
            .map(|v| DropReason::try_from(*v).map_or("?", |v| v.as_str_name()))
            .collect();
        all.push(
            col("verdict")
                .eq(lit("DROPPED"))
                .and(in_names("drop_reason_desc", names)),
        );
    }
    if !f.traffic_direction.is_empty() {
        let names = f
            .traffic_direction
            .iter()
            .map(|v| TrafficDirection::try_from(*v).map_or("?", |v| v.as_str_name()))
            .collect();
        all.push(in_names("traffic_direction", names));
    }
    if !f.event_type.is_empty() {
        // An event_type message without `type` is type 0 (proto3), and still present.
        let present = col("event_type")
            .is_not_null()
            .or(col("event_subtype").is_not_null());
        let types = f.event_type.iter().map(|t| {
            let mut e = present.clone();
            if t.r#type != 0 {
                e = e.and(col("event_type").eq(lit(t.r#type)));
            }
            if t.match_sub_type {
                e = e.and(col("event_subtype").eq(lit(t.sub_type)));
            }
            e
        });
        all.extend(or_all(types.collect()));
    }
    all.extend(protocols(&f.protocol)?);
    let http =
        !f.http_status_code.is_empty() || !f.http_method.is_empty() || !f.http_path.is_empty();
    if http {
        if !f.event_type.is_empty() && !f.event_type.iter().any(|t| t.r#type == 129) {
            return Err(invalid(
                "http",
                "-t",
                "filtering by HTTP fields requires the event type filter to match 'l7' events",
            ));
        }
        all.push(col("l7_protocol").eq(lit("http")));
    }
    all.extend(http_status(&f.http_status_code)?);
    if !f.http_method.is_empty() {
        let methods = f
            .http_method
            .iter()
            .map(|m| lit(m.to_uppercase()))
            .collect();
        all.push(upper(col("http_method")).in_list(methods, false));
    }
    all.extend(http_paths(&f.http_path)?);
    all.extend(node_names(&f.node_name)?);
    Ok(all.into_iter().reduce(Expr::and))
}

fn ips(
    field: &'static str,
    column: &str,
    values: &[String],
) -> Result<Option<Expr>, PredicateError> {
    let mut exprs = Vec::new();
    for value in values {
        if value.contains('/') {
            if flow_schema::matching::Cidr::parse(value).is_none() {
                return Err(invalid(field, value, "not a CIDR (e.g. 10.0.0.0/8)"));
            }
            exprs.push(udf::cidr_contains().call(vec![lit(value.as_str()), col(column)]));
        } else {
            if value.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(field, value, "not an IP address or CIDR"));
            }
            // Hubble compares the text, as recorded.
            exprs.push(col(column).eq(lit(value.as_str())));
        }
    }
    Ok(or_all(exprs))
}

/// Pods and services, `[namespace/]name-prefix` (Hubble's `k8s.ParseNamespaceName`): the
/// namespace exactly (`default` when none is given, none for `/name`), the name by prefix;
/// an end with neither namespace nor name matches nothing. `prefix` names the columns
/// (`source` -> `source_namespace`, `source_pod_name`; `source_service` ->
/// `source_service_namespace`, `source_service_name`).
fn names(
    field: &'static str,
    prefix: &str,
    name: &str,
    values: &[String],
) -> Result<Option<Expr>, PredicateError> {
    let namespace_col = col(format!("{prefix}_namespace"));
    let name_col = col(format!("{prefix}_{name}"));
    let present = namespace_col
        .clone()
        .is_not_null()
        .or(name_col.clone().is_not_null());
    let mut exprs = Vec::new();
    for value in values {
        let mut parts = value.split('/');
        let first = parts.next().unwrap_or_default();
        let (namespace, name_prefix) = match parts.next() {
            Some(name) => (first, name),
            None if first.is_empty() => ("", ""),
            None => ("default", first),
        };
        if namespace.is_empty() && name_prefix.is_empty() {
            return Err(invalid(field, value, "must be [namespace/][<name>]"));
        }
        let namespace_matches = if namespace.is_empty() {
            namespace_col.clone().is_null()
        } else {
            namespace_col.clone().eq(lit(namespace))
        };
        let mut e = present.clone().and(namespace_matches);
        if !name_prefix.is_empty() {
            e = e.and(starts_with(name_col.clone(), lit(name_prefix)));
        }
        exprs.push(e);
    }
    Ok(or_all(exprs))
}

/// `[Kind/]name`: an end matches when its workload has the name and kind given (an empty part
/// matches any). The store keeps an endpoint's first workload, the one Hubble lists.
fn workloads(side: &str, values: &[Workload]) -> Option<Expr> {
    let name = col(format!("{side}_workload"));
    let kind = col(format!("{side}_workload_kind"));
    let present = name.clone().is_not_null().or(kind.clone().is_not_null());
    let exprs = values.iter().map(|w| {
        let mut e = present.clone();
        if !w.name.is_empty() {
            e = e.and(name.clone().eq(lit(w.name.as_str())));
        }
        if !w.kind.is_empty() {
            e = e.and(kind.clone().eq(lit(w.kind.as_str())));
        }
        e
    });
    or_all(exprs.collect())
}

/// The label Cilium gives every identity with its cluster's name.
const CLUSTER_LABEL: &str = "io.cilium.k8s.policy.cluster";

/// An end's cluster, exactly: its `cluster_name`, or for flows recorded without it (Hubble
/// before v1.16, exports), the `io.cilium.k8s.policy.cluster` label it is derived from.
fn clusters(
    field: &'static str,
    side: &str,
    values: &[String],
) -> Result<Option<Expr>, PredicateError> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut selectors = Vec::new();
    for value in values {
        let valid = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(invalid(
                field,
                value,
                "a cluster name is letters, digits, '-', '_' and '.'",
            ));
        }
        selectors.push(format!("{CLUSTER_LABEL}={value}"));
    }
    let name = col(format!("{side}_cluster_name"));
    let listed = name
        .clone()
        .in_list(values.iter().map(|v| lit(v.as_str())).collect(), false);
    let labelled = or_all(
        selectors
            .into_iter()
            .map(|s| udf::label_selector().call(vec![col(format!("{side}_labels")), lit(s)]))
            .collect(),
    )
    .expect("at least one cluster");
    Ok(Some(
        when(name.is_not_null(), listed)
            .otherwise(labelled)
            .expect("a CASE with one branch"),
    ))
}

/// Hubble's `--tcp-flags`: a flow with TCP flags matches when every flag of one filter entry
/// is set on it (`SYN` matches SYN-ACK).
fn tcp_flags(values: &[TcpFlags]) -> Option<Expr> {
    let exprs = values.iter().map(|f| {
        let names = [
            (f.fin, "FIN"),
            (f.syn, "SYN"),
            (f.rst, "RST"),
            (f.psh, "PSH"),
            (f.ack, "ACK"),
            (f.urg, "URG"),
            (f.ece, "ECE"),
            (f.cwr, "CWR"),
            (f.ns, "NS"),
        ];
        let set: Vec<Expr> = names
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| lit(n))
            .collect();
        let present = col("tcp_flags").is_not_null();
        if set.is_empty() {
            present
        } else {
            present.and(array_has_all(col("tcp_flags"), make_array(set)))
        }
    });
    or_all(exprs.collect())
}

fn labels(
    field: &'static str,
    column: &str,
    values: &[String],
) -> Result<Option<Expr>, PredicateError> {
    let mut exprs = Vec::new();
    for value in values {
        flow_schema::matching::Selector::parse(value).map_err(|why| invalid(field, value, why))?;
        exprs.push(udf::label_selector().call(vec![col(column), lit(value.as_str())]));
    }
    Ok(or_all(exprs))
}

/// Ports match TCP, UDP and SCTP ports only.
fn ports(column: &'static str, values: &[String]) -> Result<Option<Expr>, PredicateError> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut numbers = Vec::new();
    for value in values {
        let port: u16 = value
            .parse()
            .map_err(|_| invalid(column, value, "not a port number (0-65535)"))?;
        numbers.push(lit(u32::from(port)));
    }
    Ok(Some(
        in_names("l4_protocol", vec!["TCP", "UDP", "SCTP"])
            .and(col(column).in_list(numbers, false)),
    ))
}

fn protocols(values: &[String]) -> Result<Option<Expr>, PredicateError> {
    let mut exprs = Vec::new();
    for value in values {
        let e = match value.to_lowercase().as_str() {
            "tcp" => col("l4_protocol").eq(lit("TCP")),
            "udp" => col("l4_protocol").eq(lit("UDP")),
            "sctp" => col("l4_protocol").eq(lit("SCTP")),
            "icmpv4" => col("l4_protocol").eq(lit("ICMPv4")),
            "icmpv6" => col("l4_protocol").eq(lit("ICMPv6")),
            "icmp" => in_names("l4_protocol", vec!["ICMPv4", "ICMPv6"]),
            "vrrp" => col("l4_protocol").eq(lit("VRRP")),
            "igmp" => col("l4_protocol").eq(lit("IGMP")),
            "http" => col("l7_protocol").eq(lit("http")),
            "dns" => col("l7_protocol").eq(lit("dns")),
            "kafka" => col("l7_protocol").eq(lit("kafka")),
            _ => {
                return Err(invalid(
                    "protocol",
                    value,
                    "unknown protocol (tcp, udp, sctp, icmp, icmpv4, icmpv6, vrrp, igmp, dns, http, kafka)",
                ))
            }
        };
        exprs.push(e);
    }
    Ok(or_all(exprs))
}

/// `404` exactly, or a prefix: `5+` = 500-599, `40+` = 400-409. A code of 0 never matches.
fn http_status(values: &[String]) -> Result<Option<Expr>, PredicateError> {
    let mut exprs = Vec::new();
    for value in values {
        let digits = value.strip_suffix('+').unwrap_or(value);
        let valid_digits = digits.chars().all(|c| c.is_ascii_digit())
            && matches!(digits.chars().next(), Some('1'..='5'));
        let (low, high) = match (value.ends_with('+'), digits.len(), valid_digits) {
            (false, 3, true) => {
                let code: u32 = digits.parse().expect("three digits");
                (code, code)
            }
            (true, 1 | 2, true) => {
                let scale = 10u32.pow(3 - digits.len() as u32);
                let base: u32 = digits.parse::<u32>().expect("digits") * scale;
                (base, base + scale - 1)
            }
            _ => {
                return Err(invalid(
                    "http_status_code",
                    value,
                    "expected a status code (404) or a prefix (5+, 40+)",
                ))
            }
        };
        exprs.push(col("http_code").between(lit(low), lit(high)));
    }
    Ok(or_all(exprs))
}

/// The decoded path of the URL (`url_path`), matched by an unanchored regex, as Hubble
/// matches `url.ParseRequestURI(url).Path`.
fn http_paths(values: &[String]) -> Result<Option<Expr>, PredicateError> {
    regexes(
        "http_path",
        udf::url_path().call(vec![col("http_url")]),
        values,
    )
}

/// Unanchored regexes over `value`, OR'ed.
fn regexes(
    field: &'static str,
    value: Expr,
    regexes: &[String],
) -> Result<Option<Expr>, PredicateError> {
    let mut exprs = Vec::new();
    for regex in regexes {
        regex::Regex::new(regex).map_err(|e| invalid(field, regex, e.to_string()))?;
        exprs.push(regexp_like(value.clone(), lit(regex.as_str()), None));
    }
    Ok(or_all(exprs))
}

/// Hubble's FQDN patterns (filters/patterns.go): lowercased, one trailing dot dropped, `*`
/// any run of name characters, anchored, OR'ed; an end matches when one of the DNS names Hubble
/// knows for it (`source_names` / `destination_names`) does. The names are joined with spaces
/// (never in a name), so one anchored regex tests every element.
fn fqdns(
    field: &'static str,
    column: &str,
    values: &[String],
) -> Result<Option<Expr>, PredicateError> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut patterns = Vec::new();
    for value in values {
        patterns.push(fqdn_regex(value).map_err(|why| invalid(field, value, why))?);
    }
    let regex = format!("(?:^| )(?:{})(?: |$)", patterns.join("|"));
    let names = datafusion::functions_nested::expr_fn::array_to_string(col(column), lit(" "));
    Ok(Some(regexp_like(names, lit(regex), None)))
}

/// One FQDN pattern as a regex (unanchored; [`fqdns`] anchors it).
fn fqdn_regex(pattern: &str) -> Result<String, String> {
    glob_regex(pattern)
        .map_err(|c| format!("invalid character {c:?} in an FQDN pattern"))?
        .ok_or_else(|| "empty pattern".to_owned())
}

/// A name glob as Hubble reads FQDN and node patterns: lowercased, one trailing dot dropped,
/// `*` any run of name characters; `None` when nothing is left, the offending character when
/// one is not a name character.
fn glob_regex(text: &str) -> Result<Option<String>, char> {
    let text = text.trim().to_lowercase();
    let text = text.strip_suffix('.').unwrap_or(&text);
    if text.is_empty() {
        return Ok(None);
    }
    let mut regex = String::new();
    for c in text.chars() {
        match c {
            '*' => regex.push_str("[-.0-9a-z]*"),
            '.' => regex.push_str(r"\."),
            'a'..='z' | '0'..='9' | '-' | '_' => regex.push(c),
            _ => return Err(c),
        }
    }
    Ok(Some(regex))
}

/// Node name globs (`k8s*`, `cluster/node-*`) as one anchored regex over `cluster/node`; a
/// recorded name without a cluster is in cluster `default`.
fn node_names(values: &[String]) -> Result<Option<Expr>, PredicateError> {
    if values.is_empty() {
        return Ok(None);
    }
    const ANY: &str = r"[-0-9_a-z]+(\.[-0-9_a-z]+)*";
    let part = |value: &str, text: &str| -> Result<String, PredicateError> {
        match glob_regex(text) {
            Ok(regex) => Ok(regex.unwrap_or_else(|| ANY.to_owned())),
            Err(c) => Err(invalid(
                "node_name",
                value,
                format!("invalid character {c:?}"),
            )),
        }
    };
    let mut patterns = Vec::new();
    for value in values {
        let pattern = match value.split('/').collect::<Vec<_>>().as_slice() {
            [node] => format!("{ANY}/{}", part(value, node)?),
            [cluster, node] => format!("{}/{}", part(value, cluster)?, part(value, node)?),
            _ => return Err(invalid("node_name", value, "more than one '/'")),
        };
        patterns.push(pattern);
    }
    let regex = format!("^({})$", patterns.join("|"));
    let name = when(
        strpos(col("node_name"), lit("/")).gt(lit(0)),
        col("node_name"),
    )
    .otherwise(concat(vec![lit("default/"), col("node_name")]))
    .expect("a CASE with one branch");
    // A flow without a node name matches no pattern.
    Ok(Some(col("node_name").is_not_null().and(regexp_like(
        name,
        lit(regex),
        None,
    ))))
}
