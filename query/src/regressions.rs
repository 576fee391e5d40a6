//! `flowsql regressions`: which connections a policy change broke. For every connection —
//! source namespace + workload, destination namespace + workload, destination port, protocol,
//! and for L7 the HTTP method and path — that was FORWARDED in a baseline period and is
//! DROPPED by policy in a window: when it was first denied, how often, by which policies, and
//! an example flow. `--also-newly-allowed` adds the reverse (denied before, allowed now).
//!
//! Pods of one workload are one connection: the workload Hubble names, else the pod name
//! without its ReplicaSet/DaemonSet suffix, else (outside the cluster) the DNS name, the
//! reserved identity or the IP (the `peer` function, as `flows_hourly` keys them). Only
//! requests count (`is_reply` not true), so a reply is never a reversed connection. Denied by
//! policy: `POLICY_DENIED`, `POLICY_DENY`, `AUTH_REQUIRED`, and L7 requests the proxy dropped.
//!
//! The baseline is read from `flows_hourly` rollups wherever they answer exactly
//! (`hourly::relation`), so a 30-day baseline costs 720 small files, not a month of flows.

use chrono::{DateTime, Utc};
use clap::Args;
use flow_schema::units::parse_duration;

use flow_schema::timerange::{parse_instant, TimeRange};

const EXAMPLES: &str = "\
Examples:
  flowsql regressions --baseline 7d --window 1h
  flowsql regressions --baseline 2026-11-24T08:00Z..2026-11-24T09:00Z \\
      --window 2026-11-24T09:00Z..2026-11-24T09:30Z --format csv
  flowsql regressions --baseline 1d --window 2h --also-newly-allowed

RANGE is FROM..TO (RFC 3339 times or durations back from now), or a duration: for --window,
back from now; for --baseline, back from the window's start.
Drops by policy: POLICY_DENIED, POLICY_DENY, AUTH_REQUIRED.
An example flow prints with: flowsql replay --uuid UUID";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct RegressionArgs {
    /// When connections were known to work: FROM..TO, or a duration before the window (7d)
    #[arg(long, value_name = "RANGE")]
    pub baseline: String,
    /// Where to look for denials: FROM..TO, or a duration back from now (1h)
    #[arg(long, value_name = "RANGE")]
    pub window: String,
    /// Also list connections denied by policy in the baseline and allowed in the window
    #[arg(long)]
    pub also_newly_allowed: bool,
    /// Output format [default: table]
    #[arg(long, value_enum)]
    pub format: Option<crate::print::OutputFormat>,
    /// Write results to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    #[error("invalid {flag} {value:?}: expected FROM..TO (RFC 3339 times or durations back from now) or a duration (7d, 1h)")]
    Invalid { flag: &'static str, value: String },
    #[error("{flag} {value:?} is empty: FROM must be before TO")]
    Empty { flag: &'static str, value: String },
    #[error("--baseline must end before the --window starts (a connection allowed and denied in the same period is not a change)")]
    Order,
}

/// The two periods, as half-open ranges in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub baseline: (i64, i64),
    pub window: (i64, i64),
}

impl Periods {
    pub fn parse(args: &RegressionArgs, now: DateTime<Utc>) -> Result<Periods, RangeError> {
        let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let window = range("--window", &args.window, now, now_ns)?;
        let baseline = range("--baseline", &args.baseline, now, window.0)?;
        if baseline.1 > window.0 {
            return Err(RangeError::Order);
        }
        Ok(Periods { baseline, window })
    }

    /// What the session has to read: both periods.
    pub fn span(&self) -> TimeRange {
        TimeRange {
            since: Some(self.baseline.0.min(self.window.0)),
            until: Some(self.baseline.1.max(self.window.1)),
        }
    }
}

/// `FROM..TO`, or a duration ending at `end`.
fn range(
    flag: &'static str,
    text: &str,
    now: DateTime<Utc>,
    end: i64,
) -> Result<(i64, i64), RangeError> {
    let invalid = || RangeError::Invalid {
        flag,
        value: text.to_owned(),
    };
    let (from, to) = match text.split_once("..") {
        Some((from, to)) => (
            parse_instant(from, now).ok_or_else(invalid)?,
            parse_instant(to, now).ok_or_else(invalid)?,
        ),
        None => {
            let length = parse_duration(text).map_err(|_| invalid())?;
            let length = i64::try_from(length.as_nanos()).map_err(|_| invalid())?;
            (end.saturating_sub(length), end)
        }
    };
    if from >= to {
        return Err(RangeError::Empty {
            flag,
            value: text.to_owned(),
        });
    }
    Ok((from, to))
}

/// The keys of a connection, over raw flows (`f`) and over rollup-shaped rows (`b`): the same
/// values, typed alike for the join.
const KEYS: [(&str, &str, &str); 8] = [
    ("source_namespace", "source_namespace", "source_namespace"),
    (
        "source_workload",
        "peer(source_workload, source_pod_name, source_names, source_labels, ip_source)",
        "source_workload",
    ),
    ("destination_namespace", "destination_namespace", "destination_namespace"),
    (
        "destination_workload",
        "peer(destination_workload, destination_pod_name, destination_names, destination_labels, ip_destination)",
        "destination_workload",
    ),
    ("destination_port", "destination_port", "destination_port"),
    ("protocol", "l4_protocol", "l4_protocol"),
    ("http_method", "http_method", "http_method"),
    ("http_path", "url_path(http_url)", "http_path"),
];

fn key(name: &str, expr: &str) -> String {
    if name == "destination_port" {
        format!("CAST(coalesce({expr}, 0) AS BIGINT) AS {name}")
    } else {
        format!("CAST(coalesce({expr}, '') AS VARCHAR) AS {name}")
    }
}

/// Denied by policy: a policy drop reason, or an L7 request the proxy dropped.
const DENIED: &str =
    "verdict = 'DROPPED' AND (drop_reason_desc IN ('POLICY_DENIED', 'POLICY_DENY', \
     'AUTH_REQUIRED') OR l7_protocol IS NOT NULL)";

/// The regression query. The window's connections come from raw flows (first denial, example
/// pods and uuid); the baseline's from `baseline`, rollup-shaped rows of the baseline period
/// (`hourly::relation`: rollups where they are exact, raw flows elsewhere). The only values
/// spliced in are the window bounds, as integers.
pub fn sql(periods: &Periods, also_newly_allowed: bool, baseline: &str) -> String {
    let ts = |ns: i64| format!("to_timestamp_nanos({ns})");
    let (w0, w1) = (ts(periods.window.0), ts(periods.window.1));
    let raw_keys: Vec<String> = KEYS.iter().map(|(n, raw, _)| key(n, raw)).collect();
    let rollup_keys: Vec<String> = KEYS.iter().map(|(n, _, rolled)| key(n, rolled)).collect();
    let mut sql = format!(
        "WITH f AS (
  SELECT time, uuid, {raw_keys},
    event_type IS NOT DISTINCT FROM 5 AS policy_verdict_event,
    source_pod_name, destination_pod_name,
    policy_names(egress_denied_by, ingress_denied_by) AS denied_by,
    policy_names(egress_allowed_by, ingress_allowed_by) AS allowed_by,
    coalesce(verdict = 'FORWARDED', false) AS allowed,
    coalesce({DENIED}, false) AS denied
  FROM flows
  WHERE is_reply IS NOT TRUE AND time >= {w0} AND time < {w1}
),
b AS (
  SELECT {rollup_keys}, flows, policy_verdicts,
    coalesce(verdict = 'FORWARDED', false) AS allowed,
    coalesce({DENIED}, false) AS denied
  FROM ({baseline})
  WHERE is_reply IS NOT TRUE
)",
        raw_keys = raw_keys.join(",\n    "),
        rollup_keys = rollup_keys.join(",\n    "),
    );
    let keys = KEYS
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let mut parts = vec![change(
        &keys,
        "newly denied",
        "allowed",
        "denied",
        "denied_by",
    )];
    if also_newly_allowed {
        parts.push(change(
            &keys,
            "newly allowed",
            "denied",
            "allowed",
            "allowed_by",
        ));
    }
    for (i, part) in parts.iter().enumerate() {
        sql.push_str(&format!(",\nchange{i} AS ({part})"));
    }
    let union = (0..parts.len())
        .map(|i| format!("SELECT * FROM change{i}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    sql.push_str(&format!(
        "\nSELECT change, source_namespace, source_workload, destination_namespace,
  destination_workload, destination_port, protocol,
  nullif(http_method, '') AS http_method, nullif(http_path, '') AS http_path,
  first_seen, flows, baseline_flows, policies, example_source_pod, example_destination_pod,
  example_uuid
FROM ({union}) ORDER BY first_seen, source_namespace, source_workload, destination_workload"
    ));
    sql
}

/// Cilium reports a policy decision twice (a policy-verdict event and the drop or trace event
/// of the packet): count the packet events, or the policy verdicts where there is nothing else.
const FLOWS: &str = "CASE WHEN count(*) FILTER (WHERE NOT policy_verdict_event) > 0 \
     THEN count(*) FILTER (WHERE NOT policy_verdict_event) ELSE count(*) END";

/// The same count over rollup rows (`flows` events, of which `policy_verdicts`).
const ROLLUP_FLOWS: &str = "CAST(CASE WHEN sum(flows - policy_verdicts) > 0 \
     THEN sum(flows - policy_verdicts) ELSE sum(flows) END AS BIGINT)";

/// Connections that were `before` in the baseline and are `after` in the window, with the
/// policies of `policies` in the window.
fn change(keys: &str, label: &str, before: &str, after: &str, policies: &str) -> String {
    format!(
        "SELECT '{label}' AS change, a.*, b.baseline_flows FROM (
    SELECT {keys},
      min(time) AS first_seen, {FLOWS} AS flows,
      array_to_string(array_distinct(flatten(array_agg({policies}))), ', ') AS policies,
      first_value(source_pod_name ORDER BY time) AS example_source_pod,
      first_value(destination_pod_name ORDER BY time) AS example_destination_pod,
      first_value(uuid ORDER BY time) AS example_uuid
    FROM f WHERE {after} GROUP BY {keys}
  ) a JOIN (
    SELECT {keys}, {ROLLUP_FLOWS} AS baseline_flows FROM b WHERE {before} GROUP BY {keys}
  ) b USING ({keys})"
    )
}
