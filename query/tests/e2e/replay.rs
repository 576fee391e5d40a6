//! `flowsql replay` (hubble observe over the history) and `flowsql regressions`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

// ---- golden lines (cilium/cilium hubble/pkg/printer/printer_test.go) --------------------------

/// The flow of Hubble's printer tests, as `hubble observe -o jsonpb` would print it, with
/// `fields` merged in and `drop` keys removed.
fn golden_flow(fields: Value, drop: &[&str]) -> String {
    let mut flow = serde_json::json!({
        "time": "1970-01-01T00:20:34.567800Z",
        "verdict": "DROPPED",
        "IP": {"source": "1.1.1.1", "destination": "2.2.2.2"},
        "l4": {"TCP": {"source_port": 31793, "destination_port": 8080}},
        "source": {"identity": 4},
        "destination": {"identity": 12345},
        "Type": "L3_L4",
        "node_name": "k8s1",
        "event_type": {"type": 1, "sub_type": 133},
        "is_reply": false,
        "Summary": "TCP Flags: SYN"
    });
    for (key, value) in fields.as_object().unwrap() {
        flow[key] = value.clone();
    }
    for key in drop {
        flow.as_object_mut().unwrap().remove(*key);
    }
    serde_json::json!({ "flow": flow }).to_string()
}

fn store_of(dir: &Path, name: &str, lines: &[String]) -> String {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let store = dir.join(name).display().to_string();
    import(&store, &[&file], &[]).ok();
    store
}

fn replay(store: &str, args: &[&str]) -> Run {
    let mut all = vec!["--store", store, "replay"];
    all.extend(args);
    flowsql(&all, &[])
}

#[test]
fn replay_prints_hubbles_golden_lines() {
    let dir = tempfile::tempdir().unwrap();
    let policy = |name: &str, kind: &str| serde_json::json!({"name": name, "namespace": "my-policy-namespace", "kind": kind});
    let variants = [
        ("f", golden_flow(serde_json::json!({"uuid": "f"}), &[])),
        (
            "reply",
            golden_flow(serde_json::json!({"uuid": "reply", "is_reply": true}), &[]),
        ),
        (
            "unknown",
            golden_flow(serde_json::json!({"uuid": "unknown"}), &["is_reply"]),
        ),
        (
            "trace",
            golden_flow(
                serde_json::json!({"uuid": "trace", "ip_trace_id": {"trace_id": "1234"}}),
                &[],
            ),
        ),
        (
            "denied",
            golden_flow(
                serde_json::json!({"uuid": "denied", "event_type": {"type": 5},
            "traffic_direction": "EGRESS", "egress_denied_by": [policy("my-policy", "CiliumNetworkPolicy")]}),
                &["is_reply"],
            ),
        ),
        (
            "allowed",
            golden_flow(
                serde_json::json!({"uuid": "allowed", "event_type": {"type": 5},
            "verdict": "FORWARDED", "traffic_direction": "INGRESS", "policy_match_type": 1,
            "ingress_allowed_by": [policy("my-policy", "CiliumNetworkPolicy"),
                {"name": "my-policy-2", "kind": "CiliumClusterwideNetworkPolicy"}]}),
                &["is_reply"],
            ),
        ),
        (
            "audited",
            golden_flow(
                serde_json::json!({"uuid": "audited", "event_type": {"type": 5},
            "verdict": "AUDIT", "traffic_direction": "EGRESS",
            "egress_denied_by": [policy("my-policy", "CiliumNetworkPolicy")]}),
                &["is_reply"],
            ),
        ),
        (
            "kafka",
            golden_flow(
                serde_json::json!({"uuid": "kafka", "Type": "L7",
            "l7": {"type": "REQUEST", "latency_ns": "10", "kafka": {"api_key": "1234",
                "correlation_id": 1, "topic": "my-topic\u{1b}[30mblack\u{1b}[0m\u{1b}\r"}},
            "Summary": "Kafka request 1234 correlation id 1 topic 'my-topic[^[30mblack[^[0m[^\\r'"}),
                &[],
            ),
        ),
    ];
    let lines: Vec<String> = variants.iter().map(|(_, line)| line.clone()).collect();
    let store = store_of(dir.path(), "golden", &lines);
    let print = |uuid: &str, args: &[&str]| -> String {
        let mut all = vec!["--uuid", uuid, "--all"];
        all.extend(args);
        replay(&store, &all).ok().stdout
    };
    let t = "Jan  1 00:20:34.567";
    let cases: &[(&str, &[&str], String)] = &[
        ("f", &[], format!("{t}: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n")),
        ("f", &["--print-node-name"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n")),
        ("trace", &["--print-node-name"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (IP Trace ID: 1234; TCP Flags: SYN)\n")),
        ("reply", &["--print-node-name"], format!("{t} [k8s1]: 2.2.2.2:8080 (ID:12345) <- 1.1.1.1:31793 (health) Policy denied DROPPED (TCP Flags: SYN)\n")),
        ("denied", &["--print-node-name"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS DENIED (TCP Flags: SYN)\n")),
        ("denied", &["--print-node-name", "--print-policy-names"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS DENIED BY my-policy (CiliumNetworkPolicy) (TCP Flags: SYN)\n")),
        ("allowed", &["--print-node-name", "--print-policy-names"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:L3-Only INGRESS ALLOWED BY my-policy (CiliumNetworkPolicy), my-policy-2 (CiliumClusterwideNetworkPolicy) (TCP Flags: SYN)\n")),
        ("audited", &["--print-node-name", "--print-policy-names"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS AUDITED BY my-policy (CiliumNetworkPolicy) (TCP Flags: SYN)\n")),
        ("unknown", &["--print-node-name"], format!("{t} [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n")),
        ("kafka", &[], format!("{t}: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) kafka-request DROPPED (Kafka request 1234 correlation id 1 topic 'my-topic[^[30mblack[^[0m[^\\r')\n")),
        ("f", &["-o", "dict"], format!("  TIMESTAMP: {t}\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n")),
        ("denied", &["-o", "dict", "--print-policy-names"], format!("  TIMESTAMP: {t}\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n       TYPE: policy-verdict:none EGRESS\n    VERDICT: DENIED BY my-policy (CiliumNetworkPolicy)\n    SUMMARY: TCP Flags: SYN\n")),
        ("f", &["-o", "table"], format!("TIMESTAMP             SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n{t}   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n")),
        ("f", &["-o", "table", "--print-node-name"], format!("TIMESTAMP             NODE   SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n{t}   k8s1   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n")),
        ("kafka", &["-o", "table"], format!("TIMESTAMP             SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\n{t}   1.1.1.1:31793   2.2.2.2:8080   kafka-request   DROPPED   Kafka request 1234 correlation id 1 topic 'my-topic[^[30mblack[^[0m[^\\r'\n")),
    ];
    for (uuid, args, expected) in cases {
        assert_eq!(&print(uuid, args), expected, "{uuid} {args:?}");
    }
    // Two flows in dict: separated by 12 dashes.
    let both = replay(
        &store,
        &["--all", "--uuid", "f", "--uuid", "reply", "-o", "dict"],
    )
    .ok()
    .stdout;
    assert_eq!(both.matches("\n------------\n").count(), 1, "{both}");

    // jsonpb: the golden objects of printer_test.go, in the envelope a server sends (which adds
    // node_name and time); without a uuid, as in the test.
    let plain = store_of(
        dir.path(),
        "plain",
        &[
            golden_flow(serde_json::json!({}), &[]),
            golden_flow(
                serde_json::json!({"Type": "L7",
            "l7": {"type": "REQUEST", "latency_ns": "10", "kafka": {"api_key": "1234",
                "correlation_id": 1, "topic": "my-topic\u{1b}[30mblack\u{1b}[0m\u{1b}\r"}},
            "Summary": "Kafka request 1234 correlation id 1 topic 'my-topic[^[30mblack[^[0m[^\\r'"}),
                &[],
            ),
        ],
    );
    let envelope = r#","node_name":"k8s1","time":"1970-01-01T00:20:34.567800Z"}"#;
    let golden = [
        r#"{"flow":{"time":"1970-01-01T00:20:34.567800Z","verdict":"DROPPED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"TCP":{"source_port":31793,"destination_port":8080}},"source":{"identity":4},"destination":{"identity":12345},"Type":"L3_L4","node_name":"k8s1","event_type":{"type":1,"sub_type":133},"is_reply":false,"Summary":"TCP Flags: SYN"}"#,
        r#"{"flow":{"time":"1970-01-01T00:20:34.567800Z","verdict":"DROPPED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"TCP":{"source_port":31793,"destination_port":8080}},"source":{"identity":4},"destination":{"identity":12345},"Type":"L7","node_name":"k8s1","l7":{"type":"REQUEST","latency_ns":"10","kafka":{"api_key":"1234","correlation_id":1,"topic":"my-topic\u001b[30mblack\u001b[0m\u001b\r"}},"event_type":{"type":1,"sub_type":133},"is_reply":false,"Summary":"Kafka request 1234 correlation id 1 topic 'my-topic[^[30mblack[^[0m[^\\r'"}"#,
    ];
    for format in ["jsonpb", "json"] {
        let out = replay(&plain, &["--all", "-o", format]).ok().stdout;
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_by_key(|l| l.contains("kafka"));
        assert_eq!(
            lines,
            golden.map(|g| format!("{g}{envelope}")),
            "-o {format}"
        );
    }
}

#[test]
fn replay_prints_lost_events_as_hubble_does() {
    let dir = tempfile::tempdir().unwrap();
    let plain = store_of(dir.path(), "lost", &[r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"1","cpu":5},"node_name":"node-name","time":"1970-01-01T00:20:34.567800Z"}"#.to_owned()]);
    let spanned = store_of(dir.path(), "spanned", &[r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"1","cpu":5,"first":"1970-01-01T00:20:30.567800Z","last":"1970-01-01T00:20:38.567800Z"},"node_name":"node-name","time":"1970-01-01T00:20:34.567800Z"}"#.to_owned()]);
    let t = "Jan  1 00:20:34.567";
    let out = |store: &str, args: &[&str]| {
        let mut all = vec!["--all"];
        all.extend(args);
        replay(store, &all).ok().stdout
    };
    assert_eq!(
        out(&plain, &[]),
        format!("{t} EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n")
    );
    assert_eq!(out(&spanned, &[]), format!("{t} EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1 (first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)\n"));
    assert_eq!(out(&plain, &["-o", "table"]), format!("TIMESTAMP             SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\n{t}   HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(5) - 1\n"));
    assert_eq!(out(&plain, &["-o", "table", "--print-node-name"]), format!("TIMESTAMP             NODE        SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\n{t}   node-name   HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(5) - 1\n"));
    assert_eq!(out(&spanned, &["-o", "dict"]), format!("  TIMESTAMP: {t}\n     SOURCE: HUBBLE_RING_BUFFER\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(5) - 1 (first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)\n"));
    assert_eq!(out(&plain, &["-o", "jsonpb"]), "{\"lost_events\":{\"source\":\"HUBBLE_RING_BUFFER\",\"num_events_lost\":\"1\",\"cpu\":5},\"node_name\":\"node-name\",\"time\":\"1970-01-01T00:20:34.567800Z\"}\n");
    // Among flows, in time order, whatever the filters.
    let mixed = store_of(dir.path(), "mixed", &[
        golden_flow(serde_json::json!({"time": "1970-01-01T00:20:30Z"}), &[]),
        r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"},"time":"1970-01-01T00:20:31Z"}"#.to_owned(),
        golden_flow(serde_json::json!({"time": "1970-01-01T00:20:32Z"}), &[]),
    ]);
    let lines: Vec<String> = out(&mixed, &["--verdict", "DROPPED"])
        .lines()
        .map(|l| l[..26].to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "Jan  1 00:20:30.000: 1.1.1",
            "Jan  1 00:20:31.000 EVENTS",
            "Jan  1 00:20:32.000: 1.1.1"
        ]
    );
}

// ---- filters against an independent reading of the JSON --------------------------------------

/// The flows of the captures as the JSON says them (serde_json, not the decoder under test).
fn source_flows() -> Vec<Value> {
    let mut files = hubble_samples();
    files.push(incident_capture());
    files
        .iter()
        .flat_map(|f| json_lines(f))
        .map(|v| v.get("flow").cloned().unwrap_or(v))
        .collect()
}

fn text<'a>(flow: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(flow, |v, key| v.get(*key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn number(flow: &Value, path: &[&str]) -> Option<u64> {
    let v = path.iter().try_fold(flow, |v, key| v.get(*key))?;
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// A flow's identity in both readings: time (ns), uuid, summary, ports.
fn key(flow: &Value) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(text(flow, &["time"]))
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    format!(
        "{time} {} {} {:?} {:?}",
        text(flow, &["uuid"]),
        text(flow, &["Summary"]),
        port(flow, "source"),
        port(flow, "destination"),
    )
}

fn port(flow: &Value, side: &str) -> Option<u64> {
    ["TCP", "UDP", "SCTP"].iter().find_map(|p| {
        flow.get("l4")?
            .get(*p)
            .map(|l| number(l, &[&format!("{side}_port")]).unwrap_or(0))
    })
}

fn in_pod(flow: &Value, side: &str, ns: &str, prefix: &str) -> bool {
    text(flow, &[side, "namespace"]) == ns && text(flow, &[side, "pod_name"]).starts_with(prefix)
}

fn has_label(flow: &Value, side: &str, label: &str) -> bool {
    flow.get(side)
        .and_then(|e| e.get("labels"))
        .and_then(Value::as_array)
        .is_some_and(|labels| labels.iter().any(|l| l.as_str() == Some(label)))
}

fn ip_in(flow: &Value, side: &str, net: &str) -> bool {
    let ip = text(flow, &["IP", side]);
    match net.split_once('/') {
        None => ip == net,
        Some((base, bits)) => {
            let (Ok(ip), Ok(base)) = (
                ip.parse::<std::net::Ipv4Addr>(),
                base.parse::<std::net::Ipv4Addr>(),
            ) else {
                return false;
            };
            let bits: u32 = bits.parse().unwrap();
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(base) & mask
        }
    }
}

fn event(flow: &Value) -> Option<(u64, u64)> {
    let e = flow.get("event_type")?;
    Some((
        number(e, &["type"]).unwrap_or(0),
        number(e, &["sub_type"]).unwrap_or(0),
    ))
}

fn url_path(flow: &Value) -> String {
    let url = text(flow, &["l7", "http", "url"]);
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("").to_owned()
}

/// An end's workload (the first Hubble lists) as (kind, name).
fn workload<'a>(flow: &'a Value, side: &str) -> Option<(&'a str, &'a str)> {
    let w = flow.get(side)?.get("workloads")?.get(0)?;
    Some((text(w, &["kind"]), text(w, &["name"])))
}

fn has_tcp_flags(flow: &Value, flags: &[&str]) -> bool {
    let Some(set) = flow
        .get("l4")
        .and_then(|l| l.get("TCP"))
        .and_then(|t| t.get("flags"))
    else {
        return false;
    };
    flags
        .iter()
        .all(|f| set.get(*f) == Some(&Value::Bool(true)))
}

/// An end's cluster: its `cluster_name`, else its `io.cilium.k8s.policy.cluster` label.
fn cluster<'a>(flow: &'a Value, side: &str) -> &'a str {
    let name = text(flow, &[side, "cluster_name"]);
    if !name.is_empty() {
        return name;
    }
    flow.get(side)
        .and_then(|e| e.get("labels"))
        .and_then(Value::as_array)
        .and_then(|labels| {
            labels.iter().find_map(|l| {
                l.as_str()?
                    .strip_prefix("k8s:io.cilium.k8s.policy.cluster=")
            })
        })
        .unwrap_or("")
}

type Expect = fn(&Value) -> bool;

#[test]
fn replay_filters_match_an_independent_reading_of_the_json() {
    let (_dir, store) = temp_store();
    let mut files = hubble_samples();
    files.push(incident_capture());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    import(&store, &refs, &[]).ok();
    let flows = source_flows();
    let cases: Vec<(&[&str], Expect)> = vec![
        (&["-n", "kube-system"], |f| {
            text(f, &["source", "namespace"]) == "kube-system"
                || text(f, &["destination", "namespace"]) == "kube-system"
        }),
        (&["--pod", "prod-app/api-gateway"], |f| {
            in_pod(f, "source", "prod-app", "api-gateway")
                || in_pod(f, "destination", "prod-app", "api-gateway")
        }),
        (
            &[
                "--from-pod",
                "prod-app/frontend",
                "--to-pod",
                "prod-app/api-gateway",
            ],
            |f| {
                in_pod(f, "source", "prod-app", "frontend")
                    && in_pod(f, "destination", "prod-app", "api-gateway")
            },
        ),
        (&["-n", "bookinfo", "--pod", "productpage"], |f| {
            in_pod(f, "source", "bookinfo", "productpage")
                || in_pod(f, "destination", "bookinfo", "productpage")
        }),
        (&["--to-pod", "coredns"], |f| {
            in_pod(f, "destination", "default", "coredns")
        }),
        (&["--to-pod", "kube-system/coredns"], |f| {
            in_pod(f, "destination", "kube-system", "coredns")
        }),
        (
            &[
                "--from-namespace",
                "prod-app",
                "--to-namespace",
                "kube-system",
            ],
            |f| {
                text(f, &["source", "namespace"]) == "prod-app"
                    && text(f, &["destination", "namespace"]) == "kube-system"
            },
        ),
        (&["-l", "app=frontend"], |f| {
            has_label(f, "source", "k8s:app=frontend")
                || has_label(f, "destination", "k8s:app=frontend")
        }),
        (
            &[
                "--from-label",
                "k8s:app=api-gateway",
                "--to-label",
                "app in (user-service, nothing)",
            ],
            |f| {
                has_label(f, "source", "k8s:app=api-gateway")
                    && has_label(f, "destination", "k8s:app=user-service")
            },
        ),
        (&["--to-label", "reserved:world"], |f| {
            has_label(f, "destination", "reserved:world")
        }),
        (&["--verdict", "DROPPED"], |f| {
            text(f, &["verdict"]) == "DROPPED"
        }),
        (&["--verdict", "REDIRECTED", "--verdict", "DROPPED"], |f| {
            ["REDIRECTED", "DROPPED"].contains(&text(f, &["verdict"]))
        }),
        (&["--drop-reason-desc", "INVALID_SOURCE_IP"], |f| {
            text(f, &["verdict"]) == "DROPPED"
                && text(f, &["drop_reason_desc"]) == "INVALID_SOURCE_IP"
        }),
        (&["--protocol", "udp"], |f| {
            f.get("l4").and_then(|l| l.get("UDP")).is_some()
        }),
        (&["--protocol", "ICMP"], |f| {
            f.get("l4")
                .is_some_and(|l| l.get("ICMPv4").is_some() || l.get("ICMPv6").is_some())
        }),
        (&["--protocol", "dns", "--protocol", "http"], |f| {
            f.get("l7")
                .is_some_and(|l| l.get("dns").is_some() || l.get("http").is_some())
        }),
        (&["--port", "53"], |f| {
            port(f, "source") == Some(53) || port(f, "destination") == Some(53)
        }),
        (&["--from-port", "80"], |f| port(f, "source") == Some(80)),
        (&["--to-port", "8080", "--verdict", "FORWARDED"], |f| {
            port(f, "destination") == Some(8080) && text(f, &["verdict"]) == "FORWARDED"
        }),
        (&["--ip", "10.0.1.21"], |f| {
            ip_in(f, "source", "10.0.1.21") || ip_in(f, "destination", "10.0.1.21")
        }),
        (&["--from-ip", "10.0.1.0/24"], |f| {
            ip_in(f, "source", "10.0.1.0/24")
        }),
        (
            &["--to-ip", "10.0.0.0/8", "--not", "--to-ip", "10.0.1.0/24"],
            |f| ip_in(f, "destination", "10.0.0.0/8") && !ip_in(f, "destination", "10.0.1.0/24"),
        ),
        (&["--http-method", "post"], |f| {
            text(f, &["l7", "http", "method"]).eq_ignore_ascii_case("post")
        }),
        (&["--http-path", "^/po"], |f| {
            f.get("l7").and_then(|l| l.get("http")).is_some() && url_path(f).starts_with("/po")
        }),
        (&["--http-path", "details"], |f| {
            f.get("l7").and_then(|l| l.get("http")).is_some() && url_path(f).contains("details")
        }),
        (&["--http-status", "4+"], |f| {
            (400..500).contains(&number(f, &["l7", "http", "code"]).unwrap_or(0))
        }),
        (&["--http-status", "200", "--http-status", "403"], |f| {
            [200, 403].contains(&number(f, &["l7", "http", "code"]).unwrap_or(0))
        }),
        (&["--node-name", "*worker-1"], |f| {
            text(f, &["node_name"]).ends_with("worker-1")
        }),
        (&["--node-name", "prod-cluster/*"], |f| {
            text(f, &["node_name"]).starts_with("prod-cluster/")
        }),
        (&["--node-name", "kind-control-plane"], |f| {
            text(f, &["node_name"]) == "kind-control-plane"
        }),
        (&["-t", "policy-verdict"], |f| {
            event(f).is_some_and(|(t, _)| t == 5)
        }),
        (&["-t", "trace:to-stack", "-t", "drop"], |f| {
            event(f).is_some_and(|(t, s)| (t, s) == (4, 3) || t == 1)
        }),
        (&["-t", "l7", "--not", "--protocol", "dns"], |f| {
            event(f).is_some_and(|(t, _)| t == 129)
                && f.get("l7").and_then(|l| l.get("dns")).is_none()
        }),
        (&["--traffic-direction", "ingress"], |f| {
            text(f, &["traffic_direction"]) == "INGRESS"
        }),
        (
            &["-n", "prod-app", "--not", "--verdict", "FORWARDED"],
            |f| {
                (text(f, &["source", "namespace"]) == "prod-app"
                    || text(f, &["destination", "namespace"]) == "prod-app")
                    && text(f, &["verdict"]) != "FORWARDED"
            },
        ),
        (
            &[
                "--not",
                "--http-method",
                "GET",
                "--not",
                "--to-namespace",
                "prod-app",
            ],
            |f| {
                !(text(f, &["l7", "http", "method"]) == "GET"
                    && text(f, &["destination", "namespace"]) == "prod-app")
            },
        ),
        (
            &["--to-namespace", "prod-app", "--to-service", "api"],
            |f| {
                text(f, &["destination_service", "namespace"]) == "prod-app"
                    && text(f, &["destination_service", "name"]).starts_with("api")
            },
        ),
        (&["--service", "prod-app/user-service"], |f| {
            ["source_service", "destination_service"].iter().any(|s| {
                text(f, &[s, "namespace"]) == "prod-app"
                    && text(f, &[s, "name"]).starts_with("user-service")
            })
        }),
        (&["--from-workload", "Deployment/frontend"], |f| {
            workload(f, "source") == Some(("Deployment", "frontend"))
        }),
        (
            &["--workload", "api-gateway", "--verdict", "DROPPED"],
            |f| {
                (workload(f, "source").is_some_and(|w| w.1 == "api-gateway")
                    || workload(f, "destination").is_some_and(|w| w.1 == "api-gateway"))
                    && text(f, &["verdict"]) == "DROPPED"
            },
        ),
        (&["--to-workload", "Deployment/"], |f| {
            workload(f, "destination").is_some_and(|w| w.0 == "Deployment")
        }),
        (&["--tcp-flags", "SYN"], |f| has_tcp_flags(f, &["SYN"])),
        (&["--tcp-flags", "syn,ack", "--tcp-flags", "FIN"], |f| {
            has_tcp_flags(f, &["SYN", "ACK"]) || has_tcp_flags(f, &["FIN"])
        }),
        (&["--cluster", "kind-kind"], |f| {
            cluster(f, "source") == "kind-kind" || cluster(f, "destination") == "kind-kind"
        }),
        (
            &["--from-cluster", "default", "--to-cluster", "default"],
            |f| cluster(f, "source") == "default" && cluster(f, "destination") == "default",
        ),
        (&["--to-cluster", "prod-cluster"], |f| {
            cluster(f, "destination") == "prod-cluster"
        }),
        (&["--identity", "world"], |f| {
            number(f, &["source", "identity"]) == Some(2)
                || number(f, &["destination", "identity"]) == Some(2)
        }),
        (&["--http-url", "s/[0-9]$"], |f| {
            let url = text(f, &["l7", "http", "url"]).as_bytes();
            url.len() > 3 && url[url.len() - 1].is_ascii_digit() && url.ends_with(b"s/0")
        }),
        (
            &[
                "--allowlist",
                r#"{"source_pod":["prod-app/frontend"],"destination_port":["8080"]}"#,
            ],
            |f| in_pod(f, "source", "prod-app", "frontend") && port(f, "destination") == Some(8080),
        ),
    ];
    for (args, expect) in cases {
        let mut expected: Vec<String> = flows.iter().filter(|f| expect(f)).map(key).collect();
        let mut all = vec!["--all", "-o", "jsonpb"];
        all.extend(args);
        let run = replay(&store, &all).ok();
        let mut got: Vec<String> = run
            .stdout
            .lines()
            .map(|l| key(&serde_json::from_str::<Value>(l).unwrap()["flow"]))
            .collect();
        // Time-ordered output.
        let times: Vec<&str> = got.iter().map(|k| k.split(' ').next().unwrap()).collect();
        assert!(
            times
                .windows(2)
                .all(|w| w[0].parse::<i64>().unwrap() <= w[1].parse::<i64>().unwrap()),
            "{args:?} not in time order"
        );
        expected.sort();
        got.sort();
        assert_eq!(got.len(), expected.len(), "{args:?}");
        assert_eq!(got, expected, "{args:?}");
        eprintln!("replay {args:?}: {} flows", got.len());
    }
}

#[test]
fn replay_first_last_and_time_window_select_like_hubble() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let mut dropped: Vec<Value> = source_flows()
        .into_iter()
        .filter(|f| {
            !text(f, &["uuid"]).is_empty()
                && text(f, &["verdict"]) == "DROPPED"
                && text(f, &["node_name"]) == "prod-cluster/worker-1"
        })
        .collect();
    dropped.sort_by_key(key);
    let uuids = |run: Run| -> Vec<String> {
        run.stdout
            .lines()
            .map(|l| {
                text(
                    &serde_json::from_str::<Value>(l).unwrap()["flow"],
                    &["uuid"],
                )
                .to_owned()
            })
            .collect()
    };
    let expected = |flows: &[Value]| -> Vec<String> {
        flows
            .iter()
            .map(|f| text(f, &["uuid"]).to_owned())
            .collect()
    };
    let filter = [
        "--verdict",
        "DROPPED",
        "--node-name",
        "prod-cluster/worker-1",
        "-o",
        "jsonpb",
    ];
    let with = |extra: &[&str]| {
        let mut args = filter.to_vec();
        args.extend(extra);
        uuids(replay(&store, &args).ok())
    };
    assert_eq!(with(&["--first", "7"]), expected(&dropped[..7]));
    assert_eq!(
        with(&["--last", "7"]),
        expected(&dropped[dropped.len() - 7..])
    );
    // Without a range or a count: Hubble's last 20.
    assert_eq!(with(&[]), expected(&dropped[dropped.len() - 20..]));
    // A window: [since, until).
    let run = flowsql(
        &[
            "--store",
            &store,
            "--since",
            "2026-11-24T09:10Z",
            "--until",
            "2026-11-24T09:20Z",
            "replay",
        ]
        .into_iter()
        .chain(filter)
        .collect::<Vec<_>>(),
        &[],
    )
    .ok();
    let window: Vec<Value> = dropped
        .iter()
        .filter(|f| {
            let t = text(f, &["time"]);
            ("2026-11-24T09:10".."2026-11-24T09:20").contains(&&t[..16])
        })
        .cloned()
        .collect();
    assert!(window.len() > 20, "{}", window.len());
    assert_eq!(uuids(run), expected(&window));
    // --until is inclusive, as hubble's: a window of one instant holds the flow at it.
    let t = text(&dropped[3], &["time"]).to_owned();
    let run = flowsql(
        &["--store", &store, "--since", &t, "--until", &t, "replay"]
            .into_iter()
            .chain(filter)
            .collect::<Vec<_>>(),
        &[],
    )
    .ok();
    assert_eq!(uuids(run), expected(&dropped[3..4]));
}

#[test]
fn replay_jsonpb_reimports_to_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = hubble_samples();
    files.push(incident_capture());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let original = dir.path().join("original").display().to_string();
    import(&original, &refs, &[]).ok();
    let out = replay(&original, &["--all", "-o", "jsonpb"]).ok().stdout;
    // Ends Hubble knows nothing about print as `{}`, as in the cilium docs' export.
    assert!(
        out.lines()
            .any(|l| l.contains(r#""source":{},"destination":{}"#)),
        "no empty endpoint printed"
    );
    let replayed = dir.path().join("replayed.json");
    std::fs::write(&replayed, &out).unwrap();
    let again = dir.path().join("again").display().to_string();
    let run = import(&again, &[&replayed], &[]).ok();
    assert!(!run.stderr.contains("skipped"), "{}", run.stderr);
    let rows = |store: &str| {
        flowsql(
            &["--store", store, "--format", "ndjson",
              "select * from flows order by time, ip_source, source_port, destination_port, uuid, summary"],
            &[],
        )
        .ok()
        .stdout
    };
    let (a, b) = (rows(&original), rows(&again));
    assert_eq!(a.lines().count(), 15_282);
    for (x, y) in a.lines().zip(b.lines()) {
        assert_eq!(x, y);
    }
    assert_eq!(a, b);
}

#[test]
fn replay_bad_flags_are_named_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path(), "s", &[golden_flow(serde_json::json!({}), &[])]);
    let cases: &[(&[&str], &str)] = &[
        (&["--verdict", "dropped"], "--verdict"),
        (
            &["--pod", "a", "--from-pod", "b"],
            "--from-pod and --pod cannot be combined",
        ),
        (&["-n", "x", "--pod", "y/z"], "namespace conflict"),
        (&["--not", "--not", "--pod", "a"], "consecutive --not"),
        (&["--pod", "a", "--not"], "trailing --not"),
        (
            &["--port", "http"],
            "invalid --port/--from-port (source_port) value \"http\"",
        ),
        (&["--ip", "10.0.0/8"], "not a CIDR"),
        (&["--http-status", "6xx"], "status code"),
        (&["--http-path", "(unclosed"], "--http-path"),
        (&["--protocol", "quic"], "unknown protocol"),
        (&["-t", "nope"], "--type"),
        (&["--http-method", "GET", "-t", "drop"], "'l7' events"),
        (&["-l", "app in x"], "--label/--from-label"),
        (&["--node-name", "a/b/c"], "--node-name"),
        (
            &[
                "--allowlist",
                r#"{"http_header":[{"key":"x","value":"y"}]}"#,
            ],
            "http_header cannot be replayed",
        ),
        (&["--tcp-flags", "SYN,SYNACK"], "--tcp-flags"),
        (&["--identity", "wrld"], "--identity"),
        (
            &["--cel-expression", "_flow.verdict == 1"],
            "--cel-expression",
        ),
        (&["--cluster", "a b"], "--cluster/--from-cluster"),
        (
            &["--fqdn", "a.b", "--to-ip", "1.1.1.1"],
            "cannot be combined",
        ),
        (&["--to-fqdn", "a b"], "--fqdn/--to-fqdn"),
        (
            &["--from-pod", "a/x", "--from-service", "b/y"],
            "namespace of service",
        ),
        (&["--traffic-direction", "sideways"], "--traffic-direction"),
        (&["--allowlist", "{\"source_pods\":[\"x\"]}"], "--allowlist"),
        (&["--first", "1", "--last", "1"], "--last"),
    ];
    for (args, expected) in cases {
        let run = replay(&store, args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    let run = flowsql(&["--store", &store, "--format", "csv", "replay"], &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("-o/--output"), "{}", run.stderr);
    // The raw filters, as hubble --print-raw-filters shows them.
    let run = replay(
        &store,
        &[
            "-n",
            "kube-system",
            "--not",
            "--verdict",
            "DROPPED",
            "--print-raw-filters",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains(r#"{"source_pod":["kube-system/"]}"#),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(r#"{"verdict":["DROPPED"]}"#),
        "{}",
        run.stdout
    );
}

// ---- regressions ------------------------------------------------------------------------------

#[test]
fn regressions_name_the_typo_and_nothing_once_it_is_fixed() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let run = |format: &str, args: &[&str]| -> Run {
        let mut all = vec!["--store", store.as_str(), "regressions", "--format", format];
        all.extend(args);
        flowsql(&all, &[])
    };
    let regressions = |args: &[&str]| -> Vec<Value> { run("ndjson", args).ok().rows() };
    // The typo (09:05) against the hour before it.
    let rows = regressions(&[
        "--baseline",
        "1h",
        "--window",
        "2026-11-24T09:00Z..2026-11-24T09:47Z",
    ]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["change"], "newly denied");
    assert_eq!(row["source_namespace"], "prod-app");
    assert_eq!(row["source_workload"], "api-gateway");
    assert_eq!(row["destination_workload"], "user-service");
    assert_eq!(row["destination_port"], 80);
    assert_eq!(row["protocol"], "TCP");
    assert_eq!(row["policies"], "api-access-policy");
    let first = row["first_seen"].as_str().unwrap();
    assert!(first.starts_with("2026-11-24T09:05:"), "{first}");
    // The example flow exists and is one of those denials.
    let uuid = row["example_uuid"].as_str().unwrap();
    let example = replay(&store, &["--uuid", uuid, "-o", "jsonpb", "--all"])
        .ok()
        .stdout;
    assert!(
        example.contains("POLICY_DENIED") && example.contains("api-access-policy"),
        "{example}"
    );
    // Independently: the denied packets of that connection in the window (drop events; the
    // policy-verdict event beside each is the same packet).
    let denied = source_flows()
        .iter()
        .filter(|f| {
            let t = text(f, &["time"]);
            ("2026-11-24T09:00".."2026-11-24T09:47").contains(&&t[..16])
                && text(f, &["verdict"]) == "DROPPED"
                && text(f, &["drop_reason_desc"]) == "POLICY_DENIED"
                && event(f).is_some_and(|(t, _)| t != 5)
                && f.get("is_reply").and_then(Value::as_bool) != Some(true)
        })
        .count();
    assert!(denied > 100, "{denied}");
    assert_eq!(row["flows"], denied as u64);

    // After the fix: nothing, also with the L7 rule of 10:10 in the window.
    let rows = regressions(&[
        "--baseline",
        "2h",
        "--window",
        "2026-11-24T09:50Z..2026-11-24T11:00Z",
    ]);
    assert!(rows.is_empty(), "{rows:#?}");
    // The fix itself, seen the other way round.
    let rows = regressions(&[
        "--baseline",
        "2026-11-24T09:06Z..2026-11-24T09:46Z",
        "--window",
        "2026-11-24T09:48Z..2026-11-24T10:00Z",
        "--also-newly-allowed",
    ]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["change"], "newly allowed");
    assert_eq!(rows[0]["destination_workload"], "user-service");

    // Every format; bad ranges are named.
    let typo = [
        "--baseline",
        "1h",
        "--window",
        "2026-11-24T09:00Z..2026-11-24T09:47Z",
    ];
    for format in ["table", "csv", "json", "ndjson"] {
        let out = run(format, &typo).ok().stdout;
        assert!(out.contains("api-access-policy"), "{format}: {out}");
    }
    let run = run("table", &["--baseline", "1h", "--window", "tuesday"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("--window") && run.stderr.contains("tuesday"),
        "{}",
        run.stderr
    );
}

/// A flow of `workload` pods to user-service, as Hubble sends an L7 request record.
fn l7_request(time: &str, pod: &str, method: &str, path: &str, verdict: &str) -> String {
    serde_json::json!({"flow": {
        "time": time, "verdict": verdict, "Type": "L7", "is_reply": false,
        "IP": {"source": "10.0.0.1", "destination": "10.0.0.2"},
        "l4": {"TCP": {"source_port": 40000, "destination_port": 80}},
        "source": {"namespace": "shop", "pod_name": pod, "identity": 1000},
        "destination": {"namespace": "shop", "pod_name": "users-5c7b9d8f6-lmnpq", "identity": 2000,
            "workloads": [{"name": "users", "kind": "Deployment"}]},
        "event_type": {"type": 129}, "traffic_direction": "EGRESS",
        "l7": {"type": "REQUEST", "http": {"method": method, "url": format!("http://users{path}?id=1")}},
        "egress_denied_by": if verdict == "DROPPED" { serde_json::json!([{"name": "l7-rule", "kind": "CiliumNetworkPolicy"}]) } else { serde_json::json!([]) }
    }})
    .to_string()
}

#[test]
fn regressions_group_replicas_and_see_l7_denials() {
    let dir = tempfile::tempdir().unwrap();
    // Two replicas of `web` (names from Kubernetes' alphabet) and a bare pod `web-nginx`.
    let store = store_of(
        dir.path(),
        "l7",
        &[
            l7_request(
                "2026-11-24T08:10:00Z",
                "web-7d9f8b6c4-bcdfg",
                "POST",
                "/orders",
                "FORWARDED",
            ),
            l7_request(
                "2026-11-24T08:20:00Z",
                "web-7d9f8b6c4-hjklm",
                "POST",
                "/orders",
                "FORWARDED",
            ),
            l7_request(
                "2026-11-24T08:30:00Z",
                "web-nginx",
                "GET",
                "/health",
                "FORWARDED",
            ),
            l7_request(
                "2026-11-24T09:10:00Z",
                "web-7d9f8b6c4-hjklm",
                "POST",
                "/orders",
                "DROPPED",
            ),
            l7_request(
                "2026-11-24T09:11:00Z",
                "web-6b5c4d9f2-xzvbn",
                "POST",
                "/orders",
                "DROPPED",
            ),
            l7_request(
                "2026-11-24T09:12:00Z",
                "web-nginx",
                "GET",
                "/health",
                "DROPPED",
            ),
            l7_request(
                "2026-11-24T09:13:00Z",
                "web-7d9f8b6c4-bcdfg",
                "GET",
                "/orders",
                "DROPPED",
            ),
        ],
    );
    let rows = flowsql(
        &[
            "--store",
            &store,
            "regressions",
            "--format",
            "ndjson",
            "--baseline",
            "1h",
            "--window",
            "2026-11-24T09:00Z..2026-11-24T10:00Z",
        ],
        &[],
    )
    .ok()
    .rows();
    let summary: Vec<(String, String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["source_workload"].as_str().unwrap().to_owned(),
                r["http_method"].as_str().unwrap().to_owned(),
                r["http_path"].as_str().unwrap().to_owned(),
                r["flows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("web".into(), "POST".into(), "/orders".into(), 2),
            ("web-nginx".into(), "GET".into(), "/health".into(), 1),
        ],
        "{rows:#?}"
    );
    assert_eq!(rows[0]["policies"], "l7-rule");
    // The GET /orders denial had no allowed GET /orders before it: not a regression.
}

#[test]
fn replay_round_trips_every_hubble_column_and_odd_values() {
    let dir = tempfile::tempdir().unwrap();
    let full = golden_flow(
        serde_json::from_str(
            r#"{
        "uuid": "full", "emitter": {"name": "Hubble", "version": "1.19"},
        "auth_type": "SPIRE", "ethernet": {"source": "aa:bb:cc:dd:ee:ff", "destination": "ff:ee:dd:cc:bb:aa"},
        "IP": {"source": "fd00::1", "destination": "fd00::2", "source_xlated": "fd00::9", "ipVersion": "IPv6", "encrypted": true},
        "tunnel": {"protocol": "VXLAN", "IP": {"source": "192.168.0.1", "destination": "192.168.0.2"}, "vni": 7},
        "source": {"ID": 12, "identity": 4, "cluster_name": "c1", "namespace": "ns", "labels": ["k8s:app=a"], "pod_name": "a-1", "workloads": [{"name": "a", "kind": "Deployment"}]},
        "node_labels": ["zone=a"], "source_names": ["a.example"], "destination_names": ["b.example", "c.example"],
        "reply": true, "source_service": {"name": "svc-a", "namespace": "ns"}, "destination_service": {"name": "svc-b", "namespace": "ns2"},
        "traffic_direction": "INGRESS", "policy_match_type": 3, "trace_observation_point": "TO_ENDPOINT", "trace_reason": "NEW",
        "file": {"name": "bpf_lxc.c", "line": 1234}, "drop_reason": 133, "drop_reason_desc": "POLICY_DENIED",
        "interface": {"index": 5, "name": "eth0"}, "proxy_port": 15001, "trace_context": {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
        "sock_xlate_point": "SOCK_XLATE_POINT_POST_DIRECTION_FWD", "socket_cookie": "77", "cgroup_id": "88",
        "Summary": "odd <&> \u2028 summary",
        "egress_allowed_by": [{"name": "p", "namespace": "ns", "labels": ["k=v"], "revision": "3", "kind": "CiliumNetworkPolicy"}],
        "policy_log": ["log-a"], "ip_trace_id": {"trace_id": "99"},
        "aggregate": {"ingress_flow_count": 1, "egress_flow_count": 2, "unknown_direction_flow_count": 3},
        "l7": {"type": "RESPONSE", "latency_ns": "12345", "dns": {"query": "x.example.", "ips": ["1.2.3.4"], "ttl": 30, "cnames": ["y."], "observation_source": "proxy", "rcode": 3, "qtypes": ["A"], "rrtypes": ["A"]}}
    }"#,
        )
        .unwrap(),
        &[],
    );
    let no_type = r#"{"flow":{"time":"2026-11-24T08:00:00Z","event_type":{"sub_type":3},"l4":{"ICMPv4":{"type":8}},"IP":{"source":"1.1.1.1","destination":"2.2.2.2"}}}"#.to_owned();
    let http = golden_flow(
        serde_json::json!({"uuid": "http", "Type": "L7",
        "l7": {"type": "REQUEST", "http": {"method": "GET", "url": "http://x/a%20b?q=1", "protocol": "HTTP/1.1",
            "headers": [{"key": "User-Agent", "value": "t"}]}}}),
        &[],
    );
    let original = store_of(dir.path(), "edge", &[full, no_type, http]);
    let out = replay(&original, &["--all", "-o", "jsonpb"]).ok().stdout;
    assert!(
        out.contains("\\u003c\\u0026\\u003e"),
        "Go's HTML escaping: {out}"
    );
    let replayed = dir.path().join("replayed.json");
    std::fs::write(&replayed, &out).unwrap();
    let again = dir.path().join("again").display().to_string();
    import(&again, &[&replayed], &[]).ok();
    let rows = |store: &str| {
        flowsql(
            &[
                "--store",
                store,
                "--format",
                "ndjson",
                "select * from flows order by time, uuid",
            ],
            &[],
        )
        .ok()
        .stdout
    };
    assert_eq!(rows(&original), rows(&again));
    // The odd values replay and filter as Hubble would.
    assert_eq!(
        replay(&original, &["--all", "-t", "0:3", "-o", "jsonpb"])
            .ok()
            .stdout
            .lines()
            .count(),
        1
    );
    let decoded = replay(
        &original,
        &["--all", "--http-path", "^/a b$", "-o", "jsonpb"],
    )
    .ok()
    .stdout;
    assert_eq!(decoded.lines().count(), 1, "the path is matched decoded");
    assert_eq!(
        replay(&original, &["--all", "--http-path", "a%20b"])
            .ok()
            .stdout,
        ""
    );
    // Node names: `k8s1` is `default/k8s1`; the import named the third flow's node test-node.
    let nodes = |glob: &str| {
        replay(&original, &["--all", "--node-name", glob, "-o", "jsonpb"])
            .ok()
            .stdout
            .lines()
            .count()
    };
    assert_eq!(
        (
            nodes("k8s*"),
            nodes("default/*"),
            nodes("*-node"),
            nodes("other/*")
        ),
        (2, 3, 1, 0)
    );
}

/// FQDN filters with Hubble's pattern rules (lowercased, one trailing dot dropped, `*` any run
/// of name characters, anchored), over the names Hubble knows for each end; the Hubble UI's
/// `*.cluster.local*` blacklist keeps flows without names.
#[test]
fn fqdn_filters_match_names_as_hubble_does() {
    let dir = tempfile::tempdir().unwrap();
    let flow = |uuid: &str, names: &str| {
        format!(
            r#"{{"flow":{{"time":"2026-11-24T09:00:0{n}Z","uuid":"{uuid}","verdict":"FORWARDED","IP":{{"source":"10.0.1.1","destination":"10.0.2.{n}","ipVersion":"IPv4"}},"source":{{"namespace":"shop","pod_name":"api"}},"destination_names":[{names}],"Type":"L3_L4","node_name":"n1"}}}}"#,
            n = uuid.len()
        )
    };
    let store = store_of(
        dir.path(),
        "names",
        &[
            flow("a", r#""api.github.com""#),
            flow(
                "bb",
                r#""kube-dns.kube-system.svc.cluster.local","other.example""#,
            ),
            flow("ccc", ""),
        ],
    );
    let uuids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--all", "-o", "jsonpb"];
        all.extend(args);
        replay(&store, &all)
            .ok()
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["flow"]["uuid"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let allow = |f: &str| uuids(&["--allowlist", &format!(r#"{{"destination_fqdn":["{f}"]}}"#)]);
    assert_eq!(allow("*.github.com"), ["a"]);
    assert_eq!(allow("github.com"), Vec::<String>::new());
    assert_eq!(allow("OTHER.example."), ["bb"]);
    assert_eq!(allow("*.cluster.local*"), ["bb"]);
    assert_eq!(
        uuids(&["--denylist", r#"{"destination_fqdn":["*.cluster.local*"]}"#]),
        ["a", "ccc"]
    );
    let bad = replay(
        &store,
        &["--allowlist", r#"{"destination_fqdn":["bad/x"]}"#],
    );
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("destination_fqdn") && bad.stderr.contains("'/'"),
        "{}",
        bad.stderr
    );
}
