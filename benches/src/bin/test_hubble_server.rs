//! `test-hubble-server`: a Hubble Observer server for tests and the live-recording benchmark.
//! Serves the events of Hubble JSON files (jsonpb envelopes or bare flows, as `hubble observe
//! -o jsonpb` prints them; plain or .gz), or generated flows, over a unix socket or TCP (optionally TLS /
//! mTLS), through `GetFlows` (honouring `since`, and `follow` by keeping the stream open) and
//! `ServerStatus`.
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
use hubble_api::flow::Flow;
use hubble_api::observer::get_flows_response::ResponseTypes;
use hubble_api::observer::observer_server::{Observer, ObserverServer};
use hubble_api::observer::{
    GetFlowsRequest, GetFlowsResponse, ServerStatusRequest, ServerStatusResponse,
};
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
    files: Vec<PathBuf>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "test-hubble-server: {problem}\nusage: test-hubble-server (--unix PATH | --listen ADDR) \
         [--tls-cert F --tls-key F [--client-ca F]] [--drop-after N [--lose K]] [--no-observer] \
         (--generate N | FILE...)"
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
            events.push(parse(line).unwrap_or_else(|error| {
                usage(&format!("{}:{}: {error}", file.display(), number + 1))
            }));
        }
    }
    events
}

/// A jsonpb envelope, or a bare Flow (wrapped as the envelope Hubble would send).
fn parse(line: &str) -> Result<GetFlowsResponse, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    let envelope = [
        "flow",
        "lost_events",
        "node_status",
        "agent_event",
        "debug_event",
    ]
    .iter()
    .any(|key| value.get(key).is_some());
    if envelope {
        return serde_json::from_value(value);
    }
    let flow: Flow = serde_json::from_value(value)?;
    Ok(GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time: flow.time,
        response_types: Some(ResponseTypes::Flow(flow)),
    })
}

fn generated(count: u64) -> Vec<GetFlowsResponse> {
    let mut lines = Vec::new();
    let start = "2026-11-26T10:00:00Z".parse().expect("a time");
    flow_benches::generate(&mut lines, count, 400, start, 1, 7).expect("in memory");
    String::from_utf8(lines)
        .expect("generated UTF-8")
        .lines()
        .map(|line| parse(line).expect("generated lines parse"))
        .collect()
}

fn time_ns(event: &GetFlowsResponse) -> i64 {
    let time = match &event.response_types {
        Some(ResponseTypes::Flow(flow)) => flow.time.or(event.time),
        _ => event.time,
    };
    time.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

struct TestObserver {
    events: Arc<Vec<GetFlowsResponse>>,
    drop_after: Option<usize>,
    lose: usize,
    dropped: Arc<AtomicBool>,
    streams: AtomicU64,
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Observer for TestObserver {
    type GetFlowsStream = FlowStream;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<FlowStream>, Status> {
        let request = request.into_inner();
        let number = self.streams.fetch_add(1, Ordering::Relaxed);
        let since = request
            .since
            .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos));
        eprintln!(
            "test-hubble-server: stream {number}: since {since:?}, follow {}",
            request.follow
        );
        let events = Arc::clone(&self.events);
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
        let follow = request.follow;
        let stream = async_stream(move |sender| async move {
            let mut sent = 0;
            for (index, event) in events.iter().enumerate() {
                if lost.contains(&index) || since.is_some_and(|since| time_ns(event) < since) {
                    continue;
                }
                if cut == Some(sent) {
                    let _ = sender
                        .send(Err(Status::unavailable("test-hubble-server: stream cut")))
                        .await;
                    return;
                }
                if sender.send(Ok(event.clone())).await.is_err() {
                    return;
                }
                sent += 1;
            }
            if follow {
                // Nothing more will come: keep the stream open until the client goes.
                sender.closed().await;
            }
        });
        Ok(Response::new(stream))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let count = self.events.len() as u64;
        Ok(Response::new(ServerStatusResponse {
            num_flows: count,
            max_flows: count,
            seen_flows: count,
            version: "test-hubble-server".into(),
            ..Default::default()
        }))
    }
}

/// A stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(body: F) -> FlowStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<GetFlowsResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(body(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

#[tokio::main]
async fn main() {
    let options = options();
    let mut events = match options.generate {
        Some(count) => generated(count),
        None => load(&options.files),
    };
    // In time order, as a ring buffer holds them (the files need not be).
    events.sort_by_key(time_ns);
    let observer = TestObserver {
        events: Arc::new(events),
        drop_after: options.drop_after,
        lose: options.lose,
        dropped: Arc::new(AtomicBool::new(false)),
        streams: AtomicU64::new(0),
    };
    let count = observer.events.len();
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
    let service = (!options.no_observer)
        .then(|| ObserverServer::new(observer).max_encoding_message_size(64 << 20));
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
