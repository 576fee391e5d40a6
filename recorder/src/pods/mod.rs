//! Pod identity for `flowrec run --source ebpf` (`--pods FILE` or `--kube`).
//!
//! The recorder's own capture only sees addresses; Hubble flows carry the pod behind each one.
//! To give eBPF flows the same namespace, name, labels and workload, the recorder keeps an
//! inventory of pods from one of two origins, refreshed before each drain
//! ([`PodInventory::refresh`]):
//! - `--pods FILE`: the output of `kubectl get pods -A -o json` (a
//!   `{"kind":"List","items":[Pod...]}` object) that something else keeps fresh, re-read when it
//!   changes: no Kubernetes credentials or API access needed on the node;
//! - `--kube`: the pods listed and watched from the Kubernetes API ([`kube`]), each list a
//!   version of the inventory as a file would be, each watch event applied as it comes.
//!
//! Pod IPs are reused as soon as a pod is gone, and flows are attributed with their own
//! timestamp, which may be older than the latest file. So the inventory is a history of
//! IP → pod intervals, not a map of the present: an IP belongs to a pod from its start to its
//! end, and a flow resolves to the pod that held its address at the flow's time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

pub mod kube;

const NS_PER_SEC: i64 = 1_000_000_000;

/// A flow this much before a pod's start still belongs to it: `status.startTime` is stamped by
/// the kubelet, whose clock and bookkeeping may lag the first packets the pod sends (the
/// sandbox and its network exist before the kubelet records the start). A pod that held the
/// address outright at that time still wins (see [`PodInventory::lookup`]).
const START_GRACE_NS: i64 = 5 * NS_PER_SEC;

/// Ended intervals are forgotten this long before the newest file's modification time, so a
/// long-running recorder on a churning cluster (Jobs, rollouts) does not grow without bound.
/// This assumes flows are enriched when they are drained, minutes after they were seen: a
/// flow older than the window no longer resolves to a pod that has ended since.
const HISTORY_NS: i64 = 3600 * NS_PER_SEC;

/// Who a pod is, in the terms Hubble uses for a flow's endpoint.
///
/// What the pods of one workload share (namespace, labels, workload) is shared in memory too
/// (`Arc`s interned by the inventory): a cluster's pods are mostly replicas, and 100k pods'
/// own copies of their label sets would cost the node agent tens of MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Arc<str>,
    pub name: String,
    /// `k8s:key=value` per pod label plus `k8s:io.kubernetes.pod.namespace=<ns>`, sorted and
    /// without duplicates, like Hubble's endpoint labels, so queries filter both sources alike.
    pub labels: Arc<[String]>,
    /// Name of the owning workload: a Deployment rather than its ReplicaSet (as Hubble shows).
    pub workload: Option<Arc<str>>,
    /// Kind of [`PodInfo::workload`] (`Deployment`, `StatefulSet`, `DaemonSet`, `Job`, ...).
    pub workload_kind: Option<Arc<str>>,
}

/// The shared copies of what pods have in common.
#[derive(Debug, Default)]
struct Interner {
    names: HashSet<Arc<str>>,
    labels: HashSet<Arc<[String]>>,
}

impl Interner {
    fn name(&mut self, name: &Arc<str>) -> Arc<str> {
        match self.names.get(name) {
            Some(shared) => Arc::clone(shared),
            None => {
                self.names.insert(Arc::clone(name));
                Arc::clone(name)
            }
        }
    }

    fn pod(&mut self, info: &mut PodInfo) {
        info.namespace = self.name(&info.namespace);
        info.workload = info.workload.as_ref().map(|w| self.name(w));
        info.workload_kind = info.workload_kind.as_ref().map(|k| self.name(k));
        info.labels = match self.labels.get(&info.labels) {
            Some(shared) => Arc::clone(shared),
            None => {
                self.labels.insert(Arc::clone(&info.labels));
                Arc::clone(&info.labels)
            }
        };
    }

    /// Forgets what no pod holds any more.
    fn prune(&mut self) {
        self.names.retain(|name| Arc::strong_count(name) > 1);
        self.labels.retain(|labels| Arc::strong_count(labels) > 1);
    }
}

/// The pods known, as a history of which pod held which IP when.
#[derive(Debug)]
pub struct PodInventory {
    origin: Origin,
    /// Latest time any version was known at (a file's modification time, an update's time):
    /// the "now" that history is bounded by.
    newest_mtime_ns: i64,
    tenures: Vec<Tenure>,
    /// Indexes into `tenures` per address; foldhash because it is consulted for every flow.
    by_ip: HashMap<IpAddr, Vec<usize>, foldhash::fast::RandomState>,
    skipped: usize,
    interner: Interner,
}

/// Why the pod list could not be used; every message starts with the file, as `--pods` may be
/// one of several inputs the operator has to tell apart.
#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("{}: cannot read the pod list: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// serde_json's own message, without its position, which is given as `file:line:column`.
    #[error("{}:{line}:{column}: not valid JSON: {message}", .path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{}: not a pod list (expected the output of `kubectl get pods -A -o json`, an object with an \"items\" array)",
        .path.display()
    )]
    NotAList { path: PathBuf },
}

/// Where the inventory's versions come from.
#[derive(Debug)]
enum Origin {
    /// `--pods FILE`, with the stamp of the version last read (to tell whether it changed).
    File {
        path: PathBuf,
        stamp: Option<FileStamp>,
    },
    /// `--kube`: updates from the API watch, in order.
    Kube(std::sync::mpsc::Receiver<Update>),
}

/// A change to the inventory from the Kubernetes API (`--kube`).
#[derive(Debug)]
pub enum Update {
    /// A complete list (the first one, or a relist after the watch expired): what it lacks
    /// ended by `at` (nanoseconds since the Unix epoch), as for a new version of a file.
    List {
        pods: Vec<Tenure>,
        skipped: usize,
        at: i64,
    },
    /// A pod added or changed (None: one without an address of its own, nothing to do).
    Apply { pod: Option<Tenure>, at: i64 },
    /// A pod deleted: its addresses are free from its deletion time, `at` at the latest.
    Delete { uid: String, at: i64 },
}

impl PodInventory {
    fn empty(origin: Origin) -> PodInventory {
        PodInventory {
            origin,
            newest_mtime_ns: i64::MIN,
            tenures: Vec::new(),
            by_ip: HashMap::default(),
            skipped: 0,
            interner: Interner::default(),
        }
    }

    /// Reads the file a first time. Failing is an error rather than an empty inventory: a wrong
    /// `--pods` path should stop the run, not quietly record flows without pods.
    pub fn load(path: &Path) -> Result<PodInventory, PodsError> {
        let mut inventory = PodInventory::empty(Origin::File {
            path: path.to_owned(),
            stamp: None,
        });
        inventory.refresh()?;
        Ok(inventory)
    }

    /// An inventory kept by `updates` (the `--kube` watch); empty until its first list.
    pub fn watching(updates: std::sync::mpsc::Receiver<Update>) -> PodInventory {
        PodInventory::empty(Origin::Kube(updates))
    }

    /// Brings the inventory up to date with its origin; returns whether a new version of a
    /// file was read (the watch reports its own lists, with what they skipped).
    ///
    /// A file is re-read if its modification time or size changed. On error the inventory
    /// keeps what it knew, and the failed version is not read again: a file caught
    /// half-written changes once more when the writer finishes, while a broken one is
    /// reported once per change instead of at every poll. Watch updates are applied in order,
    /// all that arrived since the last call.
    pub fn refresh(&mut self) -> Result<bool, PodsError> {
        match &mut self.origin {
            Origin::File { path, stamp } => {
                // Stat before reading: if the file changes while it is read, the next poll
                // sees a new stamp and reads it again.
                let now = FileStamp::of(path)?;
                if *stamp == Some(now) {
                    return Ok(false);
                }
                *stamp = Some(now);
                let snapshot = Snapshot::read(path, now.mtime_ns())?;
                self.apply(snapshot);
                Ok(true)
            }
            Origin::Kube(updates) => {
                let pending: Vec<Update> = updates.try_iter().collect();
                if pending.is_empty() {
                    return Ok(false);
                }
                // Events find their pod by uid: an index built once per batch (a list
                // rebuilds the tenures, and the index with them).
                let mut by_uid: Option<HashMap<String, usize>> = None;
                for update in pending {
                    self.update(update, &mut by_uid);
                }
                self.prune_and_index();
                Ok(false)
            }
        }
    }

    /// One watch update, without re-indexing by address (the caller does it once for a
    /// batch); `by_uid` indexes the tenures by pod uid, None until needed and after a list.
    fn update(&mut self, update: Update, by_uid: &mut Option<HashMap<String, usize>>) {
        let at = match &update {
            Update::List { at, .. } | Update::Apply { at, .. } | Update::Delete { at, .. } => *at,
        };
        self.newest_mtime_ns = self.newest_mtime_ns.max(at);
        if let Update::List { pods, skipped, at } = update {
            self.merge(Snapshot {
                mtime_ns: at,
                pods,
                skipped,
            });
            *by_uid = None;
            return;
        }
        let tenures = &self.tenures;
        let index = by_uid.get_or_insert_with(|| {
            tenures
                .iter()
                .enumerate()
                .map(|(index, tenure)| (tenure.uid.clone(), index))
                .collect()
        });
        match update {
            Update::List { .. } | Update::Apply { pod: None, .. } => {}
            Update::Apply {
                pod: Some(mut pod), ..
            } => match index.get(&pod.uid).copied() {
                Some(found) => {
                    let old = &mut self.tenures[found];
                    pod.end = pod.end.updated(old.end);
                    *old = pod;
                }
                None => {
                    index.insert(pod.uid.clone(), self.tenures.len());
                    self.tenures.push(pod);
                }
            },
            Update::Delete { uid, at } => {
                if let Some(found) = index.get(&uid).copied() {
                    let old = &mut self.tenures[found];
                    old.end = old.end.at_most(at);
                }
            }
        }
    }

    /// What the inventory is read from, for messages about it: the file, or `--kube`.
    pub fn origin(&self) -> String {
        match &self.origin {
            Origin::File { path, .. } => format!("--pods {}", path.display()),
            Origin::Kube(_) => "--kube".to_owned(),
        }
    }

    /// The pod that held `ip` at `unix_ns` (nanoseconds since the Unix epoch).
    ///
    /// Intervals can overlap when clocks are skewed or a pod's end is only known late; the
    /// pod that held the address outright beats one matched through the start grace, and
    /// then the latest started wins, as the newer claim on an address is the live one.
    pub fn lookup(&self, ip: IpAddr, unix_ns: i64) -> Option<&PodInfo> {
        // A socket may report an IPv4 peer as ::ffff:a.b.c.d; pods are listed as a.b.c.d.
        let tenures = self.by_ip.get(&ip.to_canonical())?;
        tenures
            .iter()
            .map(|&index| &self.tenures[index])
            .filter(|tenure| tenure.covers(unix_ns))
            .max_by_key(|tenure| (tenure.start <= unix_ns, tenure.start))
            .map(|tenure| &tenure.info)
    }

    /// Pods of the last version read that were left out because a field they need was
    /// missing or unreadable, for the caller to warn about. Pods left out on purpose (host
    /// network, no IP yet) are not counted: they are normal.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Merges a new version of the file into the history.
    fn apply(&mut self, snapshot: Snapshot) {
        self.merge(snapshot);
        self.prune_and_index();
    }

    /// A complete version (a file, a list): pods it lacks are gone by its time.
    fn merge(&mut self, snapshot: Snapshot) {
        let Snapshot {
            mtime_ns,
            mut pods,
            skipped,
        } = snapshot;
        let by_uid: HashMap<&str, usize> = pods
            .iter()
            .enumerate()
            .map(|(index, pod)| (pod.uid.as_str(), index))
            .collect();
        let mut updates = Vec::new();
        let mut history = Vec::new();
        for mut old in std::mem::take(&mut self.tenures) {
            match by_uid.get(old.uid.as_str()) {
                Some(&index) => updates.push((index, old.end)),
                None => {
                    // Gone from the list: deleted at the latest when this version was written.
                    old.end = old.end.at_most(mtime_ns);
                    history.push(old);
                }
            }
        }
        for (index, old_end) in updates {
            pods[index].end = pods[index].end.updated(old_end);
        }
        self.newest_mtime_ns = self.newest_mtime_ns.max(mtime_ns);
        history.extend(pods);
        self.tenures = history;
        self.skipped = skipped;
    }

    /// Forgets what ended before the history window, shares what pods have in common, and
    /// indexes the rest by address.
    fn prune_and_index(&mut self) {
        let horizon = self.newest_mtime_ns.saturating_sub(HISTORY_NS);
        self.tenures
            .retain(|tenure| tenure.end.time().is_none_or(|end| end >= horizon));
        for tenure in &mut self.tenures {
            self.interner.pod(&mut tenure.info);
        }
        self.interner.prune();
        self.by_ip.clear();
        for (index, tenure) in self.tenures.iter().enumerate() {
            for ip in &tenure.ips {
                self.by_ip.entry(*ip).or_default().push(index);
            }
        }
    }
}

/// What tells one version of the file from the next without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: SystemTime,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Result<FileStamp, PodsError> {
        let read_error = |source| PodsError::Read {
            path: path.to_owned(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        let modified = metadata.modified().map_err(read_error)?;
        Ok(FileStamp {
            modified,
            len: metadata.len(),
        })
    }

    fn mtime_ns(&self) -> i64 {
        unix_ns(self.modified)
    }
}

fn unix_ns(time: SystemTime) -> i64 {
    let saturate = |nanos: u128| i64::try_from(nanos).unwrap_or(i64::MAX);
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => saturate(after.as_nanos()),
        Err(before) => -saturate(before.duration().as_nanos()),
    }
}

/// One version of the file, parsed.
struct Snapshot {
    mtime_ns: i64,
    pods: Vec<Tenure>,
    skipped: usize,
}

impl Snapshot {
    fn read(path: &Path, mtime_ns: i64) -> Result<Snapshot, PodsError> {
        let bytes = std::fs::read(path).map_err(|source| PodsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let list: Value =
            serde_json::from_slice(&bytes).map_err(|error| json_error(path, &error))?;
        let not_a_list = || PodsError::NotAList {
            path: path.to_owned(),
        };
        let items = list.get("items").and_then(Value::as_array);
        let items = items.ok_or_else(not_a_list)?;
        let mut snapshot = Snapshot {
            mtime_ns,
            pods: Vec::new(),
            skipped: 0,
        };
        for item in items {
            match Tenure::parse(item, mtime_ns) {
                Ok(Some(pod)) => snapshot.pods.push(pod),
                Ok(None) => {}
                Err(Malformed) => snapshot.skipped += 1,
            }
        }
        Ok(snapshot)
    }
}

fn json_error(path: &Path, error: &serde_json::Error) -> PodsError {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let position = format!(" at line {line} column {column}");
    PodsError::Json {
        path: path.to_owned(),
        line,
        column,
        message: text.strip_suffix(&position).unwrap_or(&text).to_owned(),
    }
}

/// A pod object lacking a field it needs, or with one of the wrong type: skipped and counted.
#[derive(Debug)]
struct Malformed;

/// One pod's hold on its addresses.
#[derive(Debug)]
pub struct Tenure {
    /// Same pod across versions of the file; names are reused (StatefulSets), uids are not.
    uid: String,
    ips: Vec<IpAddr>,
    start: i64,
    end: End,
    info: PodInfo,
}

/// When a pod let go of its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still running as far as the file knows.
    Open,
    /// Deleted or finished at this time, or gone from a version of the file written then.
    At(i64),
    /// Finished, but no container says when: the file's modification time stands in, an upper
    /// bound that a later version of the file must not push back.
    NoLaterThan(i64),
}

impl End {
    fn time(self) -> Option<i64> {
        match self {
            End::Open => None,
            End::At(time) | End::NoLaterThan(time) => Some(time),
        }
    }

    fn at_most(self, time: i64) -> End {
        match self {
            End::Open => End::At(time),
            End::At(end) => End::At(end.min(time)),
            End::NoLaterThan(end) => End::NoLaterThan(end.min(time)),
        }
    }

    /// The end from a new version of the file, given what the previous one said: the new
    /// version is authoritative, except that an estimate never moves a known end later.
    fn updated(self, previous: End) -> End {
        match (self, previous.time()) {
            (End::NoLaterThan(_), Some(time)) => self.at_most(time),
            _ => self,
        }
    }
}

impl Tenure {
    /// Ok(None): a pod that cannot be told apart by its address (host network, no IP yet).
    /// `mtime_ns`: when this state of the pod was known (a finished pod without a finishing
    /// time ended no later than that).
    fn parse(pod: &Value, mtime_ns: i64) -> Result<Option<Tenure>, Malformed> {
        let metadata = pod.get("metadata").ok_or(Malformed)?;
        let namespace = required_str(metadata, "namespace")?;
        let name = required_str(metadata, "name")?;
        let uid = required_str(metadata, "uid")?;
        let status = pod.get("status").unwrap_or(&Value::Null);
        // A host-network pod shows the node's address, shared with every other such pod.
        if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let ips = pod_ips(status)?;
        if ips.is_empty() {
            return Ok(None);
        }
        let start = match time_at(status, "/startTime")? {
            Some(start) => start,
            None => time_at(metadata, "/creationTimestamp")?.ok_or(Malformed)?,
        };
        let labels = optional_object(metadata, "labels")?;
        let (workload_kind, workload) = workload(metadata, labels)?.unzip();
        Ok(Some(Tenure {
            uid: uid.to_owned(),
            ips,
            start,
            end: pod_end(metadata, status, mtime_ns)?,
            info: PodInfo {
                namespace: namespace.into(),
                name: name.to_owned(),
                labels: identity_labels(namespace, labels)?.into(),
                workload: workload.map(Into::into),
                workload_kind: workload_kind.map(Into::into),
            },
        }))
    }

    fn covers(&self, unix_ns: i64) -> bool {
        self.start.saturating_sub(START_GRACE_NS) <= unix_ns
            && self.end.time().is_none_or(|end| unix_ns < end)
    }
}

fn required_str<'a>(object: &'a Value, key: &str) -> Result<&'a str, Malformed> {
    object.get(key).and_then(Value::as_str).ok_or(Malformed)
}

/// Absent and `null` are the same thing in Kubernetes JSON; any other non-object is broken.
fn optional_object<'a>(
    object: &'a Value,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, Malformed> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_object().map(Some).ok_or(Malformed),
    }
}

fn optional_array<'a>(object: &'a Value, pointer: &str) -> Result<&'a [Value], Malformed> {
    match object.pointer(pointer) {
        None | Some(Value::Null) => Ok(&[]),
        Some(value) => value.as_array().map(Vec::as_slice).ok_or(Malformed),
    }
}

/// An RFC 3339 time as nanoseconds since the Unix epoch; absent is None, unreadable is broken.
fn time_at(object: &Value, pointer: &str) -> Result<Option<i64>, Malformed> {
    match object.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let text = value.as_str().ok_or(Malformed)?;
            let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| Malformed)?;
            time.timestamp_nanos_opt().map(Some).ok_or(Malformed)
        }
    }
}

/// `status.podIPs` lists every family of a dual-stack pod; `status.podIP` is the older,
/// single-address field, kept as a fallback for files written by or for older clusters.
fn pod_ips(status: &Value) -> Result<Vec<IpAddr>, Malformed> {
    let listed = optional_array(status, "/podIPs")?;
    let mut ips = if listed.is_empty() {
        let single = status.get("podIP").filter(|ip| !ip.is_null());
        single.map(parse_ip).transpose()?.into_iter().collect()
    } else {
        let entries = listed
            .iter()
            .map(|entry| entry.get("ip").unwrap_or(&Value::Null));
        entries.map(parse_ip).collect::<Result<Vec<_>, _>>()?
    };
    ips.sort_unstable();
    ips.dedup();
    Ok(ips)
}

fn parse_ip(text: &Value) -> Result<IpAddr, Malformed> {
    text.as_str()
        .and_then(|text| text.parse().ok())
        .ok_or(Malformed)
}

/// A deleted pod ends at its deletion; a finished one (its IP released for reuse) when its
/// last container finished; any other is still running.
fn pod_end(metadata: &Value, status: &Value, mtime_ns: i64) -> Result<End, Malformed> {
    if let Some(deleted) = time_at(metadata, "/deletionTimestamp")? {
        return Ok(End::At(deleted));
    }
    if !matches!(
        status.get("phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return Ok(End::Open);
    }
    let mut finished = None;
    for container in optional_array(status, "/containerStatuses")? {
        finished = finished.max(time_at(container, "/state/terminated/finishedAt")?);
    }
    Ok(finished.map_or(End::NoLaterThan(mtime_ns), End::At))
}

fn identity_labels(
    namespace: &str,
    labels: Option<&Map<String, Value>>,
) -> Result<Vec<String>, Malformed> {
    let mut identity = BTreeSet::from([format!("k8s:io.kubernetes.pod.namespace={namespace}")]);
    for (key, value) in labels.into_iter().flatten() {
        let value = value.as_str().ok_or(Malformed)?;
        identity.insert(format!("k8s:{key}={value}"));
    }
    Ok(identity.into_iter().collect())
}

/// (kind, name) of the controlling owner, with a Deployment's ReplicaSet replaced by the
/// Deployment: that is the name people know and the one Hubble shows.
fn workload(
    metadata: &Value,
    labels: Option<&Map<String, Value>>,
) -> Result<Option<(String, String)>, Malformed> {
    let owners = optional_array(metadata, "/ownerReferences")?;
    let controller = owners
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
        .or(owners.first());
    let Some(owner) = controller else {
        return Ok(None);
    };
    let kind = required_str(owner, "kind")?;
    let name = required_str(owner, "name")?;
    let template_hash = labels
        .and_then(|labels| labels.get("pod-template-hash"))
        .and_then(Value::as_str);
    let deployment = template_hash.and_then(|hash| deployment_of(kind, name, hash));
    Ok(Some(match deployment {
        Some(deployment) => ("Deployment".to_owned(), deployment.to_owned()),
        None => (kind.to_owned(), name.to_owned()),
    }))
}

/// `<deployment>-<hash>` is how the Deployment controller names its ReplicaSets; a ReplicaSet
/// named otherwise was made by hand and is its own workload.
fn deployment_of<'a>(kind: &str, replica_set: &'a str, hash: &str) -> Option<&'a str> {
    if kind != "ReplicaSet" || hash.is_empty() {
        return None;
    }
    replica_set
        .strip_suffix(hash)?
        .strip_suffix('-')
        .filter(|deployment| !deployment.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs::File;
    use std::time::Duration;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests-data/pods.json");

    fn ns(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn set_mtime(path: &Path, rfc3339: &str) {
        let since_epoch = Duration::from_nanos(ns(rfc3339).try_into().unwrap());
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(UNIX_EPOCH + since_epoch).unwrap();
    }

    fn write_file(path: &Path, contents: &str, mtime: &str) {
        std::fs::write(path, contents).unwrap();
        set_mtime(path, mtime);
    }

    fn write_list(path: &Path, pods: &[Value], mtime: &str) {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": pods });
        write_file(path, &serde_json::to_string_pretty(&list).unwrap(), mtime);
    }

    fn pod(name: &str, ip: &str, start: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "shop",
                "uid": format!("uid-{name}"),
                "creationTimestamp": start,
                "labels": { "app": name },
            },
            "spec": { "containers": [{ "name": name, "image": "nginx:1.27" }] },
            "status": { "phase": "Running", "podIP": ip, "startTime": start },
        })
    }

    fn name_at(inventory: &PodInventory, address: &str, time: &str) -> Option<String> {
        inventory
            .lookup(ip(address), ns(time))
            .map(|pod| pod.name.clone())
    }

    /// The fixture copied with a known mtime: its finished Job must lie within the history kept.
    fn fixture(dir: &Path, mtime: &str) -> PodInventory {
        let path = dir.join("pods.json");
        std::fs::copy(FIXTURE, &path).unwrap();
        set_mtime(&path, mtime);
        PodInventory::load(&path).unwrap()
    }

    #[test]
    fn fixture_resolves_each_pod() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = fixture(dir.path(), "2026-01-01T01:00:00Z");
        let at = ns("2026-01-01T00:01:00Z");
        assert_eq!(inventory.skipped(), 0);

        let client = inventory.lookup(ip("10.199.0.1"), at).unwrap();
        assert_eq!(
            client,
            &PodInfo {
                namespace: "shop".into(),
                name: "client-7d4b9c-x2x9k".into(),
                labels: vec![
                    "k8s:app=client".to_owned(),
                    "k8s:io.kubernetes.pod.namespace=shop".to_owned(),
                    "k8s:pod-template-hash=7d4b9c".to_owned(),
                ]
                .into(),
                workload: Some("client".into()),
                workload_kind: Some("Deployment".into()),
            }
        );

        let server = inventory.lookup(ip("10.199.0.2"), at).unwrap();
        assert_eq!(
            (&*server.namespace, server.name.as_str()),
            ("shop", "server-0")
        );
        assert_eq!(
            *server.labels,
            [
                "k8s:app=server",
                "k8s:apps.kubernetes.io/pod-index=0",
                "k8s:controller-revision-hash=server-6c8f5d7b9",
                "k8s:io.kubernetes.pod.namespace=shop",
                "k8s:statefulset.kubernetes.io/pod-name=server-0",
            ]
        );
        assert_eq!(server.workload_kind.as_deref(), Some("StatefulSet"));
        assert_eq!(server.workload.as_deref(), Some("server"));

        let fluent_bit = inventory.lookup(ip("10.199.0.3"), at).unwrap();
        assert_eq!(&*fluent_bit.namespace, "logging");
        assert_eq!(fluent_bit.workload_kind.as_deref(), Some("DaemonSet"));
        assert_eq!(fluent_bit.workload.as_deref(), Some("fluent-bit"));

        // Host network: the node's address, not the agent's.
        assert_eq!(inventory.lookup(ip("172.18.0.2"), at), None);

        let job = inventory.lookup(ip("10.199.0.4"), at).unwrap();
        assert_eq!(job.name, "db-migrate-q8w4n");
        assert_eq!(job.workload_kind.as_deref(), Some("Job"));
        assert_eq!(job.workload.as_deref(), Some("db-migrate"));
        // Finished at 00:02:30: the address is free after that.
        assert_eq!(
            name_at(&inventory, "10.199.0.4", "2026-01-01T00:02:31Z"),
            None
        );

        for dual_stack in ["10.199.0.5", "fd00:10:199::5", "::ffff:10.199.0.5"] {
            let frontend = inventory.lookup(ip(dual_stack), at).unwrap();
            assert_eq!(frontend.name, "frontend-5f9c8d6b7-p4m2z", "{dual_stack}");
            assert_eq!(frontend.workload.as_deref(), Some("frontend"));
        }

        // Before the pods existed (beyond the start grace).
        assert_eq!(
            name_at(&inventory, "10.199.0.1", "2025-12-31T23:59:54Z"),
            None
        );
        assert_eq!(
            name_at(&inventory, "10.199.0.9", "2026-01-01T00:01:00Z"),
            None
        );
    }

    #[test]
    fn history_ended_an_hour_before_the_file_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = fixture(dir.path(), "2026-01-01T03:00:00Z");
        assert_eq!(
            name_at(&inventory, "10.199.0.4", "2026-01-01T00:01:00Z"),
            None
        );
        // Running pods are kept however old.
        let client = name_at(&inventory, "10.199.0.1", "2026-01-01T00:01:00Z");
        assert_eq!(client.as_deref(), Some("client-7d4b9c-x2x9k"));
    }

    #[test]
    fn reused_ip_resolves_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let mut a = pod("a", "10.199.0.9", "2026-01-01T00:00:00Z");
        a["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:00Z");
        write_list(&path, &[a], "2026-01-01T00:10:00Z");
        let mut inventory = PodInventory::load(&path).unwrap();

        let b = pod("b", "10.199.0.9", "2026-01-01T00:20:00Z");
        write_list(&path, &[b], "2026-01-01T00:20:00Z");
        assert!(inventory.refresh().unwrap());

        let at = |time| name_at(&inventory, "10.199.0.9", time);
        assert_eq!(at("2026-01-01T00:09:59Z").as_deref(), Some("a"));
        assert_eq!(at("2026-01-01T00:10:00Z"), None);
        assert_eq!(at("2026-01-01T00:15:00Z"), None);
        // Within the start grace, then the pod itself.
        assert_eq!(at("2026-01-01T00:19:56Z").as_deref(), Some("b"));
        assert_eq!(at("2026-01-01T00:25:00Z").as_deref(), Some("b"));
    }

    #[test]
    fn start_grace_does_not_steal_from_the_current_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let mut a = pod("a", "10.199.0.9", "2026-01-01T00:00:00Z");
        a["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:00Z");
        let b = pod("b", "10.199.0.9", "2026-01-01T00:10:02Z");
        write_list(&path, &[a, b], "2026-01-01T00:11:00Z");
        let inventory = PodInventory::load(&path).unwrap();
        let at = |time| name_at(&inventory, "10.199.0.9", time);
        assert_eq!(at("2026-01-01T00:09:59Z").as_deref(), Some("a"));
        assert_eq!(at("2026-01-01T00:10:01Z").as_deref(), Some("b"));
    }

    #[test]
    fn pod_absent_from_reloaded_file_ends_at_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let running = pod("running", "10.199.0.7", "2026-01-01T00:00:00Z");
        let mut deleting = pod("deleting", "10.199.0.8", "2026-01-01T00:00:00Z");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:20:00Z");
        write_list(&path, &[running, deleting], "2026-01-01T00:10:00Z");
        let mut inventory = PodInventory::load(&path).unwrap();
        let at = |inventory: &PodInventory, address, time| name_at(inventory, address, time);
        assert_eq!(
            at(&inventory, "10.199.0.7", "2026-01-01T00:31:00Z").as_deref(),
            Some("running")
        );

        write_list(&path, &[], "2026-01-01T00:30:00Z");
        assert!(inventory.refresh().unwrap());
        assert_eq!(
            at(&inventory, "10.199.0.7", "2026-01-01T00:29:59Z").as_deref(),
            Some("running")
        );
        assert_eq!(at(&inventory, "10.199.0.7", "2026-01-01T00:30:00Z"), None);
        // Already ended earlier: the absence does not extend it.
        assert_eq!(
            at(&inventory, "10.199.0.8", "2026-01-01T00:19:59Z").as_deref(),
            Some("deleting")
        );
        assert_eq!(at(&inventory, "10.199.0.8", "2026-01-01T00:25:00Z"), None);
    }

    #[test]
    fn finished_pod_without_finish_time_ends_at_the_first_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let mut done = pod("done", "10.199.0.6", "2026-01-01T00:00:00Z");
        done["status"]["phase"] = json!("Failed");
        write_list(&path, std::slice::from_ref(&done), "2026-01-01T00:10:00Z");
        let mut inventory = PodInventory::load(&path).unwrap();
        write_list(&path, &[done], "2026-01-01T00:20:00Z");
        assert!(inventory.refresh().unwrap());
        let at = |time| name_at(&inventory, "10.199.0.6", time);
        assert_eq!(at("2026-01-01T00:09:59Z").as_deref(), Some("done"));
        assert_eq!(at("2026-01-01T00:15:00Z"), None);
    }

    #[test]
    fn reloads_only_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        write_list(&path, &[], "2026-01-01T00:00:00Z");
        let mut inventory = PodInventory::load(&path).unwrap();
        assert_eq!(inventory.origin(), format!("--pods {}", path.display()));
        assert!(!inventory.refresh().unwrap());

        let c = pod("c", "10.199.0.10", "2026-01-01T00:00:00Z");
        write_list(&path, &[c], "2026-01-01T00:01:00Z");
        assert!(inventory.refresh().unwrap());
        assert!(!inventory.refresh().unwrap());
        let found = name_at(&inventory, "10.199.0.10", "2026-01-01T00:00:30Z");
        assert_eq!(found.as_deref(), Some("c"));
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        write_file(
            &path,
            "{\n  \"kind\": \"List\",\n  \"items\": [,]\n}\n",
            "2026-01-01T00:00:00Z",
        );
        let error = PodInventory::load(&path).unwrap_err();
        assert!(
            matches!(error, PodsError::Json { line: 3, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{}:3:", path.display())),
            "{message}"
        );
        assert!(!message.contains("at line"), "{message}");
    }

    #[test]
    fn failed_reload_keeps_what_was_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        write_list(
            &path,
            &[pod("d", "10.199.0.11", "2026-01-01T00:00:00Z")],
            "2026-01-01T00:01:00Z",
        );
        let mut inventory = PodInventory::load(&path).unwrap();
        write_file(
            &path,
            "{\"kind\": \"List\", \"items\": [",
            "2026-01-01T00:02:00Z",
        );
        assert!(matches!(
            inventory.refresh(),
            Err(PodsError::Json { line: 1, .. })
        ));
        // Reported once per change, not at every poll.
        assert!(!inventory.refresh().unwrap());
        let found = name_at(&inventory, "10.199.0.11", "2026-01-01T00:03:00Z");
        assert_eq!(found.as_deref(), Some("d"));
    }

    #[test]
    fn not_a_list_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        write_file(&path, "[]", "2026-01-01T00:00:00Z");
        let error = PodInventory::load(&path).unwrap_err();
        assert!(matches!(error, PodsError::NotAList { .. }), "{error:?}");
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn missing_file_names_it() {
        let path = Path::new("/nonexistent/pods.json");
        let error = PodInventory::load(path).unwrap_err();
        assert!(matches!(error, PodsError::Read { .. }), "{error:?}");
        assert!(error.to_string().starts_with("/nonexistent/pods.json: "));
    }

    #[test]
    fn pods_missing_fields_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let no_metadata = json!({ "kind": "Pod", "status": { "podIP": "10.199.0.12" } });
        let bad_ip = pod("bad-ip", "10.199.0.300", "2026-01-01T00:00:00Z");
        let bad_time = pod("bad-time", "10.199.0.13", "yesterday");
        let mut pending = pod("pending", "", "2026-01-01T00:00:00Z");
        pending["status"] = json!({ "phase": "Pending" });
        let good = pod("good", "10.199.0.14", "2026-01-01T00:00:00Z");
        let items = [
            no_metadata,
            bad_ip,
            bad_time,
            pending,
            good,
            json!("not a pod"),
        ];
        write_list(&path, &items, "2026-01-01T00:01:00Z");
        let inventory = PodInventory::load(&path).unwrap();
        // The pending pod (no IP yet) is left out but is not broken.
        assert_eq!(inventory.skipped(), 4);
        let found = name_at(&inventory, "10.199.0.14", "2026-01-01T00:00:30Z");
        assert_eq!(found.as_deref(), Some("good"));
        assert_eq!(
            name_at(&inventory, "10.199.0.12", "2026-01-01T00:00:30Z"),
            None
        );
    }

    #[test]
    fn workload_from_owner_references() {
        let with_owners = |owners: Value, hash: &str| {
            let metadata = json!({ "ownerReferences": owners });
            let labels = json!({ "pod-template-hash": hash });
            workload(&metadata, labels.as_object()).ok().flatten()
        };
        let owner = |kind: &str, name: &str, controller: bool| json!({ "kind": kind, "name": name, "controller": controller });
        let pair = |kind: &str, name: &str| Some((kind.to_owned(), name.to_owned()));

        let replica_set = json!([owner("ReplicaSet", "api-5d8f7", true)]);
        assert_eq!(
            with_owners(replica_set.clone(), "5d8f7"),
            pair("Deployment", "api")
        );
        // A hand-made ReplicaSet whose name does not end in the hash stays itself.
        assert_eq!(
            with_owners(replica_set, "9a9a9"),
            pair("ReplicaSet", "api-5d8f7")
        );
        let controller_second = json!([
            owner("Thing", "other", false),
            owner("StatefulSet", "db", true)
        ]);
        assert_eq!(
            with_owners(controller_second, ""),
            pair("StatefulSet", "db")
        );
        let no_controller = json!([owner("Node", "kind-worker", false)]);
        assert_eq!(with_owners(no_controller, ""), pair("Node", "kind-worker"));
        assert_eq!(with_owners(json!([]), ""), None);
        assert_eq!(with_owners(Value::Null, ""), None);
    }
}
