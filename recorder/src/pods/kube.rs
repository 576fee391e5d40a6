//! `--kube`: the pods of the cluster, listed and then watched from the Kubernetes API, as
//! updates of the [`PodInventory`](super::PodInventory).
//!
//! kube-rs's watcher does the protocol: a paginated list, then a watch from its
//! resourceVersion with bookmarks (so a reconnect resumes where the last bookmark left off
//! instead of relisting), a relist when the API answers 410 Gone (the resourceVersion fell out
//! of its window), and exponential backoff on errors. Every list becomes one
//! [`Update::List`], the same as a new version of a `--pods` file (pods it lacks are gone by
//! its time), so that the time-correct IP → pod history is the same code for both.
//!
//! Memory: a pod becomes a [`Tenure`] as soon as it arrives (its namespace, name, identity
//! labels, workload and addresses); the API objects are not kept. Host-network pods and pods
//! without an address yet are skipped, as for a file.

use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::{unix_ns, Tenure, Update};

/// How long the start waits for the first list before recording without pod names (they
/// are filled in from the drain after the list arrives).
const FIRST_LIST_PATIENCE: Duration = Duration::from_secs(10);

/// Pods per page of a list: a cluster of 100k pods is listed 500 at a time.
const PAGE_SIZE: u32 = 500;

/// Why `--kube` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "--kube: no Kubernetes API configuration (neither in a pod with a service account nor \
         a kubeconfig: $KUBECONFIG or ~/.kube/config): {0}"
    )]
    Config(#[source] kube::config::InferConfigError),
    #[error("--kube: the kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("--kube: cannot make a client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
}

/// Starts watching the cluster's pods on the current tokio runtime; the updates arrive on the
/// returned receiver. Waits up to [`FIRST_LIST_PATIENCE`] for the first list, so that the
/// first drain names its pods; an API that cannot be reached or refuses the list is reported
/// and retried with backoff meanwhile (flows are recorded without pod names until then).
pub async fn watch() -> Result<std::sync::mpsc::Receiver<Update>, KubeError> {
    watch_with(kube::Config::infer().await.map_err(KubeError::Config)?).await
}

/// [`watch`] with the kubeconfig at `path` (its current context).
pub async fn watch_kubeconfig(
    path: &std::path::Path,
) -> Result<std::sync::mpsc::Receiver<Update>, KubeError> {
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(path).map_err(KubeError::Kubeconfig)?,
        &options,
    )
    .await
    .map_err(KubeError::Kubeconfig)?;
    watch_with(config).await
}

/// [`watch`] with a configuration given.
pub async fn watch_with(
    config: kube::Config,
) -> Result<std::sync::mpsc::Receiver<Update>, KubeError> {
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|source| KubeError::Client {
        server: server.clone(),
        source,
    })?;
    let (updates, receiver) = std::sync::mpsc::channel();
    let (listed, first_list) = tokio::sync::oneshot::channel();
    tokio::spawn(follow(client, server.clone(), updates, listed));
    match tokio::time::timeout(FIRST_LIST_PATIENCE, first_list).await {
        Ok(Ok(())) => {}
        _ => crate::warn!(
            "--kube: no pod list from {server} within {FIRST_LIST_PATIENCE:?}: recording \
             without pod names until it comes"
        ),
    }
    Ok(receiver)
}

/// The watch loop: events to updates, until the inventory is gone.
async fn follow(
    client: Client,
    server: String,
    updates: Sender<Update>,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().page_size(PAGE_SIZE);
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut listed = Some(listed);
    let mut listing: Vec<Tenure> = Vec::new();
    let mut skipped = 0;
    let mut lists = 0u64;
    // Reported once per run of failures, not at every retry.
    let mut failing = false;
    while let Some(event) = events.next().await {
        let at = unix_ns(SystemTime::now());
        let update = match event {
            Err(error) => {
                if !failing {
                    crate::warn!(
                        "--kube: the pod watch on {server} failed: {}; retrying with backoff",
                        flow_schema::error_chain(&error)
                    );
                }
                failing = true;
                continue;
            }
            Ok(Event::Init) => {
                listing.clear();
                skipped = 0;
                continue;
            }
            Ok(Event::InitApply(pod)) => {
                match tenure(&pod, at) {
                    Ok(Some(tenure)) => listing.push(tenure),
                    Ok(None) => {}
                    Err(()) => skipped += 1,
                }
                continue;
            }
            Ok(Event::InitDone) => {
                lists += 1;
                let pods = std::mem::take(&mut listing);
                crate::info!(
                    "--kube: {} {} pods with addresses from {server}{}",
                    if lists == 1 { "listed" } else { "relisted" },
                    pods.len(),
                    if skipped > 0 {
                        format!(" ({skipped} without the fields needed, skipped)")
                    } else {
                        String::new()
                    }
                );
                Update::List { pods, skipped, at }
            }
            Ok(Event::Apply(pod)) => Update::Apply {
                pod: tenure(&pod, at).ok().flatten(),
                at,
            },
            Ok(Event::Delete(pod)) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                // Its final state says when it ended (deletionTimestamp), if it does.
                let end = tenure(&pod, at)
                    .ok()
                    .flatten()
                    .and_then(|t| t.end.time())
                    .unwrap_or(at);
                Update::Delete {
                    uid,
                    at: end.min(at),
                }
            }
        };
        if failing {
            crate::info!("--kube: the pod watch on {server} is back");
            failing = false;
        }
        let is_list = matches!(update, Update::List { .. });
        if updates.send(update).is_err() {
            return;
        }
        if is_list {
            if let Some(listed) = listed.take() {
                let _ = listed.send(());
            }
        }
    }
}

/// The pod as the inventory keeps it; Err for one lacking a field it needs.
fn tenure(pod: &Pod, at: i64) -> Result<Option<Tenure>, ()> {
    let value = serde_json::to_value(pod).map_err(|_| ())?;
    Tenure::parse(&value, at).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::super::PodInventory;
    use super::*;
    use serde_json::{json, Value};
    use std::net::IpAddr;
    use std::process::{Child, Command, Stdio};

    const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests-data/kube-api-server.py");

    fn pod(name: &str, uid: &str, ip: &str, start: &str, labels: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": uid,
                         "creationTimestamp": start, "labels": labels,
                         "resourceVersion": "1"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": start},
        })
    }

    fn ns(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    /// The stand-in API server playing `scenario`, killed on drop, and the kubeconfig to it.
    struct Server {
        child: Child,
        dir: tempfile::TempDir,
    }

    impl Server {
        fn start(scenario: &Value) -> (Server, std::path::PathBuf) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("scenario.json");
            std::fs::write(&file, scenario.to_string()).unwrap();
            let port_file = dir.path().join("port");
            let child = Command::new("python3")
                .arg(SERVER)
                .arg(&file)
                .arg(&port_file)
                .stderr(std::fs::File::create(dir.path().join("requests")).unwrap())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let port = loop {
                if let Ok(port) = std::fs::read_to_string(&port_file) {
                    if !port.is_empty() {
                        break port;
                    }
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the stand-in API server did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            let kubeconfig = format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
                 clusters: [{{name: t, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
                 users: [{{name: t, user: {{token: test-token}}}}]\n\
                 contexts: [{{name: t, context: {{cluster: t, user: t}}}}]\n"
            );
            let path = dir.path().join("kubeconfig");
            std::fs::write(&path, kubeconfig).unwrap();
            (Server { child, dir }, path)
        }

        fn requests(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("requests")).unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn name_at(inventory: &PodInventory, ip: &str, time: &str) -> Option<String> {
        let ip: IpAddr = ip.parse().unwrap();
        inventory.lookup(ip, ns(time)).map(|p| p.name.clone())
    }

    /// The protocol end to end: a paginated list, watch events, a dropped connection resumed
    /// from the last BOOKMARK (no relist), an expired resourceVersion (410) answered by a
    /// relist in which a deleted pod's address went to a new pod, then new pods as they come;
    /// the inventory names each address by the pod that held it at each time.
    #[test]
    fn a_list_watch_with_a_dropped_stream_and_a_410_keeps_the_history_right() {
        // Times of the last hour: the inventory forgets what ended over an hour ago.
        let ago = |minutes: i64| {
            (chrono::Utc::now() - chrono::Duration::minutes(minutes))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let (start, deleted, reused, later, now) = (ago(40), ago(30), ago(25), ago(20), ago(0));
        let web = pod("web-1", "u-web", "10.0.0.1", &start, json!({"app": "web"}));
        let db = pod("db-1", "u-db1", "10.0.0.2", &start, json!({"app": "db"}));
        let mut host = pod("agent", "u-agent", "192.168.0.10", &start, json!({}));
        host["spec"]["hostNetwork"] = json!(true);
        let mut pending = pod("pending", "u-pending", "10.0.0.7", &start, json!({}));
        pending["status"] = json!({"phase": "Pending"});
        let mut web_v2 = web.clone();
        web_v2["metadata"]["labels"] = json!({"app": "web", "version": "v2"});
        let mut db_deleted = db.clone();
        db_deleted["metadata"]["deletionTimestamp"] = json!(deleted);
        let db2 = pod("db-2", "u-db2", "10.0.0.2", &reused, json!({"app": "db"}));
        let job = pod("job-x", "u-job", "10.0.0.9", &later, json!({"app": "job"}));
        let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"resourceVersion": "200"}}});
        let scenario = json!({
            "lists": [
                {"resourceVersion": "100", "items": [web, db, host, pending]},
                {"resourceVersion": "300", "items": [web_v2, db2]},
            ],
            "watches": {
                "100": {"events": [{"type": "MODIFIED", "object": web_v2}, bookmark], "then": "close"},
                "200": {"events": [{"type": "DELETED", "object": db_deleted}], "then": "gone"},
                "300": {"events": [{"type": "ADDED", "object": job}], "then": "hold"},
            },
        });
        let (server, kubeconfig) = Server::start(&scenario);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let updates = runtime.block_on(watch_kubeconfig(&kubeconfig)).unwrap();
        let mut inventory = PodInventory::watching(updates);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            inventory.refresh().unwrap();
            if name_at(&inventory, "10.0.0.9", &now).is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job-x never arrived; requests:\n{}",
                server.requests()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The address of the deleted pod, before and after its reuse.
        assert_eq!(
            name_at(&inventory, "10.0.0.2", &ago(35)).as_deref(),
            Some("db-1")
        );
        assert_eq!(
            name_at(&inventory, "10.0.0.2", &ago(24)).as_deref(),
            Some("db-2")
        );
        // Between the deletion (from the DELETED event's deletionTimestamp) and the reuse.
        assert_eq!(name_at(&inventory, "10.0.0.2", &ago(27)), None);
        assert_eq!(
            name_at(&inventory, "10.0.0.1", &now).as_deref(),
            Some("web-1")
        );
        let web = inventory
            .lookup("10.0.0.1".parse().unwrap(), ns(&now))
            .unwrap();
        assert!(
            web.labels.contains(&"k8s:version=v2".to_owned()),
            "{:?}",
            web.labels
        );
        // Host network and address-less pods are not addresses of their own.
        assert_eq!(name_at(&inventory, "192.168.0.10", &ago(35)), None);
        assert_eq!(name_at(&inventory, "10.0.0.7", &ago(35)), None);
        // The protocol as the API server saw it: paginated list, watch from its version,
        // resumed from the bookmark after the drop (no relist), relisted after the 410.
        let requests: Vec<String> = server
            .requests()
            .lines()
            .map(|l| l.trim_start_matches("REQUEST ").to_owned())
            .collect();
        let watch_from = |version: &str| {
            requests.iter().position(|r| {
                r.contains("watch=true") && r.contains(&format!("resourceVersion={version}&"))
                    || r.contains("watch=true")
                        && r.ends_with(&format!("resourceVersion={version}"))
            })
        };
        let lists: Vec<usize> = requests
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.contains("watch=true"))
            .map(|(i, _)| i)
            .collect();
        assert!(requests
            .iter()
            .all(|r| !r.contains("watch=true") || r.contains("allowWatchBookmarks=true")));
        assert!(requests[lists[0]].contains("limit=500"), "{requests:?}");
        let (w100, w200, w300) = (
            watch_from("100").expect("watch from the list"),
            watch_from("200").expect("resumed from the bookmark"),
            watch_from("300").expect("watch from the relist"),
        );
        assert!(lists[0] < w100 && w100 < w200, "{requests:?}");
        assert_eq!(
            lists.len(),
            2,
            "one relist, after the 410 only: {requests:?}"
        );
        assert!(w200 < lists[1] && lists[1] < w300, "{requests:?}");
    }
}
