//! flowrec: the node recorder.
//!
//! Stages, one module each: sources (`input` + `import` for Hubble JSON files, `ebpf` + `run` for
//! the recorder's own capture) → enrichment of captured flows with pod identity (`pods`) → batching into files (`batch`) → staging as Parquet
//! (`parquet_file`) and upload to the store (`upload`), driven by `sink`; the continuous
//! recorder makes flows durable in a local `spool` first and ships sealed segments from it.
//! The schema, the Hubble mapping and the store layout come from `flow_schema`.

pub mod batch;
pub mod cli;
pub mod drain;
pub mod ebpf;
pub mod import;
pub mod input;
pub mod metrics;
pub mod parquet_file;
pub mod pods;
pub mod run;
pub mod sink;
pub mod source;
pub mod spool;
pub mod upload;
