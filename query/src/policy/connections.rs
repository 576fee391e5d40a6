//! The recorded connections of a window, deduplicated for the policy engine: one group per
//! distinct (source identity, destination identity, protocol, port, L7 request, recorded
//! verdict and attribution), with its flows, pods, first/last seen and an example flow.
//! Identities are few and flows many, so the engine runs once per group, not once per flow.
//!
//! What counts as a connection: requests only (`is_reply` not true), and of Hubble's events
//! the policy verdicts (one per new connection and direction, type 5) and the L7 requests
//! (type 129); flows without an event type (the recorder's own eBPF capture) count as they
//! are. Trace and drop events (types 4, 1) repeat what a policy verdict says, so they count
//! only for connections (identities, protocol, port) that have no policy verdict in the
//! window (agents without policy-verdict notifications, captures of traces only); there each
//! request event counts.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimestampNanosecondType};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{col, lit, DataFrame, Expr, SessionContext};
use flow_spec::policy::{Connection, Endpoint, Request, Transport};

use crate::session::FlowSession;

/// How the recording decided a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recorded {
    Allowed,
    /// Denied by policy (POLICY_DENIED, POLICY_DENY, AUTH_REQUIRED, an L7 request dropped by
    /// the proxy, or AUDIT: what the installed policies would have denied).
    Denied,
    /// Dropped for a reason that is not policy: outside what a policy change decides.
    OtherDrop,
}

/// One end, as grouped.
#[derive(Debug, Clone)]
pub struct End {
    pub namespace: String,
    /// Workload, else pod name without replica suffix, else DNS name, reserved identity or IP.
    pub peer: String,
    pub endpoint: Endpoint,
}

impl End {
    /// `ns/workload`, or the peer alone outside the cluster.
    pub fn name(&self) -> String {
        if self.namespace.is_empty() {
            self.peer.clone()
        } else {
            format!("{}/{}", self.namespace, self.peer)
        }
    }
}

/// One group of recorded flows: a connection as the engine sees it, and what was recorded.
#[derive(Debug, Clone)]
pub struct Group {
    pub source: End,
    pub destination: End,
    pub protocol: String,
    pub connection: Connection,
    pub recorded: Recorded,
    pub verdict: String,
    pub drop_reason: String,
    /// Policy names per side, as recorded (`*_allowed_by`, `*_denied_by`).
    pub egress_allowed_by: Vec<String>,
    pub ingress_allowed_by: Vec<String>,
    pub egress_denied_by: Vec<String>,
    pub ingress_denied_by: Vec<String>,
    pub flows: u64,
    pub source_pods: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub example_uuid: String,
}

const POLICY_DROPS: &str = "'POLICY_DENIED', 'POLICY_DENY', 'AUTH_REQUIRED'";

/// Which rows a part of the grouping reads (see [`groups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Rows with a uuid (every Hubble event): grouped without their label and name lists,
    /// which are read afterwards for one example uuid per group. Decoding and carrying the
    /// lists of 10M rows was most of the query's time.
    Named,
    /// Rows without a uuid (the recorder's eBPF flows, exports without one): the lists are
    /// carried through the grouping. On stores of Hubble events the Parquet statistics
    /// (no null uuid) skip every row group.
    Unnamed,
}

/// The grouped columns of a part, in the order every part lists them.
const PART_KEYS: &str = "s_id, d_id, source_namespace, destination_namespace, source_workload,
    destination_workload, source_pod_name, destination_pod_name, source_ip0, destination_ip0,
    l4_protocol, destination_port, http_method, http_url, dns_query, verdict, drop_reason_desc,
    recorded, kind, egress_allowed, ingress_allowed, egress_denied, ingress_denied";

/// The label and name lists, last in every part.
const LISTS: [&str; 4] = [
    "source_labels",
    "destination_labels",
    "source_names",
    "destination_names",
];

/// One part of the grouping (`namespace`: only connections with an end in it): the request
/// rows of the window grouped by cheap columns (identities, names of pods and workloads,
/// addresses outside the cluster, port, L7 request, verdict, attribution).
fn part_sql(namespace: Option<&str>, part: Part) -> String {
    let filter = match namespace {
        Some(ns) => {
            let ns = ns.replace('\'', "''");
            format!(" AND (source_namespace = '{ns}' OR destination_namespace = '{ns}')")
        }
        None => String::new(),
    };
    let (uuid, lists) = match part {
        Part::Named => ("IS NOT NULL", String::new()),
        Part::Unnamed => (
            "IS NULL",
            LISTS.map(|l| format!(", first_value({l}) AS {l}")).concat(),
        ),
    };
    let carried = match part {
        Part::Named => "",
        Part::Unnamed => "source_labels, destination_labels, source_names, destination_names,",
    };
    format!(
        "WITH r AS (SELECT
  source_identity AS s_id, destination_identity AS d_id,
  source_namespace, destination_namespace, source_workload, destination_workload,
  source_pod_name, destination_pod_name,
  CASE WHEN source_namespace IS NULL THEN CAST(ip_source AS VARCHAR) END AS source_ip0,
  CASE WHEN destination_namespace IS NULL THEN CAST(ip_destination AS VARCHAR) END AS destination_ip0,
  l4_protocol, destination_port,
  CASE WHEN l7_protocol = 'http' THEN http_method END AS http_method,
  CASE WHEN l7_protocol = 'http' THEN http_url END AS http_url,
  CASE WHEN l7_protocol = 'dns' THEN dns_query END AS dns_query,
  verdict, drop_reason_desc,
  CASE
    WHEN verdict = 'AUDIT' THEN 'denied'
    WHEN verdict = 'DROPPED' AND (drop_reason_desc IN ({POLICY_DROPS}) OR l7_protocol IS NOT NULL) THEN 'denied'
    WHEN verdict = 'DROPPED' THEN 'other'
    ELSE 'allowed' END AS recorded,
  CASE WHEN event_type = 5 THEN 'verdict' WHEN event_type IN (1, 4) THEN 'trace' ELSE 'other' END AS kind,
  coalesce(policy_list(egress_allowed_by), '') AS egress_allowed,
  coalesce(policy_list(ingress_allowed_by), '') AS ingress_allowed,
  coalesce(policy_list(egress_denied_by), '') AS egress_denied,
  coalesce(policy_list(ingress_denied_by), '') AS ingress_denied,
  {carried} ip_source, ip_destination, time, uuid
FROM flows
WHERE is_reply IS NOT TRUE AND uuid {uuid}
  AND (event_type IS NULL OR event_type IN (1, 4, 5) OR (event_type = 129 AND l7_type = 'REQUEST')){filter})
SELECT {PART_KEYS},
    count(*) AS n, min(time) AS first_time, max(time) AS last_time, min(uuid) AS example,
    min(CAST(ip_source AS VARCHAR)) AS any_source_ip,
    min(CAST(ip_destination AS VARCHAR)) AS any_destination_ip{lists}
  FROM r
  GROUP BY {PART_KEYS}"
    )
}

/// Tables the grouping registers in the session for its last step.
const NAMED: &str = "policy_connections_named";
const LABELS: &str = "policy_connections_labels";
const UNNAMED: &str = "policy_connections_unnamed";

/// The last step, over the parts: the text the engine reads is made per group, not per row;
/// trace events count only for connections without a policy verdict; groups that print
/// alike merge.
fn connections_sql() -> String {
    let side = |s: &str, ip: &str| {
        format!(
            "array_to_string({s}_labels, ' ') AS {s}_labels_text,
  coalesce(CAST({s}_namespace AS VARCHAR), '') AS {s}_ns,
  coalesce(CAST(peer({s}_workload, {s}_pod_name, {s}_names, {s}_labels, {ip}) AS VARCHAR), '') AS {s}_peer,
  CASE WHEN {s}_namespace IS NULL THEN CAST({ip} AS VARCHAR) END AS {s}_ip,
  CASE WHEN {s}_namespace IS NULL THEN array_to_string({s}_names, ' ') END AS {s}_names_text"
        )
    };
    let lists = LISTS.map(|l| format!("l.{l}")).join(", ");
    let first = LISTS.map(|l| format!("first_value({l}) AS {l}")).join(", ");
    format!(
        "WITH l AS (SELECT uuid, {first} FROM {LABELS} GROUP BY uuid),
p AS (SELECT n.*, {lists} FROM {NAMED} n LEFT JOIN l ON n.example = l.uuid
  UNION ALL SELECT * FROM {UNNAMED}),
c AS (SELECT
  {source},
  {destination},
  coalesce(CAST(l4_protocol AS VARCHAR), '') AS protocol,
  CAST(coalesce(destination_port, 0) AS BIGINT) AS port,
  CAST(http_method AS VARCHAR) AS http_method, CAST(http_url AS VARCHAR) AS http_url,
  CAST(dns_query AS VARCHAR) AS dns_query,
  coalesce(CAST(verdict AS VARCHAR), '') AS verdict,
  coalesce(CAST(drop_reason_desc AS VARCHAR), '') AS drop_reason, recorded, kind,
  egress_allowed, ingress_allowed, egress_denied, ingress_denied,
  n, first_time, last_time, example, any_source_ip, any_destination_ip, source_pod_name
  FROM p),
k AS (SELECT *, concat_ws('|', source_labels_text, source_ns, source_peer, coalesce(source_ip, ''),
    destination_labels_text, destination_ns, destination_peer, coalesce(destination_ip, ''),
    protocol, CAST(port AS VARCHAR)) AS connection_key FROM c),
verdicts AS (SELECT DISTINCT connection_key FROM k WHERE kind = 'verdict'),
kept AS (
  SELECT * FROM k WHERE kind <> 'trace'
  UNION ALL
  SELECT k.* FROM k LEFT ANTI JOIN verdicts ON k.connection_key = verdicts.connection_key
  WHERE k.kind = 'trace')
SELECT source_labels_text, source_ns, source_peer, source_ip, source_names_text,
  destination_labels_text, destination_ns, destination_peer, destination_ip, destination_names_text,
  protocol, port, http_method, http_url, dns_query, verdict, drop_reason, recorded,
  egress_allowed, ingress_allowed, egress_denied, ingress_denied,
  CAST(sum(n) AS BIGINT) AS flows, count(DISTINCT source_pod_name) AS source_pods,
  min(first_time) AS first_seen, max(last_time) AS last_seen, min(example) AS example_uuid,
  min(any_source_ip) AS example_source_ip, min(any_destination_ip) AS example_destination_ip
FROM kept
GROUP BY source_labels_text, source_ns, source_peer, source_ip, source_names_text,
  destination_labels_text, destination_ns, destination_peer, destination_ip, destination_names_text,
  protocol, port, http_method, http_url, dns_query, verdict, drop_reason, recorded,
  egress_allowed, ingress_allowed, egress_denied, ingress_denied",
        source = side("source", "coalesce(source_ip0, any_source_ip)"),
        destination = side(
            "destination",
            "coalesce(destination_ip0, any_destination_ip)"
        ),
    )
}

/// Runs `plan` over the session's window into an in-memory table named `name` of `small`.
async fn materialize(
    session: &FlowSession,
    small: &SessionContext,
    name: &str,
    frame: DataFrame,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let frame = session.frame(frame.into_unoptimized_plan());
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    let table = MemTable::try_new(schema, vec![batches.clone()])?;
    small.register_table(name, Arc::new(table))?;
    Ok(batches)
}

/// The window's connections. Three scans of the window: the rows with a uuid grouped
/// without their lists, the lists of one example row per group (a selective filter on the
/// uuid, evaluated inside the Parquet reader), and the rows without a uuid grouped with
/// theirs; then the last step over those small tables.
pub async fn groups(
    session: &FlowSession,
    namespace: Option<&str>,
) -> Result<Vec<Group>, DataFusionError> {
    let ctx = &session.ctx;
    // The last step runs in this process over the small tables the scans made (a cluster
    // could not be sent in-memory tables): the same plan, wherever the scans ran.
    let small = SessionContext::new();
    for function in crate::udf::all() {
        small.register_udf(function);
    }
    let named = materialize(
        session,
        &small,
        NAMED,
        ctx.sql(&part_sql(namespace, Part::Named)).await?,
    )
    .await?;
    let mut examples: Vec<Expr> = Vec::new();
    for batch in &named {
        let column = batch
            .column_by_name("example")
            .ok_or_else(|| DataFusionError::Internal("no column example".into()))?;
        let column = cast(column, &DataType::Utf8)?;
        let column = column.as_string::<i32>();
        examples.extend(column.iter().flatten().map(|uuid| lit(uuid.to_owned())));
    }
    let mut columns = vec![col("uuid")];
    columns.extend(LISTS.map(col));
    let labels = ctx
        .table("flows")
        .await?
        .filter(col("uuid").in_list(examples, false))?
        .select(columns)?;
    materialize(session, &small, LABELS, labels).await?;
    materialize(
        session,
        &small,
        UNNAMED,
        ctx.sql(&part_sql(namespace, Part::Unnamed)).await?,
    )
    .await?;
    let batches = small.sql(&connections_sql()).await?.collect().await;
    let mut groups = Vec::new();
    for batch in &batches? {
        groups.extend(decode(batch)?);
    }
    Ok(groups)
}

fn words(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split([' ', ','])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn decode(batch: &RecordBatch) -> Result<Vec<Group>, DataFusionError> {
    let text = |name: &str| -> Result<Vec<Option<String>>, DataFusionError> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| DataFusionError::Internal(format!("no column {name}")))?;
        let column = cast(column, &DataType::Utf8)?;
        let column = column.as_string::<i32>();
        Ok((0..column.len())
            .map(|i| column.is_valid(i).then(|| column.value(i).to_owned()))
            .collect())
    };
    let int = |name: &str| -> Result<Vec<i64>, DataFusionError> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| DataFusionError::Internal(format!("no column {name}")))?;
        let column = cast(column, &DataType::Int64)?;
        Ok(column.as_primitive::<Int64Type>().values().to_vec())
    };
    let time = |name: &str| -> Result<Vec<i64>, DataFusionError> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| DataFusionError::Internal(format!("no column {name}")))?;
        Ok(column
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .to_vec())
    };
    let end = |side: &str| -> Result<Vec<End>, DataFusionError> {
        let labels = text(&format!("{side}_labels_text"))?;
        let namespaces = text(&format!("{side}_ns"))?;
        let peers = text(&format!("{side}_peer"))?;
        let ips = text(&format!("{side}_ip"))?;
        let names = text(&format!("{side}_names_text"))?;
        let examples = text(&format!("example_{side}_ip"))?;
        Ok((0..batch.num_rows())
            .map(|r| {
                let namespace = namespaces[r].clone().unwrap_or_default();
                let ip = ips[r].clone().or_else(|| examples[r].clone());
                End {
                    endpoint: Endpoint::new(
                        &words(labels[r].as_deref()),
                        Some(namespace.as_str()),
                        ip.as_deref(),
                        &words(names[r].as_deref()),
                    ),
                    namespace,
                    peer: peers[r].clone().unwrap_or_default(),
                }
            })
            .collect())
    };
    let (sources, destinations) = (end("source")?, end("destination")?);
    let (protocol, port) = (text("protocol")?, int("port")?);
    let (method, url, query) = (text("http_method")?, text("http_url")?, text("dns_query")?);
    let (verdict, reason, recorded) = (text("verdict")?, text("drop_reason")?, text("recorded")?);
    let policies = [
        text("egress_allowed")?,
        text("ingress_allowed")?,
        text("egress_denied")?,
        text("ingress_denied")?,
    ];
    let (flows, pods) = (int("flows")?, int("source_pods")?);
    let (first, last, uuid) = (
        time("first_seen")?,
        time("last_seen")?,
        text("example_uuid")?,
    );
    let mut groups = Vec::with_capacity(batch.num_rows());
    for (r, (source, destination)) in sources.into_iter().zip(destinations).enumerate() {
        let protocol = protocol[r].clone().unwrap_or_default();
        let transport = match protocol.as_str() {
            "TCP" => Transport::Tcp,
            "UDP" => Transport::Udp,
            "SCTP" => Transport::Sctp,
            _ => Transport::Other,
        };
        let request = match (&method[r], &url[r], &query[r]) {
            (Some(method), Some(url), _) => {
                let (host, path) = split_url(url);
                Some(Request::Http {
                    method: method.clone(),
                    path,
                    host,
                    headers: None,
                })
            }
            (_, _, Some(query)) => Some(Request::Dns {
                query: query.clone(),
            }),
            _ => None,
        };
        let connection = Connection {
            source: source.endpoint.clone(),
            destination: destination.endpoint.clone(),
            transport,
            port: u16::try_from(port[r]).unwrap_or(0),
            request,
        };
        let names = |i: usize| words(policies[i][r].as_deref());
        groups.push(Group {
            source,
            destination,
            protocol,
            connection,
            recorded: match recorded[r].as_deref() {
                Some("denied") => Recorded::Denied,
                Some("other") => Recorded::OtherDrop,
                _ => Recorded::Allowed,
            },
            verdict: verdict[r].clone().unwrap_or_default(),
            drop_reason: reason[r].clone().unwrap_or_default(),
            egress_allowed_by: names(0),
            ingress_allowed_by: names(1),
            egress_denied_by: names(2),
            ingress_denied_by: names(3),
            flows: flows[r] as u64,
            source_pods: pods[r] as u64,
            first_seen: first[r],
            last_seen: last[r],
            example_uuid: uuid[r].clone().unwrap_or_default(),
        });
    }
    Ok(groups)
}

/// `http://host[:port]/path?query` -> (authority, path with query), as Envoy sees them.
fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find('/') {
        Some(i) => (
            rest[..i].to_owned(),
            rest[i..].split('#').next().unwrap_or("/").to_owned(),
        ),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_split_as_envoy_sees_them() {
        assert_eq!(
            super::split_url("http://user-service.prod:8080/v1/a?x=1#f"),
            ("user-service.prod:8080".into(), "/v1/a?x=1".into())
        );
        assert_eq!(super::split_url("http://h"), ("h".into(), "/".into()));
    }
}
