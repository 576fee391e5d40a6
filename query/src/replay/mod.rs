//! `flowsql replay`: `hubble observe` over the recorded history. The same filter flags with
//! the same meaning (`hubble_api::observe_flags` builds Hubble's FlowFilter lists, [`predicate`] turns them into
//! one query predicate), the same output formats ([`format`], from rows turned back into
//! `Flow` messages by `flow_schema::hubble::FlowRows`), time-ordered.

pub mod format;
pub mod history;
pub mod predicate;
pub mod rows;

use std::io::Write;

use clap::{ArgMatches, Args};
use datafusion::error::DataFusionError;
use hubble_api::flow::FlowFilter;

use crate::session::FlowSession;
use format::{FlowWriter, Format, Options, TimeFormat};
use history::{Event, Selection};
use hubble_api::observe_flags::{self as filter, FilterError, FilterLists};
use predicate::PredicateError;

const EXAMPLES: &str = "\
Examples:
  flowsql --since 2026-11-24T09:00Z --until 2026-11-24T09:15Z replay -n prod-app --verdict DROPPED
  flowsql --since 1h replay --from-pod prod-app/api-gateway --to-port 80 --print-policy-names
  flowsql --since 1d replay --drop-reason-desc POLICY_DENIED -o jsonpb > drops.json
  flowsql --since 1d replay -t l7 --http-status 5+ --not --http-path '^/healthz' -o table
  flowsql replay --last 100 --ip 10.0.0.0/8 --not -n kube-system
  flowsql --since 1h replay --to-fqdn '*.amazonaws.com' --tcp-flags SYN --to-workload Deployment/api
  flowsql --since 1d replay --cluster east --to-service prod/user-service

Filters are those of `hubble observe`: the same flag repeated matches any of its values (OR),
different flags must all match (AND), --not negates the flag that follows. Symmetric flags
(--pod, --ip, --label, --port, --fqdn, --service, --workload, --identity, --cluster, -n) match
either side. --until is inclusive, as hubble's. Without --since/--until/--first/--last/--all
the last 20 flows are printed, as hubble does. `-o jsonpb` lines re-import with `flowrec import`
and are what `hubble observe --input-file -` reads.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ReplayArgs {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Compact)]
    pub format: Format,
    /// Print the node name of each flow (compact, dict, table)
    #[arg(long)]
    pub print_node_name: bool,
    /// Print the names of the policies behind policy verdicts
    #[arg(long)]
    pub print_policy_names: bool,
    /// Timestamp layout (not applied to json)
    #[arg(long, value_enum, ignore_case = true, default_value_t = TimeFormat::StampMilli)]
    pub time_format: TimeFormat,
    /// Only the first N matching flows (0: all)
    #[arg(long, value_name = "N", conflicts_with_all = ["last", "all"])]
    pub first: Option<usize>,
    /// Only the last N matching flows, printed oldest first (0: all)
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub last: Option<usize>,
    /// Every matching flow (the default when a time range is given)
    #[arg(long)]
    pub all: bool,
    /// Print the FlowFilter lists the flags make and exit
    #[arg(long)]
    pub print_raw_filters: bool,
    /// Hubble FlowFilter JSON; flows must match one (repeatable)
    #[arg(long, value_name = "JSON")]
    pub allowlist: Vec<String>,
    /// Hubble FlowFilter JSON; flows must match none (repeatable)
    #[arg(long, value_name = "JSON")]
    pub denylist: Vec<String>,

    /// Negate the next filter flag
    #[arg(long, num_args = 0, default_missing_value = "", action = clap::ArgAction::Append, help_heading = "Filters")]
    pub not: Vec<String>,
    /// Flows to or from pods in the namespace
    #[arg(short = 'n', long, value_name = "NS", help_heading = "Filters")]
    pub namespace: Vec<String>,
    /// Flows from pods in the namespace
    #[arg(long, value_name = "NS", help_heading = "Filters")]
    pub from_namespace: Vec<String>,
    /// Flows to pods in the namespace
    #[arg(long, value_name = "NS", help_heading = "Filters")]
    pub to_namespace: Vec<String>,
    /// Flows to or from the pod: [namespace/]name-prefix (namespace default: default)
    #[arg(long, value_name = "[NS/]POD", help_heading = "Filters")]
    pub pod: Vec<String>,
    /// Flows from the pod
    #[arg(long, value_name = "[NS/]POD", help_heading = "Filters")]
    pub from_pod: Vec<String>,
    /// Flows to the pod
    #[arg(long, value_name = "[NS/]POD", help_heading = "Filters")]
    pub to_pod: Vec<String>,
    /// Flows to or from endpoints with the labels (k8s selector: app=x,tier!=db; reserved:world)
    #[arg(short = 'l', long, value_name = "SELECTOR", help_heading = "Filters")]
    pub label: Vec<String>,
    /// Flows from endpoints with the labels
    #[arg(long, value_name = "SELECTOR", help_heading = "Filters")]
    pub from_label: Vec<String>,
    /// Flows to endpoints with the labels
    #[arg(long, value_name = "SELECTOR", help_heading = "Filters")]
    pub to_label: Vec<String>,
    /// Flows to or from the IP address or CIDR
    #[arg(long, value_name = "IP|CIDR", help_heading = "Filters")]
    pub ip: Vec<String>,
    /// Flows from the IP address or CIDR
    #[arg(long, value_name = "IP|CIDR", help_heading = "Filters")]
    pub from_ip: Vec<String>,
    /// Flows to the IP address or CIDR
    #[arg(long, value_name = "IP|CIDR", help_heading = "Filters")]
    pub to_ip: Vec<String>,
    /// Flows with the L4 port on either side
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub port: Vec<String>,
    /// Flows with the L4 source port
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub from_port: Vec<String>,
    /// Flows with the L4 destination port
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub to_port: Vec<String>,
    /// Flows to or from the DNS name (pattern: *.example.com)
    #[arg(long, value_name = "PATTERN", help_heading = "Filters")]
    pub fqdn: Vec<String>,
    /// Flows from the DNS name
    #[arg(long, value_name = "PATTERN", help_heading = "Filters")]
    pub from_fqdn: Vec<String>,
    /// Flows to the DNS name
    #[arg(long, value_name = "PATTERN", help_heading = "Filters")]
    pub to_fqdn: Vec<String>,
    /// Flows to or from the service: [namespace/]name-prefix
    #[arg(long, value_name = "[NS/]SVC", help_heading = "Filters")]
    pub service: Vec<String>,
    /// Flows from the service
    #[arg(long, value_name = "[NS/]SVC", help_heading = "Filters")]
    pub from_service: Vec<String>,
    /// Flows to the service
    #[arg(long, value_name = "[NS/]SVC", help_heading = "Filters")]
    pub to_service: Vec<String>,
    /// Flows to or from the workload: [Kind/]name (Deployment/api, api, Deployment/)
    #[arg(long, value_name = "[KIND/]NAME", help_heading = "Filters")]
    pub workload: Vec<String>,
    /// Flows from the workload
    #[arg(long, value_name = "[KIND/]NAME", help_heading = "Filters")]
    pub from_workload: Vec<String>,
    /// Flows to the workload
    #[arg(long, value_name = "[KIND/]NAME", help_heading = "Filters")]
    pub to_workload: Vec<String>,
    /// Flows to or from the security identity (number, or world, host, health, ...)
    #[arg(long, value_name = "ID", help_heading = "Filters")]
    pub identity: Vec<String>,
    /// Flows from the security identity
    #[arg(long, value_name = "ID", help_heading = "Filters")]
    pub from_identity: Vec<String>,
    /// Flows to the security identity
    #[arg(long, value_name = "ID", help_heading = "Filters")]
    pub to_identity: Vec<String>,
    /// Flows to or from endpoints of the cluster
    #[arg(long, value_name = "NAME", help_heading = "Filters")]
    pub cluster: Vec<String>,
    /// Flows from endpoints of the cluster
    #[arg(long, value_name = "NAME", help_heading = "Filters")]
    pub from_cluster: Vec<String>,
    /// Flows to endpoints of the cluster
    #[arg(long, value_name = "NAME", help_heading = "Filters")]
    pub to_cluster: Vec<String>,
    /// FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED or TRANSLATED
    #[arg(long, value_name = "VERDICT", help_heading = "Filters")]
    pub verdict: Vec<String>,
    /// Dropped flows with the drop reason (POLICY_DENIED, ...)
    #[arg(long, value_name = "REASON", help_heading = "Filters")]
    pub drop_reason_desc: Vec<String>,
    /// tcp, udp, sctp, icmp, icmpv4, icmpv6, http, dns, kafka
    #[arg(long, value_name = "PROTO", help_heading = "Filters")]
    pub protocol: Vec<String>,
    /// TCP flags that must all be set: SYN, SYN,ACK, RST, ... (FIN SYN RST PSH ACK URG ECE CWR NS)
    #[arg(long, value_name = "FLAGS", help_heading = "Filters")]
    pub tcp_flags: Vec<String>,
    /// HTTP method (any case)
    #[arg(long, value_name = "METHOD", help_heading = "Filters")]
    pub http_method: Vec<String>,
    /// Regex over the HTTP URL's path
    #[arg(long, value_name = "REGEX", help_heading = "Filters")]
    pub http_path: Vec<String>,
    /// Regex over the HTTP URL
    #[arg(long, value_name = "REGEX", help_heading = "Filters")]
    pub http_url: Vec<String>,
    /// HTTP status code (404) or prefix (5+, 40+)
    #[arg(long, value_name = "CODE", help_heading = "Filters")]
    pub http_status: Vec<String>,
    /// Node name glob (k8s-worker-*, cluster/node)
    #[arg(long, value_name = "GLOB", help_heading = "Filters")]
    pub node_name: Vec<String>,
    /// Event type: trace[:to-endpoint|from-network|...], drop, l7, policy-verdict, capture, trace-sock
    #[arg(
        short = 't',
        long = "type",
        value_name = "TYPE[:SUB]",
        help_heading = "Filters"
    )]
    pub r#type: Vec<String>,
    /// ingress or egress
    #[arg(long, value_name = "DIRECTION", help_heading = "Filters")]
    pub traffic_direction: Vec<String>,
    /// The flow with this uuid
    #[arg(long, value_name = "UUID", help_heading = "Filters")]
    pub uuid: Vec<String>,
    /// CEL expression (hubble's experimental filter): refused, not supported over the history yet
    #[arg(long, value_name = "EXPR", help_heading = "Filters")]
    pub cel_expression: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Predicate(#[from] PredicateError),
    #[error("invalid --{flag} {value:?}: {cause}")]
    RawFilter {
        flag: &'static str,
        value: String,
        cause: String,
    },
    #[error("query failed: {0}")]
    Query(#[from] DataFusionError),
    #[error("cannot read the results: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
    /// A flow written from the store does not decode: a bug of ours, not the user's input.
    #[error("internal error: a flow read from the store does not decode: {0}")]
    Encoding(String),
}

/// Hubble's default when nothing says how many.
const DEFAULT_LAST: usize = 20;

impl ReplayArgs {
    /// The filter lists of the command line: the flags in the order they were given (which
    /// `--not` needs), then the raw `--allowlist` / `--denylist` filters.
    pub fn filters(&self, matches: &ArgMatches) -> Result<FilterLists, ReplayError> {
        let mut given: Vec<(usize, &'static str, &str)> = Vec::new();
        for &flag in filter::FLAGS.iter().chain(&["not"]) {
            let id = flag.replace('-', "_");
            if matches.value_source(&id) != Some(clap::parser::ValueSource::CommandLine) {
                continue;
            }
            let Some(indices) = matches.indices_of(&id) else {
                continue;
            };
            if flag == "not" {
                given.extend(indices.map(|i| (i, "not", "")));
                continue;
            }
            let values = matches
                .get_many::<String>(&id)
                .into_iter()
                .flatten()
                .map(String::as_str);
            given.extend(indices.zip(values).map(|(i, v)| (i, flag, v)));
        }
        given.sort_by_key(|(index, _, _)| *index);
        let mut lists = filter::build(given.into_iter().map(|(_, f, v)| (f, v)))?;
        lists
            .allow
            .extend(raw_filters("allowlist", &self.allowlist)?);
        lists.deny.extend(raw_filters("denylist", &self.denylist)?);
        Ok(lists)
    }

    /// Prints the flows matching `predicate` (from [`predicate::predicate`]).
    pub async fn run(
        &self,
        session: &FlowSession,
        predicate: Option<datafusion::prelude::Expr>,
        out: impl Write + Send,
    ) -> Result<usize, ReplayError> {
        // As hubble: a count of 0 means all; nothing at all means the last 20.
        let selection = match (self.first, self.last, self.all) {
            (Some(n), _, _) if n > 0 => Selection::First(n),
            (None, None, false) if session.range.is_unbounded() => Selection::Last(DEFAULT_LAST),
            (_, Some(n), _) if n > 0 => Selection::Last(n),
            _ => Selection::All,
        };
        let options = Options {
            format: self.format,
            time_format: self.time_format,
            print_node_name: self.print_node_name,
            print_policy_names: self.print_policy_names,
        };
        let mut writer = Printer(FlowWriter::new(out, options));
        let written = history::events(session, predicate, None, selection, &mut writer).await?;
        let writer = writer.0;
        writer.finish()?;
        Ok(written)
    }
}

/// Replay's sink: Hubble's printers.
struct Printer<W: Write>(FlowWriter<W>);

impl<W: Write + Send> history::Sink for Printer<W> {
    async fn deliver(&mut self, event: Event<'_>) -> Result<bool, ReplayError> {
        match event {
            Event::Flow(flow) => self.0.write(flow.decode()?)?,
            Event::Lost(lost) => self.0.write_lost(&lost)?,
        }
        Ok(true)
    }
}

fn raw_filters(flag: &'static str, values: &[String]) -> Result<Vec<FlowFilter>, ReplayError> {
    values
        .iter()
        .map(|value| {
            hubble_api::strict_flow_filter(value).map_err(|e| ReplayError::RawFilter {
                flag,
                value: value.clone(),
                cause: e.to_string(),
            })
        })
        .collect()
}

/// `--print-raw-filters`: the lists as hubble prints them (YAML-like JSON lines).
pub fn print_raw_filters(lists: &FilterLists, mut out: impl Write) -> std::io::Result<()> {
    for (name, filters) in [("allowlist", &lists.allow), ("denylist", &lists.deny)] {
        writeln!(out, "{name}:")?;
        for filter in filters {
            writeln!(
                out,
                "  - '{}'",
                serde_json::to_string(filter).expect("serializable")
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_filter_argument_is_a_filter_flag() {
        let command = crate::cli::Cli::command();
        let replay = command.find_subcommand("replay").unwrap();
        let mut arguments: Vec<String> = replay
            .get_arguments()
            .filter(|a| a.get_help_heading() == Some("Filters") && a.get_id() != "not")
            .map(|a| a.get_long().unwrap().to_owned())
            .collect();
        let mut flags: Vec<String> = hubble_api::observe_flags::FLAGS
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        arguments.sort();
        flags.sort();
        assert_eq!(arguments, flags);
    }
}
