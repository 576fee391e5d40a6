//! `flowrec run --source ebpf`: the recorder's own capture, continuously.
//!
//! The tc programs are attached to the chosen interfaces; a drainer thread empties their flow
//! map every active timeout and hands the rows to batching (`batch`), the shared write side
//! (`sink`) encodes and uploads sealed files. Ctrl-C or SIGTERM: a last drain, every open file
//! sealed and uploaded, the programs detached (they are attached as TCX links, which go away
//! with the process).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flow_schema::store::{Patience, Store, StoreError};
use flow_schema::CaptureSource;
use tokio::sync::mpsc;

use crate::batch::RotationPolicy;
use crate::drain::{DrainError, Drainer, Drains, Stop};
use crate::ebpf::drop_reasons::{BtfError, DropReasons};
use crate::ebpf::rows::FlowRows;
use crate::ebpf::{cgroup2_root, Capture, CaptureError, TcAttach};
use crate::metrics::{self, Metrics};
use crate::parquet_file::Provenance;
use crate::pods::{PodInventory, PodsError};
use crate::spool::ship::{ship_all, Shipping};
use crate::spool::{Sealed, Spool, SpoolError};
use crate::upload::Uploader;

/// A validated `run` request.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Interface names or globs (`lxc*`), as given.
    pub interfaces: Vec<String>,
    pub active_timeout: Duration,
    /// cgroup v2 whose TCP connections are followed; None: the hierarchy's root.
    pub cgroup: Option<PathBuf>,
    /// `kubectl get pods -A -o json` output to enrich flows with.
    pub pods: Option<PathBuf>,
    /// Where flows are made durable before they are shipped.
    pub spool: PathBuf,
    /// After a stop, how long unshipped segments are still tried before they are left in the
    /// spool.
    pub stop_grace: Duration,
    /// Most bytes the spool may hold; beyond, new flows are not recorded (and counted).
    pub spool_max_bytes: u64,
    /// Where to serve Prometheus metrics and /health.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Capacity of each kernel flow map.
    pub flow_map_entries: u32,
    pub tc_attach: TcAttach,
    pub node_name: String,
    pub store_url: String,
    pub rotation: RotationPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Drain(#[from] DrainError),
    #[error("--interfaces {patterns}: no interface matches (interfaces here: {available})")]
    NoInterface { patterns: String, available: String },
    #[error(transparent)]
    DropReasons(#[from] BtfError),
    #[error("--pods {0}")]
    Pods(#[from] PodsError),
    #[error("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo): pass --cgroup PATH")]
    NoCgroup2,
    #[error("--metrics-addr {address}: cannot listen: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch for SIGTERM: {0}")]
    Signals(std::io::Error),
    #[error("the drainer thread panicked")]
    Drainer,
}

/// What a run recorded.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub shipping: Shipping,
    pub drains: Drains,
}

impl RunSummary {
    pub fn describe(&self, store: &str) -> String {
        let left = match self.shipping.left {
            0 => String::new(),
            n => format!("; {n} spool segment(s) left to ship at the next start"),
        };
        format!(
            "drained {} flows, shipped {} flows into {store}: {} files; lost: {} packets (flow map full), \
             {} TCP connections (connection map full), {} flows (spool full), {} flows (spool \
             write failed); {} early drains (flow map nearly full); {} upload retries{left}",
            self.drains.flows,
            self.shipping.shipped.flows,
            self.shipping.shipped.files,
            self.drains.losses.flow_map_full,
            self.drains.losses.conn_map_full,
            self.drains.lost_spool_full,
            self.drains.lost_spool_error,
            self.drains.early,
            self.shipping.retries
        )
    }

    /// Everything recorded reached the store.
    pub fn is_complete(&self) -> bool {
        self.shipping.left == 0
    }
}

pub async fn run(config: RunConfig) -> Result<RunSummary, RunError> {
    let store = Store::open(&config.store_url, &Patience::INTERACTIVE)?;
    let interfaces = matching_interfaces(&config.interfaces)?;
    let cgroup = match &config.cgroup {
        Some(path) => path.clone(),
        None => cgroup2_root().ok_or(RunError::NoCgroup2)?,
    };
    let drop_reasons = DropReasons::from_kernel()?;
    // Read before attaching: a bad file is a usage error, reported before anything runs.
    let pods = config.pods.as_deref().map(PodInventory::load).transpose()?;
    if let Some(pods) = &pods {
        if pods.skipped() > 0 {
            eprintln!(
                "flowrec: --pods {}: {} pods without the fields needed were skipped",
                pods.path().display(),
                pods.skipped()
            );
        }
    }
    // Recovery before capture: a spool another recorder holds stops the run here.
    let (spool, leftovers) = Spool::open(&config.spool)?;
    if !leftovers.is_empty() {
        eprintln!(
            "flowrec: --spool {}: {} segment(s) from a previous run, shipped first",
            config.spool.display(),
            leftovers.len()
        );
    }
    let metrics = Arc::new(Metrics::new(config.spool.clone()));
    if let Some(address) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| RunError::Metrics { address, source })?;
        let bound = listener.local_addr().unwrap_or(address);
        eprintln!("flowrec: serving metrics on http://{bound}/metrics and /health");
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    }
    let mut capture = Capture::load(config.flow_map_entries)?;
    for interface in &interfaces {
        capture.attach(interface, config.tc_attach)?;
    }
    capture.watch_drops(&drop_reasons)?;
    capture.watch_tcp(&cgroup)?;
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
    });
    eprintln!(
        "flowrec: recording flows on {} (drops: node-wide; TCP: cgroup {}) into {}, \
         drained every {:?}; Ctrl-C or SIGTERM stops",
        interfaces.join(","),
        cgroup.display(),
        store.location,
        config.active_timeout
    );

    // Segments left by a previous run go first. Unbounded: it carries paths, and a drainer
    // blocked behind a stuck store would stop emptying the kernel map; the spool's budget is
    // what bounds a long outage.
    let (sender, receiver) = mpsc::unbounded_channel::<Sealed>();
    for segment in leftovers {
        sender.send(segment).expect("the receiver is here");
    }
    let spool_id = spool.id().to_string();
    // Held until shipping is over, after the drainer (and its spool) are gone.
    let spool_lock = spool.lock();
    let drainer = Drainer {
        capture,
        rows: FlowRows::new(config.node_name.clone(), drop_reasons),
        pods,
        spool,
        spool_budget: config.spool_max_bytes,
        rotation: config.rotation.clone(),
        active_timeout: config.active_timeout,
        metrics: Arc::clone(&metrics),
    };
    let drain_stop = Arc::clone(&stop);
    let drainer = std::thread::spawn(move || drainer.run(drain_stop, sender));

    let provenance = Provenance {
        node: config.node_name.clone(),
        source: CaptureSource::Ebpf.as_str(),
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
    let drains = drainer.join().map_err(|_| RunError::Drainer)??;
    Ok(RunSummary { shipping, drains })
}

/// The interfaces of this network namespace that match `patterns` (names or globs).
fn matching_interfaces(patterns: &[String]) -> Result<Vec<String>, RunError> {
    let available = interface_names();
    let matching: Vec<String> = available
        .iter()
        .filter(|name| patterns.iter().any(|p| glob_match(p, name)))
        .cloned()
        .collect();
    if matching.is_empty() {
        return Err(RunError::NoInterface {
            patterns: patterns.join(","),
            available: available.join(", "),
        });
    }
    Ok(matching)
}

/// Interface names of the calling thread's network namespace (netlink, not /sys/class/net,
/// which shows the namespace /sys was mounted in).
fn interface_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut entry = list;
        while (*entry).if_index != 0 {
            names.push(
                std::ffi::CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    names.sort();
    names
}

/// Shell-style glob: `*` any run of characters, `?` one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], n) || (!n.is_empty() && matches(p, &n[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_shell() {
        assert!(glob_match("lxc*", "lxc12ab"));
        assert!(glob_match("eth0", "eth0"));
        assert!(!glob_match("eth0", "eth01"));
        assert!(glob_match("veth?", "veth1"));
        assert!(!glob_match("veth?", "veth12"));
        assert!(glob_match("*", "lo"));
        assert!(glob_match("a*b*c", "aXXbYc"));
        assert!(!glob_match("a*b*c", "aXXbY"));
    }

    #[test]
    fn no_matching_interface_names_the_patterns_and_what_exists() {
        let error = matching_interfaces(&["nosuch*".into()]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("--interfaces nosuch*"), "{text}");
        assert!(text.contains("lo"), "{text}");
    }
}
