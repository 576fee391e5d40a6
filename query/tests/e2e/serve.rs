//! `flowsql serve`: the requests the hubble CLI v1.19 and the Hubble UI send
//! (../shared/docs/observer-api.md §1.3, §2), sent with the project's tonic client, answered
//! as `flowsql replay` answers the same flags (replay is checked against Hubble's printer
//! goldens), and the unary RPCs against counts computed from the JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use flowsql::replay::format::{FlowWriter, Format, LostEvents, Options, TimeFormat};
use hubble_api::field_mask::CLI_DEFAULT_MASK;
use hubble_api::flow::{FlowFilter, LostEventSource};
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::observer_client::ObserverClient;
use hubble_api::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNodesRequest, ServerStatusRequest,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::support::*;

/// CLI filter flags, the whitelist and blacklist they make, flowsql replay's flags.
type FilterCase<'a> = (&'a str, Vec<FlowFilter>, Vec<FlowFilter>, Vec<&'a str>);

/// A running `flowsql serve` and a runtime for its clients.
struct Server {
    process: Process,
    address: String,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(store: &str, extra: &[&str]) -> Server {
        let mut args = vec![
            "--store",
            store,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll",
            "200ms",
        ];
        args.extend(extra);
        let mut process = Process::spawn(command(&flowsql_bin(), &args, &[]));
        let text = process.wait_for("listening on ");
        let address = text
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Server {
            process,
            address,
            runtime,
        }
    }

    fn client(&self) -> ObserverClient<Channel> {
        let url = format!("http://{}", self.address);
        self.runtime
            .block_on(ObserverClient::connect(url))
            .unwrap()
            .max_decoding_message_size(64 << 20)
    }

    /// Every response of a stream that ends.
    fn get_flows(&self, request: GetFlowsRequest) -> Result<Vec<GetFlowsResponse>, tonic::Status> {
        let mut client = self.client();
        self.runtime.block_on(async move {
            let mut stream = client.get_flows(request).await?.into_inner();
            let mut all = Vec::new();
            while let Some(response) = stream.message().await? {
                all.push(response);
            }
            Ok(all)
        })
    }

    /// The responses of a stream that stays open: those received until `quiet` passes
    /// without one (after at least `want` of them), then the stream is cancelled.
    fn get_flows_open(
        &self,
        request: GetFlowsRequest,
        want: usize,
        quiet: Duration,
    ) -> Vec<GetFlowsResponse> {
        let mut client = self.client();
        self.runtime.block_on(async move {
            let mut stream = client.get_flows(request).await.unwrap().into_inner();
            let mut all = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let wait = if all.len() >= want {
                    quiet
                } else {
                    deadline - tokio::time::Instant::now()
                };
                match tokio::time::timeout(wait, stream.message()).await {
                    Ok(Ok(Some(response))) => all.push(response),
                    Ok(other) => panic!("the stream ended: {other:?}"),
                    Err(_) => break,
                }
            }
            all
        })
    }
}

/// Prints responses as the hubble CLI prints them (compact, or jsonpb when no mask).
fn print(responses: &[GetFlowsResponse], format: Format) -> String {
    let options = Options {
        format,
        time_format: TimeFormat::StampMilli,
        print_node_name: false,
        print_policy_names: false,
    };
    let mut writer = FlowWriter::new(Vec::new(), options);
    for response in responses {
        match response.response_types.clone() {
            Some(ResponseTypes::Flow(flow)) => writer.write(flow).unwrap(),
            Some(ResponseTypes::LostEvents(lost)) => writer
                .write_lost(&LostEvents {
                    time: response.time,
                    node_name: response.node_name.clone(),
                    source: LostEventSource::try_from(lost.source)
                        .unwrap()
                        .as_str_name()
                        .to_owned(),
                    num_events_lost: lost.num_events_lost,
                    cpu: lost.cpu.map(|c| c.value),
                    first: lost.first,
                    last: lost.last,
                })
                .unwrap(),
            other => panic!("unexpected response {other:?}"),
        }
    }
    String::from_utf8(writer.finish().unwrap()).unwrap()
}

fn at(rfc3339: &str) -> Option<pbjson_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    Some(pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

fn mask(paths: &[&str]) -> Option<pbjson_types::FieldMask> {
    Some(pbjson_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// `flowsql replay` of `flags` as flows masked with the CLI's default mask, printed compact.
fn masked_replay(store: &str, flags: &[&str], filters: &[&str]) -> String {
    let mut args = vec!["--store", store];
    args.extend(flags.iter().copied());
    args.extend(filters.iter().copied());
    args.extend(["-o", "jsonpb"]);
    let mask = hubble_api::field_mask::FlowMask::new(&CLI_DEFAULT_MASK)
        .unwrap()
        .unwrap();
    let responses: Vec<GetFlowsResponse> = flowsql(&args, &[])
        .ok()
        .stdout
        .lines()
        .map(|line| {
            let mut response: GetFlowsResponse = serde_json::from_str(line).unwrap();
            if let Some(ResponseTypes::Flow(flow)) = &response.response_types {
                response.response_types = Some(ResponseTypes::Flow(mask.apply(flow)));
            }
            response
        })
        .collect();
    print(&responses, Format::Compact)
}

/// The incident capture, the bundled Hubble samples and a lost-events record in the incident.
fn history_store(dir: &Path) -> String {
    let store = dir.join("store").display().to_string();
    let lost = dir.join("lost.json");
    std::fs::write(
        &lost,
        "{\"lost_events\":{\"source\":\"HUBBLE_RING_BUFFER\",\"num_events_lost\":\"7\",\"cpu\":1},\
         \"node_name\":\"kind-worker\",\"time\":\"2026-11-24T09:30:00.000000001Z\"}\n",
    )
    .unwrap();
    let mut files = vec![incident_capture(), lost];
    files.extend(hubble_samples());
    let files: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    import(&store, &files, &[]).ok();
    store
}

/// Every row of the CLI's request table, with the default mask (compact) and without
/// (jsonpb), with and without filters: the same lines as `flowsql replay` with those flags.
#[test]
fn hubble_cli_requests_answer_as_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = history_store(dir.path());
    let server = Server::start(&store, &[]);
    let (s, u) = ("2026-11-24T09:00:00Z", "2026-11-24T09:30:00Z");
    // (what the CLI was given, the request it sends, flowsql's flags for the same)
    let rows: Vec<(&str, GetFlowsRequest, Vec<&str>)> = vec![
        (
            "(none)",
            GetFlowsRequest {
                number: 20,
                ..Default::default()
            },
            vec!["replay"],
        ),
        (
            "--last 7",
            GetFlowsRequest {
                number: 7,
                ..Default::default()
            },
            vec!["replay", "--last", "7"],
        ),
        (
            "--first 9",
            GetFlowsRequest {
                number: 9,
                first: true,
                ..Default::default()
            },
            vec!["replay", "--first", "9"],
        ),
        (
            "--all",
            GetFlowsRequest {
                number: u64::MAX,
                ..Default::default()
            },
            vec!["replay", "--all"],
        ),
        (
            "--since S",
            GetFlowsRequest {
                since: at("2026-11-24T10:55:00Z"),
                ..Default::default()
            },
            vec!["--since", "2026-11-24T10:55:00Z", "replay"],
        ),
        (
            "--since S --until U",
            GetFlowsRequest {
                since: at(s),
                until: at(u),
                ..Default::default()
            },
            vec!["--since", s, "--until", u, "replay"],
        ),
        (
            "--until U",
            GetFlowsRequest {
                until: at("2026-11-24T08:01:00Z"),
                ..Default::default()
            },
            vec!["--until", "2026-11-24T08:01:00Z", "replay"],
        ),
        (
            "--since S --last 11",
            GetFlowsRequest {
                number: 11,
                since: at(s),
                ..Default::default()
            },
            vec!["--since", s, "replay", "--last", "11"],
        ),
        (
            "--since S --first 11",
            GetFlowsRequest {
                number: 11,
                first: true,
                since: at(s),
                ..Default::default()
            },
            vec!["--since", s, "replay", "--first", "11"],
        ),
    ];
    let dropped =
        hubble_api::observe_flags::build([("verdict", "DROPPED"), ("namespace", "prod-app")])
            .unwrap();
    let not_kube = hubble_api::observe_flags::build([
        ("not", ""),
        ("namespace", "kube-system"),
        ("to-port", "80"),
    ])
    .unwrap();
    let newer = hubble_api::observe_flags::build([
        ("to-service", "prod-app/user-service"),
        ("tcp-flags", "SYN"),
        ("cluster", "prod-cluster"),
        ("not", ""),
        ("from-workload", "Deployment/frontend"),
    ])
    .unwrap();
    let filters: Vec<FilterCase> = vec![
        ("", Vec::new(), Vec::new(), Vec::new()),
        (
            "--verdict DROPPED -n prod-app",
            dropped.allow,
            dropped.deny,
            vec!["--verdict", "DROPPED", "-n", "prod-app"],
        ),
        (
            "--not -n kube-system --to-port 80",
            not_kube.allow,
            not_kube.deny,
            vec!["--not", "-n", "kube-system", "--to-port", "80"],
        ),
        (
            "--to-service prod-app/user-service --tcp-flags SYN --cluster prod-cluster --not --from-workload Deployment/frontend",
            newer.allow,
            newer.deny,
            vec![
                "--to-service",
                "prod-app/user-service",
                "--tcp-flags",
                "SYN",
                "--cluster",
                "prod-cluster",
                "--not",
                "--from-workload",
                "Deployment/frontend",
            ],
        ),
    ];
    let mut compared = 0;
    for (given, request, flags) in &rows {
        for (filter_flags, allow, deny, replay_filters) in &filters {
            for (format, output) in [(Format::Compact, "compact"), (Format::Jsonpb, "jsonpb")] {
                let request = GetFlowsRequest {
                    whitelist: allow.clone(),
                    blacklist: deny.clone(),
                    field_mask: if format == Format::Compact {
                        mask(&CLI_DEFAULT_MASK)
                    } else {
                        None
                    },
                    ..request.clone()
                };
                let unmasked = GetFlowsRequest {
                    field_mask: None,
                    ..request.clone()
                };
                let served = print(&server.get_flows(request).unwrap(), format);
                let mut args = vec!["--store", store.as_str()];
                args.extend(flags.iter().copied());
                args.extend(replay_filters.iter().copied());
                args.extend(["-o", output]);
                let replayed = flowsql(&args, &[]).ok().stdout;
                if format == Format::Compact {
                    // Without a mask, the very lines replay prints.

                    assert_eq!(
                        print(&server.get_flows(unmasked).unwrap(), format),
                        replayed,
                        "hubble observe {given} {filter_flags} (no mask)"
                    );
                }
                // With the CLI's mask, what a Hubble server prints: the fields the mask
                // leaves out print as unset (policy-verdict:none TRAFFIC_DIRECTION_UNKNOWN),
                // so replay's flows are masked the same way before they are printed.
                let replayed = match format {
                    Format::Compact => masked_replay(&store, flags, replay_filters),
                    _ => replayed,
                };
                assert!(
                    !replayed.is_empty() || !filter_flags.is_empty(),
                    "{given}: nothing to compare"
                );
                assert_eq!(
                    served, replayed,
                    "hubble observe {given} {filter_flags} -o {output}"
                );
                compared += replayed.lines().count();
            }
        }
    }
    assert!(compared > 1000, "{compared} lines compared");
    let (status, _) = server.process.stop();
    assert!(status.success());
}

/// Hubble's semantics beyond the table: inclusive until, masks, lost events not counted and
/// not filtered, errors with the codes a client expects, the unary RPCs.
#[test]
fn hubble_semantics_masks_errors_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = history_store(dir.path());
    let mut server = Server::start(&store, &[]);
    let flows = |r: &[GetFlowsResponse]| -> Vec<hubble_api::flow::Flow> {
        r.iter()
            .filter_map(|r| match &r.response_types {
                Some(ResponseTypes::Flow(f)) => Some(f.clone()),
                _ => None,
            })
            .collect()
    };
    // A cancelled stream stops its scan: the client reads 5 flows of --all and goes away;
    // the server's log line for the stream says so, with far fewer flows than the store has
    // (what the channel and HTTP/2 window held), while a stream read to its end says done.
    let all = GetFlowsRequest {
        number: u64::MAX,
        ..Default::default()
    };
    let total = flows(&server.get_flows(all.clone()).unwrap()).len();
    let log = server.process.wait_for(" flows in ");
    assert!(
        log.contains(&format!(": {total} flows in ")) && log.contains("done"),
        "{log}"
    );
    let mut client = server.client();
    server.runtime.block_on(async {
        let mut stream = client.get_flows(all).await.unwrap().into_inner();
        for _ in 0..5 {
            stream.message().await.unwrap().unwrap();
        }
    });
    let log = server
        .process
        .wait_for("the client went away; scan stopped");
    let line = log
        .lines()
        .find(|l| l.contains("the client went away"))
        .unwrap();
    let sent: usize = line
        .split(": ")
        .nth(2)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(sent >= 5 && sent < total / 2, "{sent} of {total}: {line}");
    // The first flow of the capture is at 08:00:00.000000141: until is inclusive.
    let first = "2026-11-24T08:00:00.000000141Z";
    let exact = server
        .get_flows(GetFlowsRequest {
            since: at(first),
            until: at(first),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(flows(&exact).len(), 1, "{exact:?}");
    // A mask keeps only what it names; the response's time and node are the masked flow's.
    let masked = server
        .get_flows(GetFlowsRequest {
            number: 3,
            field_mask: mask(&["time", "verdict"]),
            ..Default::default()
        })
        .unwrap();
    for response in &masked {
        let Some(ResponseTypes::Flow(flow)) = &response.response_types else {
            panic!()
        };
        assert!(
            flow.time.is_some()
                && flow.verdict != 0
                && flow.uuid.is_empty()
                && flow.source.is_none()
        );
        assert_eq!(
            (response.time, response.node_name.as_str()),
            (flow.time, "")
        );
    }
    // Lost events inside the window are interleaved, whatever the filters, and not counted.
    let window = GetFlowsRequest {
        since: at("2026-11-24T09:29:00Z"),
        until: at("2026-11-24T09:31:00Z"),
        whitelist: hubble_api::observe_flags::build([("verdict", "DROPPED")])
            .unwrap()
            .allow,
        ..Default::default()
    };
    let around = server.get_flows(window.clone()).unwrap();
    let lost: Vec<&GetFlowsResponse> = around
        .iter()
        .filter(|r| matches!(r.response_types, Some(ResponseTypes::LostEvents(_))))
        .collect();
    assert_eq!(lost.len(), 1, "{around:?}");
    assert!(flows(&around).len() > 2, "{around:?}");
    assert_eq!(lost[0].node_name, "kind-worker");
    assert!(lost[0].time.is_some());
    let times: Vec<_> = around
        .iter()
        .map(|r| r.time.map(|t| (t.seconds, t.nanos)))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time order: {times:?}"
    );
    let counted = server
        .get_flows(GetFlowsRequest {
            number: 1,
            ..window
        })
        .unwrap();
    assert_eq!(flows(&counted).len(), 1);
    // Errors.
    let code = |request: GetFlowsRequest| server.get_flows(request).unwrap_err();
    let refused = code(GetFlowsRequest {
        first: true,
        follow: true,
        number: 1,
        ..Default::default()
    });
    assert_eq!(
        (refused.code(), refused.message()),
        (
            Code::InvalidArgument,
            "first cannot be specified with follow"
        )
    );
    for paths in [vec![""], vec!["nope"]] {
        let refused = code(GetFlowsRequest {
            field_mask: mask(&paths),
            ..Default::default()
        });
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with("invalid fieldmask"),
            "{refused:?}"
        );
    }
    let refused = code(GetFlowsRequest {
        since: at(first),
        until: at("2026-11-24T07:00:00Z"),
        ..Default::default()
    });
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = code(GetFlowsRequest {
        whitelist: vec![FlowFilter {
            source_ip: vec!["10.0.0.0/99".into()],
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("source_ip"), "{refused:?}");
    // A window before the oldest data: no flows, no error.
    let before = server
        .get_flows(GetFlowsRequest {
            until: at("2001-01-01T00:00:00Z"),
            ..Default::default()
        })
        .unwrap();
    assert!(before.is_empty());
    // The unary RPCs, against counts from the JSON.
    // Flows per node, from the JSON itself.
    let mut files = vec![incident_capture()];
    files.extend(hubble_samples());
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    // (cluster, namespace) as Relay lists them: the cluster of the node that saw the flow.
    let mut expected_namespaces: BTreeSet<(String, String)> = BTreeSet::new();
    for file in &files {
        for line in json_lines(file) {
            let flow = line.get("flow").cloned().unwrap_or(line.clone());
            if flow.get("time").is_some() {
                let node = flow["node_name"].as_str().unwrap_or_default().to_owned();
                let cluster = node.split_once('/').map_or("", |(c, _)| c).to_owned();
                for side in ["source", "destination"] {
                    if let Some(ns) = flow[side]["namespace"].as_str().filter(|n| !n.is_empty()) {
                        expected_namespaces.insert((cluster.clone(), ns.to_owned()));
                    }
                }
                *expected.entry(node).or_default() += 1;
            }
        }
    }
    assert!(
        expected.keys().any(|n| n.starts_with("prod-cluster/"))
            && expected.keys().any(|n| n.starts_with("kind-kind/"))
            && expected.keys().any(|n| !n.contains('/')),
        "a store of several clusters: {expected:?}"
    );
    let mut client = server.client();
    let (status, nodes, namespaces, agent) = server.runtime.block_on(async {
        (
            client
                .server_status(ServerStatusRequest {})
                .await
                .unwrap()
                .into_inner(),
            client
                .get_nodes(GetNodesRequest {})
                .await
                .unwrap()
                .into_inner(),
            client
                .get_namespaces(GetNamespacesRequest {})
                .await
                .unwrap()
                .into_inner(),
            client
                .get_agent_events(hubble_api::observer::GetAgentEventsRequest::default())
                .await
                .map(|_| ())
                .unwrap_err(),
        )
    });
    assert_eq!(agent.code(), Code::Unimplemented);
    let total: u64 = expected.values().sum();
    assert_eq!(status.num_flows, total);
    assert_eq!(status.max_flows, 0);
    assert_eq!(
        status.num_connected_nodes.map(|n| n.value),
        Some(nodes.nodes.len() as u32)
    );
    assert!(status.version.contains("history"));
    let by_node: BTreeMap<String, u64> = nodes
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.num_flows))
        .collect();
    assert_eq!(by_node, expected);
    let listed: BTreeSet<String> = namespaces
        .namespaces
        .iter()
        .map(|n| n.namespace.clone())
        .collect();
    let known = flowsql(
        &["--store", &store, "--format", "csv",
          "select distinct ns from (select source_namespace as ns from flows union all select destination_namespace from flows) where ns <> '' order by ns"],
        &[],
    )
    .ok()
    .stdout;
    let known: BTreeSet<String> = known.lines().skip(1).map(str::to_owned).collect();
    assert_eq!(listed, known);
    let with_clusters: BTreeSet<(String, String)> = namespaces
        .namespaces
        .iter()
        .map(|n| (n.cluster.clone(), n.namespace.clone()))
        .collect();
    assert_eq!(with_clusters, expected_namespaces);
    assert!(listed.contains("prod-app"), "{listed:?}");
    let (status, _) = server.process.stop();
    assert!(status.success());
}

/// The Hubble UI's request (follow, number 10000, its standard filters): dropped flows without
/// is_reply pass `reply: [false]`, the stream stays open after the history and delivers a flow
/// imported afterwards; a CLI `-f` sees it too.
#[test]
fn follow_keeps_the_stream_open_and_delivers_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        [
            flow_line(
                "11111111-0000-0000-0000-000000000001",
                now - 60_000_000_000,
                "n1",
                "FORWARDED",
            ),
            // A drop without is_reply (older agents): the UI's reply: [false] takes it.
            flow_line(
                "11111111-0000-0000-0000-000000000002",
                now - 30_000_000_000,
                "n1",
                "DROPPED",
            )
            .replace(",\"is_reply\":false", ""),
        ]
        .join("\n"),
    )
    .unwrap();
    import(&store, &[&old], &[]).ok();
    let server = Server::start(&store, &[]);
    let ui = GetFlowsRequest {
        number: 10000,
        follow: true,
        whitelist: vec![FlowFilter {
            reply: vec![false],
            ..Default::default()
        }],
        blacklist: vec![
            FlowFilter {
                source_label: vec!["reserved:unknown".into()],
                ..Default::default()
            },
            FlowFilter {
                source_fqdn: vec!["*.cluster.local*".into()],
                ..Default::default()
            },
            FlowFilter {
                destination_fqdn: vec!["*.cluster.local*".into()],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let follower = std::thread::scope(|scope| {
        let ui = scope.spawn(|| server.get_flows_open(ui, 3, Duration::from_secs(3)));
        let cli = scope.spawn(|| {
            server.get_flows_open(
                GetFlowsRequest {
                    follow: true,
                    ..Default::default()
                },
                1,
                Duration::from_secs(3),
            )
        });
        std::thread::sleep(Duration::from_secs(1));
        let new = dir.path().join("new.json");
        std::fs::write(
            &new,
            flow_line("11111111-0000-0000-0000-000000000003", now, "n2", "DROPPED"),
        )
        .unwrap();
        import(&store, &[&new], &[]).ok();
        (ui.join().unwrap(), cli.join().unwrap())
    });
    let uuids = |responses: &[GetFlowsResponse]| -> Vec<String> {
        responses
            .iter()
            .filter_map(|r| match &r.response_types {
                Some(ResponseTypes::Flow(f)) => Some(f.uuid[33..].to_owned()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(uuids(&follower.0), vec!["001", "002", "003"]);
    assert_eq!(uuids(&follower.1), vec!["003"]);
    let (status, _) = server.process.stop();
    assert!(status.success());
}

/// TLS and mTLS, the gRPC health check `hubble status` makes, and who may see what: a client
/// mapped to kube-system sees only flows with an end there, the other end masked; a client
/// mapped to everything sees all; a certificate from another authority is refused.
#[test]
fn mtls_clients_see_what_the_access_list_gives_them() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = tempfile::tempdir().unwrap();
    let store = history_store(dir.path());
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    certificates(&certs, &["team-a", "sre", "stranger"]);
    let access = dir.path().join("access.yaml");
    std::fs::write(
        &access,
        "clients:\n- identity: team-a\n  namespaces: [kube-system]\n- identity: sre\n  namespaces: ['*']\n",
    )
    .unwrap();
    let file = |name: &str| certs.join(name).display().to_string();
    let server = Server::start(
        &store,
        &[
            "--tls-cert",
            &file("server.crt"),
            "--tls-key",
            &file("server.key"),
            "--tls-client-ca",
            &file("ca.crt"),
            "--access",
            access.to_str().unwrap(),
        ],
    );
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let channel = |client: &str| {
        let tls = ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(
                std::fs::read(file("ca.crt")).unwrap(),
            ))
            .identity(Identity::from_pem(
                std::fs::read(file(&format!("{client}.crt"))).unwrap(),
                std::fs::read(file(&format!("{client}.key"))).unwrap(),
            ));
        let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        server.runtime.block_on(endpoint.connect())
    };
    let masked_flows_of =
        |client: &str, paths: &[&str]| -> Result<Vec<hubble_api::flow::Flow>, tonic::Status> {
            let mut observer = ObserverClient::new(
                channel(client).map_err(|e| tonic::Status::unavailable(e.to_string()))?,
            )
            .max_decoding_message_size(64 << 20);
            let field_mask = (!paths.is_empty()).then(|| mask(paths)).flatten();
            server.runtime.block_on(async move {
                let mut stream = observer
                    .get_flows(GetFlowsRequest {
                        number: u64::MAX,
                        field_mask,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let mut flows = Vec::new();
                while let Some(response) = stream.message().await? {
                    if let Some(ResponseTypes::Flow(flow)) = response.response_types {
                        flows.push(flow);
                    }
                }
                Ok(flows)
            })
        };
    let flows_of = |client: &str| masked_flows_of(client, &[]);
    // `hubble status` checks health first, under the Observer's Hubble name.
    let sre = channel("sre").unwrap();
    let health = server.runtime.block_on(async {
        let mut health = tonic_health::pb::health_client::HealthClient::new(sre);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "hubble.server.Observer".into(),
            })
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let all = flows_of("sre").unwrap();
    let team = flows_of("team-a").unwrap();
    let ns = |e: &Option<hubble_api::flow::Endpoint>| {
        e.as_ref().map_or(String::new(), |e| e.namespace.clone())
    };
    let expected = all
        .iter()
        .filter(|f| ns(&f.source) == "kube-system" || ns(&f.destination) == "kube-system")
        .count();
    assert!(
        expected > 0 && team.len() == expected && all.len() > team.len(),
        "{} {} {expected}",
        all.len(),
        team.len()
    );
    for flow in &team {
        for end in [&flow.source, &flow.destination].into_iter().flatten() {
            if end.namespace != "kube-system" {
                assert!(end.pod_name.is_empty() && end.labels.is_empty(), "{end:?}");
            }
        }
    }
    // A field mask without the namespaces (the server reads only what the mask keeps): the
    // other end is still judged by its namespace.
    let pods = ["source.pod_name", "destination.pod_name"];
    let pod_mask = hubble_api::field_mask::FlowMask::new(&pods)
        .unwrap()
        .unwrap();
    let masked_team: Vec<_> = team.iter().map(|flow| pod_mask.apply(flow)).collect();
    let served = masked_flows_of("team-a", &pods).unwrap();
    let differing = served.iter().zip(&masked_team).filter(|(s, t)| s != t);
    assert!(
        served.len() == masked_team.len() && differing.count() == 0,
        "masked flows differ from the unmasked ones masked here"
    );
    assert!(
        masked_team.iter().any(|f| f
            .source
            .as_ref()
            .is_some_and(|end| !end.pod_name.is_empty())),
        "some pod names are seen"
    );
    let stranger = flows_of("stranger").unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied, "{stranger:?}");
    assert!(stranger.message().contains("stranger"), "{stranger:?}");
    // Another authority's certificate does not get through the handshake.
    let intruder = flows_of("intruder");
    assert!(
        intruder.is_err(),
        "a certificate of another CA was accepted"
    );
    let (status, _) = server.process.stop();
    assert!(status.success());
}

/// The history Deployment (deploy/base/history.yaml, as rendered) runs as written (its args, its access ConfigMap, the TLS
/// Secret's file names), against a local store: a typo in the manifest fails here.
#[test]
fn the_history_deployment_manifest_serves() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let dir = tempfile::tempdir().unwrap();
    let store = history_store(dir.path());
    let documents = crate::deploy::rendered("overlays/hubble");
    let kind = |k: &str, name: &str| crate::deploy::find(&documents, k, name).clone();
    let (config, deployment, service) = (
        kind("ConfigMap", "flowsql-history-access"),
        kind("Deployment", "flowsql-history"),
        kind("Service", "flowsql-history"),
    );
    // The Service selects the Deployment's pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[key.as_str().unwrap()], value, "{key:?}");
    }
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][0], "flowsql");
    // Mounted files, where the manifest mounts them.
    let mounts = dir.path().join("mounts");
    let tls = mounts.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    certificates(&tls, &["hubble-ui.flow-recording.svc"]);
    std::fs::copy(tls.join("server.crt"), tls.join("tls.crt")).unwrap();
    std::fs::copy(tls.join("server.key"), tls.join("tls.key")).unwrap();
    let access = mounts.join("access");
    std::fs::create_dir_all(&access).unwrap();
    std::fs::write(
        access.join("access.yaml"),
        config["data"]["access.yaml"].as_str().unwrap(),
    )
    .unwrap();
    let args: Vec<String> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with("--store=") {
                format!("--store={store}")
            } else if a.starts_with("--listen=") {
                "--listen=127.0.0.1:0".to_owned()
            } else {
                a.replace("/etc/flowsql/", &format!("{}/", mounts.display()))
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::spawn(command(&flowsql_bin(), &args, &[]));
    let text = process.wait_for("listening on ");
    let address = text
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let read = |name: &str| std::fs::read(tls.join(name)).unwrap();
    let config = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .identity(Identity::from_pem(
            read("hubble-ui.flow-recording.svc.crt"),
            read("hubble-ui.flow-recording.svc.key"),
        ));
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(config)
        .unwrap();
    let responses = runtime.block_on(async {
        let mut client = ObserverClient::new(endpoint.connect().await.unwrap());
        let mut stream = client
            .get_flows(GetFlowsRequest {
                number: 5,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut all = Vec::new();
        while let Some(response) = stream.message().await.unwrap() {
            all.push(response);
        }
        all
    });
    assert_eq!(responses.len(), 5);
    let (status, _) = process.stop();
    assert!(status.success());
}

/// `hubble observe --all -o jsonpb` over a million flows streams in bounded memory: the
/// server's peak RSS stays under 300 MiB (the bound) whatever `number` is, because
/// it streams the scan rather than collecting it. The store is the bench suite's synthetic
/// cluster (flowgen), 1M flows in 2 hours. The client takes each response as bytes (a relay),
/// so the server streams as fast as it can and the test measures the server alone, except
/// that it stops reading for 3 s after the first flow: the server must wait for it.
#[test]
fn all_over_a_million_flows_streams_in_bounded_memory() {
    const FLOWS: usize = 1_000_000;
    const BOUND_MIB: u64 = 300;
    let (_dir, store) = temp_store();
    let mut flowgen = std::process::Command::new(flowgen_bin())
        .args(["--flows", &FLOWS.to_string(), "--hours", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let imported = std::process::Command::new(flowrec_bin())
        .args(["import", "--store", &store, "-"])
        .stdin(flowgen.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(flowgen.wait().unwrap().success());
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let server = Server::start(&store, &[]);
    let before = server.process.peak_rss_mib();
    let channel = server
        .runtime
        .block_on(
            Channel::from_shared(format!("http://{}", server.address))
                .unwrap()
                .connect(),
        )
        .unwrap();
    let all = GetFlowsRequest {
        // As the CLI asks --all: the last 2^64-1 flows, so the server cannot buffer "the last N".
        number: u64::MAX,
        ..Default::default()
    };
    let (flows, bytes) = server.runtime.block_on(async move {
        let mut stream = hubble_api::encoded::get_flows(channel, all, 64 << 20)
            .await
            .unwrap();
        let (mut flows, mut bytes) = (0usize, 0usize);
        while let Some(response) = stream.message().await.unwrap() {
            // Field 1 (flow), length-delimited: the response holds a flow.
            flows += usize::from(response.first() == Some(&0x0a));
            bytes += response.len();
            if flows == 1 {
                // A client that stops reading for a while: a server that read on regardless
                // would hold hundreds of MiB of encoded flows by the time it comes back.
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
        (flows, bytes)
    });
    let peak = server.process.peak_rss_mib();
    eprintln!(
        "serve --all: {flows} flows, {} MiB streamed; peak RSS {before} MiB after start-up, \
         {peak} MiB after the stream",
        bytes >> 20
    );
    assert_eq!(flows, FLOWS);
    // Whole flows of the synthetic cluster are ~1 KB each: a stream that held them would
    // need several times the bound.
    assert!(bytes > FLOWS * 500, "{bytes} bytes for {flows} flows");
    assert!(
        peak < BOUND_MIB,
        "peak RSS {peak} MiB over {BOUND_MIB} MiB for --all over {FLOWS} flows"
    );
    let (status, _) = server.process.stop();
    assert!(status.success());
}
