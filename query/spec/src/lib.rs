//! The YAML documents users write for flowsql: what they mean, checked before any query runs.
//!
//! Kept out of the flowsql crate on purpose: these parsers take outside input, and the fuzz
//! targets (`fuzz/`) build them with sanitizers without compiling DataFusion.

pub mod policy;
pub mod report;
