//! `flowsql report`: checks, exit status, the HTML in a real browser, S3 output.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::*;

const SPEC: &str = r#"
title: prod-app nightly compliance
checks:
  - name: prod-app never reaches kube-system
    no_flows_between: {from: prod-app, to: kube-system, one_way: true}
  - name: dev never reaches prod-app
    no_flows_between: {from: dev, to: prod-app}
  - name: prod-app egress to the world only to the PSP
    egress_to_world: {namespace: prod-app, allow: ["*.stripe.com"]}
  - name: policy drops stay rare
    policy_drops: {max_per_namespace: 100}
  - name: recording complete
    recording_complete: {}
  - name: no HTTP server errors
    sql: select time, source_pod_name, http_url, http_code from flows where http_code >= 500
    expect: empty
  - name: at most 10 POSTs
    sql: select time, source_pod_name, http_method, http_url from flows where http_method = 'POST'
    max: 10
"#;

fn spec_file(dir: &Path, text: &str) -> String {
    let path = dir.join("spec.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Headless Chromium as the CI machine has it (Debian's `chromium`).
fn chromium(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .output()
        .expect("chromium not found: apt-get install chromium (.ci/setup.sh does)")
}

/// Pixels of an RGB colour in a PNG screenshot.
fn pixels_of(png_path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let step = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(step)
        .filter(|p| p[..3] == rgb)
        .count()
}

#[test]
fn report_checks_pass_and_fail_and_the_html_renders_its_charts() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let spec = spec_file(dir.path(), SPEC);
    let html = dir.path().join("report.html");
    let json = dir.path().join("report.json");
    let markdown = dir.path().join("report.md");
    let run = flowsql(
        &[
            "--store",
            &store,
            "report",
            &spec,
            "--html",
            html.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        run.status, 1,
        "a check failed: {}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("FAILED: 4 of 7 checks passed"),
        "{}",
        run.stdout
    );

    // Each result against the JSON the capture was made from.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let result = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
    let flows: Vec<Value> = json_lines(&incident_capture())
        .into_iter()
        .filter_map(|v| v.get("flow").cloned())
        .collect();
    let s = |f: &Value, a: &str, b: &str| f[a][b].as_str().unwrap_or("").to_owned();
    let to_kube_system = flows
        .iter()
        .filter(|f| {
            s(f, "source", "namespace") == "prod-app"
                && s(f, "destination", "namespace") == "kube-system"
        })
        .filter(|f| f["verdict"] != "DROPPED" && f["is_reply"] != true)
        .count() as u64;
    assert!(to_kube_system > 0);
    let check = result("prod-app never reaches kube-system");
    assert_eq!(
        (check["passed"].as_bool(), check["found"].as_u64()),
        (Some(false), Some(to_kube_system))
    );
    assert_eq!(
        check["rows"].as_array().unwrap().len(),
        100,
        "rows behind the failure, capped"
    );
    let posts = flows
        .iter()
        .filter(|f| f["l7"]["http"]["method"] == "POST")
        .count() as u64;
    let check = result("at most 10 POSTs");
    assert_eq!(
        (check["passed"].as_bool(), check["found"].as_u64()),
        (Some(false), Some(posts))
    );
    // Drops by policy in prod-app (drop events, not the policy-verdict events beside them).
    let drops = flows
        .iter()
        .filter(|f| f["drop_reason_desc"] == "POLICY_DENIED" && f["event_type"]["type"] == 1)
        .count();
    let check = result("policy drops stay rare");
    assert_eq!(check["passed"], false);
    assert_eq!(check["rows"][0][0], "prod-app");
    assert_eq!(check["rows"][0][1], drops.to_string());
    for passing in [
        "dev never reaches prod-app",
        "prod-app egress to the world only to the PSP",
        "recording complete",
        "no HTTP server errors",
    ] {
        assert_eq!(result(passing)["passed"], true, "{passing}");
    }
    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.contains("| at most 10 POSTs | sql | **FAIL** |"), "{md}");

    // The HTML: self-contained, opens in headless Chromium without errors, and shows the charts.
    let page = std::fs::read_to_string(&html).unwrap();
    for forbidden in ["<script", "src=", "href=\"http", "<link", "@import", "url("] {
        assert!(
            !page.contains(forbidden),
            "the report must be self-contained: {forbidden}"
        );
    }
    let url = format!("file://{}", html.display());
    let dom = chromium(dir.path(), &["--dump-dom", &url]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "drops-over-time",
        "top-denied",
        "verdicts",
        "summary",
        "checks",
    ] {
        assert!(
            dom_text.contains(&format!("id=\"{id}\"")),
            "{id} missing from the DOM"
        );
    }
    let console = String::from_utf8_lossy(&dom.stderr);
    assert!(
        !console.contains("CONSOLE") && !console.contains("Uncaught"),
        "{console}"
    );
    let shot = dir.path().join("report.png");
    let out = chromium(
        dir.path(),
        &[
            "--window-size=1200,1400",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The charts are drawn: drop bars in red, FORWARDED in green, flow bars in blue-grey.
    let red = pixels_of(&shot, [0xd6, 0x27, 0x28]);
    let green = pixels_of(&shot, [0x2c, 0xa0, 0x2c]);
    let grey = pixels_of(&shot, [0xc7, 0xd3, 0xe0]);
    assert!(
        red > 5_000 && green > 5_000 && grey > 20_000,
        "red {red}, green {green}, grey {grey}"
    );
    std::fs::copy(
        &shot,
        std::env::temp_dir().join("flowsql-report-screenshot.png"),
    )
    .unwrap();
}

#[test]
fn a_broken_spec_names_the_check_and_exits_2() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    let cases = [
        (
            "checks:\n- name: typo\n  no_flow_between: {from: a, to: b}\n",
            "check \"typo\": unknown check \"no_flow_between\"",
        ),
        (
            "checks:\n- name: bad sql\n  sql: select nope from flows\n",
            "check \"bad sql\"",
        ),
        (
            "checks:\n- name: writes\n  sql: create table x as select 1\n",
            "read-only",
        ),
        (
            "checks:\n- name: limits\n  policy_drops: {max: 3}\n",
            "check \"limits\": policy_drops: unknown field `max`",
        ),
        ("checks: [\n", "spec.yaml"),
    ];
    for (text, expected) in cases {
        let spec = spec_file(dir.path(), text);
        let html = dir.path().join("broken.html");
        let run = flowsql(
            &[
                "--store",
                &store,
                "report",
                &spec,
                "--html",
                html.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(run.status, 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{text}: {}", run.stderr);
        assert!(!html.exists(), "no report from a broken spec");
    }
    let run = flowsql(&["--store", &store, "report", "/nonexistent.yaml"], &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("/nonexistent.yaml"), "{}", run.stderr);
}

#[test]
fn report_reads_an_s3_store_and_writes_back_to_s3() {
    let moto = Moto::start();
    moto.create_bucket("flows");
    let env = moto.env();
    let env = env_refs(&env);
    import("s3://flows/prod", &[&incident_capture()], &env).ok();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_file(
        dir.path(),
        "title: nightly\nchecks:\n- name: recording complete\n  recording_complete: {}\n",
    );
    let run = flowsql(
        &[
            "--store",
            "s3://flows/prod",
            "--since",
            "2026-11-24T08:00Z",
            "--until",
            "2026-11-24T11:00Z",
            "report",
            &spec,
            "--html",
            "s3://flows/reports/{date}.html",
            "--json",
            "s3://flows/reports/2026-11-24.json",
        ],
        &env,
    )
    .ok();
    assert!(run.stdout.contains("PASSED: 1 of 1"), "{}", run.stdout);
    // Read back with boto3 (moto needs signed requests), as an auditor's tooling would.
    let get = |key: &str| {
        python(&format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             print(s3.get_object(Bucket='flows', Key='{key}')['Body'].read().decode())",
            moto.endpoint()
        ))
    };
    // `{date}`: the run's UTC date (what a CronJob without a shell names its reports by).
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let body = get(&format!("reports/{today}.html"));
    assert!(
        body.contains("id=\"drops-over-time\"") && body.contains("14870 flows"),
        "{body}"
    );
    let body = get("reports/2026-11-24.json");
    assert!(body.contains("\"passed\": true"), "{body}");
}

#[test]
fn the_example_specs_and_cronjob_manifest_run() {
    let (dir, store) = temp_store();
    import(&store, &[&incident_capture()], &[]).ok();
    // The CronJob's spec comes from its ConfigMap (deploy/base/report-cronjob.yaml).
    let documents = crate::deploy::rendered("overlays/hubble");
    let config_map = crate::deploy::find(&documents, "ConfigMap", "flowsql-compliance");
    let embedded = config_map["data"]["compliance.yaml"].as_str().unwrap();
    let cronjob = crate::deploy::find(&documents, "CronJob", "flowsql-nightly-report");
    let args = yaml_serde::to_string(&cronjob["spec"]["jobTemplate"]).unwrap();
    assert!(args.contains("/etc/flowsql/compliance.yaml"), "{args}");
    for spec in [
        repo_root()
            .join("query/examples/compliance.yaml")
            .display()
            .to_string(),
        spec_file(dir.path(), embedded),
    ] {
        let run = flowsql(
            &[
                "--store",
                &store,
                "--since",
                "2026-11-24T08:00Z",
                "--until",
                "2026-11-24T11:00Z",
                "report",
                &spec,
            ],
            &[],
        );
        // The incident has policy drops under the threshold, and no other violation.
        assert_eq!(run.status, 0, "{spec}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("PASSED"), "{}", run.stdout);
    }
}
