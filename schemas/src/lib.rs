//! The one flow schema, its Hubble JSON mapping, and the store layout.
//!
//! Every binary depends on this crate and nothing else defines a column name, a partition path,
//! a metadata key or how a data file is written: `flowrec` writes through [`layout`] and
//! [`writer`], `flowsql` reads through [`catalog`], and `flowstore` (compaction, retention,
//! rollups) does both with the same pieces.

pub mod catalog;
mod direct_write;
pub mod footer;
pub mod guard;
pub mod hubble;
pub mod layout;
pub mod matching;
pub mod nulls;
pub mod rollup;
pub mod schema;
pub mod store;
pub mod table;
pub mod timerange;
pub mod units;
mod utf8;
pub mod writer;

pub use schema::{flow_schema, lost_events_schema, CaptureSource, Table, SCHEMA_VERSION};

/// An error and its causes on one line ("cannot write …: connection refused"), as both
/// binaries print them; a cause already quoted by its parent is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text += &format!(": {cause_text}");
        }
        source = cause.source();
    }
    text
}
