//! `--metrics-addr`: Prometheus metrics and a health endpoint for `flowrec run`.
//!
//! Every stage counts into one [`Metrics`] (atomics, shared); the spool's gauges are measured
//! when scraped. The server is a few lines of HTTP/1.1 on tokio (GET /metrics, GET /health,
//! GET /livez), enough for Prometheus and a kubelet probe, without pulling a web framework into
//! the recorder.
//!
//! Two probes, because they answer different questions. `/livez`: is the process recording
//! at all (503 once its source has stopped for good: restart it). `/health` (readiness): is it
//! recording *now* (also 503 while the source's upstream, the Hubble stream, has been down
//! longer than `--unready-after`): a restart would not help there, but a rollout should wait
//! and an alert on unready pods should fire.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, UInt64Type};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters of one recorder run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Flows taken from the source (kernel drains).
    pub flows_received: AtomicU64,
    /// Flows fsynced in the spool: recorded.
    pub flows_recorded: AtomicU64,
    /// Flows in files uploaded and checked in the store.
    pub flows_shipped: AtomicU64,
    pub files_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Failed shipping attempts (each retried).
    pub upload_errors: AtomicU64,
    /// Kernel-side losses (cumulative counters read at every drain).
    pub packets_lost_flow_map_full: AtomicU64,
    pub connections_lost_conn_map_full: AtomicU64,
    /// Flows not recorded because the spool was at `--spool-max-bytes`.
    pub flows_lost_spool_full: AtomicU64,
    /// Flows not recorded because writing the spool failed (disk full, I/O error).
    pub flows_lost_spool_error: AtomicU64,
    pub early_drains: AtomicU64,
    /// Lines of a followed file that are not Hubble events (reported, skipped).
    pub lines_malformed: AtomicU64,
    /// 1 while a followed file's reading waits for the spool (at its budget, or failing).
    pub source_waiting: AtomicU64,
    /// 1 when the last look at the followed file found nothing new (everything written to it
    /// so far is read).
    pub source_caught_up: AtomicU64,
    /// Interfaces the eBPF source's tc programs are attached to now.
    pub interfaces_attached: AtomicU64,
    /// Panics that ended earlier runs on this spool (each a restart).
    pub panics: AtomicU64,
    /// False once the source has stopped (both probes then answer 503).
    pub recording: AtomicBool,
    /// Since when the source's upstream (the Hubble stream) is down, in ms since the epoch;
    /// 0 while it is up, and always for sources without an upstream (files, the kernel).
    source_down_since_ms: AtomicU64,
    /// How long the upstream may be down before `/health` answers 503 (`--unready-after`):
    /// a reconnect within it does not flap the pod's readiness.
    unready_after: Duration,
    /// Drops recorded, per `flowrec_drops_total` series.
    drops: Mutex<BTreeMap<DropSeries, u64>>,
    /// The eBPF source's programs and whether each is attached (`flowrec_ebpf_program_attached`).
    programs: Mutex<Vec<(String, bool)>>,
    /// The spool folder, measured at each scrape.
    pub spool: PathBuf,
}

/// The labels of one `flowrec_drops_total` series: those of Hubble's `hubble_drop_total`
/// with its namespace contexts (`reason`, `protocol`, `source`, `destination`), so that an
/// alert written for Hubble works on the recorder's metric, from any source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DropSeries {
    reason: String,
    protocol: String,
    /// Namespaces, empty when the end is not a pod (or not known), as Hubble has them.
    source: String,
    destination: String,
}

/// Series of `flowrec_drops_total` before new namespace pairs are counted under
/// [`OTHER_NAMESPACES`]: label values come from the traffic, and a scan across thousands of
/// namespaces must not explode the scrape. (Reasons and protocols are few and fixed.)
const MAX_DROP_SERIES: usize = 2000;
const OTHER_NAMESPACES: &str = "_other";

/// What a probe answers: an HTTP status and a one-line reason.
type Probe = (&'static str, String);

impl Metrics {
    pub fn new(spool: PathBuf, unready_after: Duration) -> Metrics {
        Metrics {
            spool,
            unready_after,
            recording: AtomicBool::new(true),
            ..Metrics::default()
        }
    }

    /// The source lost its upstream (or has not reached it yet); a later call while it is
    /// still down keeps the first time.
    pub fn source_down(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64);
        let _ = self.source_down_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Which of the eBPF source's programs are attached (a skipped one means columns the
    /// kernel cannot fill: worth an alert where it is unexpected).
    pub fn set_ebpf_programs(&self, programs: &[(&str, bool)]) {
        *self.programs.lock().expect("never poisoned") = programs
            .iter()
            .map(|(program, attached)| (program.to_string(), *attached))
            .collect();
    }

    /// The source's upstream is delivering again.
    pub fn source_up(&self) {
        self.source_down_since_ms.store(0, Ordering::Relaxed);
    }

    /// How long the upstream has been down, None while it is up.
    fn source_down_for(&self) -> Option<Duration> {
        let since = self.source_down_since_ms.load(Ordering::Relaxed);
        (since != 0).then(|| {
            let since = UNIX_EPOCH + Duration::from_millis(since);
            SystemTime::now().duration_since(since).unwrap_or_default()
        })
    }

    /// Counts the drops among rows just recorded: per row, its `dropped_packets` (the eBPF
    /// source: packets the kernel dropped, with the flow's drop reason) or, without it, 1 for
    /// a DROPPED flow (Hubble: each drop is a flow), as Hubble's `hubble_drop_total` counts.
    pub fn count_drops(&self, rows: &RecordBatch) {
        let column = |name: &str| rows.column_by_name(name).map(|c| c.as_ref());
        let (Some(verdict), Some(reason)) = (column("verdict"), column("drop_reason_desc")) else {
            return;
        };
        let dropped_packets = column("dropped_packets")
            .filter(|c| c.data_type() == &DataType::UInt64)
            .map(|c| c.as_primitive::<UInt64Type>());
        let verdict = Labels::of(Some(verdict));
        let dropped_verdict = verdict.matching("DROPPED");
        let labels = [
            Labels::of(Some(reason)),
            Labels::of(column("l4_protocol")),
            Labels::of(column("source_namespace")),
            Labels::of(column("destination_namespace")),
        ];
        // Summed per series within the batch first, on the batch's dictionary keys: a drain
        // of 65k dropped flows is a handful of series, and a string copy, a map search and
        // four string comparisons per row (two of empty strings: see `Label`) were a sixth of
        // the eBPF recorder's CPU in a drop flood. In the order first seen, so that the series
        // budget admits them as rows came; consecutive rows are mostly of one series.
        let mut counted: Vec<([Label; 4], u64)> = Vec::new();
        let mut index: HashMap<[Label; 4], usize> = HashMap::new();
        let mut last: Option<usize> = None;
        for row in 0..rows.num_rows() {
            let packets = match dropped_packets {
                Some(packets) if packets.is_valid(row) => packets.value(row),
                _ => u64::from(verdict.is(row, &dropped_verdict)),
            };
            if packets == 0 {
                continue;
            }
            let series = labels.each_ref().map(|l| l.at(row));
            let at = match last {
                Some(at) if counted[at].0 == series => at,
                _ => *index.entry(series).or_insert_with(|| {
                    counted.push((series, 0));
                    counted.len() - 1
                }),
            };
            last = Some(at);
            counted[at].1 += packets;
        }
        if counted.is_empty() {
            return;
        }
        let mut drops = self.drops.lock().expect("never poisoned");
        for (series, packets) in counted {
            let [reason, protocol, source, destination] =
                [0, 1, 2, 3].map(|i| labels[i].text(series[i]).to_owned());
            let mut series = DropSeries {
                reason,
                protocol,
                source,
                destination,
            };
            if drops.len() >= MAX_DROP_SERIES && !drops.contains_key(&series) {
                series.source = OTHER_NAMESPACES.to_owned();
                series.destination = OTHER_NAMESPACES.to_owned();
            }
            *drops.entry(series).or_default() += packets;
        }
    }

    /// `/livez`: 503 once the source has stopped.
    fn liveness(&self) -> Probe {
        if self.recording.load(Ordering::Relaxed) {
            ("200 OK", "ok\n".to_string())
        } else {
            ("503 Service Unavailable", "stopped\n".to_string())
        }
    }

    /// `/health`: liveness, and 503 while the upstream has been down over `unready_after`.
    fn readiness(&self) -> Probe {
        let live = self.liveness();
        match self.source_down_for() {
            Some(down) if down > self.unready_after && live.0.starts_with("200") => (
                "503 Service Unavailable",
                format!(
                    "the source's upstream has been down for {} s (over --unready-after {} s)\n",
                    down.as_secs(),
                    self.unready_after.as_secs()
                ),
            ),
            _ => live,
        }
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let (spool_bytes, waiting, oldest) = spool_usage(&self.spool.join("segments"));
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        metric(
            &mut out,
            "flowrec_flows_received_total",
            "counter",
            "Flows taken from the source.",
            &[("", get(&self.flows_received))],
        );
        metric(
            &mut out,
            "flowrec_flows_recorded_total",
            "counter",
            "Flows fsynced in the local spool (recorded).",
            &[("", get(&self.flows_recorded))],
        );
        metric(
            &mut out,
            "flowrec_flows_shipped_total",
            "counter",
            "Flows in files uploaded to the store and checked there.",
            &[("", get(&self.flows_shipped))],
        );
        metric(
            &mut out,
            "flowrec_files_uploaded_total",
            "counter",
            "Parquet files uploaded.",
            &[("", get(&self.files_uploaded))],
        );
        metric(
            &mut out,
            "flowrec_bytes_uploaded_total",
            "counter",
            "Bytes of Parquet uploaded.",
            &[("", get(&self.bytes_uploaded))],
        );
        metric(
            &mut out,
            "flowrec_upload_errors_total",
            "counter",
            "Failed attempts to ship a spool segment (each is retried).",
            &[("", get(&self.upload_errors))],
        );
        metric(
            &mut out,
            "flowrec_lost_total",
            "counter",
            "What could not be recorded, by cause (packets for flow_map_full, connections for \
             conn_map_full, flows for spool_full and spool_error).",
            &[
                (
                    "{cause=\"flow_map_full\"}",
                    get(&self.packets_lost_flow_map_full),
                ),
                (
                    "{cause=\"conn_map_full\"}",
                    get(&self.connections_lost_conn_map_full),
                ),
                ("{cause=\"spool_full\"}", get(&self.flows_lost_spool_full)),
                ("{cause=\"spool_error\"}", get(&self.flows_lost_spool_error)),
            ],
        );
        metric(
            &mut out,
            "flowrec_early_drains_total",
            "counter",
            "Kernel map drains before the active timeout (map nearly full).",
            &[("", get(&self.early_drains))],
        );
        metric(
            &mut out,
            "flowrec_lines_malformed_total",
            "counter",
            "Lines of the followed file that are not Hubble events (reported and skipped).",
            &[("", get(&self.lines_malformed))],
        );
        metric(
            &mut out,
            "flowrec_source_waiting",
            "gauge",
            "1 while reading the followed file waits for room in the spool (or for its disk).",
            &[("", get(&self.source_waiting))],
        );
        metric(
            &mut out,
            "flowrec_source_caught_up",
            "gauge",
            "1 when the last look at the followed file found nothing new to read.",
            &[("", get(&self.source_caught_up))],
        );
        let drops: Vec<(String, u64)> = self
            .drops
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(series, count)| {
                let labels = format!(
                    "{{reason=\"{}\",protocol=\"{}\",source=\"{}\",destination=\"{}\"}}",
                    escape(&series.reason),
                    escape(&series.protocol),
                    escape(&series.source),
                    escape(&series.destination)
                );
                (labels, *count)
            })
            .collect();
        metric(
            &mut out,
            "flowrec_drops_total",
            "counter",
            "Drops recorded, as Hubble's hubble_drop_total counts them (eBPF: packets the kernel \
             dropped; Hubble: dropped flows), by reason, protocol and the namespaces of both ends \
             (source, destination; _other past 2000 series).",
            &drops,
        );
        let programs: Vec<(String, u64)> = self
            .programs
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(program, attached)| {
                (
                    format!("{{program=\"{}\"}}", escape(program)),
                    u64::from(*attached),
                )
            })
            .collect();
        if !programs.is_empty() {
            metric(
                &mut out,
                "flowrec_ebpf_program_attached",
                "gauge",
                "1 for each of the eBPF source's programs attached, 0 for one this kernel cannot \
                 run (flowrec kernel says why).",
                &programs,
            );
        }
        if !programs.is_empty() {
            metric(
                &mut out,
                "flowrec_ebpf_interfaces",
                "gauge",
                "Interfaces the tc programs are attached to now (those matching --interfaces; \
                 new ones are attached within a second).",
                &[("", get(&self.interfaces_attached))],
            );
        }
        metric(
            &mut out,
            "flowrec_source_up",
            "gauge",
            "0 while the source's upstream (the Hubble stream) is down or not yet reached, else 1.",
            &[("", u64::from(self.source_down_for().is_none()))],
        );
        metric(
            &mut out,
            "flowrec_panics_total",
            "counter",
            "Panics that ended an earlier run of the recorder on this spool (each restarted it).",
            &[("", get(&self.panics))],
        );
        metric(
            &mut out,
            "flowrec_spool_segments_waiting",
            "gauge",
            "Sealed spool segments not yet shipped.",
            &[("", waiting)],
        );
        metric(
            &mut out,
            "flowrec_spool_bytes",
            "gauge",
            "Bytes of spool segments not yet shipped (the one being written included).",
            &[("", spool_bytes)],
        );
        metric(
            &mut out,
            "flowrec_spool_oldest_age_seconds",
            "gauge",
            "Age of the oldest sealed spool segment not yet shipped: how far behind the store is.",
            &[("", oldest)],
        );
        out
    }
}

/// One metric of the exposition: its HELP and TYPE lines, then a line per sample (labels as
/// written, `{...}` or empty).
fn metric<L: AsRef<str>>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(L, u64)],
) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    for (labels, value) in samples {
        out.push_str(&format!("{name}{} {value}\n", labels.as_ref()));
    }
}

/// Total bytes of the segments, how many are sealed, and the age in seconds of the oldest
/// sealed one (the newest is being written; 0 when nothing waits).
fn spool_usage(segments: &std::path::Path) -> (u64, u64, u64) {
    let Ok(entries) = std::fs::read_dir(segments) else {
        return (0, 0, 0);
    };
    let mut found: Vec<(std::ffi::OsString, std::fs::Metadata)> = entries
        .flatten()
        .filter_map(|entry| Some((entry.file_name(), entry.metadata().ok()?)))
        .collect();
    let bytes = found.iter().map(|(_, meta)| meta.len()).sum();
    // Names are zero-padded numbers: the last in order is the active segment.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.pop();
    let oldest = found
        .iter()
        .filter_map(|(_, meta)| meta.created().or_else(|_| meta.modified()).ok())
        .min();
    let age = oldest
        .and_then(|o| SystemTime::now().duration_since(o).ok())
        .map_or(0, |age| age.as_secs());
    (bytes, found.len() as u64, age)
}

/// A string column's value at `row`: plain or dictionary-encoded text; None when null.
fn text_at(column: &dyn Array, row: usize) -> Option<&str> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        DataType::Utf8 => Some(column.as_string::<i32>().value(row)),
        DataType::Utf8View => Some(column.as_string_view().value(row)),
        DataType::Dictionary(key, value)
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            let dictionary = column.as_dictionary::<Int32Type>();
            let key = dictionary.keys().value(row);
            Some(dictionary.values().as_string::<i32>().value(key as usize))
        }
        _ => None,
    }
}

/// One label of a drop series as a row holds it: a dictionary key (the flow schema's
/// low-cardinality columns), compared as a number and read as text once per series, or the
/// text of a plain string column. A missing column or a null is `Null`, which reads as "".
///
/// `Null` is not `Text("")`: comparing two empty strings still calls memcmp, and glibc's
/// AVX-512 memcmp does a masked load at the string's address, which for an empty string is
/// often a dangling one (an empty Arrow buffer's, a literal's); a fault-suppressed masked load
/// near page 0 took ~125 ns per call on this project's VMs, 270 ns per dropped row here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Label<'a> {
    Key(i32),
    Text(&'a str),
    Null,
}

/// A column of labels, its kind resolved once per batch.
enum Labels<'a> {
    Keys {
        keys: &'a arrow::array::Int32Array,
        values: &'a dyn Array,
    },
    Text(Option<&'a dyn Array>),
}

impl<'a> Labels<'a> {
    fn of(column: Option<&'a dyn Array>) -> Self {
        match column.and_then(|c| c.as_dictionary_opt::<Int32Type>()) {
            Some(dictionary) => Labels::Keys {
                keys: dictionary.keys(),
                values: dictionary.values().as_ref(),
            },
            None => Labels::Text(column),
        }
    }

    fn at(&self, row: usize) -> Label<'a> {
        match self {
            Labels::Keys { keys, .. } if keys.is_valid(row) => Label::Key(keys.value(row)),
            Labels::Keys { .. } => Label::Null,
            Labels::Text(column) => column
                .and_then(|c| text_at(c, row))
                .filter(|text| !text.is_empty())
                .map_or(Label::Null, Label::Text),
        }
    }

    fn text(&self, label: Label<'a>) -> &'a str {
        match (self, label) {
            (_, Label::Text(text)) => text,
            (_, Label::Null) => "",
            (Labels::Keys { values, .. }, Label::Key(key)) => {
                text_at(*values, key as usize).unwrap_or("")
            }
            (Labels::Text(_), Label::Key(_)) => "",
        }
    }

    /// What tells the rows reading as `text`: per dictionary key, whether it does.
    fn matching<'t>(&self, text: &'t str) -> Matching<'t> {
        let keys = match self {
            Labels::Keys { values, .. } => (0..values.len())
                .map(|key| text_at(*values, key) == Some(text))
                .collect(),
            Labels::Text(_) => Vec::new(),
        };
        Matching { text, keys }
    }

    /// Whether `row` reads as `matching`'s text.
    fn is(&self, row: usize, matching: &Matching) -> bool {
        match self.at(row) {
            Label::Key(key) => matching.keys.get(key as usize).copied().unwrap_or(false),
            Label::Text(text) => text == matching.text,
            Label::Null => matching.text.is_empty(),
        }
    }
}

/// A text to find in a label column, resolved to that column's dictionary keys.
struct Matching<'t> {
    text: &'t str,
    keys: Vec<bool>,
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics`, `/health` and `/livez` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            // The request head, bounded: nothing here needs a body.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match target {
                "/metrics" => ("200 OK", metrics.render()),
                "/health" | "/healthz" | "/readyz" => metrics.readiness(),
                "/livez" => metrics.liveness(),
                _ => (
                    "404 Not Found",
                    "try /metrics, /health or /livez\n".to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_counter_with_its_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("segments")).unwrap();
        std::fs::write(dir.path().join("segments/000000000001.seg"), [0u8; 60]).unwrap();
        std::fs::write(dir.path().join("segments/000000000002.seg"), [0u8; 40]).unwrap();
        let metrics = Metrics::new(dir.path().to_path_buf(), Duration::from_secs(30));
        Metrics::add(&metrics.flows_recorded, 42);
        Metrics::add(&metrics.packets_lost_flow_map_full, 3);
        let text = metrics.render();
        assert!(
            text.contains("\nflowrec_flows_recorded_total 42\n"),
            "{text}"
        );
        assert!(
            text.contains("flowrec_lost_total{cause=\"flow_map_full\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("flowrec_lost_total{cause=\"conn_map_full\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("\nflowrec_spool_bytes 100\n"), "{text}");
        assert!(
            text.contains("\nflowrec_spool_segments_waiting 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE flowrec_spool_oldest_age_seconds gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn readiness_follows_the_upstream_after_its_grace_and_liveness_only_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(dir.path().to_path_buf(), Duration::from_secs(30));
        assert_eq!(metrics.readiness().0, "200 OK");
        // Down, but not for longer than --unready-after: still ready (a reconnect does not
        // flap the pod).
        metrics.source_down();
        assert_eq!(metrics.readiness().0, "200 OK");
        assert!(metrics.render().contains("\nflowrec_source_up 0\n"));
        // Down for 45 s: unready, saying for how long; still live.
        let earlier = metrics.source_down_since_ms.load(Ordering::Relaxed) - 45_000;
        metrics
            .source_down_since_ms
            .store(earlier, Ordering::Relaxed);
        metrics.source_down();
        assert_eq!(
            metrics.source_down_since_ms.load(Ordering::Relaxed),
            earlier,
            "a later call keeps the first time"
        );
        let (status, reason) = metrics.readiness();
        assert_eq!(status, "503 Service Unavailable");
        assert!(
            reason.contains("down for 45 s (over --unready-after 30 s)"),
            "{reason}"
        );
        assert_eq!(metrics.liveness().0, "200 OK");
        metrics.source_up();
        assert_eq!(metrics.readiness().0, "200 OK");
        assert!(metrics.render().contains("\nflowrec_source_up 1\n"));
        // A stopped source fails both probes.
        metrics.recording.store(false, Ordering::Relaxed);
        assert_eq!(metrics.liveness().0, "503 Service Unavailable");
        assert_eq!(metrics.readiness().0, "503 Service Unavailable");
    }

    /// Rows as both sources write them: eBPF rows count their dropped packets (whatever the
    /// verdict says), Hubble rows (no dropped_packets) one per DROPPED flow; namespaces
    /// beyond the series budget are counted as _other, not dropped.
    #[test]
    fn drops_count_packets_or_dropped_flows_within_a_series_budget() {
        use arrow::array::{DictionaryArray, StringArray, UInt64Array};
        use arrow::datatypes::{Field, Schema};
        let rows = |namespaces: Vec<String>, verdicts: Vec<&str>, packets: Vec<Option<u64>>| {
            let n = namespaces.len();
            // Dictionaries, as the flow schema has them, and plain text for the namespaces
            // (both kinds of column are read).
            let text = |v: Vec<&str>| {
                Arc::new(v.into_iter().collect::<DictionaryArray<Int32Type>>())
                    as arrow::array::ArrayRef
            };
            let dictionary =
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            let schema = Schema::new(
                ["verdict", "drop_reason_desc", "l4_protocol"]
                    .map(|name| Field::new(name, dictionary.clone(), true))
                    .into_iter()
                    .chain([
                        Field::new("source_namespace", DataType::Utf8, true),
                        Field::new("destination_namespace", DataType::Utf8, true),
                        Field::new("dropped_packets", DataType::UInt64, true),
                    ])
                    .collect::<Vec<_>>(),
            );
            RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    text(verdicts),
                    text(vec!["POLICY_DENIED"; n]),
                    text(vec!["TCP"; n]),
                    Arc::new(StringArray::from(namespaces)),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                    Arc::new(UInt64Array::from(packets)),
                ],
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(dir.path().to_path_buf(), Duration::from_secs(30));
        // eBPF: 3 packets of a FORWARDED flow dropped, none of another; Hubble: a DROPPED
        // flow and a FORWARDED one.
        metrics.count_drops(&rows(
            vec!["shop".into(); 4],
            vec!["FORWARDED", "FORWARDED", "DROPPED", "FORWARDED"],
            vec![Some(3), Some(0), None, None],
        ));
        let text = metrics.render();
        assert!(
            text.contains(
                "\nflowrec_drops_total{reason=\"POLICY_DENIED\",protocol=\"TCP\",source=\"shop\",destination=\"\"} 4\n"
            ),
            "{text}"
        );
        let many: Vec<String> = (0..MAX_DROP_SERIES + 5)
            .map(|i| format!("ns-{i}"))
            .collect();
        let n = many.len();
        metrics.count_drops(&rows(many, vec!["DROPPED"; n], vec![None; n]));
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("flowrec_drops_total{"))
            .count();
        assert_eq!(series, MAX_DROP_SERIES + 1, "the budget, and _other");
        assert!(
            text.contains("source=\"_other\",destination=\"_other\"} 6\n"),
            "{text}"
        );
    }
}
