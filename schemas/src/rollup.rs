//! `flows_hourly`: the hourly rollup of `flows` that `flowstore` keeps for as long as raw
//! flows are too costly to keep. One row per hour and connection (who talked to whom, on
//! which port, with which verdict), as Akvorado and VPC Flow Logs users know it: a 30-day
//! baseline reads 720 small files instead of a month of flows.
//!
//! What a connection's endpoints are (`*_workload`): the workload Hubble names; else the pod
//! name without its ReplicaSet/DaemonSet suffix; else, outside the cluster, the DNS name
//! Cilium knew, the reserved identity (`reserved:world`, `reserved:host`, …), or the IP. IPs
//! and source ports are not kept: they are what makes raw flows large.
//!
//! The SQL that computes the rows lives with the query engine (`flowsql::hourly`); a test
//! there checks it produces exactly this schema.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::schema::{dict, timestamp_ns, utf8, ColumnDoc};

/// Version of the rollup schema (its files' `flowsql.schema_version`).
pub const ROLLUP_SCHEMA_VERSION: u32 = 1;

fn columns() -> Vec<(Field, &'static str)> {
    use DataType::*;
    let f = |name: &str, dt: DataType| Field::new(name, dt, true);
    vec![
        (
            Field::new("time", timestamp_ns(), false),
            "start of the UTC hour (not `hour`: Hive-style readers add the partition `hour`)",
        ),
        (f("source_namespace", dict()), "source namespace (NULL outside the cluster)"),
        (
            f("source_workload", utf8()),
            "source workload; else pod name without replica suffix, DNS name, reserved identity or IP",
        ),
        (f("destination_namespace", dict()), "destination namespace"),
        (f("destination_workload", utf8()), "destination workload (same fallbacks)"),
        (f("destination_port", UInt32), "L4 destination port"),
        (f("l4_protocol", dict()), "TCP, UDP, ICMPv4, ..."),
        (f("traffic_direction", dict()), "INGRESS or EGRESS"),
        (f("is_reply", Boolean), "true for replies; NULL when unknown"),
        (f("verdict", dict()), "FORWARDED, DROPPED, AUDIT, ..."),
        (f("drop_reason_desc", dict()), "drop reason, e.g. POLICY_DENIED"),
        (f("allowed_by", utf8()), "names of the policies that allowed these flows, comma-separated"),
        (f("denied_by", utf8()), "names of the policies that denied these flows, comma-separated"),
        (f("l7_protocol", dict()), "http, dns or kafka for L7 records"),
        (f("http_method", dict()), "HTTP method"),
        (f("http_path", utf8()), "HTTP URL path (decoded, without query)"),
        (Field::new("flows", UInt64, false), "flow events"),
        (
            Field::new("policy_verdicts", UInt64, false),
            "of which policy-verdict events (Cilium reports a decision and its packet: count one)",
        ),
        (f("packets", UInt64), "packets (eBPF flows)"),
        (f("bytes", UInt64), "bytes (eBPF flows)"),
        (Field::new("first_seen", timestamp_ns(), false), "first flow of the hour"),
        (Field::new("last_seen", timestamp_ns(), false), "last flow of the hour"),
    ]
}

fn table() -> &'static (SchemaRef, Vec<ColumnDoc>) {
    static T: OnceLock<(SchemaRef, Vec<ColumnDoc>)> = OnceLock::new();
    T.get_or_init(|| {
        let cols = columns();
        let docs = cols
            .iter()
            .map(|(field, doc)| ColumnDoc {
                name: Box::leak(field.name().clone().into_boxed_str()),
                doc,
            })
            .collect();
        let schema = Schema::new(cols.into_iter().map(|(f, _)| f).collect::<Vec<_>>());
        (Arc::new(schema), docs)
    })
}

/// The Arrow schema of `flows_hourly`.
pub fn rollup_schema() -> SchemaRef {
    Arc::clone(&table().0)
}

/// Column documentation of `flows_hourly` (for `\d flows_hourly`).
pub fn rollup_docs() -> &'static [ColumnDoc] {
    &table().1
}
