//! `test-hubble-server`: a Hubble Observer server for tests and the live-recording benchmark.
//! Serves the events of Hubble JSON files (jsonpb envelopes or bare flows, as `hubble observe
//! -o jsonpb` prints them; plain or .gz), or generated flows, over a unix socket or TCP (optionally TLS /
//! mTLS), through `GetFlows` (honouring `since`, and `follow` by keeping the stream open) and
//! `ServerStatus`.
//!
//! For benchmarks: `--rate N` paces every stream at N events per second (default: as fast as
//! the client reads). `--generate N` beyond [`POOL`] flows sends the pool again and again, an
//! hour later each round, so that a run of minutes does not need tens of GiB.
//!
//! For failure tests: `--drop-after N` ends the first stream with UNAVAILABLE after N events
//! (later streams are whole), `--lose K` makes the events just after the drop point vanish
//! from the server as if its ring buffer wrapped, `--no-observer` serves no Observer service
//! at all.
//!
//! ```text
//! test-hubble-server --unix /tmp/hubble.sock FILE...
//! test-hubble-server --listen 127.0.0.1:4245 --tls-cert server.crt --tls-key server.key --client-ca ca.crt FILE...
//! test-hubble-server --listen 127.0.0.1:4245 --generate 1000000
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::Stream;
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::observer_server::{Observer, ObserverServer};
use hubble_api::observer::{
    GetFlowsRequest, GetFlowsResponse, ServerStatusRequest, ServerStatusResponse,
};
use prost::Message;
use std::task::{Context, Poll};
use tokio_stream::StreamExt;
use tonic::codegen::{http, Body, BoxFuture, Bytes, Service, StdError};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

struct Options {
    unix: Option<PathBuf>,
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    drop_after: Option<usize>,
    lose: usize,
    no_observer: bool,
    generate: Option<u64>,
    rate: Option<u64>,
    files: Vec<PathBuf>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "test-hubble-server: {problem}\nusage: test-hubble-server (--unix PATH | --listen ADDR) \
         [--tls-cert F --tls-key F [--client-ca F]] [--drop-after N [--lose K]] [--no-observer] \
         [--rate N] (--generate N | FILE...)"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut options = Options {
        unix: None,
        listen: None,
        tls_cert: None,
        tls_key: None,
        client_ca: None,
        drop_after: None,
        lose: 0,
        no_observer: false,
        generate: None,
        rate: None,
        files: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        let number = |name: &str, text: String| -> u64 {
            text.parse()
                .unwrap_or_else(|_| usage(&format!("{name}: not a number: {text}")))
        };
        match arg.as_str() {
            "--unix" => options.unix = Some(value("--unix").into()),
            "--listen" => options.listen = Some(value("--listen")),
            "--tls-cert" => options.tls_cert = Some(value("--tls-cert").into()),
            "--tls-key" => options.tls_key = Some(value("--tls-key").into()),
            "--client-ca" => options.client_ca = Some(value("--client-ca").into()),
            "--drop-after" => {
                options.drop_after = Some(number("--drop-after", value("--drop-after")) as usize)
            }
            "--lose" => options.lose = number("--lose", value("--lose")) as usize,
            "--generate" => options.generate = Some(number("--generate", value("--generate"))),
            "--rate" => match number("--rate", value("--rate")) {
                0 => usage("--rate: at least 1 event per second"),
                rate => options.rate = Some(rate),
            },
            "--no-observer" => options.no_observer = true,
            flag if flag.starts_with("--") => usage(&format!("unknown flag {flag}")),
            file => options.files.push(file.into()),
        }
    }
    if options.unix.is_some() == options.listen.is_some() {
        usage("one of --unix or --listen");
    }
    options
}

/// The events of the files, in order; a line that is not a Hubble event stops the server
/// with its file:line (test data must be valid).
fn load(files: &[PathBuf]) -> Vec<GetFlowsResponse> {
    let mut events = Vec::new();
    for file in files {
        let read = || -> std::io::Result<String> {
            let mut text = String::new();
            let path = file;
            let file = std::fs::File::open(path)?;
            if path.extension().is_some_and(|ext| ext == "gz") {
                flate2::read::MultiGzDecoder::new(file).read_to_string(&mut text)?;
            } else {
                std::io::BufReader::new(file).read_to_string(&mut text)?;
            }
            Ok(text)
        };
        let text = read().unwrap_or_else(|error| usage(&format!("{}: {error}", file.display())));
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            events.push(flow_benches::hubble::parse(line).unwrap_or_else(|error| {
                usage(&format!("{}:{}: {error}", file.display(), number + 1))
            }));
        }
    }
    events
}

fn time_ns(event: &GetFlowsResponse) -> i64 {
    let time = match &event.response_types {
        Some(ResponseTypes::Flow(flow)) => flow.time.or(event.time),
        _ => event.time,
    };
    time.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

/// An event as it goes on the wire, encoded once at start: streaming then costs the server
/// little more than HTTP/2 framing, so the benchmark measures the recorder, not the server's
/// cloning and encoding (a real agent does that on its own cores).
#[derive(Clone, Debug, Default)]
struct Encoded(Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Only ever sent, never received.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

struct Event {
    time_ns: i64,
    encoded: Encoded,
}

/// Generated flows held distinct (and encoded once, ~1 KiB each); more are sent as a cycle of
/// these. 1M: `make bench-hubble`'s default, whose flows stay what they were.
const POOL: u64 = 1_000_000;

/// The events streams send, by index.
enum Events {
    /// Read from files, or generated: each encoded once, at start.
    Encoded(Vec<Event>),
    /// More generated flows than [`POOL`]: each encoded as it is sent.
    Cycled(flow_benches::hubble::FlowCycle),
}

impl Events {
    fn len(&self) -> usize {
        match self {
            Events::Encoded(events) => events.len(),
            Events::Cycled(cycle) => cycle.len() as usize,
        }
    }

    fn time_ns(&self, index: usize) -> i64 {
        match self {
            Events::Encoded(events) => events[index].time_ns,
            Events::Cycled(cycle) => cycle.time_ns(index as u64),
        }
    }

    fn encoded(&self, index: usize) -> Encoded {
        match self {
            Events::Encoded(events) => events[index].encoded.clone(),
            Events::Cycled(cycle) => Encoded(cycle.encode(index as u64).into()),
        }
    }
}

/// What `GetFlows` streams and how it misbehaves.
struct Flows {
    events: Events,
    drop_after: Option<usize>,
    lose: usize,
    dropped: AtomicBool,
    streams: AtomicU64,
    /// Events per second per stream; None: as fast as the client reads.
    rate: Option<u64>,
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<Encoded, Status>> + Send>>;

impl Flows {
    fn stream(self: &Arc<Self>, request: GetFlowsRequest) -> FlowStream {
        let number = self.streams.fetch_add(1, Ordering::Relaxed);
        let since = request
            .since
            .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
        eprintln!(
            "test-hubble-server: stream {number}: since {since:?}, follow {}",
            request.follow
        );
        // The first stream is cut after `drop_after` events; the events right after the cut
        // are lost for good (`lose`), as when a ring buffer wraps.
        let cut = match self.drop_after {
            Some(after) if !self.dropped.swap(true, Ordering::Relaxed) => Some(after),
            _ => None,
        };
        let lost = match (self.drop_after, cut) {
            (Some(after), None) => after..after + self.lose,
            _ => 0..0,
        };
        let flows = Arc::clone(self);
        let sent = (0..flows.events.len())
            .filter(move |index| !lost.contains(index))
            .filter(move |&index| since.is_none_or(|since| flows.events.time_ns(index) >= since))
            .take(cut.unwrap_or(usize::MAX));
        let flows = Arc::clone(self);
        let events = tokio_stream::iter(sent).map(move |index| Ok(flows.events.encoded(index)));
        let events: FlowStream = match self.rate {
            None => Box::pin(events),
            Some(rate) => Box::pin(paced(events, rate)),
        };
        let end: FlowStream = match (cut, request.follow) {
            (Some(_), _) => Box::pin(tokio_stream::once(Err(Status::unavailable(
                "test-hubble-server: stream cut",
            )))),
            // Nothing more will come: keep the stream open until the client goes.
            (None, true) => Box::pin(tokio_stream::pending()),
            (None, false) => Box::pin(tokio_stream::empty()),
        };
        Box::pin(events.chain(end))
    }
}

/// `events` at `rate` per second: every 1,000th event waits for its time since the stream
/// began (timers per event would cost more than the sending).
fn paced(
    events: impl Stream<Item = Result<Encoded, Status>> + Send + 'static,
    rate: u64,
) -> impl Stream<Item = Result<Encoded, Status>> + Send {
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    events.then(move |event| {
        sent += 1;
        let due = sent
            .is_multiple_of(1000)
            .then(|| start + std::time::Duration::from_secs_f64(sent as f64 / rate as f64));
        async move {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            event
        }
    })
}

/// `ServerStatus` through the generated service; `GetFlows` is routed to [`GetFlows`].
struct TestObserver {
    count: u64,
}

#[tonic::async_trait]
impl Observer for TestObserver {
    async fn get_flows(
        &self,
        _: Request<GetFlowsRequest>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>>,
        Status,
    > {
        unreachable!("GetFlows is served by the pre-encoded route")
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(ServerStatusResponse {
            num_flows: self.count,
            max_flows: self.count,
            seen_flows: self.count,
            version: "test-hubble-server".into(),
            ..Default::default()
        }))
    }
}

/// The Observer service: `GetFlows` streams the pre-encoded events, every other method goes to
/// the generated server.
#[derive(Clone)]
struct ObserverService {
    flows: Arc<Flows>,
    generated: ObserverServer<TestObserver>,
}

struct GetFlows(Arc<Flows>);

impl tonic::server::ServerStreamingService<GetFlowsRequest> for GetFlows {
    type Response = Encoded;
    type ResponseStream = FlowStream;
    type Future = BoxFuture<Response<FlowStream>, Status>;

    fn call(&mut self, request: Request<GetFlowsRequest>) -> Self::Future {
        let stream = self.0.stream(request.into_inner());
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

impl<B> Service<http::Request<B>> for ObserverService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != "/observer.Observer/GetFlows" {
            return self.generated.call(request);
        }
        let method = GetFlows(Arc::clone(&self.flows));
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Encoded, GetFlowsRequest>::default();
            Ok(tonic::server::Grpc::new(codec)
                .server_streaming(method, request)
                .await)
        })
    }
}

impl tonic::server::NamedService for ObserverService {
    const NAME: &'static str = hubble_api::observer::observer_server::SERVICE_NAME;
}

/// The events in time order, as a ring buffer holds them (the files need not be), each encoded
/// once (the decoded form, ~4 KiB a flow, freed as it goes).
fn encode(mut events: Vec<GetFlowsResponse>) -> Events {
    events.sort_by_key(time_ns);
    Events::Encoded(
        events
            .into_iter()
            .map(|event| Event {
                time_ns: time_ns(&event),
                encoded: Encoded(event.encode_to_vec().into()),
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() {
    let options = options();
    let events = match options.generate {
        Some(count) if count > POOL => {
            Events::Cycled(flow_benches::hubble::FlowCycle::new(count, POOL))
        }
        Some(count) => encode(flow_benches::hubble::generated(count)),
        None => encode(load(&options.files)),
    };
    let count = events.len();
    let flows = Arc::new(Flows {
        events,
        drop_after: options.drop_after,
        lose: options.lose,
        dropped: AtomicBool::new(false),
        streams: AtomicU64::new(0),
        rate: options.rate,
    });
    let mut builder = Server::builder();
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        let read = |path: &PathBuf| {
            std::fs::read(path)
                .unwrap_or_else(|error| usage(&format!("{}: {error}", path.display())))
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert), read(key)));
        if let Some(ca) = &options.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)));
        }
        builder = builder
            .tls_config(tls)
            .unwrap_or_else(|error| usage(&format!("TLS: {error}")));
    }
    let service = (!options.no_observer).then(|| ObserverService {
        flows,
        generated: ObserverServer::new(TestObserver {
            count: count as u64,
        }),
    });
    let router = builder.add_optional_service(service);
    let served = match (&options.unix, &options.listen) {
        (Some(path), _) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .unwrap_or_else(|error| usage(&format!("--unix {}: {error}", path.display())));
            eprintln!(
                "test-hubble-server: {count} events on unix://{}",
                path.display()
            );
            router
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
        }
        (None, Some(address)) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .unwrap_or_else(|error| usage(&format!("--listen {address}: {error}")));
            let bound = listener.local_addr().expect("bound");
            eprintln!("test-hubble-server: {count} events on {bound}");
            router
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        }
        _ => unreachable!("checked in options()"),
    };
    if let Err(error) = served {
        eprintln!("test-hubble-server: {error}");
        std::process::exit(1);
    }
}
