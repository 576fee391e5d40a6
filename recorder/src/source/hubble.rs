//! `--source hubble --hubble-server ADDR`: flows live from a Cilium agent's Hubble server
//! (`unix:///var/run/cilium/hubble.sock`) or from Hubble Relay (`host:4245`, TLS or mTLS), over
//! the Observer API (`GetFlows` with `follow`, after a `ServerStatus` check).
//!
//! Responses are received still encoded and read straight from their protobuf bytes into the
//! columns (`HubbleDecoder::decode_responses`: no message tree, no protojson in between), into
//! the row the same event exported as JSON and imported gives: a flow recorded live and the same
//! flow imported give the same row (the e2e tests compare both over every sample capture).
//!
//! **Reconnecting without gaps or duplicates.** Every batch is recorded as one spool
//! transaction with a checkpoint: the time of the newest event recorded and the identities
//! (uuid, else a hash of its bytes as received) of the events recorded at exactly that time. A new
//! stream asks for events `since` that time; what comes back at that time and was recorded
//! already is dropped (nothing older comes back; an older event inside a live stream, as Relay
//! merging nodes' clocks delivers, is new and kept). The time without a stream, and after a
//! restart the time since the newest event recorded, is recorded in `lost_events` as
//! `source = 'FLOWREC_DISCONNECTED'` (`first`..`last`): Hubble replays from its ring buffer, so
//! flows are missing only if it wrapped meanwhile, but a report can say recording was
//! interrupted. An event that does not decode (malformed bytes, a string that is not UTF-8) is
//! skipped, logged and counted, never fatal; an enum number from a newer Cilium is kept as its
//! number, as an import keeps it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flow_schema::hubble::{Decoded, HubbleDecoder, ResponseKind};
use flow_schema::Table;
use hubble_api::flow::FlowFilter;
use hubble_api::observer::observer_client::ObserverClient;
use hubble_api::observer::{GetFlowsRequest, ServerStatusRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{Recording, SpoolOutput, Stop};
use crate::metrics::Metrics;

/// `--source hubble` settings, as given.
#[derive(Debug, Clone)]
pub struct HubbleConfig {
    /// `unix:///path` or `host:port`.
    pub server: String,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    /// FlowFilter JSON, as `hubble observe --allowlist` takes it.
    pub allowlist: Vec<String>,
    pub denylist: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HubbleError {
    #[error("--hubble-server {0:?}: expected unix:///path/to/hubble.sock or host:port")]
    BadAddress(String),
    #[error("{flag} {path}: cannot read it: {source}")]
    TlsFile {
        flag: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--hubble-tls-cert and --hubble-tls-key go together (mTLS needs both)")]
    HalfIdentity,
    #[error("{flag}: {source} in {json}")]
    Filter {
        flag: &'static str,
        json: String,
        #[source]
        source: hubble_api::FilterJsonError,
    },
    #[error(
        "the --spool holds a position of another source ({0:?}): give --source hubble its own \
         --spool"
    )]
    BadPosition(String),
    #[error("--hubble-tls-* flags apply to host:port servers, not to a unix:// socket")]
    TlsOverUnix,
    #[error("--hubble-server / --hubble-tls-*: {0}")]
    Endpoint(String),
}

/// Where the server is.
#[derive(Debug, Clone)]
enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp(host) => write!(f, "{host}"),
        }
    }
}

/// The settings, checked: files read, filters parsed.
pub struct Checked {
    address: Address,
    tls: bool,
    /// For TCP: the endpoint, TLS settings validated (certificates parsed) at start-up.
    endpoint: Option<Endpoint>,
    allow: Vec<FlowFilter>,
    deny: Vec<FlowFilter>,
}

pub fn check(config: &HubbleConfig) -> Result<Checked, HubbleError> {
    let address = match config.server.strip_prefix("unix://") {
        Some(path) if !path.is_empty() => Address::Unix(PathBuf::from(path)),
        Some(_) => return Err(HubbleError::BadAddress(config.server.clone())),
        None => {
            let host = config
                .server
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            match host.rsplit_once(':') {
                Some((name, port)) if !name.is_empty() && port.parse::<u16>().is_ok() => {
                    Address::Tcp(host.to_string())
                }
                _ => return Err(HubbleError::BadAddress(config.server.clone())),
            }
        }
    };
    let read = |flag: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| HubbleError::TlsFile {
            flag,
            path: path.display().to_string(),
            source,
        })
    };
    let tls_wanted = config.server.starts_with("https://")
        || config.tls_ca.is_some()
        || config.tls_cert.is_some()
        || config.tls_key.is_some()
        || config.tls_server_name.is_some();
    let tls = if tls_wanted {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &config.tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read("--hubble-tls-ca", ca)?));
        } else {
            tls = tls.with_native_roots();
        }
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read("--hubble-tls-cert", cert)?,
                    read("--hubble-tls-key", key)?,
                ));
            }
            (None, None) => {}
            _ => return Err(HubbleError::HalfIdentity),
        }
        if let Some(name) = &config.tls_server_name {
            tls = tls.domain_name(name.clone());
        }
        Some(tls)
    } else {
        None
    };
    let filters = |flag: &'static str, list: &[String]| {
        list.iter()
            .map(|json| strict_filter(flag, json))
            .collect::<Result<Vec<_>, _>>()
    };
    let endpoint = match &address {
        Address::Unix(_) if tls.is_some() => return Err(HubbleError::TlsOverUnix),
        Address::Unix(_) => None,
        Address::Tcp(host) => Some(
            endpoint(host, tls.clone())
                .map_err(|error| HubbleError::Endpoint(flow_schema::error_chain(&error)))?,
        ),
    };
    Ok(Checked {
        address,
        tls: tls.is_some(),
        endpoint,
        allow: filters("--hubble-allowlist", &config.allowlist)?,
        deny: filters("--hubble-denylist", &config.denylist)?,
    })
}

/// A TCP endpoint: connect timeout, HTTP/2 keep-alive (a server that vanished is noticed in
/// seconds, not when TCP gives up), TLS if configured.
fn endpoint(host: &str, tls: Option<ClientTlsConfig>) -> Result<Endpoint, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.timeout(Duration::from_secs(10)))?;
    }
    Ok(endpoint)
}

/// A FlowFilter from JSON, unknown keys refused (see [`hubble_api::strict_flow_filter`]).
fn strict_filter(flag: &'static str, json: &str) -> Result<FlowFilter, HubbleError> {
    hubble_api::strict_flow_filter(json).map_err(|source| HubbleError::Filter {
        flag,
        json: json.to_string(),
        source,
    })
}

impl Checked {
    pub fn describe(&self) -> String {
        format!(
            "from Hubble at {}{}",
            self.address,
            if self.tls { " (TLS)" } else { "" }
        )
    }

    /// A channel to the server (connected lazily by tonic: errors show at the first call).
    fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        match &self.address {
            Address::Unix(path) => {
                let path = path.clone();
                // The URI is not used for a unix socket; tonic needs one.
                Ok(
                    Endpoint::from_static("http://hubble.sock").connect_with_connector_lazy(
                        tower::service_fn(move |_| {
                            let path = path.clone();
                            async move {
                                let stream = tokio::net::UnixStream::connect(path).await?;
                                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                    tokio::io::BufReader::with_capacity(READ_AHEAD, stream),
                                ))
                            }
                        }),
                    ),
                )
            }
            Address::Tcp(_) => Ok(self
                .endpoint
                .as_ref()
                .expect("checked: TCP has an endpoint")
                .connect_lazy()),
        }
    }
}

/// Where recording stands: the newest flow time recorded, and which flows at that time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Resume {
    last_ns: Option<i64>,
    at_last: HashSet<u64>,
}

const RESUME_VERSION: &str = "hubble1";

impl Resume {
    fn encode(&self) -> Vec<u8> {
        let mut text = format!(
            "{RESUME_VERSION} {}",
            self.last_ns.map_or("-".to_string(), |ns| ns.to_string())
        );
        let mut ids: Vec<&u64> = self.at_last.iter().collect();
        ids.sort();
        for id in ids {
            text.push_str(&format!(" {id:x}"));
        }
        text.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Resume, HubbleError> {
        let text = String::from_utf8_lossy(bytes);
        let bad = || HubbleError::BadPosition(text.to_string());
        let mut fields = text.split(' ');
        if fields.next() != Some(RESUME_VERSION) {
            return Err(bad());
        }
        let last_ns = match fields.next().ok_or_else(bad)? {
            "-" => None,
            ns => Some(ns.parse().map_err(|_| bad())?),
        };
        let at_last = fields
            .map(|id| u64::from_str_radix(id, 16).map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        Ok(Resume { last_ns, at_last })
    }

    /// Whether an event at `time_ns` with identity `id` was recorded already. Only the
    /// boundary can repeat: a stream asked `since` the newest time sends nothing older, and an
    /// older event in a live stream (Relay merging nodes' clocks, a proxy's own timestamp) is
    /// new, not a duplicate.
    fn seen(&self, time_ns: i64, id: u64) -> bool {
        self.last_ns == Some(time_ns) && self.at_last.contains(&id)
    }

    fn record(&mut self, time_ns: i64, id: u64) {
        match self.last_ns {
            Some(last) if time_ns < last => {}
            Some(last) if time_ns == last => {
                self.at_last.insert(id);
            }
            _ => {
                self.last_ns = Some(time_ns);
                self.at_last.clear();
                self.at_last.insert(id);
            }
        }
    }
}

/// An event's identity for deduplication: a flow's uuid, else its bytes as received (the same
/// for the same event sent again from Hubble's ring buffer). A fixed hash: identities are kept in
/// the spool's checkpoint across restarts. (Before responses were decoded from their bytes, an
/// event without a uuid was identified by its protojson line: after an upgrade, such an event at
/// exactly the resume time can be recorded twice, once.)
fn identity(uuid: Option<&str>, bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    let state = foldhash::quality::FixedState::with_seed(0x0066_6c6f_7772_6563);
    match uuid {
        Some(uuid) => state.hash_one(uuid.as_bytes()),
        None => state.hash_one(bytes),
    }
}

/// Events handed to the spool at once (or what came within [`BATCH_WAIT`]). Each batch lives
/// as received bytes, then rows, and up to [`PREPARED_QUEUE`] wait between the stages, so the
/// size trades memory at high rates for CPU per flow (a spool record, its blocks' IPC headers
/// and columns, each): 8192 held ~75 MiB in flight at 130k flows/s. Measured with release
/// builds, `make bench-hubble` (unpaced, ~300k flows/s) / 100k flows/s paced: 1024 events
/// 4.80-5.13 CPU-s per 1M, 150-170 MiB / 4.99, 165 MiB; 2048 4.65-4.82, 170-181 MiB / 4.79,
/// 161 MiB; 4096 4.35-4.85 but 210-221 MiB (unpaced).
pub const BATCH_EVENTS: usize = 2048;
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// The largest response accepted (a flow is a few KiB; Hubble's own client allows this much).
const MAX_MESSAGE: usize = 64 << 20;

/// Bytes read from the unix socket at once. h2 (under tonic) reads its connection a few KiB at
/// a time: 1M flows (~1 GB) took ~95,000 `recvfrom` calls; through a buffer of about what a
/// unix socket holds (`net.core.wmem_default`, 208 KiB), ~5,000 (strace, `make bench-hubble`).
const READ_AHEAD: usize = 256 << 10;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a Hubble source did, for the run's summary.
#[derive(Debug, Default)]
pub struct Listened {
    pub flows: u64,
    pub lost_events: u64,
    pub duplicates: u64,
    pub reconnects: u64,
    /// Events skipped because they did not decode.
    pub unreadable: u64,
}

impl Listened {
    pub fn describe(&self) -> String {
        format!(
            "received {} flows and {} lost events from Hubble ({} duplicates after \
             reconnecting dropped, {} reconnects, {} unreadable events skipped)",
            self.flows, self.lost_events, self.duplicates, self.reconnects, self.unreadable
        )
    }
}

pub struct Listener {
    checked: Checked,
    decoder: HubbleDecoder,
    resume: Resume,
    node_name: String,
    listened: Listened,
    writer: SpoolWriter,
}

/// The second stage: records what the stream stage decoded, on its own thread (receiving and
/// decoding keep one core busy, compressing and writing the spool another).
struct SpoolWriter {
    output: SpoolOutput,
    metrics: Arc<Metrics>,
    address: String,
}

/// A batch's events as rows, and the resume position once they are recorded.
struct Prepared {
    decoded: Decoded,
    resume: Resume,
}

/// Batches between the two stages: enough to keep both busy, little memory.
const PREPARED_QUEUE: usize = 2;

impl Listener {
    pub fn new(
        checked: Checked,
        decoder: HubbleDecoder,
        node_name: String,
        output: SpoolOutput,
        metrics: Arc<Metrics>,
    ) -> Result<Listener, HubbleError> {
        let resume = match output.spool.checkpoint() {
            Some(bytes) => Resume::decode(bytes)?,
            None => Resume::default(),
        };
        if let Some(ns) = resume.last_ns {
            crate::info!(
                "--hubble-server {}: resuming after the flows of {} recorded last",
                checked.address,
                format_ns(ns)
            );
        }
        let address = checked.address.to_string();
        Ok(Listener {
            checked,
            decoder,
            resume,
            node_name,
            listened: Listened::default(),
            writer: SpoolWriter {
                output,
                metrics,
                address,
            },
        })
    }

    /// Streams flows until `stop` (then what was received is recorded and the segment sealed)
    /// or the shipper is gone.
    pub fn run(self, stop: Arc<Stop>) -> Listened {
        let Listener {
            checked,
            decoder,
            resume,
            node_name,
            listened,
            writer,
        } = self;
        let metrics = Arc::clone(&writer.metrics);
        let _recording = Recording(&metrics);
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Prepared>(PREPARED_QUEUE);
        let writer_stop = Arc::clone(&stop);
        let writer = std::thread::Builder::new()
            .name("hubble-writer".into())
            .spawn(move || writer.run(receiver, &writer_stop))
            .expect("a thread");
        let mut stream = Streamer {
            metrics: Arc::clone(&metrics),
            checked,
            decoder,
            resume,
            node_name,
            listened,
            sender,
            received: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        runtime.block_on(stream.listen(&stop));
        let Streamer {
            listened, sender, ..
        } = stream;
        drop(sender);
        if writer.join().is_err() {
            crate::error!("the Hubble recording thread panicked");
        }
        listened
    }
}

/// The first stage: connection, stream, decoding, deduplication.
struct Streamer {
    /// Where the stream's state is told (readiness).
    metrics: Arc<Metrics>,
    checked: Checked,
    decoder: HubbleDecoder,
    resume: Resume,
    node_name: String,
    listened: Listened,
    sender: std::sync::mpsc::SyncSender<Prepared>,
    /// Events came on the current connection (then a failure starts the backoff afresh).
    received: bool,
}

impl Streamer {
    async fn listen(&mut self, stop: &Stop) {
        let mut backoff = FIRST_BACKOFF;
        // When the last stream ended (the gap to record once the next one starts); after a
        // restart, the recorder was not listening since the newest flow it had recorded.
        let mut lost_since: Option<i64> = self.resume.last_ns;
        // Not ready until the first stream is open.
        self.metrics.source_down();
        while !stop.requested() {
            self.received = false;
            let outcome = tokio::select! {
                outcome = self.stream(stop, &mut lost_since) => outcome,
                () = stopped(stop) => Ok(Ended::Stopped),
            };
            // A connection that delivered starts the backoff afresh, however it ended.
            if self.received {
                backoff = FIRST_BACKOFF;
            }
            match outcome {
                Ok(Ended::Stopped) => return,
                Ok(Ended::ShipperGone) => return,
                Ok(Ended::Closed) => crate::warn!(
                    "--hubble-server {}: the server ended the stream; reconnecting in \
                     {backoff:?}",
                    self.checked.address
                ),
                Err(problem) => crate::warn!(
                    "--hubble-server {}: {problem}; retrying in {backoff:?}",
                    self.checked.address
                ),
            }
            self.metrics.source_down();
            if lost_since.is_none() {
                lost_since = Some(now_ns());
            }
            self.listened.reconnects += 1;
            if wait(stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: the status check, then the stream until it ends.
    async fn stream(&mut self, stop: &Stop, lost_since: &mut Option<i64>) -> Result<Ended, String> {
        let channel = self
            .checked
            .channel()
            .map_err(|error| format!("cannot connect: {}", flow_schema::error_chain(&error)))?;
        let mut client =
            ObserverClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let status = client
            .server_status(ServerStatusRequest {})
            .await
            .map_err(|status| describe_status("ServerStatus", &status))?
            .into_inner();
        crate::info!(
            "--hubble-server {}: Hubble {} ({} flows seen, ring buffer {}/{})",
            self.checked.address,
            if status.version.is_empty() {
                "(no version)"
            } else {
                &status.version
            },
            status.seen_flows,
            status.num_flows,
            status.max_flows
        );
        let request = GetFlowsRequest {
            follow: true,
            since: self.resume.last_ns.map(|ns| pbjson_types::Timestamp {
                seconds: ns.div_euclid(1_000_000_000),
                nanos: ns.rem_euclid(1_000_000_000) as i32,
            }),
            whitelist: self.checked.allow.clone(),
            blacklist: self.checked.deny.clone(),
            ..Default::default()
        };
        let mut stream = hubble_api::encoded::get_flows(channel, request, MAX_MESSAGE)
            .await
            .map_err(|status| describe_status("GetFlows", &status))?;
        self.metrics.source_up();
        if let Some(since) = lost_since.take() {
            if !self.send(self.gap(since, now_ns())) {
                return Ok(Ended::ShipperGone);
            }
        }
        let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH_EVENTS);
        loop {
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            let mut ended = None;
            while batch.len() < BATCH_EVENTS {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Err(_elapsed) => break,
                    Ok(Ok(Some(event))) => batch.push(event),
                    Ok(Ok(None)) => {
                        ended = Some(Ok(Ended::Closed));
                        break;
                    }
                    Ok(Err(status)) => {
                        ended = Some(Err(describe_status("the flow stream", &status)));
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                self.received = true;
                let prepared = self.prepare(std::mem::take(&mut batch));
                if !self.send(prepared) {
                    return Ok(Ended::ShipperGone);
                }
            }
            if let Some(ended) = ended {
                return ended;
            }
            if stop.requested() {
                return Ok(Ended::Stopped);
            }
        }
    }

    /// Hands a batch to the recording stage (waiting while it is busy: that is the
    /// back-pressure on the stream); false once that stage is gone.
    fn send(&self, prepared: Prepared) -> bool {
        self.sender.send(prepared).is_ok()
    }

    /// The batch's events as rows, duplicates of what was recorded dropped.
    fn prepare(&mut self, events: Vec<Bytes>) -> Prepared {
        let Streamer {
            checked,
            decoder,
            resume,
            listened,
            ..
        } = self;
        let decoded =
            decoder.decode_responses(events.iter().map(|b| b.as_ref()), |event, bytes| {
                if event.kind == ResponseKind::Other {
                    if let Some(status) = hubble_api::encoded::node_status(bytes) {
                        crate::info!(
                            "--hubble-server {}: node status {:?}: {} {}",
                            checked.address,
                            status.state_change(),
                            status.node_names.join(","),
                            status.message
                        );
                    }
                    return false;
                }
                if let Some(time) = event.time {
                    let id = identity(event.uuid, bytes);
                    if resume.seen(time, id) {
                        listened.duplicates += 1;
                        return false;
                    }
                    resume.record(time, id);
                }
                match event.kind {
                    ResponseKind::Flow => listened.flows += 1,
                    _ => listened.lost_events += 1,
                }
                true
            });
        for error in &decoded.errors {
            listened.unreadable += 1;
            crate::warn!(
                "--hubble-server {}: an event that does not decode was skipped ({})",
                checked.address,
                error.reason
            );
        }
        Prepared {
            decoded,
            resume: resume.clone(),
        }
    }

    /// The time without a stream, as a `lost_events` line.
    fn gap(&self, first: i64, last: i64) -> Prepared {
        let line = format!(
            "{{\"lost_events\":{{\"source\":\"FLOWREC_DISCONNECTED\",\"first\":\"{}\",\
             \"last\":\"{}\"}},\"node_name\":{},\"time\":\"{}\"}}\n",
            format_ns(first),
            format_ns(last),
            serde_json::Value::String(self.node_name.clone()),
            format_ns(last)
        );
        Prepared {
            decoded: self.decoder.decode(line.as_bytes(), 1),
            resume: self.resume.clone(),
        }
    }
}

impl SpoolWriter {
    /// Records every batch the stream stage prepares, until it stops sending (then the
    /// segment is sealed) or a stop comes while the spool cannot take one.
    fn run(mut self, batches: std::sync::mpsc::Receiver<Prepared>, stop: &Stop) {
        loop {
            match batches.recv_timeout(BATCH_WAIT) {
                Ok(prepared) => {
                    if !self.record(prepared, stop) {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if !self.output.seal_if_due(false) {
                break;
            }
        }
        self.output.seal_if_due(true);
    }

    /// Records one batch with its resume position.
    fn record(&mut self, prepared: Prepared, stop: &Stop) -> bool {
        let Prepared { decoded, resume } = prepared;
        let flows = decoded.flows.num_rows() as u64;
        Metrics::add(&self.metrics.flows_received, flows);
        let batches = [
            (Table::Flows, decoded.flows),
            (Table::LostEvents, decoded.lost_events),
        ];
        let source = format!("--hubble-server {}", self.address);
        let paused = "receiving paused (Hubble buffers meanwhile; what its ring buffer drops \
                      it reports)";
        if !self.output.record_waiting(
            &batches,
            &resume.encode(),
            stop,
            &self.metrics,
            (&source, paused),
        ) {
            return false;
        }
        Metrics::add(&self.metrics.flows_recorded, flows);
        true
    }
}

/// How a stream ended without an error.
enum Ended {
    Stopped,
    ShipperGone,
    Closed,
}

/// Resolves once a stop is requested (awaits of the network are raced against it: a server
/// that never answers must not hold a stop).
async fn stopped(stop: &Stop) {
    while !stop.requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gRPC status as an operator reads it: which call, the code, the server's message.
fn describe_status(call: &str, status: &tonic::Status) -> String {
    let cause = match status.code() {
        tonic::Code::Unimplemented => {
            "the server does not implement the Hubble Observer API (is this a Hubble server?)"
                .to_string()
        }
        tonic::Code::Unavailable => format!(
            "unavailable: {}",
            std::error::Error::source(status)
                .map(flow_schema::error_chain)
                .unwrap_or_else(|| status.message().to_string())
        ),
        code => format!("{code:?}: {}", status.message()),
    };
    format!("{call} failed: {cause}")
}

/// Sleeps `duration` unless a stop comes first (true then).
async fn wait(stop: &Stop, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => stop.requested(),
        () = stopped(stop) => true,
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn format_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of the sample captures, as Hubble's JSON and as the Observer API sends it.
    fn sample_events() -> Vec<(String, Vec<u8>)> {
        use hubble_api::observer::get_flows_response::ResponseTypes;
        use hubble_api::observer::GetFlowsResponse;
        use prost::Message;
        use std::io::Read;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-captures");
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("hubble-samples"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.push(root.join("typo-policy-incident.jsonl.gz"));
        let mut events = Vec::new();
        for file in files {
            let mut text = String::new();
            let raw = std::fs::File::open(&file).unwrap();
            if file.extension().is_some_and(|e| e == "gz") {
                flate2::read::GzDecoder::new(raw)
                    .read_to_string(&mut text)
                    .unwrap();
            } else {
                std::io::BufReader::new(raw)
                    .read_to_string(&mut text)
                    .unwrap();
            }
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let response = if value.get("flow").is_some() || value.get("lost_events").is_some()
                {
                    serde_json::from_value::<GetFlowsResponse>(value).unwrap()
                } else {
                    let flow: hubble_api::flow::Flow = serde_json::from_value(value).unwrap();
                    GetFlowsResponse {
                        node_name: flow.node_name.clone(),
                        time: flow.time,
                        response_types: Some(ResponseTypes::Flow(flow)),
                    }
                };
                events.push((line.to_string(), response.encode_to_vec()));
            }
        }
        assert!(events.len() > 1000, "the sample captures are there");
        events
    }

    #[test]
    fn a_flow_read_from_its_protobuf_bytes_gives_the_row_its_json_line_gives() {
        let decoder = HubbleDecoder::new(flow_schema::CaptureSource::Hubble, Some("node-a".into()));
        let events = sample_events();
        let lines: String = events.iter().map(|(line, _)| format!("{line}\n")).collect();
        let from_json = decoder.decode(lines.as_bytes(), 1);
        let from_wire =
            decoder.decode_responses(events.iter().map(|(_, b)| b.as_slice()), |_, _| true);
        assert!(from_json.errors.is_empty() && from_wire.errors.is_empty());
        assert_eq!(from_wire.flows.num_rows(), from_json.flows.num_rows());
        assert!(from_wire.flows.num_rows() > 1000);
        for (index, field) in from_json.flows.schema().fields().iter().enumerate() {
            assert_eq!(
                from_wire.flows.column(index).as_ref(),
                from_json.flows.column(index).as_ref(),
                "column {}",
                field.name()
            );
        }
        assert_eq!(from_wire.lost_events, from_json.lost_events);
        assert_eq!(from_wire.other_events, from_json.other_events);
    }

    #[test]
    fn damaged_bytes_cost_only_their_event_and_are_reported_with_the_field() {
        let decoder = HubbleDecoder::new(flow_schema::CaptureSource::Hubble, None);
        let events = sample_events();
        let good = &events[0].1;
        // Truncated, then a flow whose uuid (field 34) is not UTF-8, between two good events.
        let truncated = &good[..good.len() - 3];
        let bad_uuid = [0x0a, 4, 0x92, 0x02, 1, 0xff];
        let mut seen = Vec::new();
        let decoded = decoder.decode_responses(
            [good.as_slice(), truncated, &bad_uuid, good.as_slice()].into_iter(),
            |event, _| {
                seen.push(event.kind);
                true
            },
        );
        assert_eq!(decoded.flows.num_rows(), 2);
        assert_eq!(seen, [ResponseKind::Flow, ResponseKind::Flow]);
        let errors: Vec<(u64, &str)> = decoded
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, 2);
        assert!(errors[0].1.contains("truncated"), "{errors:?}");
        assert_eq!(errors[1].0, 3);
        assert!(errors[1].1.starts_with("at flow.uuid: "), "{errors:?}");
        // A flow a keep function refuses is not recorded.
        let none = decoder.decode_responses([good.as_slice()].into_iter(), |_, _| false);
        assert_eq!(none.flows.num_rows(), 0);
    }

    #[test]
    fn the_resume_position_survives_its_encoding_and_drops_what_was_seen() {
        let mut resume = Resume::default();
        assert!(!resume.seen(5, 1));
        resume.record(5, 1);
        resume.record(5, 2);
        resume.record(3, 9);
        let back = Resume::decode(&resume.encode()).unwrap();
        assert_eq!(back, resume);
        assert!(
            !back.seen(4, 7),
            "older than the newest: new (only the boundary repeats)"
        );
        assert!(back.seen(5, 2), "at the newest time, recorded");
        assert!(!back.seen(5, 3), "at the newest time, not recorded");
        assert!(!back.seen(6, 1), "newer");
        resume.record(6, 4);
        assert_eq!(resume.at_last.len(), 1);
        assert!(Resume::decode(b"follow1 1 2").is_err());
        assert_eq!(
            Resume::decode(&Resume::default().encode()).unwrap(),
            Resume::default()
        );
    }

    #[test]
    fn addresses_and_filters_are_checked_with_the_flag_named() {
        let config = |server: &str| HubbleConfig {
            server: server.into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
            allowlist: vec![],
            denylist: vec![],
        };
        assert!(matches!(
            check(&config("unix:///var/run/cilium/hubble.sock")).map(|c| c.address),
            Ok(Address::Unix(_))
        ));
        assert!(matches!(
            check(&config("relay:4245")).map(|c| c.address),
            Ok(Address::Tcp(_))
        ));
        for bad in ["relay", "unix://", ":4245", "relay:port"] {
            let error = check(&config(bad)).err().unwrap().to_string();
            assert!(error.contains("--hubble-server"), "{error}");
        }
        let mut filtered = config("relay:4245");
        filtered.allowlist =
            vec![r#"{"source_pod":["kube-system/"],"verdict":["DROPPED"]}"#.into()];
        let checked = check(&filtered).unwrap();
        assert_eq!(checked.allow[0].source_pod, ["kube-system/"]);
        for typo in [r#"{"verdicts":["DROPPED"]}"#, "{}"] {
            filtered.denylist = vec![typo.into()];
            let error = check(&filtered).err().unwrap().to_string();
            assert!(error.contains("--hubble-denylist"), "{error}");
            assert!(error.contains("match every flow"), "{error}");
        }
        filtered.denylist = vec![r#"{"source_pod": 3}"#.into()];
        let error = check(&filtered).err().unwrap().to_string();
        assert!(error.contains("--hubble-denylist"), "{error}");
        let mut half = config("relay:4245");
        half.tls_cert = Some("/nonexistent".into());
        assert!(check(&half).is_err());
    }
}
