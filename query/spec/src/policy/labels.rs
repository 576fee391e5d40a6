//! Identity labels and label selectors, with Cilium's label sources: a recorded label is
//! `source:key=value` (`k8s:app=frontend`, `reserved:world`); a selector key may name a source
//! (`k8s:app`) or not (`app`, which Cilium reads as `any:app`: every source).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The label sources Cilium gives identities (a prefix that is not one of these is part of
/// the key: `io.kubernetes.pod.namespace` has dots, never a colon, but keep the rule explicit).
const SOURCES: &[&str] = &[
    "any",
    "k8s",
    "reserved",
    "cidr",
    "cidrgroup",
    "fqdn",
    "node",
    "gen",
    "container",
    "unspec",
    "kvstore",
    "etcd",
    "cni",
    "mesos",
];

/// The label Cilium gives every pod identity with its namespace.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The prefix of a pod identity's namespace labels (what KNP namespace selectors match).
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

/// One identity label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub source: String,
    pub key: String,
    pub value: String,
}

impl Label {
    /// `source:key=value`, `key=value` (source `unspec`), `reserved:world` (empty value).
    pub fn parse(text: &str) -> Label {
        let (source, rest) = split_source(text);
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        Label {
            source: source.unwrap_or("unspec").to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    pub fn new(source: &str, key: &str, value: &str) -> Label {
        Label {
            source: source.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }
}

fn split_source(text: &str) -> (Option<&str>, &str) {
    match text.split_once(':') {
        Some((source, rest)) if SOURCES.contains(&source) => (Some(source), rest),
        _ => (None, text),
    }
}

/// A selector key: the source it names (`None`: any) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub source: Option<String>,
    pub key: String,
}

impl Key {
    pub fn parse(text: &str) -> Key {
        let (source, key) = split_source(text);
        Key {
            source: source.filter(|s| *s != "any").map(str::to_owned),
            key: key.to_owned(),
        }
    }

    fn matches(&self, label: &Label) -> bool {
        label.key == self.key && self.source.as_ref().is_none_or(|s| *s == label.source)
    }
}

/// A Kubernetes label selector as written in YAML.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Expression>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expression {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement of a compiled selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: Key,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn equals(key: &str, value: &str) -> Requirement {
        Requirement {
            key: Key::parse(key),
            operator: Operator::In,
            values: vec![value.to_owned()],
        }
    }

    fn matches(&self, labels: &[Label]) -> bool {
        let mut with_key = labels.iter().filter(|l| self.key.matches(l));
        match self.operator {
            Operator::In => with_key.any(|l| self.values.contains(&l.value)),
            Operator::NotIn => !with_key.any(|l| self.values.contains(&l.value)),
            Operator::Exists => with_key.next().is_some(),
            Operator::DoesNotExist => with_key.next().is_none(),
        }
    }
}

/// A compiled selector: the AND of its requirements (none: every labelled endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Checks what Kubernetes checks: In/NotIn need values, Exists/DoesNotExist none.
    pub fn compile(selector: &LabelSelector) -> Result<Selector, String> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .map(|(k, v)| Requirement::equals(k, v))
            .collect();
        for e in &selector.match_expressions {
            match (e.operator, e.values.is_empty()) {
                (Operator::In | Operator::NotIn, true) => {
                    return Err(format!(
                        "matchExpressions key {:?}: {:?} needs values",
                        e.key, e.operator
                    ))
                }
                (Operator::Exists | Operator::DoesNotExist, false) => {
                    return Err(format!(
                        "matchExpressions key {:?}: {:?} takes no values",
                        e.key, e.operator
                    ))
                }
                _ => {}
            }
            requirements.push(Requirement {
                key: Key::parse(&e.key),
                operator: e.operator,
                values: e.values.clone(),
            });
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &[Label]) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether a requirement is on `key` (any source) or on a key starting with `prefix`.
    pub fn mentions(&self, key: &str, prefix: &str) -> bool {
        self.requirements
            .iter()
            .any(|r| r.key.key == key || r.key.key.starts_with(prefix))
    }

    /// Whether a requirement names the `reserved` source (entity-like selectors).
    pub fn is_reserved(&self) -> bool {
        self.requirements
            .iter()
            .any(|r| r.key.source.as_deref() == Some("reserved"))
    }

    pub fn and(mut self, requirement: Requirement) -> Selector {
        self.requirements.push(requirement);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(texts: &[&str]) -> Vec<Label> {
        texts.iter().map(|t| Label::parse(t)).collect()
    }

    fn selector(yaml: &str) -> Selector {
        Selector::compile(&yaml_serde::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn sources_keys_and_operators_match_as_cilium_reads_them() {
        let pod = labels(&[
            "k8s:app=frontend",
            "k8s:io.kubernetes.pod.namespace=prod",
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod",
        ]);
        assert!(selector("matchLabels: {app: frontend}").matches(&pod));
        assert!(selector("matchLabels: {'k8s:app': frontend}").matches(&pod));
        assert!(selector("matchLabels: {'any:app': frontend}").matches(&pod));
        assert!(!selector("matchLabels: {'reserved:app': frontend}").matches(&pod));
        assert!(!selector("matchLabels: {app: backend}").matches(&pod));
        assert!(selector("{}").matches(&pod));
        let exprs = "matchExpressions: [{key: tier, operator: NotIn, values: [db]}, {key: app, operator: Exists}]";
        assert!(selector(exprs).matches(&pod));
        assert!(selector("matchExpressions: [{key: tier, operator: DoesNotExist}]").matches(&pod));
        assert!(
            !selector("matchExpressions: [{key: app, operator: In, values: [a, b]}]").matches(&pod)
        );
        let world = labels(&["reserved:world"]);
        assert!(selector("matchLabels: {'reserved:world': ''}").matches(&world));
        assert_eq!(Label::parse("reserved:world").key, "world");
        assert!(Selector::compile(
            &yaml_serde::from_str("matchExpressions: [{key: a, operator: In}]").unwrap()
        )
        .is_err());
    }
}
