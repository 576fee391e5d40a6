//! `flowsql serve`: the Hubble Observer API over the recorded history, so that `hubble observe
//! --server`, `hubble status`, `hubble list nodes|namespaces` and the Hubble UI (its
//! `FLOWS_API_ADDR`) browse months of flows. Read-only: it needs only read credentials.
//!
//! [`request`] turns a GetFlows request into what to read (Hubble's semantics), [`observer`]
//! serves the RPCs, [`stats`] caches what the unary RPCs answer, [`follow`] tails new files,
//! [`access`] decides who may see what.

pub mod access;
pub mod follow;
pub mod observer;
pub mod request;
pub mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Args;
use flow_schema::store::{Patience, Store};
use hubble_api::encoded::ObserverService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::session::ReadOptions;
use access::Access;
use observer::History;
use stats::Snapshot;

/// The name `hubble status` checks with the gRPC health service.
pub const HEALTH_SERVICE: &str = "hubble.server.Observer";

const EXAMPLES: &str = "\
Examples:
  flowsql --store s3://flows/prod serve --listen 0.0.0.0:4245 \\
      --tls-cert tls.crt --tls-key tls.key --tls-client-ca ca.crt --access access.yaml
  flowsql --store ./flows serve
  hubble observe --server localhost:4245 --since 2026-11-24T09:00Z --until 2026-11-24T09:15Z \\
      -n prod-app --verdict DROPPED
  hubble status --server localhost:4245; hubble list nodes --server localhost:4245

The Hubble UI reads it as its FLOWS_API_ADDR. since/until are inclusive, as Hubble's; a
request's `number` is the newest N of its window (the first N with --first); `follow` streams
the history, then the flows of files as they land in the store (polled every --poll; a flow
appears once its recorder has shipped its file, every --max-file-age of flowrec, 5 min by
default). Status, nodes and namespaces come from statistics refreshed every --stats-every.
flowsql's own --since/--until are refused: each request brings its own window.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    /// Address to listen on (loopback unless told otherwise)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4245")]
    pub listen: String,
    /// Server certificate (PEM): serve TLS (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server key (PEM) (with --tls-cert)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA of client certificates: clients must present one it signed (mTLS)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Who may see what: YAML mapping client certificate identities to namespaces (needs mTLS)
    #[arg(long, value_name = "FILE", requires = "tls_client_ca")]
    pub access: Option<PathBuf>,
    /// How often a follow looks for new files in the store
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = flow_schema::units::parse_duration)]
    pub poll: Duration,
    /// How often the statistics behind status, nodes and namespaces are recomputed
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = flow_schema::units::parse_duration)]
    pub stats_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {0:?}: expected HOST:PORT (127.0.0.1:4245, 0.0.0.0:4245, [::1]:4245)")]
    Listen(String),
    #[error("cannot read {flag} {path}: {source}")]
    Tls {
        flag: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Access(#[from] access::AccessError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error("cannot compute the store's statistics: {0}")]
    Stats(String),
    #[error("cannot serve on {address}: {source}")]
    Transport {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl ServeArgs {
    fn tls(&self) -> Result<Option<ServerTlsConfig>, ServeError> {
        let read = |flag: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| ServeError::Tls {
                flag,
                path: path.display().to_string(),
                source,
            })
        };
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
        ));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
        }
        Ok(Some(tls))
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(
    store_url: &str,
    options: ReadOptions,
    args: &ServeArgs,
) -> Result<(), ServeError> {
    let address: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| ServeError::Listen(args.listen.clone()))?;
    let tls = args.tls()?;
    let access = match &args.access {
        Some(path) => Access::load(path)?,
        None => Access::open(),
    };
    if !address.ip().is_loopback() && args.tls_client_ca.is_none() {
        eprintln!(
            "flowsql serve: warning: listening on {address} without mTLS: anyone who can reach it \
             reads every recorded flow (--tls-cert, --tls-key and --tls-client-ca restrict it)"
        );
    }
    let store = Store::open(store_url, &Patience::INTERACTIVE)
        .map_err(crate::session::SessionError::from)?;
    crate::session::check_reachable(&store).await?;
    let started = Instant::now();
    let snapshot = Snapshot::compute(&store, options)
        .await
        .map_err(ServeError::Stats)?;
    eprintln!(
        "flowsql serve: {} flows from {} node(s) in {} ({:.1}s to read the statistics)",
        snapshot.flows(None),
        snapshot.nodes(None).len(),
        store_url,
        started.elapsed().as_secs_f64()
    );
    let stats = Arc::new(RwLock::new(snapshot));
    tokio::spawn(refresh(
        store.clone(),
        options,
        Arc::clone(&stats),
        args.stats_every,
    ));
    let history = History {
        store,
        options,
        stats,
        access,
        poll: args.poll,
        started,
        version: format!("flowsql {} (history)", env!("CARGO_PKG_VERSION")),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(HEALTH_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|source| ServeError::Transport {
                address: address.to_string(),
                source,
            })?;
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| ServeError::Listen(format!("{address}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(e.to_string()))?;
    eprintln!(
        "flowsql serve: listening on {bound}{} (hubble observe --server {bound})",
        if args.tls_cert.is_some() {
            " with TLS"
        } else {
            ""
        }
    );
    server
        .add_service(health_service)
        .add_service(ObserverService::new(history).max_encoding_message_size(64 << 20))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown(),
        )
        .await
        .map_err(|source| ServeError::Transport {
            address: bound.to_string(),
            source,
        })
}

/// Recomputes the statistics every `every`; a failure keeps the previous ones.
async fn refresh(
    store: Store,
    options: ReadOptions,
    stats: Arc<RwLock<Snapshot>>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match Snapshot::compute(&store, options).await {
            Ok(snapshot) => *stats.write().expect("stats lock") = snapshot,
            Err(error) => eprintln!("flowsql serve: statistics not refreshed: {error}"),
        }
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("flowsql serve: stopping");
}
