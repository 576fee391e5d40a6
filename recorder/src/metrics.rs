//! `--metrics-addr`: Prometheus metrics and a health endpoint for `flowrec run`.
//!
//! Every stage counts into one [`Metrics`] (atomics, shared); the spool's gauges are measured
//! when scraped. The server is a few lines of HTTP/1.1 on tokio (GET /metrics, GET /health),
//! enough for Prometheus and a kubelet probe, without pulling a web framework into the
//! recorder.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

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
    /// Panics that ended earlier runs on this spool (each a restart).
    pub panics: AtomicU64,
    /// False once the source has stopped (the health endpoint then answers 503).
    pub recording: AtomicBool,
    /// The spool folder, measured at each scrape.
    pub spool: PathBuf,
}

impl Metrics {
    pub fn new(spool: PathBuf) -> Metrics {
        Metrics {
            spool,
            recording: AtomicBool::new(true),
            ..Metrics::default()
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
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        metric(
            "flowrec_flows_received_total",
            "counter",
            "Flows taken from the source.",
            &[("", get(&self.flows_received))],
        );
        metric(
            "flowrec_flows_recorded_total",
            "counter",
            "Flows fsynced in the local spool (recorded).",
            &[("", get(&self.flows_recorded))],
        );
        metric(
            "flowrec_flows_shipped_total",
            "counter",
            "Flows in files uploaded to the store and checked there.",
            &[("", get(&self.flows_shipped))],
        );
        metric(
            "flowrec_files_uploaded_total",
            "counter",
            "Parquet files uploaded.",
            &[("", get(&self.files_uploaded))],
        );
        metric(
            "flowrec_bytes_uploaded_total",
            "counter",
            "Bytes of Parquet uploaded.",
            &[("", get(&self.bytes_uploaded))],
        );
        metric(
            "flowrec_upload_errors_total",
            "counter",
            "Failed attempts to ship a spool segment (each is retried).",
            &[("", get(&self.upload_errors))],
        );
        metric(
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
            "flowrec_early_drains_total",
            "counter",
            "Kernel map drains before the active timeout (map nearly full).",
            &[("", get(&self.early_drains))],
        );
        metric(
            "flowrec_lines_malformed_total",
            "counter",
            "Lines of the followed file that are not Hubble events (reported and skipped).",
            &[("", get(&self.lines_malformed))],
        );
        metric(
            "flowrec_source_waiting",
            "gauge",
            "1 while reading the followed file waits for room in the spool (or for its disk).",
            &[("", get(&self.source_waiting))],
        );
        metric(
            "flowrec_source_caught_up",
            "gauge",
            "1 when the last look at the followed file found nothing new to read.",
            &[("", get(&self.source_caught_up))],
        );
        metric(
            "flowrec_panics_total",
            "counter",
            "Panics that ended an earlier run of the recorder on this spool (each restarted it).",
            &[("", get(&self.panics))],
        );
        metric(
            "flowrec_spool_segments_waiting",
            "gauge",
            "Sealed spool segments not yet shipped.",
            &[("", waiting)],
        );
        metric(
            "flowrec_spool_bytes",
            "gauge",
            "Bytes of spool segments not yet shipped (the one being written included).",
            &[("", spool_bytes)],
        );
        metric(
            "flowrec_spool_oldest_age_seconds",
            "gauge",
            "Age of the oldest sealed spool segment not yet shipped: how far behind the store is.",
            &[("", oldest)],
        );
        out
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

/// Serves `/metrics` and `/health` on `listener` until the process ends.
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
                "/health" | "/healthz" if metrics.recording.load(Ordering::Relaxed) => {
                    ("200 OK", "ok\n".to_string())
                }
                "/health" | "/healthz" => ("503 Service Unavailable", "stopped\n".to_string()),
                _ => ("404 Not Found", "try /metrics or /health\n".to_string()),
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
        let metrics = Metrics::new(dir.path().to_path_buf());
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
}
