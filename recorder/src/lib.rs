//! flowrec: the node recorder.
//!
//! Stages, one module each: sources (`input` + `import` for Hubble JSON files; `run` for
//! continuous recording from a `source`: the recorder's own eBPF capture (`ebpf`, drained by
//! `source::drain`) or a followed Hubble exporter file (`source::tail` + `source::follow`)) →
//! enrichment of captured flows with pod identity (`pods`) → batching into files (`batch`) →
//! staging as Parquet (`parquet_file`) and upload to the store (`upload`), driven by `sink` for
//! imports; continuous recording makes flows durable in a local `spool` first and ships sealed
//! segments from it (`spool::ship`), with `metrics` served on the side.
//! The schema, the Hubble mapping and the store layout come from `flow_schema`.

pub mod allocator;
pub mod batch;
pub mod cli;
pub mod ebpf;
pub mod import;
pub mod input;
pub mod log;
pub mod metrics;
pub mod panics;
pub mod parquet_file;
pub mod pods;
pub mod run;
pub mod sink;
pub mod source;
pub mod spool;
pub mod upload;
