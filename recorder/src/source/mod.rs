//! Where `flowrec run` takes flows from.

pub mod tail;
