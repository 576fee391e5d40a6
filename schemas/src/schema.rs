//! The one flow schema.
//!
//! Every source (Hubble JSON import, live Hubble, eBPF) writes rows of exactly this schema, and
//! flowsql reads every file through it. Column names are Hubble's proto field names flattened with
//! `_`, so what a user knows from `hubble observe -o json` is what they type in SQL.
//!
//! Conventions (they hold for every column):
//! - NULL means "absent": Hubble omits zero values in JSON, so an enum at its zero value
//!   (`VERDICT_UNKNOWN`, `TRAFFIC_DIRECTION_UNKNOWN`, ...) and an empty string are stored as NULL.
//!   Numbers inside a present message (ports of a present TCP header, `event_subtype` of a present
//!   `event_type`) take their proto default 0 when omitted.
//! - Enum-like strings are dictionary-encoded and hold the enum *name* even when the JSON carried
//!   the number; an unknown number is kept as its decimal string so nothing is lost.
//! - Labels and name lists are `list<utf8>`; policies are `list<struct>`.
//!
//! Versions (the rules, also in ARCHITECTURE.md):
//! - Without a new version: column documentation, writer properties (compression, statistics,
//!   bloom filters, row groups), new footer metadata keys.
//! - A new schema version ([`SCHEMA_VERSION`] + 1), same layout: adding a nullable column.
//!   Files of every version live side by side; readers read them as the newest schema (a
//!   column an older file lacks is NULL, [`conform`]); compaction rewrites them as the
//!   newest; a spool segment of an older recorder ships as the newest.
//! - A new layout version (`flows/v2`, `layout::LAYOUT_VERSION`): removing, renaming or
//!   retyping a column, or making one non-nullable. Readers refuse files of a version newer
//!   than theirs (they cannot know what it changed).

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::nulls::NullColumns;

/// Version of the flow schema, written in every file's key-value metadata
/// (`flowsql.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// Where a row came from (the `capture_source` column, and the `flowsql.source` file metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureSource {
    /// Hubble JSON files imported with `flowrec import`.
    Import,
    /// Live Hubble Observer API.
    Hubble,
    /// The recorder's own eBPF programs.
    Ebpf,
}

impl CaptureSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureSource::Import => "import",
            CaptureSource::Hubble => "hubble",
            CaptureSource::Ebpf => "ebpf",
        }
    }
}

/// One column of a table: its Arrow field and the sentence `\d flows` shows for it.
pub struct ColumnDoc {
    pub name: &'static str,
    pub doc: &'static str,
}

pub(crate) fn utf8() -> DataType {
    DataType::Utf8
}
/// Dictionary-encoded string: for enum-like and low-cardinality columns.
pub(crate) fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}
pub(crate) fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}
pub(crate) fn list_utf8() -> DataType {
    list_of(DataType::Utf8)
}
pub(crate) fn timestamp_ns() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Policy{name, namespace, labels, revision, kind}` as stored in the `*_allowed_by` and
/// `*_denied_by` columns.
pub fn policy_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", utf8(), true),
        Field::new("namespace", utf8(), true),
        Field::new("kind", utf8(), true),
        Field::new("revision", DataType::UInt64, true),
        Field::new("labels", list_utf8(), true),
    ])
}

pub fn http_header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", utf8(), true),
        Field::new("value", utf8(), true),
    ])
}

/// The columns of the `flows` table, in file order, with their documentation.
///
/// `time` is first and is the sort key of every file.
fn flow_columns() -> Vec<(Field, &'static str)> {
    use DataType::*;
    let f = |name: &str, dt: DataType| Field::new(name, dt, true);
    let policies = list_of(Struct(policy_fields()));
    let mut cols = vec![
        (
            Field::new("time", timestamp_ns(), false),
            "when the flow was observed (UTC, ns)",
        ),
        (
            f("uuid", utf8()),
            "Hubble's per-flow UUID (dedup of flows seen twice)",
        ),
        (
            f("capture_source", dict()),
            "where the row came from: import, hubble or ebpf",
        ),
        (
            f("node_name", dict()),
            "node that observed the flow (Hubble: often cluster/node)",
        ),
        (f("node_labels", list_utf8()), "labels of that node, k=v"),
        (
            f("verdict", dict()),
            "FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
        ),
        (
            f("drop_reason", UInt32),
            "numeric drop code (deprecated in Hubble; kept)",
        ),
        (
            f("drop_reason_desc", dict()),
            "drop reason name, e.g. POLICY_DENIED (set when DROPPED)",
        ),
        (
            f("auth_type", dict()),
            "auth type of policy-verdict events (SPIRE, ...)",
        ),
        (f("type", dict()), "flow type: L3_L4, L7 or SOCK"),
        (
            f("event_type", Int32),
            "Cilium monitor event type: 1 drop, 4 trace, 5 policy-verdict, 129 L7",
        ),
        (
            f("event_subtype", Int32),
            "monitor sub type (trace point, drop reason code)",
        ),
        (f("traffic_direction", dict()), "INGRESS or EGRESS"),
        (
            f("is_reply", Boolean),
            "true for the reply direction; NULL when unknown",
        ),
        (f("reply", Boolean), "deprecated Hubble field, kept as sent"),
        (
            f("trace_observation_point", dict()),
            "where a trace event was seen (TO_ENDPOINT, ...)",
        ),
        (
            f("trace_reason", dict()),
            "conntrack state of a trace event (NEW, ESTABLISHED, REPLY, ...)",
        ),
        (
            f("policy_match_type", UInt32),
            "policy-verdict match: 1 L3-Only, 2 L3-L4, 3 L4-Only, 4 all, ...",
        ),
        (f("ethernet_source", utf8()), "source MAC"),
        (f("ethernet_destination", utf8()), "destination MAC"),
        (f("ip_source", utf8()), "source IP address"),
        (f("ip_destination", utf8()), "destination IP address"),
        (f("ip_source_xlated", utf8()), "source IP after SNAT"),
        (f("ip_version", dict()), "IPv4 or IPv6"),
        (
            f("ip_encrypted", Boolean),
            "packet was encrypted (IPsec/WireGuard)",
        ),
        (
            f("l4_protocol", dict()),
            "TCP, UDP, ICMPv4, ICMPv6, SCTP, VRRP or IGMP",
        ),
        (f("source_port", UInt32), "L4 source port"),
        (f("destination_port", UInt32), "L4 destination port"),
        (
            f("tcp_flags", list_utf8()),
            "TCP flags set: FIN SYN RST PSH ACK URG ECE CWR NS",
        ),
        (f("icmp_type", UInt32), "ICMP type"),
        (f("icmp_code", UInt32), "ICMP code"),
    ];
    for side in ["source", "destination"] {
        let name = |suffix: &str| -> String { format!("{side}_{suffix}") };
        let endpoint: Vec<(Field, &'static str)> = vec![
            (f(&name("id"), UInt32), "Cilium endpoint ID"),
            (f(&name("identity"), UInt32), "Cilium security identity"),
            (f(&name("cluster_name"), dict()), "cluster of the endpoint"),
            (f(&name("namespace"), dict()), "Kubernetes namespace"),
            (f(&name("pod_name"), utf8()), "pod name"),
            (
                f(&name("labels"), list_utf8()),
                "endpoint labels, e.g. k8s:app=frontend, reserved:world",
            ),
            (
                f(&name("workload"), dict()),
                "owning workload name (first of Hubble's workloads)",
            ),
            (
                f(&name("workload_kind"), dict()),
                "owning workload kind (Deployment, ...)",
            ),
            (f(&name("service_name"), dict()), "Kubernetes service"),
            (
                f(&name("service_namespace"), dict()),
                "namespace of that service",
            ),
            (
                f(&name("names"), list_utf8()),
                "DNS names of the IP (FQDN cache)",
            ),
        ];
        cols.extend(endpoint);
    }
    cols.extend(vec![
        (
            f("l7_type", dict()),
            "L7 record type: REQUEST, RESPONSE, SAMPLE",
        ),
        (f("l7_protocol", dict()), "http, dns or kafka"),
        (f("l7_latency_ns", UInt64), "L7 latency (ns)"),
        (f("http_code", UInt32), "HTTP status code"),
        (f("http_method", dict()), "HTTP method"),
        (f("http_url", utf8()), "HTTP URL"),
        (f("http_protocol", dict()), "HTTP protocol version"),
        (
            f("http_headers", list_of(Struct(http_header_fields()))),
            "HTTP headers (key, value)",
        ),
        (f("dns_query", utf8()), "DNS query name"),
        (f("dns_ips", list_utf8()), "DNS answer IPs"),
        (f("dns_ttl", UInt32), "DNS answer TTL"),
        (f("dns_cnames", list_utf8()), "DNS CNAMEs"),
        (
            f("dns_observation_source", dict()),
            "who observed the DNS record (proxy)",
        ),
        (f("dns_rcode", UInt32), "DNS response code"),
        (f("dns_qtypes", list_utf8()), "DNS query types"),
        (f("dns_rrtypes", list_utf8()), "DNS answer record types"),
        (f("kafka_error_code", Int32), "Kafka error code"),
        (f("kafka_api_version", Int32), "Kafka API version"),
        (f("kafka_api_key", dict()), "Kafka API key"),
        (f("kafka_correlation_id", Int32), "Kafka correlation id"),
        (f("kafka_topic", utf8()), "Kafka topic"),
        (
            f("egress_allowed_by", policies.clone()),
            "policies that allowed the flow on egress",
        ),
        (
            f("ingress_allowed_by", policies.clone()),
            "policies that allowed the flow on ingress",
        ),
        (
            f("egress_denied_by", policies.clone()),
            "policies that denied the flow on egress",
        ),
        (
            f("ingress_denied_by", policies),
            "policies that denied the flow on ingress",
        ),
        (
            f("policy_log", list_utf8()),
            "log values of the matched policies",
        ),
        (f("interface_index", UInt32), "network interface index"),
        (f("interface_name", dict()), "network interface name"),
        (f("proxy_port", UInt32), "L7 proxy port"),
        (
            f("trace_id", utf8()),
            "W3C trace id (trace_context.parent.trace_id)",
        ),
        (f("ip_trace_id", UInt64), "IP option trace id"),
        (
            f("sock_xlate_point", dict()),
            "socket translation point (trace-sock events)",
        ),
        (
            f("socket_cookie", UInt64),
            "socket cookie (trace-sock events)",
        ),
        (f("cgroup_id", UInt64), "cgroup id (trace-sock events)"),
        (
            f("tunnel_protocol", dict()),
            "overlay protocol: VXLAN or GENEVE",
        ),
        (f("tunnel_vni", UInt32), "overlay VNI"),
        (f("tunnel_ip_source", utf8()), "outer source IP"),
        (f("tunnel_ip_destination", utf8()), "outer destination IP"),
        (f("file_name", utf8()), "BPF source file of a drop"),
        (f("file_line", UInt32), "BPF source line of a drop"),
        (f("emitter_name", dict()), "emitter of the event (Hubble)"),
        (f("emitter_version", dict()), "emitter version"),
        (
            f("aggregate_ingress_flow_count", UInt32),
            "aggregated export: ingress flows",
        ),
        (
            f("aggregate_egress_flow_count", UInt32),
            "aggregated export: egress flows",
        ),
        (
            f("aggregate_unknown_direction_flow_count", UInt32),
            "aggregated export: flows of unknown direction",
        ),
        (
            f("summary", utf8()),
            "Hubble's human summary (used by the compact printer)",
        ),
        // Columns only the eBPF capture fills; NULL for Hubble rows.
        (f("bytes", UInt64), "eBPF: bytes in this flow direction"),
        (f("packets", UInt64), "eBPF: packets in this flow direction"),
        (f("flow_start", timestamp_ns()), "eBPF: first packet seen"),
        (f("flow_end", timestamp_ns()), "eBPF: last packet seen"),
        (
            f("tcp_srtt_us", UInt32),
            "eBPF: smoothed RTT (us) of this flow's TCP connection (sock_ops)",
        ),
        (
            f("tcp_retransmits", UInt32),
            "eBPF: total retransmits of that connection",
        ),
        (
            f("tcp_rtt_min_us", UInt32),
            "eBPF: minimum RTT (us) of that connection",
        ),
        (
            f("tcp_bytes_acked", UInt64),
            "eBPF: bytes the local end sent, acknowledged",
        ),
        (
            f("tcp_bytes_received", UInt64),
            "eBPF: bytes the local end received",
        ),
        (
            f("tcp_segs_in", UInt32),
            "eBPF: segments the local end received",
        ),
        (
            f("tcp_segs_out", UInt32),
            "eBPF: segments the local end sent",
        ),
        (
            f("tcp_opened", dict()),
            "eBPF: ACTIVE (the local end connected) or PASSIVE (it accepted)",
        ),
        (
            f("tcp_state", dict()),
            "eBPF: the connection's TCP state at the drain: ESTABLISHED ... CLOSE",
        ),
        (
            f("drop_reason_kernel", dict()),
            "eBPF: kernel skb drop reason name (also in drop_reason_desc)",
        ),
        (
            f("dropped_packets", UInt64),
            "eBPF: packets of this flow the kernel dropped",
        ),
    ]);
    cols
}

fn lost_event_columns() -> Vec<(Field, &'static str)> {
    vec![
        (Field::new("time", timestamp_ns(), false), "when the loss was reported (UTC, ns)"),
        (Field::new("capture_source", dict(), true), "where the row came from: import, hubble or ebpf"),
        (Field::new("node_name", dict(), true), "node that lost events"),
        (
            Field::new("source", dict(), true),
            "where events were lost: PERF_EVENT_RING_BUFFER, OBSERVER_EVENTS_QUEUE, HUBBLE_RING_BUFFER, ...",
        ),
        (Field::new("num_events_lost", DataType::UInt64, true), "number of events lost"),
        (Field::new("cpu", DataType::Int32, true), "CPU the loss happened on, if known"),
        (Field::new("first", timestamp_ns(), true), "first lost event"),
        (Field::new("last", timestamp_ns(), true), "last lost event"),
    ]
}

fn build(cols: Vec<(Field, &'static str)>) -> (SchemaRef, Vec<ColumnDoc>) {
    let docs = cols
        .iter()
        .map(|(field, doc)| ColumnDoc {
            name: leak(field.name()),
            doc,
        })
        .collect();
    let schema = Schema::new(cols.into_iter().map(|(field, _)| field).collect::<Vec<_>>());
    (Arc::new(schema), docs)
}

/// Column names live as long as the process (the schema is built once).
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

/// The Arrow schema of the `flows` table.
pub fn flow_schema() -> SchemaRef {
    flows_table().0.clone()
}

/// The Arrow schema of the `lost_events` table.
pub fn lost_events_schema() -> SchemaRef {
    lost_events_table().0.clone()
}

/// Column documentation of a table, in schema order (for `\d`).
pub fn column_docs(table: Table) -> &'static [ColumnDoc] {
    match table {
        Table::Flows => &flows_table().1,
        Table::LostEvents => &lost_events_table().1,
    }
}

fn flows_table() -> &'static (SchemaRef, Vec<ColumnDoc>) {
    static T: OnceLock<(SchemaRef, Vec<ColumnDoc>)> = OnceLock::new();
    T.get_or_init(|| build(flow_columns()))
}

fn lost_events_table() -> &'static (SchemaRef, Vec<ColumnDoc>) {
    static T: OnceLock<(SchemaRef, Vec<ColumnDoc>)> = OnceLock::new();
    T.get_or_init(|| build(lost_event_columns()))
}

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Flows,
    LostEvents,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Flows, Table::LostEvents];

    /// SQL name of the table, also its top-level folder in the store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Flows => "flows",
            Table::LostEvents => "lost_events",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Flows => flow_schema(),
            Table::LostEvents => lost_events_schema(),
        }
    }
}

/// Why rows cannot be read as rows of a schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformError {
    #[error("column {0} is missing and cannot be NULL")]
    MissingRequired(String),
    #[error("column {name} is {found}, expected {expected}")]
    WrongType {
        name: String,
        found: String,
        expected: String,
    },
    #[error("column {0} is not in this version's schema (rows of a newer version)")]
    Unknown(String),
}

/// `batch` as rows of `target`: columns matched by name, a nullable column the batch lacks
/// (added in a later schema version) filled with NULL. A column the target does not know, or
/// of another type, is refused: those are changes the rules above do not allow within a layout.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, ConformError> {
    let schema = batch.schema();
    if schema.fields() == target.fields() {
        return Ok(batch.clone());
    }
    let indices = match in_order(schema.fields(), target.fields()) {
        Some(indices) => indices,
        None => by_name(schema.fields(), target.fields())?,
    };
    let nulls = NullColumns::new(batch.num_rows());
    let columns = target
        .fields()
        .iter()
        .zip(indices)
        .map(|(field, index)| match index {
            Some(index) => {
                let column = batch.column(index);
                if column.data_type().equals_datatype(field.data_type()) {
                    Ok(Arc::clone(column))
                } else {
                    Err(ConformError::WrongType {
                        name: field.name().clone(),
                        found: column.data_type().to_string(),
                        expected: field.data_type().to_string(),
                    })
                }
            }
            None if field.is_nullable() => Ok(nulls.column(field.data_type())),
            None => Err(ConformError::MissingRequired(field.name().clone())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(target), columns).map_err(|e| ConformError::WrongType {
        name: "(batch)".into(),
        found: e.to_string(),
        expected: "a valid batch".into(),
    })
}

/// For each target column, the batch's column of that name, when the batch's columns are the
/// target's in its order with some left out (what a spool block is): one walk, no search. None
/// when they are not, for [`by_name`]. The spool's merge conforms every block: searching by
/// name (and `Schema::index_of` formatting an error listing every column for each one left
/// out) was ~1% of a live recorder's CPU.
fn in_order(fields: &Fields, target: &Fields) -> Option<Vec<Option<usize>>> {
    let mut next = 0;
    let indices: Vec<Option<usize>> = target
        .iter()
        .map(|field| {
            let matched = fields.get(next).is_some_and(|f| f.name() == field.name());
            next += usize::from(matched);
            matched.then(|| next - 1)
        })
        .collect();
    // Every column matched a target column in turn: names being unique, a target column not
    // matched is not in the batch.
    (next == fields.len()).then_some(indices)
}

/// For each target column, the batch's column of that name; a batch column the target does
/// not have is refused.
fn by_name(fields: &Fields, target: &Fields) -> Result<Vec<Option<usize>>, ConformError> {
    let position = |fields: &Fields, name: &str| fields.iter().position(|f| f.name() == name);
    if let Some(unknown) = fields.iter().find(|f| position(target, f.name()).is_none()) {
        return Err(ConformError::Unknown(unknown.name().clone()));
    }
    Ok(target
        .iter()
        .map(|field| position(fields, field.name()))
        .collect())
}

/// Columns written with a Parquet bloom filter: the point lookups of an investigation
/// ("everything to or from this IP", "this pod").
pub const BLOOM_FILTER_COLUMNS: &[&str] = &[
    "ip_source",
    "ip_destination",
    "source_pod_name",
    "destination_pod_name",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        for table in Table::ALL {
            let schema = table.schema();
            let mut names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let docs = column_docs(table);
            assert_eq!(docs.len(), names.len());
            assert!(docs.iter().all(|d| !d.doc.is_empty()));
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                schema.fields().len(),
                "duplicate column in {}",
                table.name()
            );
            assert_eq!(
                schema.field(0).name(),
                "time",
                "time is the sort key and comes first"
            );
        }
    }

    #[test]
    fn older_rows_conform_with_nulls_and_newer_ones_are_refused() {
        use arrow::array::{Array, Int32Array, TimestampNanosecondArray};
        let time = Field::new("time", timestamp_ns(), false);
        let v1 = Arc::new(Schema::new(vec![
            time.clone(),
            Field::new("a", DataType::Int32, true),
        ]));
        let v2 = Arc::new(Schema::new(vec![
            time.clone(),
            Field::new("a", DataType::Int32, true),
            Field::new("added_in_v2", dict(), true),
        ]));
        let old = RecordBatch::try_new(
            v1.clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![1, 2]).with_timezone("UTC")),
                Arc::new(Int32Array::from(vec![7, 8])),
            ],
        )
        .unwrap();
        let read = conform(&old, &v2).unwrap();
        assert_eq!(read.schema(), v2);
        assert_eq!(read.column(2).null_count(), 2);
        assert_eq!(read.column(1).as_ref(), old.column(1).as_ref());
        assert_eq!(
            conform(&read, &v1).unwrap_err(),
            ConformError::Unknown("added_in_v2".into())
        );
        let retyped = Arc::new(Schema::new(vec![
            time,
            Field::new("a", DataType::Utf8, true),
        ]));
        assert!(matches!(
            conform(&old, &retyped),
            Err(ConformError::WrongType { .. })
        ));
    }

    /// A spool block leaves out columns that are all NULL: in the target's order or not, the
    /// same rows come back, the missing columns NULL; a required one missing is refused.
    #[test]
    fn columns_left_out_come_back_as_nulls_in_any_order() {
        use arrow::array::{Array, Int32Array, StringArray, TimestampNanosecondArray};
        let target = Arc::new(Schema::new(vec![
            Field::new("time", timestamp_ns(), false),
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int32, true),
            Field::new("d", DataType::Utf8, true),
        ]));
        let time: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![1, 2]).with_timezone("UTC"));
        let c: ArrayRef = Arc::new(Int32Array::from(vec![Some(3), None]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        let batch = |names: &[&str]| {
            let columns: Vec<(&str, ArrayRef)> = names
                .iter()
                .map(|name| match *name {
                    "time" => ("time", Arc::clone(&time)),
                    "b" => ("b", Arc::clone(&b)),
                    _ => ("c", Arc::clone(&c)),
                })
                .collect();
            RecordBatch::try_from_iter_with_nullable(
                columns
                    .into_iter()
                    .map(|(name, column)| (name, column, name != "time")),
            )
            .unwrap()
        };
        let in_order = conform(&batch(&["time", "b", "c"]), &target).unwrap();
        let shuffled = conform(&batch(&["c", "time", "b"]), &target).unwrap();
        for read in [&in_order, &shuffled] {
            assert_eq!(read.schema(), target);
            assert_eq!(read.column(0).as_ref(), time.as_ref());
            assert_eq!(read.column(1).null_count(), 2, "a");
            assert_eq!(read.column(2).as_ref(), b.as_ref());
            assert_eq!(read.column(3).as_ref(), c.as_ref());
            assert_eq!(read.column(4).null_count(), 2, "d");
        }
        assert_eq!(
            conform(&batch(&["b", "c"]), &target).unwrap_err(),
            ConformError::MissingRequired("time".into())
        );
    }

    #[test]
    fn bloom_filter_columns_exist() {
        let schema = flow_schema();
        for name in BLOOM_FILTER_COLUMNS {
            assert!(schema.index_of(name).is_ok(), "{name}");
        }
    }
}
