//! The policy documents as written: Kubernetes NetworkPolicy (networking.k8s.io/v1) and
//! CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (cilium.io/v2). Every struct refuses
//! unknown fields: an ignored field would change a verdict without a word. Fields Cilium has
//! but the what-if does not evaluate yet are parsed so that [`super::compile`] can refuse
//! them by name.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::labels::LabelSelector;

/// `metadata`: only the name and namespace matter here (uid, labels, managedFields, ... of
/// `kubectl get -o yaml` dumps are accepted and ignored: they do not change what a policy
/// means).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A port as Kubernetes writes it: a number, or a name (or a number in a string).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

// ---- Kubernetes NetworkPolicy -------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: KnpSpec,
    #[serde(default)]
    pub status: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KnpSpec {
    pub pod_selector: LabelSelector,
    #[serde(default)]
    pub policy_types: Option<Vec<PolicyType>>,
    #[serde(default)]
    pub ingress: Option<Vec<KnpIngressRule>>,
    #[serde(default)]
    pub egress: Option<Vec<KnpEgressRule>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KnpIngressRule {
    #[serde(default)]
    pub from: Option<Vec<KnpPeer>>,
    #[serde(default)]
    pub ports: Option<Vec<KnpPort>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KnpEgressRule {
    #[serde(default)]
    pub to: Option<Vec<KnpPeer>>,
    #[serde(default)]
    pub ports: Option<Vec<KnpPort>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KnpPeer {
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub ip_block: Option<IpBlock>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default)]
    pub except: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KnpPort {
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port: Option<IntOrString>,
    #[serde(default)]
    pub end_port: Option<i64>,
}

// ---- Cilium ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CiliumPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Option<CiliumRule>,
    #[serde(default)]
    pub specs: Option<Vec<CiliumRule>>,
    #[serde(default)]
    pub status: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CiliumRule {
    #[serde(default)]
    pub endpoint_selector: Option<LabelSelector>,
    #[serde(default)]
    pub node_selector: Option<IgnoredAny>,
    #[serde(default)]
    pub ingress: Option<Vec<CiliumIngressRule>>,
    #[serde(default)]
    pub ingress_deny: Option<Vec<CiliumIngressRule>>,
    #[serde(default)]
    pub egress: Option<Vec<CiliumEgressRule>>,
    #[serde(default)]
    pub egress_deny: Option<Vec<CiliumEgressRule>>,
    #[serde(default)]
    pub enable_default_deny: Option<DefaultDeny>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: Option<IgnoredAny>,
    #[serde(default)]
    pub log: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultDeny {
    #[serde(default)]
    pub ingress: Option<bool>,
    #[serde(default)]
    pub egress: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CiliumIngressRule {
    #[serde(default)]
    pub from_endpoints: Option<Vec<LabelSelector>>,
    #[serde(default)]
    pub from_entities: Option<Vec<String>>,
    #[serde(default, rename = "fromCIDR")]
    pub from_cidr: Option<Vec<String>>,
    #[serde(default, rename = "fromCIDRSet")]
    pub from_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default)]
    pub to_ports: Option<Vec<PortRule>>,
    // Not evaluated yet: refused by name when present.
    #[serde(default)]
    pub icmps: Option<IgnoredAny>,
    #[serde(default)]
    pub from_requires: Option<IgnoredAny>,
    #[serde(default)]
    pub from_nodes: Option<IgnoredAny>,
    #[serde(default)]
    pub from_groups: Option<IgnoredAny>,
    #[serde(default)]
    pub authentication: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CiliumEgressRule {
    #[serde(default)]
    pub to_endpoints: Option<Vec<LabelSelector>>,
    #[serde(default)]
    pub to_entities: Option<Vec<String>>,
    #[serde(default, rename = "toCIDR")]
    pub to_cidr: Option<Vec<String>>,
    #[serde(default, rename = "toCIDRSet")]
    pub to_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default, rename = "toFQDNs")]
    pub to_fqdns: Option<Vec<FqdnSelector>>,
    #[serde(default)]
    pub to_ports: Option<Vec<PortRule>>,
    // Not evaluated yet: refused by name when present.
    #[serde(default)]
    pub icmps: Option<IgnoredAny>,
    #[serde(default)]
    pub to_requires: Option<IgnoredAny>,
    #[serde(default)]
    pub to_nodes: Option<IgnoredAny>,
    #[serde(default)]
    pub to_groups: Option<IgnoredAny>,
    #[serde(default)]
    pub to_services: Option<IgnoredAny>,
    #[serde(default)]
    pub authentication: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CidrRule {
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub except: Vec<String>,
    #[serde(default)]
    pub cidr_group_ref: Option<IgnoredAny>,
    #[serde(default)]
    pub cidr_group_selector: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FqdnSelector {
    #[serde(default)]
    pub match_name: Option<String>,
    #[serde(default)]
    pub match_pattern: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortRule {
    #[serde(default)]
    pub ports: Option<Vec<PortProtocol>>,
    #[serde(default)]
    pub rules: Option<L7Rules>,
    // Not evaluated yet: refused by name when present.
    #[serde(default, rename = "terminatingTLS")]
    pub terminating_tls: Option<IgnoredAny>,
    #[serde(default, rename = "originatingTLS")]
    pub originating_tls: Option<IgnoredAny>,
    #[serde(default)]
    pub server_names: Option<IgnoredAny>,
    #[serde(default)]
    pub listener: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortProtocol {
    #[serde(default)]
    pub port: Option<IntOrString>,
    #[serde(default)]
    pub end_port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L7Rules {
    #[serde(default)]
    pub http: Option<Vec<HttpRule>>,
    #[serde(default)]
    pub dns: Option<Vec<FqdnSelector>>,
    // Not evaluated yet: refused by name when present.
    #[serde(default)]
    pub kafka: Option<IgnoredAny>,
    #[serde(default)]
    pub l7proto: Option<IgnoredAny>,
    #[serde(default)]
    pub l7: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRule {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    #[serde(default)]
    pub header_matches: Option<IgnoredAny>,
}
