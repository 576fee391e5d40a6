//! Benchmark datasets, generated once and kept under `--dir` between runs.
//!
//! - [`hourly_store`]: `flows` generated flows over `hours` hours, written by `flowrec import`
//!   (a few large files per hour): the shape of a compacted store.
//! - [`fleet_store`]: the same flows as a fleet writes them: `nodes` recorders, each sealing a
//!   file every 5 minutes, so an hour holds `nodes × 12` small files. Written with the
//!   recorder's own writer (`flow_schema::writer`), under recorder names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::TimestampNanosecondType;
use flow_schema::layout::{hour_of_key, FileName};
use flow_schema::writer::{encode_batches, Provenance};
use flow_schema::{Table, SCHEMA_VERSION};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::queries::START;

const FIVE_MINUTES: i64 = 300_000_000_000;

/// A store of `flows` flows over `hours` hours, generated once (flowgen | flowrec import).
pub fn hourly_store(dir: &Path, flows: u64, hours: u32) -> Result<PathBuf, String> {
    let store = dir.join(format!("store-{flows}-{hours}h"));
    let done = store.join(".complete");
    if done.exists() {
        return Ok(store);
    }
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    eprintln!(
        "bench: generating {flows} flows over {hours} h into {}",
        store.display()
    );
    let started = Instant::now();
    let mut generator = Command::new(crate::sibling("flowgen"))
        .args([
            "--flows",
            &flows.to_string(),
            "--hours",
            &hours.to_string(),
            "--start",
            START,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("flowgen: {e}"))?;
    let import = Command::new(crate::sibling("flowrec"))
        .args(["import", "-", "--store"])
        .arg(&store)
        .stdin(generator.stdout.take().expect("piped"))
        .status()
        .map_err(|e| format!("flowrec: {e}"))?;
    let generated = generator.wait().map_err(|e| format!("flowgen: {e}"))?;
    if !import.success() || !generated.success() {
        return Err("generating the dataset failed".into());
    }
    std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    eprintln!(
        "bench: dataset ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(store)
}

/// Every `.parquet` file under `root`, by the hour its folders name.
fn files_by_hour(root: &Path) -> Result<BTreeMap<i64, Vec<PathBuf>>, String> {
    let mut hours: BTreeMap<i64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                if let Some(hour) = hour_of_key(&path.display().to_string()) {
                    hours.entry(hour).or_default().push(path);
                }
            }
        }
    }
    Ok(hours)
}

/// The flows of `hourly` as `nodes` recorders write them (a file per node per 5 minutes).
pub fn fleet_store(hourly: &Path, dir: &Path, nodes: u32) -> Result<PathBuf, String> {
    let name = hourly
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let store = dir.join(format!("fleet-{name}-{nodes}n"));
    let done = store.join(".complete");
    if done.exists() {
        return Ok(store);
    }
    let _ = std::fs::remove_dir_all(&store);
    eprintln!(
        "bench: splitting {} into {nodes} nodes x 5-minute files",
        hourly.display()
    );
    let started = Instant::now();
    let schema = Table::Flows.schema();
    let mut files = 0;
    for (hour, paths) in files_by_hour(&hourly.join("flows"))? {
        let mut batches = Vec::new();
        for path in &paths {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(64 * 1024).build())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for batch in reader {
                batches.push(batch.map_err(|e| format!("{}: {e}", path.display()))?);
            }
        }
        let rows = concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
        drop(batches);
        let order = sort_to_indices(rows.column(0), None, None).map_err(|e| e.to_string())?;
        let times = rows.column(0).as_primitive::<TimestampNanosecondType>();
        let uuids = rows.column(1).as_string::<i32>();
        // (node, slot) -> row indices in time order.
        let mut groups: BTreeMap<(u32, i64), Vec<u32>> = BTreeMap::new();
        for index in order.values().iter() {
            let row = *index as usize;
            let node = (fnv(uuids.value(row).as_bytes()) % u64::from(nodes)) as u32;
            let slot = (times.value(row) - hour) / FIVE_MINUTES;
            groups.entry((node, slot)).or_default().push(*index);
        }
        for ((node, slot), indices) in groups {
            let batch = take_record_batch(&rows, &arrow::array::UInt32Array::from(indices))
                .map_err(|e| e.to_string())?;
            write(&store, &schema, node, slot, &batch)?;
            files += 1;
        }
    }
    std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    eprintln!(
        "bench: {files} fleet files in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(store)
}

fn write(
    store: &Path,
    schema: &arrow::datatypes::SchemaRef,
    node: u32,
    slot: i64,
    batch: &RecordBatch,
) -> Result<(), String> {
    let node_name = format!("fleet-node-{node:02}");
    let first = batch
        .column(0)
        .as_primitive::<TimestampNanosecondType>()
        .value(0);
    let key = FileName {
        table: Table::Flows,
        node: &node_name,
        source: "hubble",
        first_time_ns: first,
        writer_id: &format!("fleet-{slot:02}"),
    }
    .key();
    let (bytes, _) = encode_batches(
        std::slice::from_ref(batch),
        Arc::clone(schema),
        SCHEMA_VERSION,
        &Provenance::recorder(&node_name, "hubble"),
    )
    .map_err(|e| e.to_string())?;
    let path = store.join(key);
    std::fs::create_dir_all(path.parent().expect("a key has folders"))
        .map_err(|e| e.to_string())?;
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// FNV-1a: a stable spread of flows over nodes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A copy of `store` at `to` (replacing what is there), for a run that changes it.
pub fn copy_store(store: &Path, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-r")
        .arg(store)
        .arg(to)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cp -r {} {} failed", store.display(), to.display()))
    }
}
