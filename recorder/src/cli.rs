//! Command line of `flowrec`: flags parsed and validated into the config structs the stages use.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flow_schema::hubble::Redaction;
use flow_schema::units::{parse_duration, parse_size};

use crate::batch::{RotationError, RotationPolicy};
use crate::ebpf::TcAttach;
use crate::import::ImportConfig;
use crate::input::InputName;
use crate::run::{RunConfig, SourceConfig};
use crate::source::ebpf::EbpfConfig;
use crate::source::follow::FollowConfig;
use crate::source::hubble::HubbleConfig;

#[derive(Debug, Parser)]
#[command(
    name = "flowrec",
    version = env!("FLOW_VERSION"),
    about = "Record Kubernetes network flows into zstd Parquet files on S3 or a local folder",
    after_help = "Query what was recorded with flowsql, e.g.\n  flowsql \"select * from flows where verdict='DROPPED'\""
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import Hubble JSON flow exports (hubble observe -o jsonpb, the Hubble exporter's files)
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
    /// Record flows continuously: the recorder's own eBPF programs, or a Hubble exporter file
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Show which eBPF programs `run --source ebpf` would attach on this kernel (or on the
    /// kernel a BTF file describes), how, and what is skipped and why; loads nothing
    #[command(after_help = KERNEL_EXAMPLES)]
    Kernel(KernelArgs),
}

const KERNEL_EXAMPLES: &str = "\
Examples:
  flowrec kernel
  flowrec kernel --cgroup /sys/fs/cgroup/kubepods.slice
  flowrec kernel --kernel-btf ./5.15.0-1034-gke.btf --kernel-release 5.15.0-1034-gke

The tc programs (tc_ingress, tc_egress) are the flows: without them nothing is recorded. The
drop tracer (on_kfree_skb: Linux 5.17 and BTF) and the TCP tracer (tcp_lifecycle: a cgroup v2)
are optional: where the kernel lacks what they need, `run` skips them, names why, and records
flows without their columns. Facts come from the kernel's BTF (right about backports), the
release only where there is no BTF.

Exit status: 0 every program attaches; 1 some are skipped; 2 the recorder could not run here.";

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Decide from this BTF instead of /sys/kernel/btf/vmlinux: another node image's kernel
    /// (a copy of its /sys/kernel/btf/vmlinux, or its file from BTFHub)
    #[arg(long, value_name = "PATH")]
    pub kernel_btf: Option<PathBuf>,

    /// Decide for this release instead of `uname -r`'s: it names the kernel, and decides
    /// what BTF does not tell (memlock accounting; everything where there is no BTF)
    #[arg(long, value_name = "RELEASE")]
    pub kernel_release: Option<String>,

    /// cgroup v2 the TCP tracer would follow [default: the root of the cgroup v2 hierarchy]
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// As for `run`
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub tc_attach: TcAttachArg,
}

const RUN_EXAMPLES: &str = "\
Examples:
  flowrec run --source hubble --hubble-server unix:///var/run/cilium/hubble.sock
  flowrec run --source hubble --hubble-server hubble-relay.kube-system:4245 \\
      --hubble-tls-ca ca.crt --hubble-tls-cert tls.crt --hubble-tls-key tls.key \\
      --hubble-tls-server-name ui.hubble-relay.cilium.io
  flowrec run --source file --follow /var/run/cilium/hubble/events.log --store s3://flows/prod
  flowrec run --source ebpf --interfaces 'lxc*,eth0'
  flowrec run --source ebpf --interfaces eth0 --active-timeout 30s --store s3://flows/prod
  flowrec run --source ebpf --interfaces 'veth*' --cgroup /sys/fs/cgroup/kubepods.slice
  flowrec run --source ebpf --interfaces 'eth*' --kube     # pod names from the API
  flowrec run --source ebpf --interfaces 'lxc*' --pods /run/flowrec/pods.json \\
      --spool /var/lib/flowrec/spool --metrics-addr 0.0.0.0:9464

--source file follows a Hubble exporter file (hubble-export-file-path) as Cilium's exporter
rotates it (rename to events-<time>.log, optionally gzipped): every line is recorded once,
with capture_source = 'hubble'. The position read up to is recorded with the lines, so a
restart resumes there, finding the file among the rotated ones if it moved; the very first
start reads the file from its beginning. When the spool is full, reading pauses (the lines
wait in the file).

--source ebpf: every packet on the interfaces (both directions) is counted into its flow in the kernel; every
active timeout the flows are written as rows with capture_source = 'ebpf' (bytes, packets,
tcp_flags, flow_start, flow_end, traffic_direction, interface_name). Packets the kernel drops,
anywhere on the node, make their flow DROPPED with the kernel's reason in drop_reason_desc
(NO_SOCKET, NETFILTER_DROP, ...). TCP connections of the --cgroup's processes add their RTT,
retransmits and byte counters (tcp_srtt_us, tcp_retransmits, ...) to their flows. Ctrl-C or
SIGTERM writes what was captured and detaches the programs.

A flow is recorded once the drain (or the lines) holding it is fsynced in the --spool folder; sealed spool segments (--max-file-bytes, --max-file-age) become Parquet files in the
store under keys fixed by the segment, and are deleted only after the upload is checked. A
restart ships what a previous run left. Exit status: 0 everything shipped; 1 segments were left
in the spool (shipped at the next start); 2 the recorder could not run.

--source ebpf needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root). Run it in the network
namespace of the interfaces (nsenter --net=/run/netns/NAME, not `ip netns exec`, which hides /sys/fs/bpf).";

/// Smallest `--spool-max-bytes`: below, records would rarely fit (an empty spool takes one
/// record whatever its size, so nothing ever blocks for good).
const MIN_SPOOL_BYTES: usize = 64 << 10;

fn parse_spool_budget(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_SPOOL_BYTES {
        return Err(format!("at least 64KiB, not {text}"));
    }
    Ok(bytes)
}

/// `--tc-attach`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TcAttachArg {
    Auto,
    Tcx,
    Clsact,
}

impl From<TcAttachArg> for TcAttach {
    fn from(arg: TcAttachArg) -> TcAttach {
        match arg {
            TcAttachArg::Auto => TcAttach::Auto,
            TcAttachArg::Tcx => TcAttach::Tcx,
            TcAttachArg::Clsact => TcAttach::Clsact,
        }
    }
}

/// Where flows come from for `run`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Source {
    /// The recorder's own tc programs
    Ebpf,
    /// A Hubble exporter file (--follow)
    File,
    /// A Hubble server or Hubble Relay, live over the Observer API (--hubble-server)
    Hubble,
}

/// `run --help` groups the flags that only one source takes under these headings.
const EBPF_OPTIONS: &str = "Options of --source ebpf";
const HUBBLE_OPTIONS: &str = "Options of --source hubble";
const FILE_OPTIONS: &str = "Options of --source file";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where flows come from
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub source: Source,

    /// The Hubble exporter file to follow (--source file), e.g.
    /// /var/run/cilium/hubble/events.log
    #[arg(long, help_heading = FILE_OPTIONS, value_name = "PATH", required_if_eq("source", "file"))]
    pub follow: Option<PathBuf>,

    /// The Hubble server (--source hubble): unix:///var/run/cilium/hubble.sock (the local
    /// agent) or host:port (Hubble Relay, e.g. hubble-relay.kube-system:4245)
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "ADDR", required_if_eq("source", "hubble"))]
    pub hubble_server: Option<String>,

    /// CA certificate (PEM) that signed the server's certificate; turns TLS on
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "FILE")]
    pub hubble_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mTLS (with --hubble-tls-key)
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "FILE")]
    pub hubble_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for mTLS (with --hubble-tls-cert)
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "FILE")]
    pub hubble_tls_key: Option<PathBuf>,

    /// Name expected in the server's certificate (Relay's is *.hubble-relay.cilium.io), if
    /// not the host of --hubble-server
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "NAME")]
    pub hubble_tls_server_name: Option<String>,

    /// Only flows matching this Hubble FlowFilter (JSON, as `hubble observe --allowlist`);
    /// repeated: any of them
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "JSON")]
    pub hubble_allowlist: Vec<String>,

    /// No flows matching this Hubble FlowFilter (JSON); repeated: any of them
    #[arg(long, help_heading = HUBBLE_OPTIONS, value_name = "JSON")]
    pub hubble_denylist: Vec<String>,

    /// Interfaces to capture on (--source ebpf): comma-separated names or globs (lxc*,eth0)
    #[arg(
        help_heading = EBPF_OPTIONS,
        long,
        value_name = "LIST",
        value_delimiter = ',',
        required_if_eq("source", "ebpf")
    )]
    pub interfaces: Vec<String>,

    /// How often flows are drained from the kernel and written as rows (--source ebpf), from
    /// 100ms to 1d [default: 10s]
    #[arg(long, help_heading = EBPF_OPTIONS, value_parser = parse_active_timeout, value_name = "DURATION")]
    pub active_timeout: Option<Duration>,

    /// cgroup v2 whose processes' TCP connections are followed (sock_ops), descendants
    /// included [default: the root of the cgroup v2 hierarchy]
    #[arg(long, help_heading = EBPF_OPTIONS, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// Flows the kernel holds between drains (--source ebpf); flowrec drains early when a map
    /// is 3/4 full.
    /// Two maps of this size with a copy per CPU, N x (112 + 64 x CPUs) bytes each, charged to
    /// the recorder's memory cgroup [default: 65536, or fewer on nodes with 15 CPUs or more,
    /// so that both maps stay within 128 MiB]
    #[arg(long, help_heading = EBPF_OPTIONS, value_name = "N", value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub flow_map_entries: Option<u32>,

    /// Local folder where flows become durable (fsynced) after every drain, before they are
    /// shipped to the store; kept across restarts (one recorder per folder)
    #[arg(long, default_value = "/var/lib/flowrec/spool", value_name = "DIR")]
    pub spool: PathBuf,

    /// Most disk the spool may use (segments not yet shipped, e.g. while the store is down);
    /// when reached, new flows are not recorded and are counted as lost (cause spool_full):
    /// what is already spooled is kept
    #[arg(long, default_value = "10GiB", value_parser = parse_spool_budget, value_name = "SIZE")]
    pub spool_max_bytes: usize,

    /// After Ctrl-C / SIGTERM, how long to keep trying to ship what is spooled; what is left
    /// stays in the spool for the next start
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub stop_grace: Duration,

    /// How long one upload request to the store may take before it is abandoned and retried
    /// (a store that accepts connections but hangs must not stall shipping)
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub upload_timeout: Duration,

    /// How events are logged on stderr: text (`flowrec: …`) or json (one object per line:
    /// time, level, message)
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub log_format: crate::log::Format,

    /// Serve Prometheus metrics (/metrics) and a health check (/health) on this address,
    /// e.g. 0.0.0.0:9464
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// How long the source's upstream (the Hubble stream) may be down or unreached before
    /// /health answers 503 (a readiness probe's signal); /livez stays 200 meanwhile
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub unready_after: Duration,

    /// How the tc programs attach: tcx (BPF links, kernel >= 6.6), clsact (tc filters; the
    /// qdisc is added if missing and removed at exit only if added), auto (tcx where available)
    #[arg(long, help_heading = EBPF_OPTIONS, value_enum, default_value = "auto", value_name = "MODE")]
    pub tc_attach: TcAttachArg,

    /// The kernel's BTF, for a kernel that does not publish it at /sys/kernel/btf/vmlinux
    /// (e.g. a file from BTFHub): which programs attach and their CO-RE relocations follow it
    /// (`flowrec kernel --kernel-btf PATH` shows the decisions first)
    #[arg(long, help_heading = EBPF_OPTIONS, value_name = "PATH")]
    pub kernel_btf: Option<PathBuf>,

    /// Pod inventory: the JSON of `kubectl get pods -A -o json`, re-read when it changes; fills
    /// the source_/destination_ namespace, pod_name, labels and workload of flows
    #[arg(long, help_heading = EBPF_OPTIONS, value_name = "FILE", conflicts_with = "kube")]
    pub pods: Option<PathBuf>,

    /// Pod identity from the Kubernetes API instead of --pods: every pod listed, then
    /// watched (the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config;
    /// needs get, list and watch on pods cluster-wide)
    #[arg(long, help_heading = EBPF_OPTIONS)]
    pub kube: bool,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub redact: RedactArgs,
}

/// How often the eBPF source drains its flow maps when `--active-timeout` is not given: the
/// flow records' granularity, and what a crash can lose (see ARCHITECTURE.md).
const DEFAULT_ACTIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--active-timeout`: a duration from 100ms to a day. Shorter, the drainer would spin (0s);
/// longer, the flow maps fill first anyway, and a deadline years away overflows the clock.
fn parse_active_timeout(text: &str) -> Result<Duration, String> {
    const RANGE: std::ops::RangeInclusive<Duration> =
        Duration::from_millis(100)..=Duration::from_secs(86_400);
    let timeout = parse_duration(text)?;
    if RANGE.contains(&timeout) {
        Ok(timeout)
    } else {
        Err(format!("{text:?} is outside 100ms..1d"))
    }
}

/// A `run` command line that parses but does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum RunArgsError {
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error("{flag} applies to --source {applies_to}, not --source {given}")]
    NotForSource {
        flag: &'static str,
        applies_to: &'static str,
        given: &'static str,
    },
}

impl RunArgs {
    /// Each flag that only one source takes: the flag, that source, and whether it was given.
    /// `--help` shows the same grouping (`help_heading`); a test keeps the two in step.
    fn source_flags(&self) -> [(&'static str, &'static str, bool); 16] {
        [
            ("--follow", "file", self.follow.is_some()),
            ("--interfaces", "ebpf", !self.interfaces.is_empty()),
            ("--active-timeout", "ebpf", self.active_timeout.is_some()),
            (
                "--flow-map-entries",
                "ebpf",
                self.flow_map_entries.is_some(),
            ),
            ("--cgroup", "ebpf", self.cgroup.is_some()),
            ("--kernel-btf", "ebpf", self.kernel_btf.is_some()),
            (
                "--tc-attach",
                "ebpf",
                !matches!(self.tc_attach, TcAttachArg::Auto),
            ),
            ("--pods", "ebpf", self.pods.is_some()),
            ("--kube", "ebpf", self.kube),
            ("--hubble-server", "hubble", self.hubble_server.is_some()),
            ("--hubble-tls-ca", "hubble", self.hubble_tls_ca.is_some()),
            (
                "--hubble-tls-cert",
                "hubble",
                self.hubble_tls_cert.is_some(),
            ),
            ("--hubble-tls-key", "hubble", self.hubble_tls_key.is_some()),
            (
                "--hubble-tls-server-name",
                "hubble",
                self.hubble_tls_server_name.is_some(),
            ),
            (
                "--hubble-allowlist",
                "hubble",
                !self.hubble_allowlist.is_empty(),
            ),
            (
                "--hubble-denylist",
                "hubble",
                !self.hubble_denylist.is_empty(),
            ),
        ]
    }

    /// An error naming the first flag given that belongs to one of the sources `others`
    /// (the source chosen is `given`).
    fn only_for(&self, others: &[&str], given: &'static str) -> Result<(), RunArgsError> {
        match self
            .source_flags()
            .iter()
            .find(|(_, source, set)| *set && others.contains(source))
        {
            Some(&(flag, applies_to, _)) => Err(RunArgsError::NotForSource {
                flag,
                applies_to,
                given,
            }),
            None => Ok(()),
        }
    }

    pub fn into_config(self) -> Result<RunConfig, RunArgsError> {
        let source = match self.source {
            Source::Ebpf => {
                self.only_for(&["file", "hubble"], "ebpf")?;
                SourceConfig::Ebpf(EbpfConfig {
                    interfaces: self.interfaces.clone(),
                    active_timeout: self.active_timeout.unwrap_or(DEFAULT_ACTIVE_TIMEOUT),
                    cgroup: self.cgroup.clone(),
                    pods: self.pods.clone(),
                    kube: self.kube,
                    flow_map_entries: self.flow_map_entries,
                    tc_attach: self.tc_attach.into(),
                    kernel_btf: self.kernel_btf.clone(),
                })
            }
            Source::File => {
                self.only_for(&["ebpf", "hubble"], "file")?;
                SourceConfig::File(FollowConfig {
                    path: self
                        .follow
                        .clone()
                        .expect("clap requires --follow with --source file"),
                })
            }
            Source::Hubble => {
                self.only_for(&["ebpf", "file"], "hubble")?;
                SourceConfig::Hubble(HubbleConfig {
                    server: self
                        .hubble_server
                        .clone()
                        .expect("clap requires --hubble-server with --source hubble"),
                    tls_ca: self.hubble_tls_ca.clone(),
                    tls_cert: self.hubble_tls_cert.clone(),
                    tls_key: self.hubble_tls_key.clone(),
                    tls_server_name: self.hubble_tls_server_name.clone(),
                    allowlist: self.hubble_allowlist.clone(),
                    denylist: self.hubble_denylist.clone(),
                })
            }
        };
        Ok(RunConfig {
            source,
            spool: self.spool,
            spool_max_bytes: self.spool_max_bytes as u64,
            metrics_addr: self.metrics_addr,
            unready_after: self.unready_after,
            stop_grace: self.stop_grace,
            upload_timeout: self.upload_timeout,
            redaction: self.redact.redaction(),
            rotation: self.store.rotation()?,
            node_name: self.store.node_name(),
            store_url: self.store.store,
        })
    }
}

const IMPORT_EXAMPLES: &str = "\
Examples:
  flowrec import hubble-export.log.gz
  flowrec import --store s3://flows/prod /var/run/cilium/hubble/events.log*
  hubble observe --since 1h -o jsonpb | flowrec import -
  flowrec import --strict --node-name kind-worker capture.json.zst

Inputs are JSON lines: the jsonpb envelope {\"flow\":…,\"node_name\":…,\"time\":…} or bare Flow
objects; plain, gzip or zstd (detected from the content). A malformed line is reported as
file:line and skipped; the rest is imported.

Exit status: 0 everything imported; 1 imported, but lines were skipped or an input was
unreadable; 2 nothing imported (bad usage, --strict found errors, or the store failed).

S3 stores are configured from the environment: AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint.";

/// Where flows are stored; shared by every command that writes.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store URL: s3://bucket/prefix, file:///path or a local path
    #[arg(long, env = flow_schema::store::STORE_ENV, default_value = flow_schema::store::DEFAULT_STORE, value_name = "URL")]
    pub store: String,

    /// Name of this recorder's node: names the files it writes, and fills node_name for flows
    /// that carry none [default: $NODE_NAME, else the host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Close a file when it holds this much: run, its spool segment's bytes; import, the
    /// Parquet bytes encoded so far plus the rows waiting for the encoder (what the file costs
    /// in memory until it is uploaded)
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_file_bytes: usize,

    /// Close a file after it has been open this long
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub max_file_age: Duration,
}

/// Redaction of L7 secrets, Hubble's options (`hubble-redact-*`); shared by every command that
/// writes flows.
#[derive(Debug, Args)]
pub struct RedactArgs {
    /// Remove the query and fragment of HTTP URLs (?token=...)
    #[arg(long)]
    pub redact_http_urlquery: bool,

    /// Replace the password of user:password@ in HTTP URLs with HUBBLE_REDACTED
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub redact_http_userinfo: bool,

    /// Keep only these HTTP headers' values (comma-separated names); the others become
    /// HUBBLE_REDACTED
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        conflicts_with = "redact_http_headers_deny"
    )]
    pub redact_http_headers_allow: Vec<String>,

    /// Replace these HTTP headers' values with HUBBLE_REDACTED (comma-separated names, e.g.
    /// authorization,cookie)
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub redact_http_headers_deny: Vec<String>,

    /// Replace Kafka API keys with HUBBLE_REDACTED
    #[arg(long)]
    pub redact_kafka_apikey: bool,
}

impl RedactArgs {
    fn redaction(&self) -> Redaction {
        Redaction {
            url_query: self.redact_http_urlquery,
            user_info: self.redact_http_userinfo,
            headers: Redaction::headers_from(
                &self.redact_http_headers_allow,
                &self.redact_http_headers_deny,
            ),
            kafka_api_key: self.redact_kafka_apikey,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files to import; - reads stdin
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Check every input first and write nothing unless all of it is valid
    #[arg(long)]
    pub strict: bool,

    /// Never draw a progress bar (it is drawn only when stderr is a terminal)
    #[arg(long)]
    pub no_progress: bool,

    #[command(flatten)]
    pub redact: RedactArgs,
}

impl StoreArgs {
    fn node_name(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-node".into())
    }

    fn rotation(&self) -> Result<RotationPolicy, RotationError> {
        RotationPolicy {
            max_bytes: self.max_file_bytes,
            max_age: self.max_file_age,
        }
        .validate()
    }
}

impl ImportArgs {
    pub fn into_config(self) -> Result<ImportConfig, RotationError> {
        Ok(ImportConfig {
            inputs: self.paths.iter().map(|p| InputName::parse(p)).collect(),
            rotation: self.store.rotation()?,
            node_name: self.store.node_name(),
            store_url: self.store.store,
            strict: self.strict,
            progress: !self.no_progress,
            redaction: self.redact.redaction(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_config(args: &[&str]) -> Result<RunConfig, RunArgsError> {
        let cli = Cli::try_parse_from(["flowrec", "run"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"));
        match cli.command {
            Command::Run(run) => run.into_config(),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn a_flag_of_another_source_is_named() {
        for (args, flag, given) in [
            (
                &[
                    "--source",
                    "hubble",
                    "--hubble-server",
                    "h:4245",
                    "--flow-map-entries",
                    "4096",
                ][..],
                "--flow-map-entries",
                "hubble",
            ),
            (
                &[
                    "--source",
                    "file",
                    "--follow",
                    "x.log",
                    "--active-timeout",
                    "30s",
                ][..],
                "--active-timeout",
                "file",
            ),
            (
                &[
                    "--source",
                    "ebpf",
                    "--interfaces",
                    "eth0",
                    "--hubble-tls-ca",
                    "ca.pem",
                ][..],
                "--hubble-tls-ca",
                "ebpf",
            ),
        ] {
            match run_config(args) {
                Err(RunArgsError::NotForSource {
                    flag: named,
                    given: source,
                    ..
                }) => assert_eq!((named, source), (flag, given), "{args:?}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_active_timeout_outside_its_range_is_refused_by_name() {
        for timeout in ["0s", "50ms", "2d", "1000000000w"] {
            let error = Cli::try_parse_from([
                "flowrec",
                "run",
                "--source",
                "ebpf",
                "--interfaces",
                "eth0",
                "--active-timeout",
                timeout,
            ])
            .expect_err(timeout)
            .to_string();
            assert!(
                error.contains("--active-timeout") && error.contains("outside 100ms..1d"),
                "{timeout}: {error}"
            );
        }
        let help = Cli::try_parse_from(["flowrec", "run", "--help"])
            .expect_err("--help prints")
            .to_string();
        assert!(help.contains("[default: 10s]"), "{help}");
        assert_eq!(DEFAULT_ACTIVE_TIMEOUT, Duration::from_secs(10));
    }

    #[test]
    fn run_help_groups_each_sources_flags_under_its_heading() {
        let help = Cli::try_parse_from(["flowrec", "run", "--help"])
            .expect_err("--help prints")
            .to_string();
        let at = |text: &str| {
            help.find(text)
                .unwrap_or_else(|| panic!("{text} not in {help}"))
        };
        for (heading, flags) in [
            (FILE_OPTIONS, &["--follow"][..]),
            (
                HUBBLE_OPTIONS,
                &["--hubble-server", "--hubble-denylist"][..],
            ),
            (
                EBPF_OPTIONS,
                &["--interfaces", "--flow-map-entries", "--pods", "--kube"][..],
            ),
        ] {
            for flag in flags {
                // The flag's own line (not an example's mention).
                let line = at(&format!("\n      {flag}"));
                assert!(at(heading) < line, "{flag} is not under {heading}: {help}");
            }
        }
        assert!(at("--spool ") < at(FILE_OPTIONS), "{help}");
    }

    #[test]
    fn the_help_headings_and_the_source_checks_name_the_same_flags() {
        use clap::CommandFactory;
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("a run command");
        let mut in_help: Vec<(String, String)> = run
            .get_arguments()
            .filter_map(|arg| {
                let source = arg
                    .get_help_heading()?
                    .strip_prefix("Options of --source ")?;
                Some((format!("--{}", arg.get_long()?), source.to_owned()))
            })
            .collect();
        let args =
            Cli::try_parse_from(["flowrec", "run", "--source", "ebpf", "--interfaces", "eth0"])
                .expect("a valid command line");
        let Command::Run(args) = args.command else {
            panic!("not run")
        };
        let mut checked: Vec<(String, String)> = args
            .source_flags()
            .iter()
            .map(|(flag, source, _)| (flag.to_string(), source.to_string()))
            .collect();
        in_help.sort();
        checked.sort();
        assert_eq!(in_help, checked);
    }

    #[test]
    fn the_ebpf_source_takes_its_flags_and_defaults() {
        let ebpf = |args: &[&str]| match run_config(args).expect("a valid command line").source {
            SourceConfig::Ebpf(config) => config,
            other => panic!("{args:?}: {other:?}"),
        };
        let defaults = ebpf(&["--source", "ebpf", "--interfaces", "eth0"]);
        assert_eq!(defaults.active_timeout, DEFAULT_ACTIVE_TIMEOUT);
        assert_eq!(defaults.flow_map_entries, None);
        let given = ebpf(&[
            "--source",
            "ebpf",
            "--interfaces",
            "eth0",
            "--active-timeout",
            "30s",
            "--flow-map-entries",
            "4096",
        ]);
        assert_eq!(given.active_timeout, Duration::from_secs(30));
        assert_eq!(given.flow_map_entries, Some(4096));
    }
}
