//! What `ServerStatus`, `GetNodes` and `GetNamespaces` answer: statistics of the whole store,
//! computed by one grouping query at start and again every `--stats-every`, so that each
//! answer is a lookup (the hubble CLI gives these calls 12 s, the Hubble UI asks every 3 s).
//!
//! The rules, in Hubble's terms: a node is a recorded `node_name` (`cluster/node`, as Relay
//! names them), CONNECTED when it has flows in the newest hour of recorded data, else GONE;
//! its flows are its rows; namespaces are those seen at either end of any flow in the store
//! (the whole retention, not the agent's last hour), with the cluster of the node that saw
//! them; the flow rate is that of the newest recorded minute.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Int64Type, TimestampNanosecondType};
use flow_schema::store::Store;
use flow_schema::timerange::TimeRange;

use crate::session::{FlowSession, ReadOptions};

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;
const NANOS_PER_MINUTE: i64 = 60_000_000_000;

/// The flows of one node between two namespaces (either may be empty: not a pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub node: String,
    pub source_namespace: String,
    pub destination_namespace: String,
    pub flows: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub version: String,
}

/// One computation of the statistics.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub groups: Vec<Group>,
    /// Flows of the newest recorded minute, per second.
    pub flows_rate: f64,
}

/// A node as `GetNodes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    pub name: String,
    pub flows: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub version: String,
    /// Has flows in the newest hour of recorded data.
    pub current: bool,
}

impl Snapshot {
    /// Computes the statistics of `store`.
    pub async fn compute(store: &Store, options: ReadOptions) -> Result<Snapshot, String> {
        let session = FlowSession::with_store(store.clone(), TimeRange::default(), options)
            .await
            .map_err(|e| e.to_string())?;
        let sql = "select cast(node_name as varchar) as node, \
                   coalesce(cast(source_namespace as varchar), '') as src, \
                   coalesce(cast(destination_namespace as varchar), '') as dst, \
                   count(*) as flows, min(time) as first, max(time) as last, \
                   coalesce(max(cast(emitter_version as varchar)), '') as version \
                   from flows group by 1, 2, 3";
        let batches = session
            .ctx
            .sql(sql)
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut groups = Vec::new();
        for batch in &batches {
            let text = |i: usize| -> Result<Arc<dyn Array>, String> {
                cast(batch.column(i), &DataType::Utf8).map_err(|e| e.to_string())
            };
            let (node, src, dst, version) = (text(0)?, text(1)?, text(2)?, text(6)?);
            let (node, src, dst, version) = (
                node.as_string::<i32>(),
                src.as_string::<i32>(),
                dst.as_string::<i32>(),
                version.as_string::<i32>(),
            );
            let flows = batch.column(3).as_primitive::<Int64Type>();
            let first = batch.column(4).as_primitive::<TimestampNanosecondType>();
            let last = batch.column(5).as_primitive::<TimestampNanosecondType>();
            for row in 0..batch.num_rows() {
                groups.push(Group {
                    node: node.value(row).to_owned(),
                    source_namespace: src.value(row).to_owned(),
                    destination_namespace: dst.value(row).to_owned(),
                    flows: flows.value(row) as u64,
                    first_ns: first.value(row),
                    last_ns: last.value(row),
                    version: version.value(row).to_owned(),
                });
            }
        }
        let newest = groups.iter().map(|g| g.last_ns).max();
        let flows_rate = match newest {
            Some(newest) => {
                let minute = TimeRange {
                    since: Some(newest - NANOS_PER_MINUTE + 1),
                    until: Some(newest + 1),
                };
                let session = FlowSession::with_store(store.clone(), minute, options)
                    .await
                    .map_err(|e| e.to_string())?;
                let batches = session
                    .ctx
                    .sql("select count(*) from flows")
                    .await
                    .map_err(|e| e.to_string())?
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                let count = batches
                    .first()
                    .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
                count as f64 / 60.0
            }
            None => 0.0,
        };
        Ok(Snapshot { groups, flows_rate })
    }

    /// The groups a client may see (`visible` says which namespaces; `None`: all).
    pub fn visible<'a>(
        &'a self,
        visible: Option<&'a BTreeSet<String>>,
    ) -> impl Iterator<Item = &'a Group> + 'a {
        self.groups.iter().filter(move |g| match visible {
            None => true,
            Some(allowed) => {
                allowed.contains(&g.source_namespace) || allowed.contains(&g.destination_namespace)
            }
        })
    }

    /// Flows a client may see.
    pub fn flows(&self, visible: Option<&BTreeSet<String>>) -> u64 {
        self.visible(visible).map(|g| g.flows).sum()
    }

    /// Nodes a client may see, by name.
    pub fn nodes(&self, visible: Option<&BTreeSet<String>>) -> Vec<NodeStats> {
        let newest = self.visible(visible).map(|g| g.last_ns).max().unwrap_or(0);
        let mut nodes: BTreeMap<&str, NodeStats> = BTreeMap::new();
        for group in self.visible(visible) {
            let node = nodes.entry(&group.node).or_insert_with(|| NodeStats {
                name: group.node.clone(),
                flows: 0,
                first_ns: group.first_ns,
                last_ns: group.last_ns,
                version: String::new(),
                current: false,
            });
            node.flows += group.flows;
            node.first_ns = node.first_ns.min(group.first_ns);
            node.last_ns = node.last_ns.max(group.last_ns);
            node.version = node.version.clone().max(group.version.clone());
        }
        nodes
            .into_values()
            .map(|mut node| {
                node.current = node.last_ns > newest - NANOS_PER_HOUR;
                node
            })
            .collect()
    }

    /// (cluster, namespace) pairs a client may see, sorted by cluster then namespace.
    pub fn namespaces(&self, visible: Option<&BTreeSet<String>>) -> Vec<(String, String)> {
        let mut namespaces = BTreeSet::new();
        for group in self.visible(visible) {
            for namespace in [&group.source_namespace, &group.destination_namespace] {
                let allowed = visible.is_none_or(|v| v.contains(namespace));
                if !namespace.is_empty() && allowed {
                    namespaces.insert((cluster_of(&group.node).to_owned(), namespace.clone()));
                }
            }
        }
        namespaces.into_iter().collect()
    }
}

/// The cluster of a Hubble node name (`cluster/node`; none in the default cluster).
pub fn cluster_of(node: &str) -> &str {
    node.split_once('/').map_or("", |(cluster, _)| cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(node: &str, src: &str, dst: &str, flows: u64, last: i64) -> Group {
        Group {
            node: node.into(),
            source_namespace: src.into(),
            destination_namespace: dst.into(),
            flows,
            first_ns: 0,
            last_ns: last,
            version: "v1.19.4".into(),
        }
    }

    #[test]
    fn nodes_and_namespaces_follow_what_a_client_may_see() {
        let snapshot = Snapshot {
            groups: vec![
                group("prod/n1", "shop", "db", 10, 5 * NANOS_PER_HOUR),
                group("prod/n2", "dev", "", 4, 3 * NANOS_PER_HOUR),
                group("n3", "", "shop", 1, 5 * NANOS_PER_HOUR),
            ],
            flows_rate: 0.0,
        };
        assert_eq!(snapshot.flows(None), 15);
        let nodes = snapshot.nodes(None);
        assert_eq!(
            nodes
                .iter()
                .map(|n| (n.name.as_str(), n.flows, n.current))
                .collect::<Vec<_>>(),
            vec![
                ("n3", 1, true),
                ("prod/n1", 10, true),
                ("prod/n2", 4, false)
            ]
        );
        assert_eq!(
            snapshot.namespaces(None),
            vec![
                ("".into(), "shop".into()),
                ("prod".into(), "db".into()),
                ("prod".into(), "dev".into()),
                ("prod".into(), "shop".into())
            ]
        );
        let shop = BTreeSet::from(["shop".to_owned()]);
        assert_eq!(snapshot.flows(Some(&shop)), 11);
        assert_eq!(
            snapshot.namespaces(Some(&shop)),
            vec![("".into(), "shop".into()), ("prod".into(), "shop".into())]
        );
        assert_eq!(snapshot.nodes(Some(&shop)).len(), 2);
    }
}
