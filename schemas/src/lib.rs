//! The one flow schema, its Hubble JSON mapping, and the store layout.
//!
//! Both binaries depend on this crate and nothing else defines a column name, a partition path
//! or a metadata key: `flowrec` writes through [`layout`] and `flowsql` reads through it.

pub mod hubble;
pub mod layout;
pub mod schema;
pub mod store;
pub mod units;

pub use schema::{flow_schema, lost_events_schema, CaptureSource, Table, SCHEMA_VERSION};
