//! The Kubernetes manifests (`deploy/`), as `kubectl apply -k` would apply them: rendered by
//! kustomize, validated against the Kubernetes API schemas, linted by checkov, and each
//! container's command, args, environment, mounts and security context run here against
//! stand-ins (the test Hubble server on the mounted socket path, moto for S3), so that a typo
//! in a manifest fails CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use yaml_serde::Value;

use crate::support::*;

/// The overlays a user applies.
const OVERLAYS: [&str; 2] = ["overlays/hubble", "overlays/ebpf"];

/// Kubernetes versions the manifests are validated against (kubernetes-validate's schemas):
/// the oldest still supported by the managed offerings, and the newest.
const KUBERNETES_VERSIONS: [&str; 3] = ["1.31.0", "1.34.0", "1.37.0"];

/// `kubectl kustomize deploy/<dir>`: the documents `kubectl apply -k` applies.
pub fn rendered(dir: &str) -> Vec<Value> {
    let yaml = render(&repo_root().join("deploy").join(dir));
    yaml_serde::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn render(dir: &Path) -> String {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl not found: the manifest tests render kustomize with it");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The document of `kind` named `name`.
pub fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

/// The pod template's spec of a Deployment, DaemonSet or CronJob.
pub fn pod_spec(workload: &Value) -> &Value {
    match workload["kind"].as_str() {
        Some("CronJob") => &workload["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &workload["spec"]["template"]["spec"],
    }
}

/// The recorder DaemonSet's memory limit in an overlay, in MiB: what the memory tests hold
/// the measured peak to.
pub fn recorder_memory_limit_mib(overlay: &str) -> u64 {
    let documents = rendered(overlay);
    let daemonset = find(&documents, "DaemonSet", "flowrec");
    let limit = pod_spec(daemonset)["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .expect("the recorder sets a memory limit");
    limit
        .strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .or_else(|| Some(limit.strip_suffix("Gi")?.parse::<u64>().ok()? * 1024))
        .unwrap_or_else(|| panic!("memory limit {limit}: expected Mi or Gi"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// What stands in for the cluster when a container runs here.
pub struct StandIns {
    /// Where each volume (by name) is, here.
    pub volumes: BTreeMap<String, PathBuf>,
    /// The values of `secretKeyRef`s, by (secret, key): the Secrets the README has users make.
    pub secrets: BTreeMap<(String, String), String>,
    /// Environment a cluster adds that the manifest does not name (an S3 endpoint other than
    /// AWS).
    pub env: Vec<(String, String)>,
}

impl StandIns {
    pub fn new(moto: &Moto) -> StandIns {
        let mut secrets = BTreeMap::new();
        for secret in [
            "flowrec-s3",
            "flowstore-s3",
            "flowsql-s3",
            "flowsql-s3-readonly",
        ] {
            for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                secrets.insert((secret.to_owned(), key.to_owned()), "testing".to_owned());
            }
        }
        StandIns {
            volumes: BTreeMap::new(),
            secrets,
            env: vec![
                ("AWS_ENDPOINT_URL".into(), moto.endpoint()),
                ("AWS_ALLOW_HTTP".into(), "true".into()),
            ],
        }
    }

    pub fn volume(mut self, name: &str, path: &Path) -> StandIns {
        self.volumes.insert(name.to_owned(), path.to_path_buf());
        self
    }
}

/// The first container of `workload`, as a command run here the way the kubelet runs it: its
/// program from the image (our binaries), its args with every mounted path moved to where
/// the stand-in volume is, `rewrite` applied to each arg (listen addresses), only the
/// environment the manifest declares (plus the stand-ins'), and its user, capabilities and
/// no-new-privileges through setpriv.
pub fn container_command(
    workload: &Value,
    stand_ins: &StandIns,
    rewrite: impl Fn(&str) -> String,
) -> Command {
    let pod = pod_spec(workload);
    let container = &pod["containers"][0];
    let program = strings(&container["command"]);
    assert_eq!(program.len(), 1, "a binary, no shell: {program:?}");
    let binary = flowsql_bin().with_file_name(&program[0]);
    assert!(
        binary.exists(),
        "{} is not one of the image's binaries",
        program[0]
    );
    // Mounts, longest path first so that nested ones win.
    let mut mounts: Vec<(String, PathBuf)> = container["volumeMounts"]
        .as_sequence()
        .map(|mounts| {
            mounts
                .iter()
                .map(|m| {
                    let name = m["name"].as_str().unwrap();
                    assert!(
                        pod["volumes"]
                            .as_sequence()
                            .unwrap()
                            .iter()
                            .any(|v| v["name"] == name),
                        "volumeMount {name} names no volume"
                    );
                    let here = stand_ins
                        .volumes
                        .get(name)
                        .unwrap_or_else(|| panic!("no stand-in for volume {name}"));
                    (m["mountPath"].as_str().unwrap().to_owned(), here.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let args: Vec<String> = strings(&container["args"])
        .iter()
        .map(|arg| {
            let mut arg = rewrite(arg);
            if let Some((path, here)) = mounts.iter().find(|(path, _)| arg.contains(path.as_str()))
            {
                arg = arg.replace(path.as_str(), &here.display().to_string());
            }
            arg
        })
        .collect();
    // Security context: the container's over the pod's.
    let security = |key: &str| {
        let container = &container["securityContext"][key];
        if container.is_null() {
            pod["securityContext"][key].clone()
        } else {
            container.clone()
        }
    };
    let uid = security("runAsUser").as_u64().unwrap_or(0);
    let gid = security("runAsGroup").as_u64().unwrap_or(uid);
    if security("runAsNonRoot") == Value::Bool(true) {
        assert_ne!(uid, 0, "runAsNonRoot with uid 0 would not start");
    }
    let capabilities = &container["securityContext"]["capabilities"];
    assert_eq!(
        strings(&capabilities["drop"]),
        ["ALL"],
        "every capability dropped"
    );
    let added: Vec<String> = strings(&capabilities["add"])
        .iter()
        .map(|c| format!(",+{}", c.to_lowercase()))
        .collect();
    let caps = format!("-all{}", added.concat());
    let mut command = Command::new("setpriv");
    command.args([
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        format!("--bounding-set={caps}"),
        format!("--inh-caps={caps}"),
    ]);
    if uid != 0 && !added.is_empty() {
        command.arg(format!("--ambient-caps={caps}"));
    }
    if security("allowPrivilegeEscalation") == Value::Bool(false) {
        command.arg("--no-new-privs");
    }
    command.arg(binary).args(args).env_clear();
    for variable in container["env"].as_sequence().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap();
        let source = &variable["valueFrom"];
        let value = if let Some(value) = variable["value"].as_str() {
            value.to_owned()
        } else if let Some(field) = source["fieldRef"]["fieldPath"].as_str() {
            assert_eq!(
                field, "spec.nodeName",
                "{name}: a field this test can stand in for"
            );
            "stand-in-node".to_owned()
        } else {
            let secret = &source["secretKeyRef"];
            let key = (
                secret["name"].as_str().unwrap().to_owned(),
                secret["key"].as_str().unwrap().to_owned(),
            );
            stand_ins
                .secrets
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: Secret {key:?} is not one the README names"))
                .clone()
        };
        command.env(name, value);
    }
    for (name, value) in &stand_ins.env {
        command.env(name, value);
    }
    command
}

/// A folder the container's user owns (Kubernetes makes an emptyDir writable for the pod).
fn owned_dir(path: &Path, workload: &Value) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    let pod = pod_spec(workload);
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0) as u32;
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    path.to_path_buf()
}

#[test]
fn the_overlays_render_validate_against_kubernetes_and_pass_the_security_lint() {
    let dir = tempfile::tempdir().unwrap();
    // The PodMonitor and cluster components, added to an overlay as the README says (with
    // the overlay's namespace and image, as a user's overlay sets them).
    let with_component = tempfile::tempdir_in(repo_root().join("target")).unwrap();
    let relative = |path: &str| {
        let depth = with_component
            .path()
            .strip_prefix(repo_root())
            .unwrap()
            .components()
            .count();
        format!("{}deploy/{path}", "../".repeat(depth))
    };
    std::fs::write(
        with_component.path().join("kustomization.yaml"),
        format!(
            "resources: [{}]\ncomponents: [{}, {}]\nnamespace: flow-recording\n\
             images: [{{name: flowrec, newName: registry.example.com/flowrec, newTag: 0.1.0}}]\n",
            relative("overlays/hubble"),
            relative("components/podmonitor"),
            relative("components/cluster")
        ),
    )
    .unwrap();
    let mut files = Vec::new();
    for overlay in OVERLAYS {
        let file = dir
            .path()
            .join(format!("{}.yaml", overlay.replace('/', "-")));
        std::fs::write(&file, render(&repo_root().join("deploy").join(overlay))).unwrap();
        files.push(file);
    }
    let monitored = render(with_component.path());
    assert!(monitored.contains("kind: PodMonitor"), "{monitored}");
    // The cluster component: a scheduler its executors and clients find by name.
    for name in [
        "name: flowsql-scheduler",
        "name: flowsql-executor",
        "--scheduler=flowsql-scheduler:50050",
    ] {
        assert!(monitored.contains(name), "{name}: {monitored}");
    }
    let monitored_file = dir.path().join("with-components.yaml");
    std::fs::write(&monitored_file, &monitored).unwrap();
    files.push(monitored_file);
    for version in KUBERNETES_VERSIONS {
        let output = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .expect(
                "kubernetes-validate not found: pip install kubernetes-validate (.ci/run does)",
            );
        assert!(
            output.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let checkov = |file: &Path| {
        let output = Command::new("checkov")
            .arg("--config-file")
            .arg(repo_root().join("deploy/.checkov.yaml"))
            .args(["--compact", "--quiet", "-f"])
            .arg(file)
            .output()
            .expect("checkov not found: pip install checkov (.ci/run does)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    for file in &files {
        let (clean, report) = checkov(file);
        assert!(clean, "{}: {report}", file.display());
    }
    // The lint can fail: a privileged recorder is refused, the check named.
    let privileged = std::fs::read_to_string(&files[0]).unwrap().replacen(
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true\n          privileged: true",
        1,
    );
    let bad = dir.path().join("privileged.yaml");
    std::fs::write(&bad, privileged).unwrap();
    let (clean, report) = checkov(&bad);
    assert!(!clean && report.contains("CKV_K8S_16"), "{report}");
    // So can the validation: a misspelt field.
    let misspelt = std::fs::read_to_string(&files[0])
        .unwrap()
        .replace("containerPort:", "containerPorts:");
    std::fs::write(&bad, misspelt).unwrap();
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSIONS[2]])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// What both overlays share and what each must set, read from the rendered manifests.
#[test]
fn the_recorder_overlays_carry_the_deployment_essentials() {
    for overlay in OVERLAYS {
        let documents = rendered(overlay);
        let daemonset = find(&documents, "DaemonSet", "flowrec");
        let pod = pod_spec(daemonset);
        let container = &pod["containers"][0];
        let args = strings(&container["args"]);
        assert_eq!(daemonset["metadata"]["namespace"], "flow-recording");
        assert_eq!(
            pod["tolerations"][0]["operator"], "Exists",
            "{overlay}: every node"
        );
        let class = pod["priorityClassName"].as_str().unwrap();
        find(&documents, "PriorityClass", class);
        // The probes reach the port the metrics server listens on.
        let port = container["ports"][0]["containerPort"].as_u64().unwrap();
        assert!(
            args.contains(&format!("--metrics-addr=0.0.0.0:{port}")),
            "{overlay}: {args:?}"
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
        // Longer than the stop's grace, so that a stop ships before the kill.
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(args.contains(&"--stop-grace=30s".to_owned()) && grace > 30);
        let spool = &pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "spool")
            .unwrap()["hostPath"];
        assert_eq!(spool["path"], "/var/lib/flowrec/spool");
        assert!(args.iter().any(|a| a.starts_with("--spool-max-bytes=")));
        let source = args.iter().find(|a| a.starts_with("--source=")).unwrap();
        match overlay {
            "overlays/hubble" => {
                assert_eq!(source, "--source=hubble");
                assert_ne!(pod["hostNetwork"], true);
                assert!(container["securityContext"]["capabilities"]["add"].is_null());
            }
            _ => {
                assert_eq!(source, "--source=ebpf");
                assert_eq!(pod["hostNetwork"], true);
                assert_eq!(
                    strings(&container["securityContext"]["capabilities"]["add"]),
                    ["BPF", "PERFMON", "NET_ADMIN"]
                );
            }
        }
        // API access only where --kube reads pods, and only that.
        if args.contains(&"--kube".to_owned()) {
            assert_eq!(pod["automountServiceAccountToken"], true);
            let account = pod["serviceAccountName"].as_str().unwrap();
            let binding = documents
                .iter()
                .find(|d| {
                    d["kind"] == "ClusterRoleBinding"
                        && d["subjects"][0]["name"] == account
                        && d["subjects"][0]["namespace"] == "flow-recording"
                })
                .expect("a binding for the recorder's account");
            let role = find(
                &documents,
                "ClusterRole",
                binding["roleRef"]["name"].as_str().unwrap(),
            );
            let rules = role["rules"].as_sequence().unwrap();
            assert_eq!(rules.len(), 1, "{rules:?}");
            assert_eq!(strings(&rules[0]["resources"]), ["pods"]);
            assert_eq!(strings(&rules[0]["verbs"]), ["get", "list", "watch"]);
        } else {
            assert_eq!(pod["automountServiceAccountToken"], false, "{overlay}");
        }
        assert!(recorder_memory_limit_mib(overlay) >= 200);
    }
}

/// The hubble overlay's recorder, run as its manifest says (uid 0 without any capability,
/// no new privileges, only its declared environment), against a test Hubble server on the
/// socket of the mounted agent folder (mode 0660 as Cilium makes it) and moto for the
/// store: it records every flow, ships them to the manifest's bucket and prefix, and its
/// probes answer on the probed port.
#[test]
fn the_hubble_overlay_records_from_the_mounted_socket_into_s3() {
    let documents = rendered("overlays/hubble");
    let daemonset = find(&documents, "DaemonSet", "flowrec");
    let dir = tempfile::tempdir().unwrap();
    let cilium = dir.path().join("var-run-cilium");
    std::fs::create_dir_all(&cilium).unwrap();
    let socket = cilium.join("hubble.sock");
    let files = hubble_samples();
    let mut server = Command::new(test_hubble_server_bin());
    server.arg("--unix").arg(&socket).args(&files);
    let mut server = Process::spawn(server);
    server.wait_for(" events on ");
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    let moto = Moto::start();
    moto.create_bucket("flows");
    let stand_ins = StandIns::new(&moto)
        .volume("cilium-run", &cilium)
        .volume("spool", &dir.path().join("spool"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = container_command(daemonset, &stand_ins, |arg| {
        arg.replace("0.0.0.0:9466", &format!("127.0.0.1:{port}"))
    });
    let mut recorder = Process::spawn(recorder);
    recorder.wait_for("recording flows");
    let address = format!("127.0.0.1:{port}");
    let expected = count_flows(&files);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = http_get(&address, "/metrics").1;
        if metric(&metrics, "flowrec_flows_recorded_total") == expected
            && metric(&metrics, "flowrec_source_up") == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{metrics}\n{}",
            recorder.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(&address, "/health").0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(&address, "/livez").0, "HTTP/1.1 200 OK");
    dashboards_and_alerts_name_exposed_metrics(&http_get(&address, "/metrics").1);
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    // JSON logs, as the manifest asks.
    assert!(output.lines().all(|l| l.starts_with('{')), "{output}");
    drop(server);
    let env = moto.env();
    let stored = query(
        "s3://flows/prod",
        "select count(*) as n, min(node_name) as node from flows",
        &env_refs(&env),
    );
    assert_eq!(stored[0]["n"], expected);
    let uploaded = query(
        "s3://flows/prod",
        "select count(*) as n from flows where capture_source = 'hubble'",
        &env_refs(&env),
    );
    assert_eq!(uploaded[0]["n"], expected);
}

/// Every `flowrec_*` metric the Grafana dashboard (deploy/grafana) and the alerts (the
/// podmonitor component's PrometheusRule) query is one the recorder exposes, with the labels
/// they group by: a renamed metric or label fails here, not in a silent empty panel.
fn dashboards_and_alerts_name_exposed_metrics(exposition: &str) {
    let exposed: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/flowrec-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let mut expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    let rules: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/components/podmonitor/alerts.yaml"))
            .unwrap(),
    )
    .unwrap();
    for rule in rules["spec"]["groups"][0]["rules"].as_sequence().unwrap() {
        expressions.push(rule["expr"].as_str().unwrap().to_owned());
    }
    assert!(expressions.len() >= 10, "{expressions:?}");
    for expression in &expressions {
        let names = expression
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("flowrec_"));
        for name in names {
            assert!(
                exposed.contains(name),
                "{name} (in {expression}) is not exposed"
            );
        }
    }
    // The labels the drop panels and alert group by are the metric's (the samples have drops).
    let series = exposition
        .lines()
        .find(|l| l.starts_with("flowrec_drops_total{"))
        .expect("drops in the Hubble samples");
    for label in ["reason=", "protocol=", "source=", "destination="] {
        assert!(series.contains(label), "{label}: {series}");
    }
}

/// The CronJobs and the history Deployment's commands, as rendered, against moto: each exits
/// 0 (the jobs) or serves (the Deployment), as the user the manifest names.
#[test]
fn the_store_jobs_run_as_rendered_against_s3() {
    let documents = rendered("overlays/hubble");
    let moto = Moto::start();
    moto.create_bucket("flows");
    let env = moto.env();
    import("s3://flows/prod", &[&incident_capture()], &env_refs(&env)).ok();
    let dir = tempfile::tempdir().unwrap();
    // The jobs run as uid 65532: they must reach their mounts.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The report's spec from its ConfigMap, where the CronJob mounts it.
    let report = find(&documents, "CronJob", "flowsql-nightly-report");
    let config = find(&documents, "ConfigMap", "flowsql-compliance");
    let spec_dir = dir.path().join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::write(
        spec_dir.join("compliance.yaml"),
        config["data"]["compliance.yaml"].as_str().unwrap(),
    )
    .unwrap();
    let runs = owned_dir(&dir.path().join("runs"), report);
    let stand_ins = StandIns::new(&moto)
        .volume("spec", &spec_dir)
        .volume("runs", &runs);
    for (name, expect) in [
        ("flowstore-compact", "compacted flows 2026-11-24T09:00:00Z"),
        ("flowstore-expire", "expire:"),
        ("flowsql-nightly-report", "PASSED"),
    ] {
        let job = find(&documents, "CronJob", name);
        assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid", "{name}");
        let mut command = container_command(job, &stand_ins, |arg| {
            // The incident is from 2026-11-24: the report looks from then, not the last 24h.
            arg.replace("--since=24h", "--since=2026-11-24T00:00Z")
        });
        if name == "flowstore-compact" {
            // Sorted runs go to TMPDIR: a volume of the pod, not the image's filesystem.
            let container = &pod_spec(job)["containers"][0];
            let tmpdir = container["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "TMPDIR")
                .map(|e| e["value"].as_str().unwrap())
                .expect("the compactor sets TMPDIR");
            let mount = container["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == tmpdir)
                .expect("TMPDIR is a mounted volume");
            assert!(pod_spec(job)["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|v| v["name"] == mount["name"] && v["emptyDir"].is_mapping()));
            command.env("TMPDIR", &runs);
        }
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{name}: {text}");
        assert!(text.contains(expect), "{name}: {text}");
    }
    // The compaction rolled the hours up.
    let rolled = flowsql(
        &[
            "--store",
            "s3://flows/prod",
            "--format",
            "csv",
            "select sum(flows) from flows_hourly",
        ],
        &env_refs(&env),
    )
    .ok();
    assert_eq!(rolled.stdout.lines().nth(1), Some("14870"));
    // The report went where its args say, named by the day it ran.
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let listed = python(&format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         print(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='flows', Prefix='reports/')['Contents']))",
        moto.endpoint()
    ));
    assert!(
        listed.contains(&format!("reports/{today}.html"))
            && listed.contains(&format!("reports/{today}.json")),
        "{listed}"
    );
}

/// The stand-in Kubernetes API (recorder/tests-data/kube-api-server.py) in network namespace
/// `ns`, listing `pods` and then holding its watch open, and a kubeconfig naming it (in `dir`).
/// Killed on drop.
struct KubeApi {
    process: Process,
    kubeconfig: PathBuf,
}

impl KubeApi {
    fn start_in(ns: &str, dir: &Path, pods: &serde_json::Value) -> KubeApi {
        let scenario = serde_json::json!({
            "lists": [{"resourceVersion": "100", "items": pods}],
            "watches": {"100": {"events": [], "then": "hold"}},
        });
        let file = dir.join("kube-scenario.json");
        std::fs::write(&file, scenario.to_string()).unwrap();
        let port_file = dir.join("kube-port");
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{ns}"))
            .arg("python3")
            .arg(repo_root().join("recorder/tests-data/kube-api-server.py"))
            .arg(&file)
            .arg(&port_file);
        let process = Process::spawn(command);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let port = loop {
            match std::fs::read_to_string(&port_file) {
                Ok(port) if !port.is_empty() => break port,
                _ => {}
            }
            assert!(std::time::Instant::now() < deadline, "{}", process.output());
            std::thread::sleep(Duration::from_millis(50));
        };
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: stand-in\n\
                 clusters: [{{name: stand-in, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
                 users: [{{name: flowrec, user: {{token: stand-in}}}}]\n\
                 contexts: [{{name: stand-in, context: {{cluster: stand-in, user: flowrec}}}}]\n"
            ),
        )
        .unwrap();
        KubeApi {
            process,
            kubeconfig,
        }
    }
}

/// `command` run in network namespace `ns` (nsenter, as the capture tests do).
fn in_namespace(command: &Command, ns: &str) -> Command {
    let mut entered = Command::new("nsenter");
    entered
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            entered.env(name, value);
        }
    }
    entered
}

/// The ebpf overlay's recorder, run as its manifest says (uid 0 with BPF, PERFMON and
/// NET_ADMIN only, no new privileges, only its declared environment), in a network namespace
/// standing in for the node's (the overlay's hostNetwork), on a veth standing in for the
/// node's uplinks, with the host's cgroup hierarchy mounted where the manifest mounts it, and
/// its `--kube` pointed at a stand-in API server (the real list/watch protocol) listing the
/// pods of recorder/tests-data/pods.json: the datagrams sent are in the manifest's bucket,
/// both ends named by their pods, and the probes answer on the probed port.
#[test]
fn the_ebpf_overlay_records_with_its_three_capabilities_into_s3() {
    use crate::capture::{in_netns, Veth};
    const DATAGRAMS: u16 = 40;
    let documents = rendered("overlays/ebpf");
    let daemonset = find(&documents, "DaemonSet", "flowrec");
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    // The store, reachable from the recorder's (the node's) network.
    let moto = Moto::start_in(Some(&veth.a));
    moto.create_bucket("flows");
    let pods: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("recorder/tests-data/pods.json")).unwrap(),
    )
    .unwrap();
    let api = KubeApi::start_in(&veth.a, dir.path(), &pods["items"]);
    let mut stand_ins = StandIns::new(&moto)
        // The node's cgroup hierarchy, as the hostPath volume mounts it.
        .volume("cgroup", Path::new("/sys/fs/cgroup"))
        .volume("spool", &dir.path().join("spool"));
    // The cluster's API: in a pod, the service account's; here, a kubeconfig to the stand-in.
    stand_ins
        .env
        .push(("KUBECONFIG".into(), api.kubeconfig.display().to_string()));
    assert!(strings(&pod_spec(daemonset)["containers"][0]["args"]).contains(&"--kube".to_owned()));
    let args = strings(&pod_spec(daemonset)["containers"][0]["args"]);
    assert!(
        args.iter().any(|a| a.starts_with("--interfaces=eth*,")),
        "the node's uplinks: {args:?}"
    );
    let recorder = container_command(daemonset, &stand_ins, |arg| {
        if arg.starts_with("--interfaces=") {
            format!("--interfaces={}", veth.end_a)
        } else {
            arg.to_owned()
        }
    });
    let mut recorder = Process::spawn(in_namespace(&recorder, &veth.a));
    recorder.wait_for("recording flows on");
    let (ready, _) = in_netns(&veth.a, || http_get("127.0.0.1:9466", "/health"));
    assert_eq!(ready, "HTTP/1.1 200 OK");
    let receiver = in_netns(&veth.b, || {
        std::net::UdpSocket::bind(("10.199.0.2", 7100)).unwrap()
    });
    in_netns(&veth.a, || {
        for port in 0..DATAGRAMS {
            let socket = std::net::UdpSocket::bind(("10.199.0.1", 41000 + port)).unwrap();
            socket.send_to(b"x", ("10.199.0.2", 7100)).unwrap();
            receiver.recv(&mut [0u8; 8]).unwrap();
        }
    });
    let (status, output) = recorder.stop();
    assert!(status.success(), "{output}");
    let env = moto.env();
    let stored = moto.within(|| {
        query(
            "s3://flows/prod",
            "select count(distinct source_port) as ports, min(node_name) as node, \
             string_agg(distinct source_pod_name, ',') as source, \
             string_agg(distinct destination_pod_name, ',') as destination from flows \
             where ip_source = '10.199.0.1' and destination_port = 7100",
            &env_refs(&env),
        )
    });
    assert_eq!(stored[0]["ports"], u64::from(DATAGRAMS), "{output}");
    assert_eq!(stored[0]["node"], "stand-in-node");
    assert_eq!(stored[0]["source"], "client-7d4b9c-x2x9k", "{output}");
    assert_eq!(stored[0]["destination"], "server-0", "{output}");
    assert!(output.contains("--kube: listed"), "{output}");
    assert!(
        api.process.output().contains("watch=true"),
        "the pods were watched after the list"
    );
}

/// `buildah ARGS` with its storage in `dir` (removed with it), as root, without a daemon.
fn buildah_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("buildah");
    command
        .arg("--storage-driver=vfs")
        .arg(format!("--root={}", dir.join("storage").display()))
        .arg(format!("--runroot={}", dir.join("run").display()))
        .args(args);
    command
}

/// [`buildah_command`], which must succeed; its stdout.
fn buildah(dir: &Path, args: &[&str]) -> String {
    let output = buildah_command(dir, args)
        .output()
        .expect("buildah not found: apt-get install buildah (.ci/run does)");
    assert!(
        output.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The Containerfile's runtime stage, built by a real image builder (buildah; this machine has
/// no Docker engine) from the binaries under test laid out by the script its build stage
/// runs (deploy/image/rootfs.sh; the build stage itself, a cargo build in the Rust image,
/// needs a registry this machine cannot reach): the image holds the three binaries and what
/// they link, nothing else (no shell), runs as 65532, and each binary starts in it and names
/// its version and commit.
#[test]
fn the_image_runtime_stage_runs_the_binaries_as_non_root() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let context = dir.join("build-stage");
    let script = repo_root().join("deploy/image/rootfs.sh");
    let laid_out = Command::new("bash")
        .arg(&script)
        .arg(flowsql_bin().parent().unwrap())
        .arg(context.join("rootfs"))
        .output()
        .unwrap();
    assert!(
        laid_out.status.success(),
        "{}",
        String::from_utf8_lossy(&laid_out.stderr)
    );
    let tag = format!("localhost/flowrec-image-test:{}", std::process::id());
    buildah(
        dir,
        &[
            "build",
            "--isolation=chroot",
            &format!("--build-context=build={}", context.display()),
            "--target=runtime",
            "-f",
            &repo_root().join("Containerfile").display().to_string(),
            "-t",
            &tag,
            &repo_root().display().to_string(),
        ],
    );
    let config = buildah(
        dir,
        &[
            "inspect",
            "--format",
            "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}",
            &tag,
        ],
    );
    assert_eq!(config.trim(), "65532:65532 [/usr/local/bin/flowrec]");
    // What the image holds (a container not yet run: a run adds /etc/hosts and friends):
    // the binaries, the loader and libraries, certificates, users, /tmp.
    let container = buildah(dir, &["from", &tag]);
    let container = container.trim();
    let mounted = buildah(dir, &["mount", container]);
    let root = PathBuf::from(mounted.trim());
    let mut files = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                folders.push(path);
            } else {
                files.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with("bin/sh") || f.ends_with("bin/bash")),
        "{files:?}"
    );
    for file in &files {
        assert!(
            file.starts_with("usr/local/bin/")
                || file.starts_with("lib")
                || [
                    "etc/passwd",
                    "etc/group",
                    "etc/ssl/certs/ca-certificates.crt"
                ]
                .contains(&file.as_str()),
            "unexpected in the image: {file}"
        );
    }
    assert!(files.contains(&"etc/ssl/certs/ca-certificates.crt".to_owned()));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    buildah(dir, &["umount", container]);
    for binary in ["flowrec", "flowsql", "flowstore"] {
        let version = buildah(
            dir,
            &[
                "run",
                "--isolation=chroot",
                container,
                "--",
                &format!("/usr/local/bin/{binary}"),
                "--version",
            ],
        );
        assert!(
            version.starts_with(&format!("{binary} ")) && version.contains("(git "),
            "{version}"
        );
    }
    // As 65532 the image's filesystem is not writable: a spool needs its volume (the
    // DaemonSet mounts one), and the error names the folder.
    let refused = buildah_command(dir, &["run", "--isolation=chroot", container, "--"])
        .args([
            "/usr/local/bin/flowrec",
            "run",
            "--source=file",
            "--follow=/etc/passwd",
        ])
        .args(["--spool=/var/lib/flowrec/spool", "--store=/tmp/store"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("/var/lib/flowrec/spool") && stderr.contains("ermission denied"),
        "{stderr}"
    );
    buildah(dir, &["rm", container]);
    buildah(dir, &["rmi", "-f", &tag]);
}
