//! What flows' values are matched against in queries and reports: CIDRs (`cidr_contains`, a
//! report check's `cidr`) and Kubernetes label selectors over Cilium labels (`has_label`,
//! `label_value`, `label_selector`). Pure parsing and matching, kept out of flowsql so the
//! fuzz targets can reach them without building DataFusion.

use std::net::IpAddr;

/// An IPv4 or IPv6 network, as a masked 128-bit number (IPv4 mapped into IPv6).
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    network: u128,
    mask: u128,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u32>().ok()?)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = address.parse().ok()?;
        let bits = match (ip, prefix) {
            (IpAddr::V4(_), Some(p)) if p <= 32 => p + 96,
            (IpAddr::V6(_), Some(p)) if p <= 128 => p,
            (_, Some(_)) => return None,
            (_, None) => 128,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        Some(Cidr {
            network: to_u128(ip) & mask,
            mask,
        })
    }

    /// Whether `ip` (text) is in the network; not an address, it is not.
    pub fn contains(&self, ip: &str) -> bool {
        ip.parse::<IpAddr>()
            .is_ok_and(|ip| to_u128(ip) & self.mask == self.network)
    }
}

/// A Cilium label `source:key=value`, or a selector over labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label<'a> {
    pub source: Option<&'a str>,
    pub key: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Label<'a> {
    pub fn parse(text: &'a str) -> Label<'a> {
        let (head, value) = match text.split_once('=') {
            Some((head, value)) => (head, Some(value)),
            None => (text, None),
        };
        match head.split_once(':') {
            Some((source, key)) => Label {
                source: Some(source),
                key,
                value,
            },
            None => Label {
                source: None,
                key: head,
                value,
            },
        }
    }

    /// Does a stored label satisfy this selector?
    pub fn selects(&self, label: &Label) -> bool {
        let source_ok = match self.source {
            None | Some("any") => true,
            Some(source) => label.source == Some(source),
        };
        let value_ok = match self.value {
            None => true,
            Some(value) => label.value.unwrap_or("") == value,
        };
        source_ok && value_ok && self.key == label.key
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A Kubernetes label selector over Cilium labels (`source:key=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        if text.trim().is_empty() {
            return Ok(Selector(requirements));
        }
        for part in parts {
            requirements.push(requirement(part.trim())?);
        }
        Ok(Selector(requirements))
    }

    /// All requirements hold for the labels.
    pub fn matches(&self, labels: &[Label]) -> bool {
        let values = |key: &str| -> Vec<&str> {
            let selector = Label::parse(key);
            labels
                .iter()
                .filter(|l| selector.selects(l))
                .map(|l| l.value.unwrap_or(""))
                .collect()
        };
        self.0.iter().all(|requirement| match requirement {
            Requirement::Exists(key) => !values(key).is_empty(),
            Requirement::NotExists(key) => values(key).is_empty(),
            Requirement::In(key, set) => values(key).iter().any(|v| set.iter().any(|s| s == v)),
            Requirement::NotIn(key, set) => !values(key).iter().any(|v| set.iter().any(|s| s == v)),
        })
    }
}

fn requirement(text: &str) -> Result<Requirement, String> {
    let key = |key: &str| -> Result<String, String> {
        let key = key.trim();
        let valid = !key.is_empty()
            && key.matches(':').count() <= 1
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:$".contains(c));
        if valid {
            Ok(key.to_owned())
        } else {
            Err(format!("invalid label key {key:?}"))
        }
    };
    let set = |list: &str| -> Result<Vec<String>, String> {
        let inner = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("expected a (value, ...) list in {text:?}"))?;
        Ok(inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect())
    };
    if let Some(rest) = text.strip_prefix('!') {
        return Ok(Requirement::NotExists(key(rest)?));
    }
    // `key in (a, b)`, `key notin(a,b)`.
    if let Some(paren) = text.find('(') {
        let head = text[..paren].trim_end();
        let (k, operator) = head
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| format!("expected `key in (...)` or `key notin (...)` in {text:?}"))?;
        return match operator {
            "in" => Ok(Requirement::In(key(k)?, set(&text[paren..])?)),
            "notin" => Ok(Requirement::NotIn(key(k)?, set(&text[paren..])?)),
            _ => Err(format!("expected in or notin before ( in {text:?}")),
        };
    }
    if let Some((k, v)) = text.split_once("!=") {
        return Ok(Requirement::NotIn(key(k)?, vec![v.trim().to_owned()]));
    }
    if let Some((k, v)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Ok(Requirement::In(key(k)?, vec![v.trim().to_owned()]));
    }
    Ok(Requirement::Exists(key(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.244.0.0/16").unwrap();
        assert!(net.contains("10.244.1.5"));
        assert!(!net.contains("10.245.1.5"));
        assert!(!net.contains("not an ip"));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1"));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains("10.0.0.1"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8"));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains("1.2.3.4"));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("garbage/8").is_none());
    }

    #[test]
    fn kubernetes_label_selectors() {
        let labels: Vec<Label> = ["k8s:app=frontend", "k8s:tier=web", "reserved:world"]
            .into_iter()
            .map(Label::parse)
            .collect();
        let matches = |text: &str| Selector::parse(text).unwrap().matches(&labels);
        assert!(matches("app=frontend"));
        assert!(matches("k8s:app=frontend,tier in (web, api)"));
        assert!(matches("tier in(web)"));
        assert!(matches("reserved:world"));
        assert!(matches("app,!db"));
        assert!(matches("tier!=db"));
        assert!(matches("db notin (x)"));
        assert!(matches(""));
        assert!(!matches("app=backend"));
        assert!(!matches("container:app=frontend"));
        assert!(!matches("tier notin (web)"));
        assert!(!matches("!app"));
        assert!(Selector::parse("app in x").is_err());
        assert!(Selector::parse("any:k8s:app").is_err());
        assert!(Selector::parse("=x").is_err());
    }

    #[test]
    fn label_selectors() {
        let label = Label::parse("k8s:app=frontend");
        assert!(Label::parse("k8s:app=frontend").selects(&label));
        assert!(Label::parse("app=frontend").selects(&label));
        assert!(Label::parse("app").selects(&label));
        assert!(Label::parse("any:app=frontend").selects(&label));
        assert!(!Label::parse("container:app=frontend").selects(&label));
        assert!(!Label::parse("app=backend").selects(&label));
        assert!(!Label::parse("k8s:ap=frontend").selects(&label));
        assert!(Label::parse("reserved:world").selects(&Label::parse("reserved:world")));
        let nested = Label::parse("k8s:io.kubernetes.pod.namespace=prod-app");
        assert_eq!(nested.key, "io.kubernetes.pod.namespace");
        assert_eq!(nested.value, Some("prod-app"));
    }
}
