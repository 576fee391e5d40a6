//! What a policy change does to the recorded connections: each group's verdict before (the
//! recording, or a baseline policy set) and after (the proposed set), its class, and the rows
//! and summary the command prints.

use std::collections::{BTreeMap, BTreeSet};

use flow_spec::policy::compile::{Action, PolicySet};
use flow_spec::policy::decide::{L7State, RuleRef, SideVerdict};
use flow_spec::policy::{Outcome, Verdict};

use super::connections::{Group, Recorded};

/// A change class, in the order rows are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    NewlyDenied,
    L7Changed,
    NewlyAllowed,
    Uncertain(&'static str),
    UnchangedDenied,
    UnchangedAllowed,
}

impl Class {
    pub fn name(self) -> String {
        match self {
            Class::NewlyDenied => "NEWLY_DENIED".into(),
            Class::L7Changed => "L7_CHANGED".into(),
            Class::NewlyAllowed => "NEWLY_ALLOWED".into(),
            Class::Uncertain(reason) => format!("UNCERTAIN({reason})"),
            Class::UnchangedDenied => "UNCHANGED_DENIED".into(),
            Class::UnchangedAllowed => "UNCHANGED_ALLOWED".into(),
        }
    }

    pub fn changed(self) -> bool {
        !matches!(self, Class::UnchangedAllowed | Class::UnchangedDenied)
    }
}

/// The verdict a connection gets from one side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// What decided, for people: a rule, the recording's policies, "no policy".
    pub because: String,
    pub proxied: bool,
}

impl Decision {
    fn of(verdict: &Verdict) -> Decision {
        let side = verdict.deciding();
        let proxied = verdict.l7() == L7State::Proxied;
        Decision {
            outcome: verdict.outcome,
            because: describe(verdict.outcome, proxied, side.by.as_ref()),
            proxied,
        }
    }
}

/// `denied by POLICY egress[0]`, `allowed (no policy selects either end)`, ...
fn describe(outcome: Outcome, proxied: bool, by: Option<&RuleRef>) -> String {
    let word = match outcome {
        Outcome::Allowed if proxied => "allowed into the L7 proxy".to_owned(),
        Outcome::Allowed => "allowed".to_owned(),
        Outcome::Denied => "denied".to_owned(),
        Outcome::Uncertain(reason) => format!("uncertain ({reason})"),
    };
    match by {
        Some(rule) => format!("{word} by {rule}"),
        None => format!("{word} (no policy selects either end)"),
    }
}

/// How the proposed policies combine with the recorded state (baseline `recorded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Add,
    Replace,
    Remove,
}

/// The verdict after the change when only the recording is known: per side, the proposed
/// policies decide where they select the endpoint (an explicit deny always wins), an allow the
/// recording attributes to a policy that stays keeps the connection allowed (allows add up),
/// and where the proposal selects neither end nothing changes.
pub fn after_recorded(
    group: &Group,
    proposed: &PolicySet,
    verdict: &Verdict,
    mode: Mode,
) -> Decision {
    let replaced: BTreeSet<&str> = match mode {
        Mode::Add => BTreeSet::new(),
        Mode::Replace | Mode::Remove => proposed
            .policies
            .iter()
            .map(|p| p.id.name.as_str())
            .collect(),
    };
    let kept = |names: &[String]| names.iter().any(|n| !replaced.contains(n.as_str()));
    let only_replaced = |names: &[String]| !names.is_empty() && !kept(names);
    let side = |v: &SideVerdict, allowed_by: &[String], denied_by: &[String]| -> Option<Decision> {
        let selected = v.by.is_some();
        if v.outcome == Outcome::Denied
            && v.by.as_ref().and_then(RuleRef::action) == Some(Action::Deny)
        {
            return Some(decision(v));
        }
        if selected && mode != Mode::Remove {
            if v.outcome != Outcome::Allowed && kept(allowed_by) {
                return Some(Decision {
                    outcome: Outcome::Allowed,
                    because: format!("allowed by {} (recorded)", allowed_by.join(", ")),
                    proxied: false,
                });
            }
            return Some(decision(v));
        }
        // The proposal does not select this end (or removes policies).
        if only_replaced(denied_by) || only_replaced(allowed_by) {
            return Some(Decision {
                outcome: Outcome::Uncertain("other policies unknown"),
                because: "the recorded policy goes; what else selects this end is not recorded (give --baseline POLICY_DIR)".into(),
                proxied: false,
            });
        }
        None
    };
    let egress = side(
        &verdict.egress,
        &group.egress_allowed_by,
        &group.egress_denied_by,
    );
    let ingress = side(
        &verdict.ingress,
        &group.ingress_allowed_by,
        &group.ingress_denied_by,
    );
    let recorded = before_recorded(group);
    if egress.is_none() && ingress.is_none() {
        return recorded;
    }
    // A side the proposal leaves alone keeps what the recording says of it: denied when the
    // denial is attributed to it, or attributed to no side at all (older agents).
    let unattributed = group.egress_denied_by.is_empty() && group.ingress_denied_by.is_empty();
    let kept_side = |denied_by: &[String]| {
        if recorded.outcome == Outcome::Denied && (!denied_by.is_empty() || unattributed) {
            recorded.clone()
        } else {
            Decision {
                outcome: Outcome::Allowed,
                because: recorded.because.clone(),
                proxied: false,
            }
        }
    };
    let egress = egress.unwrap_or_else(|| kept_side(&group.egress_denied_by));
    let ingress = ingress.unwrap_or_else(|| kept_side(&group.ingress_denied_by));
    // The connection goes when both sides let it: the worst side decides.
    let rank = |d: &Decision| match d.outcome {
        Outcome::Denied => 3,
        Outcome::Uncertain(_) => 2,
        Outcome::Allowed => i32::from(d.proxied),
    };
    if rank(&ingress) > rank(&egress) {
        ingress
    } else {
        egress
    }
}

fn decision(v: &SideVerdict) -> Decision {
    let proxied = v.l7 == L7State::Proxied;
    Decision {
        outcome: v.outcome,
        because: describe(v.outcome, proxied, v.by.as_ref()),
        proxied,
    }
}

/// What the recording says.
pub fn before_recorded(group: &Group) -> Decision {
    let policies: Vec<&String> = match group.recorded {
        Recorded::Denied => group
            .egress_denied_by
            .iter()
            .chain(&group.ingress_denied_by)
            .collect(),
        _ => group
            .egress_allowed_by
            .iter()
            .chain(&group.ingress_allowed_by)
            .collect(),
    };
    let by = if policies.is_empty() {
        String::new()
    } else {
        format!(
            " by {}",
            policies
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let reason = if group.drop_reason.is_empty() {
        String::new()
    } else {
        format!(" {}", group.drop_reason)
    };
    Decision {
        outcome: match group.recorded {
            Recorded::Denied => Outcome::Denied,
            _ => Outcome::Allowed,
        },
        because: format!("recorded {}{reason}{by}", group.verdict),
        proxied: false,
    }
}

/// A policy set's verdict (baseline `POLICY_DIR`, `none`, or the proposal over it).
pub fn of_set(group: &Group, set: &PolicySet) -> (Decision, Verdict) {
    let verdict = set.decide(&group.connection);
    (Decision::of(&verdict), verdict)
}

/// The class of a change.
pub fn classify(group: &Group, before: &Decision, after: &Decision, l7_seen: bool) -> Class {
    if let Outcome::Uncertain(reason) = after.outcome {
        return Class::Uncertain(reason);
    }
    if let Outcome::Uncertain(reason) = before.outcome {
        return Class::Uncertain(reason);
    }
    let allowed = |d: &Decision| d.outcome == Outcome::Allowed;
    if group.connection.request.is_some() {
        return match (allowed(before), allowed(after)) {
            (true, true) => Class::UnchangedAllowed,
            (false, false) => Class::UnchangedDenied,
            _ => Class::L7Changed,
        };
    }
    match (allowed(before), allowed(after)) {
        (true, false) => Class::NewlyDenied,
        (false, true) => Class::NewlyAllowed,
        (false, false) => Class::UnchangedDenied,
        (true, true) if after.proxied && !before.proxied && !l7_seen => {
            Class::Uncertain("L7 not visible")
        }
        (true, true) => Class::UnchangedAllowed,
    }
}

/// One printed row.
#[derive(Debug, Clone)]
pub struct Row {
    pub class: Class,
    pub source: String,
    pub destination: String,
    pub port: String,
    pub l7: String,
    pub flows: u64,
    pub source_pods: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub before: String,
    pub after: String,
    pub example_uuid: String,
    /// Allowed before and denied after (NEWLY_DENIED, and L7_CHANGED that way).
    pub denies: bool,
}

/// What a row is printed with: class, source, destination, port, L7, before, after.
type RowKey = (Class, String, String, String, String, String, String);

/// Rows merged by what is printed (groups that differ only in labels or addresses print as
/// one), sorted by class, then flows.
pub fn rows(items: Vec<(Class, &Group, Decision, Decision)>) -> Vec<Row> {
    let mut merged: BTreeMap<RowKey, Row> = BTreeMap::new();
    for (class, g, before, after) in items {
        let port = match g.connection.transport {
            flow_spec::policy::Transport::Other => g.protocol.clone(),
            _ => format!("{}/{}", g.connection.port, g.protocol),
        };
        let l7 = match &g.connection.request {
            Some(flow_spec::policy::Request::Http { method, path, .. }) => {
                format!("{method} {path}")
            }
            Some(flow_spec::policy::Request::Dns { query }) => format!("dns {query}"),
            None => String::new(),
        };
        let key = (
            class,
            g.source.name(),
            g.destination.name(),
            port.clone(),
            l7.clone(),
            before.because.clone(),
            after.because.clone(),
        );
        let row = merged.entry(key).or_insert_with(|| Row {
            class,
            source: g.source.name(),
            destination: g.destination.name(),
            port,
            l7,
            flows: 0,
            source_pods: 0,
            first_seen: g.first_seen,
            last_seen: g.last_seen,
            before: before.because.clone(),
            after: after.because.clone(),
            example_uuid: g.example_uuid.clone(),
            denies: before.outcome == Outcome::Allowed && after.outcome == Outcome::Denied,
        });
        row.flows += g.flows;
        row.source_pods = row.source_pods.max(g.source_pods);
        if g.first_seen < row.first_seen {
            row.first_seen = g.first_seen;
            row.example_uuid = g.example_uuid.clone();
        }
        row.last_seen = row.last_seen.max(g.last_seen);
    }
    let mut rows: Vec<Row> = merged.into_values().collect();
    rows.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then(b.flows.cmp(&a.flows))
            .then(a.source.cmp(&b.source))
    });
    rows
}

/// The proposed rules no connection was decided by (dead rules), as `policy rule` names.
pub fn unused_rules(proposed: &PolicySet, used: &BTreeSet<String>) -> Vec<String> {
    let mut unused = Vec::new();
    for policy in &proposed.policies {
        for section in &policy.sections {
            for rule in &section.rules {
                let name = RuleRef {
                    policy: policy.id.clone(),
                    direction: section.direction,
                    spec: section.spec,
                    rule: Some((rule.action, rule.index)),
                }
                .to_string();
                if !used.contains(&name) {
                    unused.push(name);
                }
            }
        }
    }
    unused
}

/// The rules that decided a side, for the dead-rule report.
pub fn rules_used(verdict: &Verdict, used: &mut BTreeSet<String>) {
    for side in [&verdict.egress, &verdict.ingress] {
        if let Some(by) = &side.by {
            if by.rule.is_some() {
                used.insert(by.to_string());
            }
        }
    }
}
