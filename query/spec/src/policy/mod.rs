//! Network policies evaluated against recorded connections (`flowsql policy whatif`): the
//! Kubernetes NetworkPolicy and CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy
//! documents ([`load`], [`model`]), compiled per namespace and kind ([`compile`]), and the
//! verdict of a policy set on one connection with the rule that decided it ([`decide`]).
//! No SQL here: the query side groups the recorded flows into connections and asks.
//!
//! Semantics follow the Cilium 1.19 documentation and sources cited in
//! ../shared/docs/policy-semantics.md; where Kubernetes and Cilium differ for a KNP,
//! [`compile::Semantics`] chooses.

pub mod compile;
pub mod decide;
pub mod labels;
pub mod load;
pub mod model;

#[cfg(test)]
mod tests;

pub use compile::{compile, CompileError, PolicySet, Semantics};
pub use decide::{Connection, Endpoint, Outcome, Request, Transport, Verdict};
pub use load::{load_paths, parse, LoadError, Loaded};
