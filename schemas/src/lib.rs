//! The one flow schema, its Hubble JSON mapping, and the store layout.
//!
//! Both binaries depend on this crate and nothing else defines a column name, a partition path
//! or a metadata key: `flowrec` writes through [`layout`] and `flowsql` reads through it.

pub mod hubble;
pub mod layout;
pub mod schema;
pub mod store;
pub mod table;
pub mod units;

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
