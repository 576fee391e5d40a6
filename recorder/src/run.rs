//! `flowrec run`: records flows continuously from one source into the spool, and ships sealed
//! spool segments to the store.
//!
//! Order of a run: the store and the source's settings are checked (a usage error stops here,
//! before anything is attached or read); the spool is opened (locked, recovered: what a
//! previous run left is shipped first, and a file source learns where to resume); metrics are
//! served; the source starts on its own thread (`source::drain` or `source::follow`) while
//! `spool::ship` uploads on the async runtime. Ctrl-C or SIGTERM: the source records what it
//! has and seals its segment; shipping goes on for up to `--stop-grace`; what is left stays in
//! the spool for the next start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flow_schema::hubble::{HubbleDecoder, Redaction};
use flow_schema::store::{Patience, Store, StoreError};
use flow_schema::CaptureSource;
use tokio::sync::mpsc;

use crate::batch::RotationPolicy;
use crate::metrics::{self, Metrics};
use crate::parquet_file::Provenance;
use crate::source::drain::{DrainError, Drains};
use crate::source::ebpf::{self, EbpfConfig, EbpfError};
use crate::source::follow::{FollowConfig, Followed, Follower};
use crate::source::hubble::{self, HubbleConfig, HubbleError, Listened, Listener};
use crate::source::tail::TailError;
use crate::source::{SpoolOutput, Stop};
use crate::spool::ship::{ship_all, Shipping};
use crate::spool::{Sealed, Spool, SpoolError};
use crate::upload::Uploader;

/// Where `run` takes flows from.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Ebpf(EbpfConfig),
    File(FollowConfig),
    Hubble(HubbleConfig),
}

/// A validated `run` request.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: SourceConfig,
    /// Where flows are made durable before they are shipped.
    pub spool: PathBuf,
    /// After a stop, how long unshipped segments are still tried before they are left in the
    /// spool.
    pub stop_grace: Duration,
    /// Most bytes the spool may hold.
    pub spool_max_bytes: u64,
    /// Longest an upload request may take before it is retried.
    pub upload_timeout: Duration,
    /// Where to serve Prometheus metrics and /health.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long the source's upstream may be down before /health answers 503.
    pub unready_after: Duration,
    pub node_name: String,
    pub store_url: String,
    pub rotation: RotationPolicy,
    /// What is removed from L7 records before anything is written.
    pub redaction: Redaction,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--store {0}")]
    Misconfigured(#[from] flow_schema::store::ProbeError),
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    #[error(transparent)]
    Follow(#[from] TailError),
    #[error(transparent)]
    Hubble(#[from] HubbleError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Drain(#[from] DrainError),
    #[error("--metrics-addr {address}: cannot listen: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch for SIGTERM: {0}")]
    Signals(std::io::Error),
    #[error("the source thread panicked")]
    SourcePanicked,
    #[error("cannot start the source thread: {0}")]
    Thread(std::io::Error),
}

/// What the source recorded.
#[derive(Debug)]
pub enum Recorded {
    Ebpf(Drains),
    File(Followed),
    Hubble(Listened),
}

/// What a run recorded and shipped.
#[derive(Debug)]
pub struct RunSummary {
    pub shipping: Shipping,
    pub recorded: Recorded,
}

impl RunSummary {
    pub fn describe(&self, store: &str) -> String {
        let left = match self.shipping.left {
            0 => String::new(),
            n => format!("; {n} spool segment(s) left to ship at the next start"),
        };
        let shipped = format!(
            "shipped {} flows into {store}: {} files",
            self.shipping.shipped.flows, self.shipping.shipped.files
        );
        let recorded = match &self.recorded {
            Recorded::Ebpf(drains) => format!(
                "drained {} flows, {shipped}; lost: {} packets (flow map full), {} TCP \
                 connections (connection map full), {} flows (spool full), {} flows (spool \
                 write failed); {} early drains (flow map nearly full)",
                drains.flows,
                drains.losses.flow_map_full,
                drains.losses.conn_map_full,
                drains.lost_spool_full,
                drains.lost_spool_error,
                drains.early,
            ),
            Recorded::File(followed) => format!("{}; {shipped}", followed.describe()),
            Recorded::Hubble(listened) => format!("{}; {shipped}", listened.describe()),
        };
        format!("{recorded}; {} upload retries{left}", self.shipping.retries)
    }

    /// Everything recorded reached the store.
    pub fn is_complete(&self) -> bool {
        self.shipping.left == 0
    }
}

/// A source, checked and ready to start once the spool is open.
enum Checked {
    Ebpf(Box<ebpf::Checked>),
    File(FollowConfig),
    Hubble(Box<hubble::Checked>),
}

/// A started source: its thread's body.
type SourceThread = Box<dyn FnOnce(Arc<Stop>) -> Result<Recorded, RunError> + Send>;

pub async fn run(config: RunConfig) -> Result<RunSummary, RunError> {
    let patience = Patience {
        request_timeout: config.upload_timeout,
        ..Patience::INTERACTIVE
    };
    let store = Store::open(&config.store_url, &patience)?;
    crate::upload::check_store(&store).await?;
    let checked = match &config.source {
        SourceConfig::Ebpf(ebpf) => Checked::Ebpf(Box::new(ebpf::check(ebpf).await?)),
        SourceConfig::File(follow) => Checked::File(follow.clone()),
        SourceConfig::Hubble(config) => Checked::Hubble(Box::new(hubble::check(config)?)),
    };
    // Recovery before the source starts: a spool another recorder holds stops the run here.
    let (spool, leftovers) = Spool::open(&config.spool)?;
    if !leftovers.is_empty() {
        crate::info!(
            "--spool {}: {} segment(s) from a previous run, shipped first",
            config.spool.display(),
            leftovers.len()
        );
    }
    let metrics = Arc::new(Metrics::new(config.spool.clone(), config.unready_after));
    crate::panics::count_in(&config.spool);
    metrics.panics.store(
        crate::panics::counted(&config.spool),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some(address) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| RunError::Metrics { address, source })?;
        let bound = listener.local_addr().unwrap_or(address);
        crate::info!("serving metrics on http://{bound}/metrics, /health and /livez");
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    }
    // Segments left by a previous run go first. Unbounded: it carries paths, and a source
    // blocked behind a stuck store would stop emptying the kernel map; the spool's budget is
    // what bounds a long outage.
    let (sender, receiver) = mpsc::unbounded_channel::<Sealed>();
    for segment in leftovers {
        sender.send(segment).expect("the receiver is here");
    }
    let spool_id = spool.id().to_string();
    // Held until shipping is over, after the source (and its spool) are gone.
    let spool_lock = spool.lock();
    let output = SpoolOutput {
        spool,
        budget: config.spool_max_bytes,
        rotation: config.rotation.clone(),
        sealed: sender,
    };
    let node = config.node_name.clone();
    let decoder = HubbleDecoder::new(CaptureSource::Hubble, Some(node.clone()))
        .with_redaction(config.redaction.clone());
    let (thread, what, source) = match checked {
        Checked::Ebpf(checked) => {
            let (drainer, what) = checked.start(node, output, Arc::clone(&metrics))?;
            let thread: SourceThread = Box::new(move |stop| Ok(Recorded::Ebpf(drainer.run(stop)?)));
            (thread, what, CaptureSource::Ebpf)
        }
        Checked::File(follow) => {
            let what = format!("from {} (following its rotations)", follow.path.display());
            let follower = Follower::new(&follow, decoder, output, Arc::clone(&metrics))?;
            let thread: SourceThread = Box::new(move |stop| Ok(Recorded::File(follower.run(stop))));
            (thread, what, CaptureSource::Hubble)
        }
        Checked::Hubble(checked) => {
            let what = checked.describe();
            let listener = Listener::new(*checked, decoder, node, output, Arc::clone(&metrics))?;
            let thread: SourceThread =
                Box::new(move |stop| Ok(Recorded::Hubble(listener.run(stop))));
            (thread, what, CaptureSource::Hubble)
        }
    };
    // Signals are caught before "recording" is announced: a stop that follows the
    // announcement always flushes.
    let stop = Arc::new(Stop::default());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signals)?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(RunError::Signals)?;
    let signalled = Arc::clone(&stop);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        signalled.request();
        // A second signal does not wait for the flush: what is fsynced stays in the spool.
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        crate::warn!("second signal: exiting now; the spool keeps what was recorded");
        std::process::exit(130);
    });
    crate::info!(
        "recording flows {what} into {}; Ctrl-C or SIGTERM stops (twice: at once)",
        store.location
    );
    let source_stop = Arc::clone(&stop);
    let source_thread = std::thread::Builder::new()
        .name("source".into())
        .spawn(move || thread(source_stop))
        .map_err(RunError::Thread)?;

    let provenance = Provenance {
        node: config.node_name.clone(),
        source: source.as_str(),
    };
    let uploader = Uploader::new(store, config.node_name.clone(), provenance.source);
    let shipping = ship_all(
        receiver,
        &spool_id,
        &uploader,
        &provenance,
        config.stop_grace,
        &metrics,
    )
    .await;
    drop(spool_lock);
    let recorded = source_thread
        .join()
        .map_err(|_| RunError::SourcePanicked)??;
    Ok(RunSummary { shipping, recorded })
}
