//! `flowsql policy whatif` on the bundled incident (sample-captures/typo-policy-incident and
//! the policies of its story in sample-captures/policies): the typo'd revision names exactly
//! api-gateway -> user-service:80 as newly denied, the fixed one nothing, the L7 revision
//! POST /post; counts are re-counted from the JSON the store was made from.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::*;

fn policy(name: &str) -> String {
    repo_root()
        .join("sample-captures/policies")
        .join(name)
        .display()
        .to_string()
}

fn whatif(store: &str, window: (&str, &str), args: &[&str]) -> Run {
    let mut all = vec![
        "--store", store, "--since", window.0, "--until", window.1, "policy", "whatif",
    ];
    all.extend(args);
    flowsql(&all, &[])
}

/// CSV rows as (change, source, destination, port, l7, flows).
fn rows(csv: &str) -> Vec<(String, String, String, String, String, u64)> {
    csv.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (
                f[0].into(),
                f[1].into(),
                f[2].into(),
                f[3].into(),
                f[4].into(),
                f[5].parse().unwrap(),
            )
        })
        .collect()
}

fn app(flow: &Value, side: &str) -> String {
    flow[side]["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|l| l.strip_prefix("k8s:app="))
        .unwrap_or_default()
        .to_owned()
}

/// The connections api-gateway -> user-service:80 in [from, to): policy verdict events of
/// requests, as the command counts them.
fn gateway_to_users(from: &str, to: &str) -> u64 {
    json_lines(&incident_capture())
        .iter()
        .map(|l| &l["flow"])
        .filter(|f| {
            let t = f["time"].as_str().unwrap();
            (from..to).contains(&t)
                && f["event_type"]["type"] == 5
                && f["is_reply"] != true
                && app(f, "source") == "api-gateway"
                && app(f, "destination") == "user-service"
                && f["l4"]["TCP"]["destination_port"] == 80
        })
        .count() as u64
}

#[test]
fn whatif_tells_the_incident_before_it_happened() {
    let (_dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let hour_before = ("2026-11-24T08:05:00Z", "2026-11-24T09:05:00Z");
    // The typo'd revision: exactly one connection newly denied, and the rule that never
    // matched is named.
    let typo = whatif(
        &store,
        hour_before,
        &[
            &policy("api-access-policy-r12-typo.yaml"),
            "--format",
            "csv",
            "--fail-on",
            "newly-denied",
        ],
    );
    assert_eq!(typo.status, 1, "{}", typo.stderr);
    let expected = gateway_to_users("2026-11-24T08:05", "2026-11-24T09:05");
    assert!(expected > 100, "{expected}");
    assert_eq!(
        rows(&typo.stdout),
        vec![(
            "NEWLY_DENIED".to_owned(),
            "prod-app/api-gateway".to_owned(),
            "prod-app/user-service".to_owned(),
            "80/TCP".to_owned(),
            String::new(),
            expected
        )]
    );
    assert!(
        typo.stdout.contains("default deny (egress)"),
        "{}",
        typo.stdout
    );
    assert!(
        typo.stderr.contains("rules that decided no recorded connection: prod-app/api-access-policy (CiliumNetworkPolicy) egress[0]"),
        "{}",
        typo.stderr
    );
    // The fixed revision changes nothing.
    let fixed = whatif(
        &store,
        hour_before,
        &[
            &policy("api-access-policy-r13-fixed.yaml"),
            "--format",
            "csv",
            "--fail-on",
            "newly-denied",
        ],
    );
    assert_eq!(fixed.status, 0, "{}", fixed.stderr);
    assert!(rows(&fixed.stdout).is_empty(), "{}", fixed.stdout);
    assert!(
        fixed.stderr.contains("UNCHANGED_ALLOWED"),
        "{}",
        fixed.stderr
    );
    // Applied over the denied window instead, it allows what the typo denied.
    let denied_window = ("2026-11-24T09:05:00Z", "2026-11-24T09:47:00Z");
    let repaired = whatif(
        &store,
        denied_window,
        &[
            &policy("api-access-policy-r13-fixed.yaml"),
            "--mode",
            "replace",
            "--format",
            "csv",
        ],
    )
    .ok();
    let repaired = rows(&repaired.stdout);
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    assert_eq!(repaired[0].0, "NEWLY_ALLOWED");
    assert_eq!(
        repaired[0].5,
        gateway_to_users("2026-11-24T09:05", "2026-11-24T09:47")
    );
    // The L7 revision of 10:10 against the fixed one: POST /post changes at L7, nothing else.
    let after_l7 = ("2026-11-24T10:10:00Z", "2026-11-24T11:00:00Z");
    let l7 = whatif(
        &store,
        after_l7,
        &[
            &policy("api-access-policy-r14-l7.yaml"),
            "--baseline",
            &policy("api-access-policy-r13-fixed.yaml"),
            "--mode",
            "replace",
            "--format",
            "csv",
        ],
    )
    .ok();
    let changed = rows(&l7.stdout);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        (changed[0].0.as_str(), changed[0].4.as_str()),
        ("L7_CHANGED", "POST /post")
    );
    let posts = json_lines(&incident_capture())
        .iter()
        .map(|l| &l["flow"])
        .filter(|f| f["l7"]["type"] == "REQUEST" && f["l7"]["http"]["method"] == "POST")
        .count() as u64;
    assert_eq!(changed[0].5, posts);
    // Before any L7 was recorded, an L7 rule's effect is unknown, not guessed.
    let blind = whatif(
        &store,
        hour_before,
        &[&policy("api-access-policy-r14-l7.yaml"), "--format", "csv"],
    )
    .ok();
    assert_eq!(
        rows(&blind.stdout)[0].0,
        "UNCERTAIN(L7 not visible)",
        "{}",
        blind.stdout
    );
    // A pull-request comment.
    let md = whatif(
        &store,
        hour_before,
        &[&policy("api-access-policy-r12-typo.yaml"), "--markdown"],
    )
    .ok();
    assert!(md.stdout.starts_with("### Policy what-if"), "{}", md.stdout);
    assert!(
        md.stdout
            .contains("| NEWLY_DENIED | prod-app/api-gateway | prod-app/user-service | 80/TCP |"),
        "{}",
        md.stdout
    );
}

/// Rows without a uuid (the recorder's eBPF flows, exports that drop it) take another path
/// through the grouping than Hubble events: a store where every other event lost its uuid
/// gives the same connections, counts and attributions as the original.
#[test]
fn whatif_counts_events_with_and_without_a_uuid_alike() {
    let (_dir, original) = temp_store();
    import(&original, &[&incident_capture()], &[]).ok();
    let folder = tempfile::tempdir().unwrap();
    let capture = folder.path().join("half-without-uuid.json");
    let mut stripped = String::new();
    let mut without = 0;
    for (i, mut event) in json_lines(&incident_capture()).into_iter().enumerate() {
        if i % 2 == 1 {
            if let Some(flow) = event.get_mut("flow").and_then(Value::as_object_mut) {
                without += usize::from(flow.remove("uuid").is_some());
            }
        }
        stripped.push_str(&event.to_string());
        stripped.push('\n');
    }
    assert!(without > 1000, "{without}");
    std::fs::write(&capture, stripped).unwrap();
    let (_dir2, mixed) = temp_store();
    import(&mixed, &[capture.as_path()], &[]).ok();
    let without_uuid = query(
        &mixed,
        "select count(*) as n from flows where uuid is null",
        &[],
    );
    assert_eq!(without_uuid[0]["n"], without as u64);
    let connections = |store: &str| {
        let run = whatif(
            store,
            ("2026-11-24T08:00:00Z", "2026-11-24T11:00:00Z"),
            &[
                &policy("api-access-policy-r12-typo.yaml"),
                "--unchanged",
                "--format",
                "ndjson",
            ],
        )
        .ok();
        let mut rows: Vec<String> = run
            .rows()
            .into_iter()
            .map(|mut row| {
                row.as_object_mut().unwrap().remove("example_uuid");
                row.to_string()
            })
            .collect();
        rows.sort();
        rows
    };
    let expected = connections(&original);
    assert!(expected.len() > 5, "{expected:?}");
    assert_eq!(connections(&mixed), expected);
}

#[test]
fn whatif_bad_policies_are_named_and_exit_2() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {endpointSelector: {}}\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: b}\nspec:\n  endpointSelector: {}\n  egress:\n  - toPort: [{ports: [{port: '80'}]}]\n",
    )
    .unwrap();
    let window = ("2026-11-24T08:00:00Z", "2026-11-24T09:00:00Z");
    let run = whatif(&store, window, &[bad.to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .contains("bad.yaml, document 2: spec.egress[0].toPort: unknown field `toPort`"),
        "{}",
        run.stderr
    );
    let missing: PathBuf = dir.path().join("nope.yaml");
    let run = whatif(&store, window, &[missing.to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("nope.yaml"), "{}", run.stderr);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = whatif(&store, window, &[empty.to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("no policy in it"), "{}", run.stderr);
}

/// `policy suggest`, then `policy whatif` of the suggestion on the same window: nothing the
/// recording allowed is newly denied, on every bundled capture (the incident's and Hubble's
/// public samples: pods, world peers, reserved identities, DNS and HTTP).
#[test]
fn suggestions_deny_nothing_that_was_recorded_allowed() {
    let window = ("2000-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
    let mut captures = vec![incident_capture()];
    captures.extend(hubble_samples());
    for capture in captures {
        let (dir, store) = temp_store();
        import(&store, &[&capture], &[]).ok();
        for (kind, l7) in [("cnp", false), ("cnp", true), ("knp", false)] {
            let file = dir.path().join(format!("suggested-{kind}-{l7}.yaml"));
            let mut args = vec![
                "--store",
                &store,
                "--since",
                window.0,
                "--until",
                window.1,
                "policy",
                "suggest",
                "--kind",
                kind,
                "--output",
                file.to_str().unwrap(),
            ];
            if l7 {
                args.push("--l7");
            }
            let suggested = flowsql(&args, &[]).ok();
            if suggested.stderr.contains("nothing to suggest") {
                // The docs' export: two drops of unlabelled endpoints, nothing was allowed.
                assert!(capture.ends_with("cilium-docs-export-dropped-example.jsonl"));
                continue;
            }
            assert!(
                suggested.stderr.contains(", 0 newly denied"),
                "{}: {}",
                capture.display(),
                suggested.stderr
            );
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains("kind: "), "{text}");
            let semantics = if kind == "knp" {
                "kubernetes"
            } else {
                "cilium"
            };
            let check = whatif(
                &store,
                window,
                &[
                    file.to_str().unwrap(),
                    "--semantics",
                    semantics,
                    "--fail-on",
                    "newly-denied",
                    "--format",
                    "csv",
                ],
            );
            assert_eq!(
                check.status,
                0,
                "{} {kind} l7={l7}:\n{}\n{}\n{text}",
                capture.display(),
                check.stdout,
                check.stderr
            );
            assert!(!rows(&check.stdout).iter().any(|r| r.0 == "NEWLY_DENIED"));
        }
    }
}

/// A suggestion learned from a window that ends in the past is checked on what came after
/// it: connections first recorded later are reported as what it would deny, and the exit
/// status stays 0 (reported, not enforced).
#[test]
fn suggest_reports_what_the_held_out_window_would_deny() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let learn = ("2026-11-24T08:00:00Z", "2026-11-24T08:01:00Z");
    // The independent reading: frontend's first DNS query comes after the learning window.
    let first_dns = query(
        &store,
        "select min(time) as t from flows where source_pod_name like 'frontend-%' \
         and destination_namespace = 'kube-system' and destination_port = 53",
        &[],
    );
    let first_dns = first_dns[0]["t"].as_str().unwrap().to_owned();
    assert!(first_dns.as_str() > learn.1, "{first_dns}");
    let file = dir.path().join("suggested.yaml");
    let suggest = |extra: &[&str]| {
        let mut args = vec![
            "--store",
            &store,
            "--since",
            learn.0,
            "--until",
            learn.1,
            "policy",
            "suggest",
            "--output",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        flowsql(&args, &[])
    };
    let run = suggest(&[]).ok();
    assert!(run.stderr.contains(", 0 newly denied"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("held-out window {}..", learn.1)),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "held-out: would deny prod-app/frontend -> kube-system/coredns 53/UDP: denied by prod-app/frontend-least-privilege"
        ),
        "{}",
        run.stderr
    );
    // A held-out window that ends before that first query sees nothing to deny.
    let run = suggest(&["--held-out", "5s"]).ok();
    assert!(
        run.stderr
            .contains("2026-11-24T08:01:05Z (reported, not enforced)")
            && run.stderr.contains(", 0 would be denied"),
        "{}",
        run.stderr
    );
    // A window that ends now has no later window to check.
    let run = flowsql(
        &[
            "--store",
            &store,
            "--since",
            learn.0,
            "policy",
            "suggest",
            "--output",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .ok();
    assert!(!run.stderr.contains("held-out"), "{}", run.stderr);
}
