//! The report spec: a YAML file of named checks, parsed and validated before any query runs,
//! so a typo is reported (naming the check) instead of producing half a report.
//!
//! ```yaml
//! title: Nightly network compliance
//! since: 24h                       # optional; --since/--until win
//! checks:
//!   - name: payments talks to the internet only through the PSP
//!     egress_to_world: {namespace: payments, allow: [10.0.0.0/8, "*.stripe.com"]}
//!   - name: dev never reaches prod
//!     no_flows_between: {from: dev, to: prod}
//!   - name: policy drops stay rare
//!     policy_drops: {max_per_namespace: 100}
//!   - name: recording was complete
//!     recording_complete: {max_lost_events: 0}
//!   - name: nothing talks to the old database
//!     sql: select * from flows where destination_port = 5432 and verdict = 'FORWARDED'
//!     expect: empty                # or max: 10 (rows)
//! ```

use serde::Deserialize;
use yaml_serde::{Mapping, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: check {check}: {message}")]
    Check {
        file: String,
        check: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub title: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub description: Option<String>,
    pub kind: CheckKind,
}

/// What a check looks for: every kind is a query whose rows are violations, and a limit on how
/// many may be found.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Sql { sql: String, max_rows: u64 },
    NoFlowsBetween(NoFlowsBetween),
    EgressToWorld(EgressToWorld),
    PolicyDrops(PolicyDrops),
    RecordingComplete(RecordingComplete),
}

impl CheckKind {
    pub fn label(&self) -> &'static str {
        match self {
            CheckKind::Sql { .. } => "sql",
            CheckKind::NoFlowsBetween(_) => "no_flows_between",
            CheckKind::EgressToWorld(_) => "egress_to_world",
            CheckKind::PolicyDrops(_) => "policy_drops",
            CheckKind::RecordingComplete(_) => "recording_complete",
        }
    }
}

/// Flows from namespace `from` to namespace `to` (and back, unless `one_way`) that were not
/// dropped (or any, with `include_dropped`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFlowsBetween {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub one_way: bool,
    #[serde(default)]
    pub include_dropped: bool,
}

/// Forwarded flows to the world (identity `reserved:world`) from `namespace` (or anywhere),
/// except to the CIDRs and FQDN globs (`*.stripe.com`, matched against the DNS names Hubble
/// knows for the destination) of `allow`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressToWorld {
    pub namespace: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Namespaces with more than `max_per_namespace` flows dropped by policy (counted where the
/// policy applies: the source for egress, the destination for ingress).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDrops {
    pub max_per_namespace: u64,
}

/// Events lost (Hubble ring buffer overruns, recorder disconnections): at most
/// `max_lost_events` (default 0) in the period.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RecordingComplete {
    #[serde(default)]
    pub max_lost_events: u64,
}

const KINDS: [&str; 5] = [
    "sql",
    "no_flows_between",
    "egress_to_world",
    "policy_drops",
    "recording_complete",
];

impl Spec {
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecError> {
        let file_error = |message: String| SpecError::File {
            file: file.to_owned(),
            message,
        };
        let root: Mapping = yaml_serde::from_str(text)
            .map_err(|e| file_error(format!("not a YAML mapping: {e}")))?;
        let mut spec = Spec {
            title: "Flow compliance report".into(),
            since: None,
            until: None,
            checks: Vec::new(),
        };
        let mut checks = None;
        for (key, value) in &root {
            let key = key.as_str().unwrap_or_default();
            let text = || {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| file_error(format!("{key}: expected a string")))
            };
            match key {
                "title" => spec.title = text()?,
                "since" => spec.since = Some(text()?),
                "until" => spec.until = Some(text()?),
                "checks" => checks = Some(value),
                other => {
                    return Err(file_error(format!(
                        "unknown key {other:?} (expected title, since, until, checks)"
                    )))
                }
            }
        }
        let checks = checks
            .and_then(Value::as_sequence)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| file_error("no checks: expected `checks:` with a list".into()))?;
        for (index, check) in checks.iter().enumerate() {
            let parsed =
                parse_check(index, check).map_err(|(check, message)| SpecError::Check {
                    file: file.to_owned(),
                    check,
                    message,
                })?;
            if spec.checks.iter().any(|c| c.name == parsed.name) {
                return Err(SpecError::Check {
                    file: file.to_owned(),
                    check: format!("{:?}", parsed.name),
                    message: "two checks have this name".into(),
                });
            }
            spec.checks.push(parsed);
        }
        Ok(spec)
    }
}

/// One check; errors carry how to find it (its name, else its position).
fn parse_check(index: usize, value: &Value) -> Result<Check, (String, String)> {
    let position = format!("#{}", index + 1);
    let map = value.as_mapping().ok_or_else(|| {
        (
            position.clone(),
            "expected a mapping with a name".to_owned(),
        )
    })?;
    let name = match map.get("name").map(Value::as_str) {
        Some(Some(name)) if !name.trim().is_empty() => name.to_owned(),
        _ => return Err((position, "needs a `name`".into())),
    };
    let id = format!("{name:?}");
    let fail = |message: String| (id.clone(), message);
    let mut kinds = Vec::new();
    let mut description = None;
    let mut expect = None;
    let mut max = None;
    for (key, value) in map {
        match key.as_str().unwrap_or_default() {
            "name" => {}
            "description" => description = value.as_str().map(str::to_owned),
            "expect" => expect = Some(value.clone()),
            "max" => max = Some(value.clone()),
            k if KINDS.contains(&k) => kinds.push((k, value)),
            other => {
                return Err(fail(format!(
                    "unknown check {other:?} (known: {}; sql takes expect: empty or max: N)",
                    KINDS.join(", ")
                )))
            }
        }
    }
    let (kind, body) = match kinds.as_slice() {
        [one] => *one,
        [] => {
            return Err(fail(format!(
                "says nothing to check: give one of {}",
                KINDS.join(", ")
            )))
        }
        _ => return Err(fail("more than one kind of check: one per check".into())),
    };
    if kind != "sql" && (expect.is_some() || max.is_some()) {
        return Err(fail(format!(
            "expect/max apply to sql checks; {kind} has its own limit"
        )));
    }
    let typed = |what: &str| fail(format!("{kind}: {what}"));
    let kind = match kind {
        "sql" => {
            let sql = body
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| typed("expected the SQL text"))?
                .to_owned();
            let max_rows = match (expect, max) {
                (Some(_), Some(_)) => {
                    return Err(fail("give expect: empty or max: N, not both".into()))
                }
                (Some(Value::String(e)), None) if e == "empty" => 0,
                (Some(other), None) => {
                    return Err(fail(format!(
                        "expect: {other:?}: only `empty` is known (or use max: N)"
                    )))
                }
                (None, Some(n)) => n
                    .as_u64()
                    .ok_or_else(|| fail(format!("max: {n:?}: expected a number of rows")))?,
                (None, None) => 0,
            };
            CheckKind::Sql { sql, max_rows }
        }
        "no_flows_between" => CheckKind::NoFlowsBetween(
            yaml_serde::from_value(body.clone()).map_err(|e| typed(&e.to_string()))?,
        ),
        "egress_to_world" => {
            let check: EgressToWorld =
                yaml_serde::from_value(body.clone()).map_err(|e| typed(&e.to_string()))?;
            for entry in &check.allow {
                let valid = if entry.contains('/') {
                    flow_schema::matching::Cidr::parse(entry).is_some()
                } else {
                    !entry.is_empty()
                        && entry
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-.*_".contains(c))
                };
                if !valid {
                    return Err(typed(&format!(
                        "allow: {entry:?} is not a CIDR nor an FQDN glob"
                    )));
                }
            }
            CheckKind::EgressToWorld(check)
        }
        "policy_drops" => CheckKind::PolicyDrops(
            yaml_serde::from_value(body.clone()).map_err(|e| typed(&e.to_string()))?,
        ),
        "recording_complete" => CheckKind::RecordingComplete(if body.is_null() {
            RecordingComplete::default()
        } else {
            yaml_serde::from_value(body.clone()).map_err(|e| typed(&e.to_string()))?
        }),
        _ => unreachable!("KINDS"),
    };
    Ok(Check {
        name,
        description,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_with_every_kind() {
        let spec = Spec::parse(
            "s.yaml",
            "title: T\nsince: 24h\nchecks:\n\
             - name: a\n  sql: select 1\n  max: 3\n\
             - name: b\n  no_flows_between: {from: dev, to: prod}\n\
             - name: c\n  egress_to_world: {namespace: p, allow: [10.0.0.0/8, '*.stripe.com']}\n\
             - name: d\n  policy_drops: {max_per_namespace: 5}\n\
             - name: e\n  recording_complete:\n",
        )
        .unwrap();
        assert_eq!(spec.title, "T");
        assert_eq!(spec.since.as_deref(), Some("24h"));
        assert_eq!(
            spec.checks[0].kind,
            CheckKind::Sql {
                sql: "select 1".into(),
                max_rows: 3
            }
        );
        assert_eq!(
            spec.checks[4].kind,
            CheckKind::RecordingComplete(RecordingComplete { max_lost_events: 0 })
        );
    }

    #[test]
    fn mistakes_name_the_check() {
        let err = |text: &str| Spec::parse("s.yaml", text).unwrap_err().to_string();
        assert!(
            err("checks:\n- name: x\n  no_flow_between: {from: a, to: b}\n")
                .contains("check \"x\": unknown check \"no_flow_between\"")
        );
        assert!(err("checks:\n- name: x\n  policy_drops: {max: 3}\n")
            .contains("check \"x\": policy_drops: unknown field `max`"));
        assert!(err("checks:\n- sql: select 1\n").contains("check #1: needs a `name`"));
        assert!(
            err("checks:\n- name: x\n  sql: select 1\n  expect: nothing\n")
                .contains("only `empty`")
        );
        assert!(
            err("checks:\n- name: x\n  egress_to_world: {allow: ['10.0.0/8']}\n")
                .contains("not a CIDR")
        );
        assert!(
            err("checks:\n- name: x\n  sql: select 1\n- name: x\n  sql: select 2\n")
                .contains("two checks")
        );
        assert!(err("title: t\n").contains("no checks"));
        assert!(err("tittle: t\nchecks: []\n").contains("unknown key \"tittle\""));
    }
}
