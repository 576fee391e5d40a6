//! How a store table travels to a cluster's scheduler. Ballista sends the client's logical plan
//! to the scheduler, which plans the scans itself: a [`StoreTable`] in that plan is written as
//! what it reads ([`Reads`]), the store's URL and the damage policy, and the scheduler builds
//! the same table over the same store. Its scan then lists only the window's hours and loads
//! their footers there, exactly as a local query would; the executors read the files it chose.
//!
//! Everything else (Ballista's own plan nodes, file formats) goes to Ballista's codec.

use std::sync::Arc;

use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use flow_schema::layout::Dataset;
use flow_schema::store::{Patience, Store};
use flow_schema::Table;
use object_store::path::Path;
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::table::damage::DamageLog;
use crate::table::{Reads, StoreReader, StoreTable, StringColumns};

/// Marks a store table's bytes (anything else is Ballista's).
const MAGIC: &[u8] = b"flowsql-table:";
/// The version of the description below: a scheduler refuses one it does not know.
const FORMAT: u32 = 1;

/// The logical codec of flowsql's client, scheduler and executors.
#[derive(Debug, Default)]
pub struct FlowCodec {
    ballista: BallistaLogicalExtensionCodec,
}

/// A store table, as written into a plan.
#[derive(Debug, Serialize, Deserialize)]
struct Described {
    format: u32,
    /// The store's root folder URL (`s3://bucket/prefix/`, `file:///path/`).
    store: String,
    strict_store: bool,
    reads: DescribedReads,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DescribedReads {
    Recorded {
        table: String,
    },
    Rollups,
    Pinned {
        dataset: String,
        files: Vec<DescribedFile>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct DescribedFile {
    location: String,
    size: u64,
    /// Microseconds since the epoch.
    last_modified: i64,
    e_tag: Option<String>,
    version: Option<String>,
}

impl Described {
    fn of(table: &StoreTable) -> Result<Described> {
        let reads = table.reads().ok_or_else(|| {
            DataFusionError::NotImplemented(
                "this table cannot be read on a cluster (a compaction's inputs, or a schema \
                 this build does not name): run it without --cluster"
                    .into(),
            )
        })?;
        let reads = match reads {
            Reads::Recorded(table) => DescribedReads::Recorded {
                table: table.name().into(),
            },
            Reads::Rollups => DescribedReads::Rollups,
            Reads::Pinned(dataset, files) => DescribedReads::Pinned {
                dataset: dataset.name().into(),
                files: files
                    .into_iter()
                    .map(|meta| DescribedFile {
                        location: meta.location.to_string(),
                        size: meta.size,
                        last_modified: meta.last_modified.timestamp_micros(),
                        e_tag: meta.e_tag,
                        version: meta.version,
                    })
                    .collect(),
            },
        };
        let reader = table.reader();
        Ok(Described {
            format: FORMAT,
            store: reader.store.folder_url(""),
            strict_store: reader.damage.strict(),
            reads,
        })
    }

    fn table(self) -> Result<StoreTable> {
        if self.format != FORMAT {
            return Err(plan_error(format!(
                "a store table described in format {} (this flowsql knows {FORMAT}): \
                 the client and the cluster run different flowsql versions",
                self.format
            )));
        }
        let reads = match self.reads {
            DescribedReads::Recorded { table } => Reads::Recorded(
                Table::ALL
                    .into_iter()
                    .find(|t| t.name() == table)
                    .ok_or_else(|| plan_error(format!("no table {table:?} in this flowsql")))?,
            ),
            DescribedReads::Rollups => Reads::Rollups,
            DescribedReads::Pinned { dataset, files } => Reads::Pinned(
                Dataset::parse(&dataset)
                    .ok_or_else(|| plan_error(format!("no dataset {dataset:?} in this flowsql")))?,
                files
                    .into_iter()
                    .map(|f| {
                        Ok(ObjectMeta {
                            location: Path::parse(&f.location)
                                .map_err(|e| plan_error(format!("file {:?}: {e}", f.location)))?,
                            size: f.size,
                            last_modified: chrono::DateTime::from_timestamp_micros(f.last_modified)
                                .ok_or_else(|| {
                                    plan_error(format!("file {:?}: bad time", f.location))
                                })?,
                            e_tag: f.e_tag,
                            version: f.version,
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        // The store is opened with the credentials of this process's environment, like
        // flowsql's own (AWS_*): the scheduler lists and reads footers itself.
        let store = Store::open(&self.store, &Patience::INTERACTIVE)
            .map_err(|e| plan_error(format!("store {}: {e}", self.store)))?;
        // A cluster's tables: plain strings (see `StringColumns::Plain`), like its client's.
        let reader = StoreReader::new(
            store,
            DamageLog::new("flowsql", self.strict_store),
            StringColumns::Plain,
        );
        Ok(StoreTable::from_reads(Arc::new(reader), reads))
    }
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("flowsql cluster: {message}"))
}

impl LogicalExtensionCodec for FlowCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(json) = buf.strip_prefix(MAGIC) else {
            return self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let described: Described = serde_json::from_slice(json)
            .map_err(|e| plan_error(format!("table {table_ref}: {e}")))?;
        let table = described.table()?;
        // The client planned against this schema: a scheduler of another build must not
        // answer with other columns.
        if table.schema().fields() != schema.fields() {
            return Err(plan_error(format!(
                "table {table_ref}: the client's columns differ from this scheduler's \
                 (different flowsql versions)"
            )));
        }
        Ok(Arc::new(table))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<StoreTable>() else {
            return self
                .ballista
                .try_encode_table_provider(table_ref, node, buf);
        };
        let described = Described::of(table)?;
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(buf, &described)
            .map_err(|e| plan_error(format!("table {table_ref}: {e}")))
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.ballista.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(dir: &std::path::Path, strict: bool) -> Arc<StoreReader> {
        let store = Store::open(dir.to_str().unwrap(), &Patience::INTERACTIVE).unwrap();
        Arc::new(StoreReader::new(
            store,
            DamageLog::new("flowsql", strict),
            StringColumns::Plain,
        ))
    }

    fn round_trip(table: StoreTable) -> Result<StoreTable> {
        let codec = FlowCodec::default();
        let name = TableReference::bare("flows");
        let schema = table.schema();
        let mut buf = Vec::new();
        codec.try_encode_table_provider(&name, Arc::new(table), &mut buf)?;
        let decoded =
            codec.try_decode_table_provider(&buf, &name, schema, &TaskContext::default())?;
        let table = decoded
            .downcast_ref::<StoreTable>()
            .expect("a store table comes back as one");
        Ok(StoreTable::from_reads(
            Arc::clone(table.reader()),
            table.reads().expect("it can travel again"),
        ))
    }

    #[test]
    fn a_store_table_travels_as_what_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = ObjectMeta {
            location: Path::parse("flows_hourly/v1/date=2026-11-24/hour=09/rollup.1.x.parquet")
                .unwrap(),
            size: 1234,
            last_modified: chrono::DateTime::from_timestamp_micros(1_795_510_800_123_456).unwrap(),
            e_tag: Some("\"e\"".into()),
            version: None,
        };
        for (reads, strict) in [
            (Reads::Recorded(Table::Flows), false),
            (Reads::Recorded(Table::LostEvents), true),
            (Reads::Rollups, false),
            (
                Reads::Pinned(Dataset::FlowsHourly, vec![file.clone()]),
                true,
            ),
        ] {
            let table = StoreTable::from_reads(reader(dir.path(), strict), reads.clone());
            let back = round_trip(table).unwrap();
            assert_eq!(back.reads(), Some(reads));
            assert_eq!(back.reader().damage.strict(), strict);
            assert_eq!(
                back.reader().store.folder_url(""),
                format!("file://{}/", dir.path().display())
            );
        }
    }

    #[test]
    fn other_bytes_and_other_versions_are_refused_by_name() {
        let codec = FlowCodec::default();
        let name = TableReference::bare("flows");
        let schema = Table::Flows.schema();
        let decode = |bytes: &[u8]| {
            codec
                .try_decode_table_provider(bytes, &name, schema.clone(), &TaskContext::default())
                .unwrap_err()
                .to_string()
        };
        let newer = [
            MAGIC,
            br#"{"format":2,"store":"/x","strict_store":false,"reads":"rollups"}"#,
        ]
        .concat();
        assert!(decode(&newer).contains("different flowsql versions"));
        let garbage = [MAGIC, b"{".as_slice()].concat();
        assert!(decode(&garbage).contains("table flows"));
        // A table this build reads with another schema (a client of another version).
        let dir = tempfile::tempdir().unwrap();
        let table = StoreTable::from_reads(reader(dir.path(), false), Reads::Rollups);
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&name, Arc::new(table), &mut buf)
            .unwrap();
        let error = codec
            .try_decode_table_provider(&buf, &name, schema.clone(), &TaskContext::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("columns differ"), "{error}");
    }
}
