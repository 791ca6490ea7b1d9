//! Typed model of the `cilium.io/v2` CiliumNetworkPolicy (CNP) and the lint that every scope
//! rule and every rendered policy passes.
//!
//! The model mirrors the fields of the v2 CRD schema (Cilium 1.19 generation). Egress rules and
//! everything below them deny unknown fields, so a misspelt key in `policy.scopes` is an error
//! that names the key instead of a field the API server silently prunes. Optional fields are
//! `Option`s so that a scope rule survives `Value -> EgressRule -> Value` unchanged: what the
//! security team wrote is what lands in the cluster.
//!
//! The lint adds what the API server does not check but every Cilium agent does: a policy the
//! agent rejects is not imported at all, which leaves the job's pods with no allow rules. A few
//! checks are sparkward's own contract (DESIGN.md: ports are numbers 1–65535); each is marked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// `apiVersion` of the policies sparkward renders.
pub const API_VERSION: &str = "cilium.io/v2";
/// `kind` of the policies sparkward renders.
pub const KIND: &str = "CiliumNetworkPolicy";
/// The label Cilium gives every pod for its namespace. A `toEndpoints` selector without it is
/// confined to the policy's own namespace, so selecting pods elsewhere needs it.
pub const POD_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// Most ports one `toPorts[].ports` list may hold (CRD `maxItems`, agent `maxPorts`).
const MAX_PORTS: usize = 40;
/// Most fields one `icmps[].fields` list may hold (CRD `maxItems`, agent `maxICMPFields`).
const MAX_ICMP_FIELDS: usize = 40;

type JsonObject = serde_json::Map<String, Value>;

/// A `cilium.io/v2` CiliumNetworkPolicy. Unknown top-level keys (`status`) are ignored so that
/// policies read back from the API parse; everything below `spec`/`specs` is strict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumNetworkPolicy {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// A single rule; sparkward renders `specs` only but reads both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specs: Vec<Rule>,
}

impl CiliumNetworkPolicy {
    /// All rules of the policy, `spec` first.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.spec.iter().chain(self.specs.iter())
    }
}

/// One policy rule: which endpoints it selects and what they may send and receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_selector: Option<EndpointSelector>,
    /// Host policies only; never rendered by sparkward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<EndpointSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    /// Never rendered by sparkward, kept as checked JSON objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_deny: Vec<JsonObject>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
    /// Never rendered by sparkward, kept as checked JSON objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_deny: Vec<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_default_deny: Option<DefaultDeny>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<RuleLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<RuleLog>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultDeny {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleLabel {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleLog {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A Kubernetes-style label selector over Cilium's endpoint labels. Keys may carry a Cilium
/// source prefix (`k8s:`, `any:`, `reserved:` …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<SelectorRequirement>>,
}

impl EndpointSelector {
    /// A selector matching exactly these labels.
    pub fn labels<K: Into<String>, V: Into<String>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            match_labels: Some(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            match_expressions: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Ingress part of a rule. sparkward renders `fromEndpoints` only; the other fields exist so
/// that policies read back parse strictly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_endpoints: Option<Vec<EndpointSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_requires: Option<Vec<EndpointSelector>>,
    #[serde(default, rename = "fromCIDR", skip_serializing_if = "Option::is_none")]
    pub from_cidr: Option<Vec<String>>,
    #[serde(
        default,
        rename = "fromCIDRSet",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_entities: Option<Vec<Entity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_groups: Option<Vec<Groups>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_nodes: Option<Vec<EndpointSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<PortRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmps: Option<Vec<IcmpRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

/// One egress rule, with every field the v2 CRD allows. Scope mappings are lists of these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_endpoints: Option<Vec<EndpointSelector>>,
    /// Deprecated by Cilium 1.17; rejected by the lint (see [`lint_egress_rule`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_requires: Option<Vec<EndpointSelector>>,
    #[serde(default, rename = "toCIDR", skip_serializing_if = "Option::is_none")]
    pub to_cidr: Option<Vec<String>>,
    #[serde(default, rename = "toCIDRSet", skip_serializing_if = "Option::is_none")]
    pub to_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_entities: Option<Vec<Entity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_services: Option<Vec<ServiceRef>>,
    #[serde(default, rename = "toFQDNs", skip_serializing_if = "Option::is_none")]
    pub to_fqdns: Option<Vec<FqdnSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_groups: Option<Vec<Groups>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_nodes: Option<Vec<EndpointSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<PortRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmps: Option<Vec<IcmpRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

impl EgressRule {
    /// The peer selectors of the rule that are present and non-empty, by CRD field name.
    fn peers(&self) -> Vec<&'static str> {
        let lens = [
            ("toEndpoints", len(&self.to_endpoints)),
            ("toCIDR", len(&self.to_cidr)),
            ("toCIDRSet", len(&self.to_cidr_set)),
            ("toEntities", len(&self.to_entities)),
            ("toServices", len(&self.to_services)),
            ("toFQDNs", len(&self.to_fqdns)),
            ("toGroups", len(&self.to_groups)),
            ("toNodes", len(&self.to_nodes)),
        ];
        lens.iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Whether this rule lets Cilium's DNS proxy see the job's lookups: some `toPorts` entry
    /// carries `rules.dns` (and so, by the lint, a port).
    pub fn is_dns_visibility_rule(&self) -> bool {
        self.to_ports.iter().flatten().any(|p| {
            p.rules
                .as_ref()
                .and_then(|r| r.dns.as_ref())
                .is_some_and(|d| !d.is_empty())
        })
    }
}

fn len<T>(v: &Option<Vec<T>>) -> usize {
    v.as_ref().map_or(0, Vec::len)
}

/// A Cilium entity: a well-known class of peers. The names are the CRD's enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Entity {
    #[serde(rename = "all")]
    All,
    #[serde(rename = "world")]
    World,
    #[serde(rename = "cluster")]
    Cluster,
    #[serde(rename = "host")]
    Host,
    #[serde(rename = "init")]
    Init,
    #[serde(rename = "ingress")]
    Ingress,
    #[serde(rename = "unmanaged")]
    Unmanaged,
    #[serde(rename = "remote-node")]
    RemoteNode,
    #[serde(rename = "health")]
    Health,
    #[serde(rename = "none")]
    None,
    #[serde(rename = "kube-apiserver")]
    KubeApiserver,
}

/// `toCIDRSet` entry: exactly one of `cidr`, `cidrGroupRef`, `cidrGroupSelector`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CidrRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_group_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_group_selector: Option<EndpointSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

/// `toServices` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_service: Option<K8sServiceName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_service_selector: Option<K8sServiceSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sServiceName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sServiceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub selector: EndpointSelector,
}

/// A DNS name or pattern (`toFQDNs` and `rules.dns`): exactly one of the two fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FqdnSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_pattern: Option<String>,
}

impl FqdnSelector {
    /// A selector for exactly `name`.
    pub fn name(name: impl Into<String>) -> Self {
        Self {
            match_name: Some(name.into()),
            match_pattern: None,
        }
    }

    /// A selector for the names `pattern` matches (`*` is one DNS label or part of one;
    /// a leading `**.` any number of labels on Cilium 1.19 and later).
    pub fn pattern(pattern: impl Into<String>) -> Self {
        Self {
            match_name: None,
            match_pattern: Some(pattern.into()),
        }
    }

    /// Whether the selector matches every DNS name: a pattern of stars only (`*`, `**`,
    /// `**.`), which Cilium reads as "all names".
    pub fn matches_every_name(&self) -> bool {
        self.match_pattern.as_deref().is_some_and(|p| {
            let stars = p.strip_suffix('.').unwrap_or(p);
            !stars.is_empty() && stars.bytes().all(|b| b == b'*')
        })
    }
}

/// `toGroups` entry (cloud provider groups; only AWS exists).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Groups {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups_names: Option<Vec<String>>,
}

/// `toPorts` entry: L4 ports and optional L7 rules, TLS contexts, SNI or an Envoy listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortProtocol>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<L7Rules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<Listener>,
    #[serde(
        default,
        rename = "originatingTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub originating_tls: Option<TlsContext>,
    #[serde(
        default,
        rename = "terminatingTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub terminating_tls: Option<TlsContext>,
}

/// One port (or port range) and protocol.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortProtocol {
    /// Always a string in the CRD; a YAML number here is an error that says so.
    #[serde(
        default,
        deserialize_with = "port_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<String>,
    /// Last port of a range `port..=endPort`. Kept as i64 so that out-of-range values reach
    /// the lint (and its message) instead of failing in serde.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl PortProtocol {
    /// A single numeric port.
    pub fn new(port: u16, protocol: Protocol) -> Self {
        Self {
            port: Some(port.to_string()),
            end_port: None,
            protocol: Some(protocol),
        }
    }
}

/// L4 protocols of the CRD enum. The lint accepts TCP, UDP, SCTP and ANY only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
    #[serde(rename = "VRRP")]
    Vrrp,
    #[serde(rename = "IGMP")]
    Igmp,
    #[serde(rename = "ANY")]
    Any,
}

/// L7 rules of one `toPorts` entry: exactly one of `http`, `kafka`, `dns` or `l7proto`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L7Rules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<HttpRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Vec<KafkaRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<FqdnSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l7proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l7: Option<Vec<BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_matches: Option<Vec<HeaderMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<HeaderMismatch>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HeaderMismatch {
    Log,
    Add,
    Delete,
    Replace,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<KafkaRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaRole {
    Produce,
    Consume,
}

/// A reference to a Kubernetes Secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// TLS context for the L7 proxy (`originatingTLS`, `terminatingTLS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsContext {
    pub secret: SecretRef,
    #[serde(default, rename = "trustedCA", skip_serializing_if = "Option::is_none")]
    pub trusted_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

/// Redirect to a listener of a CiliumEnvoyConfig.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    pub envoy_config: EnvoyConfigRef,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EnvoyConfigKind>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvoyConfigKind {
    CiliumEnvoyConfig,
    CiliumClusterwideEnvoyConfig,
}

/// `icmps` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<IcmpField>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<IcmpFamily>,
    #[serde(rename = "type")]
    pub icmp_type: IcmpType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IcmpFamily {
    IPv4,
    IPv6,
}

/// ICMP type: a number or one of the names of the CRD (int-or-string).
#[derive(Debug, Clone, PartialEq)]
pub enum IcmpType {
    Number(i64),
    Name(String),
}

impl Serialize for IcmpType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IcmpType::Number(n) => s.serialize_i64(*n),
            IcmpType::Name(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for IcmpType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IcmpType;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ICMP type number (0-255) or name such as EchoRequest")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IcmpType, E> {
                Ok(IcmpType::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IcmpType, E> {
                Ok(IcmpType::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IcmpType, E> {
                Ok(IcmpType::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Mutual authentication requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authentication {
    pub mode: AuthenticationMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthenticationMode {
    Disabled,
    Required,
    TestAlwaysFail,
}

/// Ports are strings in the CRD. YAML makes `port: 5432` a number, which the API server would
/// reject with a schema error far from the config file; say what to write instead.
fn port_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a port number written as a string, such as \"5432\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(E::custom(format_args!(
                "the port must be a string: write port: \"{v}\" (quoted)"
            )))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(E::custom(format_args!(
                "the port must be a string holding 1-65535, not the number {v}"
            )))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// Why a scope rule or a rendered policy fails the lint: the field path (relative to the rule
/// or policy, e.g. `toPorts[0].ports[0].port`) and what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LintError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn fail<T>(path: impl fmt::Display, message: impl Into<String>) -> Result<T, LintError> {
    Err(LintError {
        path: path.to_string(),
        message: message.into(),
    })
}

/// A field path such as `specs[0].egress[2].toPorts[0]`, built as a chain of borrows while the
/// lint descends and rendered only when it reports an error (a valid policy costs no strings).
#[derive(Debug, Clone, Copy)]
enum FieldPath<'a> {
    Root(&'a str),
    Field(&'a FieldPath<'a>, &'a str),
    Index(&'a FieldPath<'a>, usize),
}

impl FieldPath<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, FieldPath::Root(s) if s.is_empty())
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Root(s) => f.write_str(s),
            FieldPath::Field(base, field) if base.is_empty() => f.write_str(field),
            FieldPath::Field(base, field) => write!(f, "{base}.{field}"),
            FieldPath::Index(base, i) => write!(f, "{base}[{i}]"),
        }
    }
}

fn at<'a>(base: &'a FieldPath<'a>, field: &'a str) -> FieldPath<'a> {
    FieldPath::Field(base, field)
}

fn idx<'a>(base: &'a FieldPath<'a>, i: usize) -> FieldPath<'a> {
    FieldPath::Index(base, i)
}

/// Parses one egress rule as written in `policy.scopes`. Unknown keys, wrong types and values
/// outside the CRD's enums are errors naming the field path.
pub fn parse_egress_rule(rule: &Value) -> Result<EgressRule, LintError> {
    if !rule.is_object() {
        return fail(
            "",
            "an egress rule must be a mapping such as {toEndpoints: [...], toPorts: [...]}",
        );
    }
    serde_path_to_error::deserialize(rule).map_err(|e| {
        let path = e.path().to_string();
        LintError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// Parses and checks one DNS selector written outside a rule (`policy.dnsAllow`): exactly
/// one of `matchName` and `matchPattern`, valid the way a `toFQDNs` entry must be.
pub fn checked_fqdn_selector(selector: &Value) -> Result<FqdnSelector, LintError> {
    if !selector.is_object() {
        return fail(
            "",
            "a DNS selector must be a mapping: {matchName: api.example.com} or {matchPattern: \"*.example.com\"}",
        );
    }
    let parsed: FqdnSelector = serde_path_to_error::deserialize(selector).map_err(|e| {
        let path = e.path().to_string();
        LintError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })?;
    lint_fqdn_selector(&parsed)?;
    Ok(parsed)
}

/// Checks one typed DNS selector the way a `toFQDNs` entry is checked.
pub fn lint_fqdn_selector(selector: &FqdnSelector) -> Result<(), LintError> {
    lint_fqdn(selector, &FieldPath::Root(""))
}

/// Checks one egress rule from the scope mapping: it must parse as a CRD egress rule and pass
/// the rules Cilium agents enforce (see the module docs and [`lint_rule`]).
pub fn lint_egress_rule(rule: &Value) -> Result<(), LintError> {
    checked_egress_rule(rule).map(drop)
}

/// [`lint_egress_rule`] that keeps the parsed rule (what the configuration stores).
pub fn checked_egress_rule(rule: &Value) -> Result<EgressRule, LintError> {
    let parsed = parse_egress_rule(rule)?;
    lint_rule(&parsed, "")?;
    Ok(parsed)
}

/// Checks a rendered policy: every rule has an endpoint selector and at least one section,
/// every egress rule passes [`lint_rule`], and a rule with `toFQDNs` also carries the DNS rule
/// with `rules.dns` (Cilium learns FQDN → IP only from DNS answers its proxy sees; without it
/// the FQDN rule never matches anything).
pub fn lint_policy(policy: &CiliumNetworkPolicy) -> Result<(), LintError> {
    if policy.api_version != API_VERSION || policy.kind != KIND {
        return fail(
            "",
            format!(
                "expected apiVersion {API_VERSION} and kind {KIND}, found {} {}",
                policy.api_version, policy.kind
            ),
        );
    }
    if policy.metadata.name.as_deref().unwrap_or("").is_empty() {
        return fail("metadata.name", "a policy needs a name");
    }
    if policy
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        return fail("metadata.namespace", "a CiliumNetworkPolicy is namespaced");
    }
    if policy.spec.is_none() && policy.specs.is_empty() {
        return fail("specs", "a policy without rules selects nothing");
    }
    if let Some(rule) = &policy.spec {
        lint_policy_rule(rule, &FieldPath::Root("spec"))?;
    }
    let specs = FieldPath::Root("specs");
    for (i, rule) in policy.specs.iter().enumerate() {
        lint_policy_rule(rule, &idx(&specs, i))?;
    }
    Ok(())
}

fn lint_policy_rule(rule: &Rule, base: &FieldPath<'_>) -> Result<(), LintError> {
    match (&rule.endpoint_selector, &rule.node_selector) {
        (Some(sel), None) => lint_selector(sel, &at(base, "endpointSelector"))?,
        (None, None) | (Some(_), Some(_)) => {
            return fail(
                base,
                "a rule needs exactly one of endpointSelector and nodeSelector",
            );
        }
        (None, Some(_)) => {
            return fail(
                at(base, "nodeSelector"),
                "host policies are not what sparkward renders; select pods with endpointSelector",
            );
        }
    }
    if rule.ingress.is_empty()
        && rule.egress.is_empty()
        && rule.ingress_deny.is_empty()
        && rule.egress_deny.is_empty()
    {
        return fail(
            base,
            "a rule needs at least one of ingress, ingressDeny, egress, egressDeny (Cilium rejects it otherwise)",
        );
    }
    for (i, ing) in rule.ingress.iter().enumerate() {
        for (j, sel) in ing.from_endpoints.iter().flatten().enumerate() {
            lint_selector(
                sel,
                &idx(&at(&idx(&at(base, "ingress"), i), "fromEndpoints"), j),
            )?;
        }
    }
    for (i, eg) in rule.egress.iter().enumerate() {
        lint_rule_at(eg, &idx(&at(base, "egress"), i))?;
    }
    if let Some(i) = rule.egress.iter().position(|e| len(&e.to_fqdns) > 0)
        && !rule.egress.iter().any(EgressRule::is_dns_visibility_rule)
    {
        return fail(
            idx(&at(base, "egress"), i),
            "toFQDNs needs a DNS rule in the same rule (toPorts with port 53 and rules.dns); \
             Cilium learns the addresses of DNS names only from lookups its DNS proxy sees",
        );
    }
    Ok(())
}

/// The agent-side checks for one parsed egress rule. `base` prefixes every error path.
///
/// Rules the Cilium agent enforces (it rejects the whole policy otherwise):
/// - at most one peer selector per rule (toEndpoints, toCIDR, toCIDRSet, toEntities,
///   toServices, toFQDNs, toGroups, toNodes);
/// - `icmps` and `toPorts` never share a rule;
/// - ports are present and parse (decimal: the agent reads `010` as octal 8 and `08` fails);
/// - protocols TCP/UDP/SCTP/ANY (VRRP/IGMP need `--enable-extended-ip-protocols` and carry no
///   port);
/// - L7 rules: exactly one kind; http/kafka/l7proto only on explicit TCP ports; DNS rules need
///   ports and no port range; `serverNames` with L7 rules need `terminatingTLS`; a listener
///   never has L7 rules;
/// - CIDRs parse as `address/length` (no leading zeros), `except` inside its `cidr`;
/// - selectors: valid label keys, `In`/`NotIn` with values, `Exists`/`DoesNotExist` without;
/// - `toNodes` needs `--enable-node-selector-labels` (off by default): rejected;
/// - `toRequires` is deprecated since 1.17 and gone in 1.18, and it narrows every toEndpoints
///   rule of the job's policy, not just its own: rejected.
///
/// sparkward's own contract on top (DESIGN.md): ports are numbers 1–65535 (no port 0 = every
/// port, no named ports), `endPort` ≥ `port`, every `toPorts` entry lists its ports, and a rule
/// names a peer, a port or an ICMP type (an empty rule allows nothing).
pub fn lint_rule(rule: &EgressRule, base: &str) -> Result<(), LintError> {
    lint_rule_at(rule, &FieldPath::Root(base))
}

fn lint_rule_at(rule: &EgressRule, base: &FieldPath<'_>) -> Result<(), LintError> {
    let peers = rule.peers();
    if peers.len() > 1 {
        let extra = if peers.contains(&"toFQDNs") {
            " (toFQDNs matches by DNS name only and never shares a rule)"
        } else {
            ""
        };
        return fail(
            at(base, peers[1]),
            format!(
                "{} and {} cannot be combined in one egress rule{extra}: Cilium agents reject the \
                 whole policy, which leaves the job with no allow rules; write two rules (both \
                 may be listed under the same scope)",
                peers[0], peers[1]
            ),
        );
    }
    let has_ports = len(&rule.to_ports) > 0;
    let has_icmps = len(&rule.icmps) > 0;
    if peers.is_empty() && !has_ports && !has_icmps {
        return fail(
            base,
            "the rule names no peer (toEndpoints, toCIDR, toCIDRSet, toEntities, toServices, \
             toFQDNs, toGroups) and no toPorts: Cilium reads it as allowing nothing (unlike a \
             Kubernetes NetworkPolicy, where {} allows everything); name the destinations and \
             ports this scope grants, or use toEntities: [world] / [all] if you really mean \
             everywhere",
        );
    }
    if len(&rule.to_requires) > 0 {
        return fail(
            at(base, "toRequires"),
            "toRequires is deprecated since Cilium 1.17 and removed in 1.18, and it would narrow \
             every toEndpoints rule of the job's policy, not just this scope's; put the labels \
             into this rule's toEndpoints selector instead",
        );
    }
    if len(&rule.to_nodes) > 0 {
        return fail(
            at(base, "toNodes"),
            "toNodes only works on agents started with --enable-node-selector-labels (off by \
             default) and otherwise makes the agent reject the whole policy; use toEntities: \
             [host] or [remote-node], or toCIDR with the node addresses",
        );
    }
    if has_icmps && has_ports {
        return fail(
            at(base, "icmps"),
            "icmps and toPorts cannot share a rule (Cilium rejects it); write two rules",
        );
    }

    for (i, sel) in rule.to_endpoints.iter().flatten().enumerate() {
        lint_selector(sel, &idx(&at(base, "toEndpoints"), i))?;
    }
    for (i, cidr) in rule.to_cidr.iter().flatten().enumerate() {
        parse_cidr(cidr).or_else(|m| fail(idx(&at(base, "toCIDR"), i), m))?;
    }
    for (i, set) in rule.to_cidr_set.iter().flatten().enumerate() {
        lint_cidr_rule(set, &idx(&at(base, "toCIDRSet"), i))?;
    }
    for (i, svc) in rule.to_services.iter().flatten().enumerate() {
        if let Some(sel) = &svc.k8s_service_selector {
            lint_selector(
                &sel.selector,
                &at(
                    &at(&idx(&at(base, "toServices"), i), "k8sServiceSelector"),
                    "selector",
                ),
            )?;
        }
    }
    for (i, fqdn) in rule.to_fqdns.iter().flatten().enumerate() {
        lint_fqdn(fqdn, &idx(&at(base, "toFQDNs"), i))?;
    }
    for (i, pr) in rule.to_ports.iter().flatten().enumerate() {
        lint_port_rule(pr, &idx(&at(base, "toPorts"), i))?;
    }
    for (i, icmp) in rule.icmps.iter().flatten().enumerate() {
        lint_icmp(icmp, &idx(&at(base, "icmps"), i))?;
    }
    Ok(())
}

fn lint_port_rule(pr: &PortRule, base: &FieldPath<'_>) -> Result<(), LintError> {
    let ports = pr.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() {
        return fail(
            at(base, "ports"),
            "list the ports, e.g. ports: [{port: \"443\", protocol: TCP}]; a toPorts entry \
             without ports opens every port (leave toPorts out if that is really meant)",
        );
    }
    if ports.len() > MAX_PORTS {
        return fail(
            at(base, "ports"),
            format!("at most {MAX_PORTS} ports per entry; split the list over several entries"),
        );
    }
    let l7 = pr.rules.as_ref();
    let dns = l7.and_then(|r| r.dns.as_ref()).is_some();
    let needs_tcp =
        l7.is_some_and(|r| r.http.is_some() || r.kafka.is_some() || r.l7proto.is_some());
    let ports_path = at(base, "ports");
    for (i, p) in ports.iter().enumerate() {
        let path = idx(&ports_path, i);
        let port = lint_port(p, &path)?;
        if dns && p.end_port.is_some_and(|e| e > i64::from(port)) {
            return fail(
                at(&path, "endPort"),
                "DNS rules do not support port ranges; list port \"53\" once per protocol",
            );
        }
        if needs_tcp && p.protocol != Some(Protocol::Tcp) {
            return fail(
                at(&path, "protocol"),
                "HTTP, Kafka and other L7 rules apply to TCP only: write protocol: TCP (an \
                 omitted protocol means ANY, which Cilium rejects with L7 rules)",
            );
        }
    }
    if let Some(rules) = l7 {
        lint_l7(rules, &at(base, "rules"))?;
    }
    if let Some(names) = &pr.server_names {
        let path = at(base, "serverNames");
        if names.is_empty() {
            return fail(
                path,
                "list at least one server name, or leave serverNames out",
            );
        }
        for (i, name) in names.iter().enumerate() {
            if !is_server_name(name) {
                return fail(
                    idx(&path, i),
                    format!(
                        "'{name}' is not a server name (e.g. api.example.com or *.example.com)"
                    ),
                );
            }
        }
        if l7.is_some() && pr.terminating_tls.is_none() {
            return fail(
                path,
                "serverNames with L7 rules need terminatingTLS (Cilium rejects them otherwise)",
            );
        }
    }
    if let Some(listener) = &pr.listener {
        let path = at(base, "listener");
        if l7.is_some() {
            return fail(
                path,
                "a listener cannot be combined with L7 rules (Cilium rejects it); use one or the other",
            );
        }
        if listener.name.is_empty() || listener.envoy_config.name.is_empty() {
            return fail(
                path,
                "listener.name and listener.envoyConfig.name must be set",
            );
        }
        if let Some(p) = listener.priority
            && !(1..=100).contains(&p)
        {
            return fail(at(&path, "priority"), "priority must be between 1 and 100");
        }
    }
    Ok(())
}

/// Checks one port entry and returns its number.
fn lint_port(p: &PortProtocol, path: &FieldPath<'_>) -> Result<u16, LintError> {
    if let Some(Protocol::Vrrp | Protocol::Igmp) = p.protocol {
        return fail(
            at(path, "protocol"),
            "VRRP and IGMP need --enable-extended-ip-protocols on every agent and carry no \
             ports; use TCP, UDP, SCTP or ANY",
        );
    }
    let Some(text) = p.port.as_deref() else {
        return fail(
            at(path, "port"),
            "port is required: write port: \"5432\" (a number 1-65535 in quotes)",
        );
    };
    let port = parse_port(text).or_else(|m| fail(at(path, "port"), m))?;
    if let Some(end) = p.end_port
        && (end < i64::from(port) || end > 65535)
    {
        return fail(
            at(path, "endPort"),
            format!(
                "endPort {end} must be from port ({port}) to 65535, making the range \
                 {port}-endPort; leave endPort out for the single port {port}"
            ),
        );
    }
    Ok(port)
}

/// A port as sparkward accepts it: decimal digits without leading zeros, 1–65535.
fn parse_port(text: &str) -> Result<u16, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits {
        return Err(format!(
            "'{text}' is not a port number: write the number, e.g. \"8080\"; named ports are not \
             accepted because they resolve to whatever port the destination's containers give \
             that name"
        ));
    }
    if text.len() > 1 && text.starts_with('0') {
        let trimmed = text.trim_start_matches('0');
        return Err(format!(
            "'{text}' has a leading zero, which Cilium parses as octal (or rejects); write \"{}\"",
            if trimmed.is_empty() { "0" } else { trimmed }
        ));
    }
    match text.parse::<u32>() {
        Ok(0) => Err(
            "port \"0\" means every port; list the ports the scope needs (or leave toPorts out)"
                .to_string(),
        ),
        Ok(n) if n <= 65535 => Ok(n as u16),
        _ => Err(format!("port {text} is out of range: ports are 1-65535")),
    }
}

fn lint_l7(rules: &L7Rules, path: &FieldPath<'_>) -> Result<(), LintError> {
    let kinds = [
        rules.http.is_some(),
        rules.kafka.is_some(),
        rules.dns.is_some(),
        rules.l7proto.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return fail(
            path,
            "rules needs exactly one of http, kafka, dns or l7proto (l7 goes with l7proto)",
        );
    }
    for (i, d) in rules.dns.iter().flatten().enumerate() {
        lint_fqdn(d, &idx(&at(path, "dns"), i))?;
    }
    for (i, h) in rules.http.iter().flatten().enumerate() {
        for (j, m) in h.header_matches.iter().flatten().enumerate() {
            if m.name.is_empty() {
                return fail(
                    at(
                        &idx(&at(&idx(&at(path, "http"), i), "headerMatches"), j),
                        "name",
                    ),
                    "a header match needs the header name",
                );
            }
        }
    }
    for (i, k) in rules.kafka.iter().flatten().enumerate() {
        if k.topic.as_ref().is_some_and(|t| t.len() > 255) {
            return fail(
                at(&idx(&at(path, "kafka"), i), "topic"),
                "Kafka topics are at most 255 characters",
            );
        }
    }
    Ok(())
}

fn lint_fqdn(sel: &FqdnSelector, path: &FieldPath<'_>) -> Result<(), LintError> {
    match (&sel.match_name, &sel.match_pattern) {
        (Some(name), None) => {
            if !is_dns_pattern(name, false) {
                return fail(
                    at(path, "matchName"),
                    format!(
                        "'{name}' is not a DNS name (letters, digits, '-', '_' and single dots, \
                         at most 255 characters); use matchPattern for wildcards"
                    ),
                );
            }
        }
        (None, Some(pattern)) => {
            if !is_dns_pattern(pattern, true) {
                return fail(
                    at(path, "matchPattern"),
                    format!(
                        "'{pattern}' is not a DNS pattern (letters, digits, '-', '_', '*' and \
                         single dots, e.g. *.example.com)"
                    ),
                );
            }
        }
        _ => {
            return fail(
                path,
                "write exactly one of matchName (e.g. api.example.com) or matchPattern (e.g. *.example.com)",
            );
        }
    }
    Ok(())
}

/// The CRD's DNS name pattern `^([-a-zA-Z0-9_]+[.]?)+$` (with `*` for patterns), ≤ 255 chars.
fn is_dns_pattern(text: &str, wildcard: bool) -> bool {
    let ok_char =
        |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (wildcard && c == '*');
    let body = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 255
        && body
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(ok_char))
}

/// The CRD's server name pattern `^(\*?\*\.)?([-a-zA-Z0-9_]+\.?)+$`, ≤ 255 chars.
fn is_server_name(text: &str) -> bool {
    let rest = text
        .strip_prefix("**.")
        .or_else(|| text.strip_prefix("*."))
        .unwrap_or(text);
    text.len() <= 255 && is_dns_pattern(rest, false)
}

fn lint_cidr_rule(rule: &CidrRule, path: &FieldPath<'_>) -> Result<(), LintError> {
    let set = [
        rule.cidr.is_some(),
        rule.cidr_group_ref.is_some(),
        rule.cidr_group_selector.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return fail(
            path,
            "write exactly one of cidr (e.g. 10.20.0.0/16), cidrGroupRef or cidrGroupSelector",
        );
    }
    if let Some(group) = &rule.cidr_group_ref
        && !is_dns_subdomain(group)
    {
        return fail(
            at(path, "cidrGroupRef"),
            format!("'{group}' is not the name of a CiliumCIDRGroup (lowercase DNS name)"),
        );
    }
    if let Some(sel) = &rule.cidr_group_selector {
        lint_selector(sel, &at(path, "cidrGroupSelector"))?;
    }
    let allowed = match &rule.cidr {
        Some(cidr) => Some(parse_cidr(cidr).or_else(|m| fail(at(path, "cidr"), m))?),
        None => None,
    };
    let except_path = at(path, "except");
    for (i, ex) in rule.except.iter().flatten().enumerate() {
        let p = idx(&except_path, i);
        let except = parse_cidr(ex).or_else(|m| fail(p, m))?;
        if let Some(allowed) = allowed
            && !allowed.contains(&except)
        {
            return fail(
                p,
                format!(
                    "{ex} is not inside {}: Cilium rejects exceptions outside the allowed range",
                    rule.cidr.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    Ok(())
}

/// A parsed CIDR prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    fn contains(&self, other: &Cidr) -> bool {
        if other.len < self.len {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// Parses `address/length` the way both the API server (`format: cidr`) and the agent accept
/// it: a prefix length is required, and neither the address nor the length has leading zeros.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let Some((addr, bits)) = text.split_once('/') else {
        return Err(format!(
            "'{text}' has no prefix length: write {text}/32 for one IPv4 address ({text}/128 for \
             IPv6) or the network, e.g. 10.20.0.0/16"
        ));
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("'{text}' is not a CIDR: '{addr}' is not an IP address (e.g. 10.20.0.0/16)")
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let digits = !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit());
    if !digits || (bits.len() > 1 && bits.starts_with('0')) {
        return Err(format!(
            "'{text}' has an invalid prefix length '{bits}': write a number 0-{max} without leading zeros"
        ));
    }
    match bits.parse::<u8>() {
        Ok(len) if u32::from(len) <= max => Ok(Cidr { addr, len }),
        _ => Err(format!(
            "'{text}' has prefix length {bits}, more than {max}"
        )),
    }
}

fn lint_icmp(rule: &IcmpRule, path: &FieldPath<'_>) -> Result<(), LintError> {
    let fields = rule.fields.as_deref().unwrap_or(&[]);
    if fields.len() > MAX_ICMP_FIELDS {
        return fail(
            at(path, "fields"),
            format!("at most {MAX_ICMP_FIELDS} ICMP types per entry"),
        );
    }
    let fields_path = at(path, "fields");
    for (i, f) in fields.iter().enumerate() {
        let field = idx(&fields_path, i);
        let p = at(&field, "type");
        let ok = match &f.icmp_type {
            IcmpType::Number(n) => (0..=255).contains(n),
            IcmpType::Name(name) => {
                name.parse::<u8>()
                    .is_ok_and(|_| !name.starts_with('0') || name == "0")
                    || ICMP_TYPE_NAMES.contains(&name.as_str())
            }
        };
        if !ok {
            return fail(
                p,
                "an ICMP type is a number 0-255 or a name such as EchoRequest, \
                 DestinationUnreachable, TimeExceeded",
            );
        }
    }
    Ok(())
}

/// ICMP type names the CRD accepts (IPv4 and IPv6).
const ICMP_TYPE_NAMES: &[&str] = &[
    "EchoReply",
    "DestinationUnreachable",
    "Redirect",
    "Echo",
    "RouterAdvertisement",
    "RouterSelection",
    "TimeExceeded",
    "ParameterProblem",
    "Timestamp",
    "TimestampReply",
    "Photuris",
    "ExtendedEchoRequest",
    "ExtendedEcho Reply",
    "PacketTooBig",
    "EchoRequest",
    "MulticastListenerQuery",
    "MulticastListenerReport",
    "MulticastListenerDone",
    "RouterSolicitation",
    "NeighborSolicitation",
    "NeighborAdvertisement",
    "RedirectMessage",
    "RouterRenumbering",
    "ICMPNodeInformationQuery",
    "ICMPNodeInformationResponse",
    "InverseNeighborDiscoverySolicitation",
    "InverseNeighborDiscoveryAdvertisement",
    "HomeAgentAddressDiscoveryRequest",
    "HomeAgentAddressDiscoveryReply",
    "MobilePrefixSolicitation",
    "MobilePrefixAdvertisement",
    "DuplicateAddressRequestCodeSuffix",
    "DuplicateAddressConfirmationCodeSuffix",
];

/// Checks a label selector the way the agent does after turning keys into its internal form.
fn lint_selector(sel: &EndpointSelector, path: &FieldPath<'_>) -> Result<(), LintError> {
    let labels = at(path, "matchLabels");
    let p = |key: &str| format!("{labels}[\"{key}\"]");
    for (key, value) in sel.match_labels.iter().flatten() {
        check_selector_key(key).or_else(|m| fail(p(key), m))?;
        if !crate::core::labels::is_label_value(value) {
            return fail(p(key), label_value_message(value));
        }
    }
    let expressions = at(path, "matchExpressions");
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = idx(&expressions, i);
        check_selector_key(&req.key).or_else(|m| fail(at(&p, "key"), m))?;
        let values = req.values.as_deref().unwrap_or(&[]);
        match req.operator {
            SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                return fail(
                    at(&p, "values"),
                    "In and NotIn need at least one value (Cilium rejects the selector otherwise)",
                );
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => {
                return fail(
                    at(&p, "values"),
                    "Exists and DoesNotExist take no values; remove them",
                );
            }
            _ => {}
        }
        if let Some(v) = values
            .iter()
            .find(|v| !crate::core::labels::is_label_value(v))
        {
            return fail(at(&p, "values"), label_value_message(v));
        }
    }
    Ok(())
}

fn label_value_message(value: &str) -> String {
    format!(
        "'{value}' is not a label value (at most 63 letters, digits, '-', '_' or '.', starting \
         and ending with a letter or digit)"
    )
}

/// A selector key is `[source:]key`; Cilium turns it into `source.key` (source `any` when
/// omitted) and validates that as a Kubernetes qualified name.
fn check_selector_key(key: &str) -> Result<(), String> {
    let (source, rest) = match key.strip_prefix('$') {
        Some(rest) => ("reserved", rest),
        None => key.split_once(':').unwrap_or(("any", key)),
    };
    let extended = format!("{source}.{rest}");
    if rest.is_empty() || key.contains('=') || !is_qualified_name(&extended) {
        return Err(format!(
            "'{key}' is not a valid label key: write [source:]name with an optional DNS-name \
             prefix, e.g. app, app.kubernetes.io/name or k8s:io.kubernetes.pod.namespace"
        ));
    }
    Ok(())
}

/// Kubernetes qualified name: optional `prefix/` (a DNS subdomain) and a name of at most 63
/// alphanumerics with `-`, `_`, `.` inside.
fn is_qualified_name(text: &str) -> bool {
    let (prefix, name) = match text.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, text),
    };
    prefix.is_none_or(is_dns_subdomain)
        && !name.is_empty()
        && crate::core::labels::is_label_value(name)
}

/// RFC 1123 subdomain: lowercase alphanumerics, `-` and `.`, at most 253 characters.
fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Rules every Cilium agent and the CRD accept; each must survive the round trip unchanged.
    fn good_rules() -> Vec<Value> {
        vec![
            json!({"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "databases", "db": "postgres-main"}}],
                   "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}]}),
            json!({"toFQDNs": [{"matchName": "api.example.com"}, {"matchPattern": "*.s3.amazonaws.com"}],
                   "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}),
            json!({"toCIDRSet": [{"cidr": "10.20.0.0/16", "except": ["10.20.5.0/24"]}]}),
            json!({"toCIDR": ["192.0.2.10/32", "2001:db8::/32"]}),
            json!({"toEntities": ["world"], "toPorts": [{"ports": [{"port": "443"}]}]}),
            json!({"toPorts": [{"ports": [{"port": "9000", "endPort": 9010, "protocol": "ANY"}]}]}),
            json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "In", "values": ["kafka"]}]}],
                   "toPorts": [{"ports": [{"port": "9092", "protocol": "TCP"}],
                                "rules": {"kafka": [{"role": "consume", "topic": "events"}]}}]}),
            json!({"toFQDNs": [{"matchName": "api.example.com"}],
                   "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}],
                                "terminatingTLS": {"secret": {"name": "tls"}},
                                "originatingTLS": {"secret": {"name": "ca"}, "trustedCA": "ca.crt"},
                                "serverNames": ["api.example.com"],
                                "rules": {"http": [{"method": "GET", "path": "/v1/.*"}]}}]}),
            json!({"toServices": [{"k8sService": {"serviceName": "vault", "namespace": "secrets"}}],
                   "toPorts": [{"ports": [{"port": "8200", "protocol": "TCP"}]}]}),
            json!({"toEntities": ["cluster"], "icmps": [{"fields": [{"type": 8}, {"type": "EchoRequest", "family": "IPv6"}]}]}),
            json!({"toCIDRSet": [{"cidrGroupRef": "partner-networks"}], "authentication": {"mode": "required"}}),
            json!({"toEndpoints": [{}], "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}], "rules": {"dns": [{"matchPattern": "*"}]}}]}),
        ]
    }

    #[test]
    fn accepts_and_round_trips_good_rules() {
        for rule in good_rules() {
            assert_eq!(lint_egress_rule(&rule), Ok(()), "{rule}");
            let parsed = parse_egress_rule(&rule).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), rule, "round trip");
        }
    }

    /// (rule, path of the error, a word the message must contain)
    fn bad_rules() -> Vec<(Value, &'static str, &'static str)> {
        vec![
            (json!("toEndpoints"), "", "mapping"),
            (json!({"toEndpoint": []}), "toEndpoint", "unknown field"),
            (
                json!({"toPorts": [{"ports": [{"port": "80", "proto": "TCP"}]}]}),
                "toPorts[0].ports[0].proto",
                "unknown field",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": 5432}]}]}),
                "toPorts[0].ports[0].port",
                "\"5432\"",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "5432", "protocol": "tcp"}]}]}),
                "toPorts[0].ports[0].protocol",
                "TCP",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "112", "protocol": "VRRP"}]}]}),
                "toPorts[0].ports[0].protocol",
                "extended",
            ),
            (json!({"toEntities": ["wrld"]}), "toEntities[0]", "world"),
            (
                json!({"toEntities": ["world-ipv4"]}),
                "toEntities[0]",
                "unknown variant",
            ),
            (json!({"toCIDR": ["10.0.0.1"]}), "toCIDR[0]", "/32"),
            (
                json!({"toCIDR": ["10.0.0.0/33"]}),
                "toCIDR[0]",
                "more than 32",
            ),
            (
                json!({"toCIDR": ["10.0.0.0/08"]}),
                "toCIDR[0]",
                "leading zeros",
            ),
            (
                json!({"toCIDR": ["10.0.0.300/8"]}),
                "toCIDR[0]",
                "not an IP",
            ),
            (
                json!({"toCIDRSet": [{"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}]}),
                "toCIDRSet[0].except[0]",
                "not inside",
            ),
            (
                json!({"toCIDRSet": [{"cidr": "10.0.0.0/16", "cidrGroupRef": "x"}]}),
                "toCIDRSet[0]",
                "exactly one",
            ),
            (
                json!({"toFQDNs": [{"matchName": "a.com"}], "toEndpoints": [{}]}),
                "toFQDNs",
                "toFQDNs",
            ),
            (
                json!({"toCIDR": ["10.0.0.0/8"], "toEntities": ["world"]}),
                "toEntities",
                "cannot be combined",
            ),
            (
                json!({"toFQDNs": [{"matchName": "a.com", "matchPattern": "*.a.com"}]}),
                "toFQDNs[0]",
                "exactly one",
            ),
            (
                json!({"toFQDNs": [{"matchName": "*.a.com"}]}),
                "toFQDNs[0].matchName",
                "matchPattern",
            ),
            (json!({}), "", "allowing nothing"),
            (
                json!({"authentication": {"mode": "required"}}),
                "",
                "allowing nothing",
            ),
            (
                json!({"toEndpoints": [{}], "toPorts": [{}]}),
                "toPorts[0].ports",
                "every port",
            ),
            (
                json!({"toPorts": [{"ports": [{"protocol": "TCP"}]}]}),
                "toPorts[0].ports[0].port",
                "required",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "0"}]}]}),
                "toPorts[0].ports[0].port",
                "every port",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "65536"}]}]}),
                "toPorts[0].ports[0].port",
                "1-65535",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "0053"}]}]}),
                "toPorts[0].ports[0].port",
                "octal",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "http"}]}]}),
                "toPorts[0].ports[0].port",
                "named ports",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "9000", "endPort": 8000}]}]}),
                "toPorts[0].ports[0].endPort",
                "leave endPort out",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "9000", "endPort": 70000}]}]}),
                "toPorts[0].ports[0].endPort",
                "65535",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "53", "endPort": 54}], "rules": {"dns": [{"matchPattern": "*"}]}}]}),
                "toPorts[0].ports[0].endPort",
                "ranges",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "80"}], "rules": {"http": [{}]}}]}),
                "toPorts[0].ports[0].protocol",
                "TCP",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}], "rules": {}}]}),
                "toPorts[0].rules",
                "exactly one",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}], "rules": {"http": [{}], "dns": []}}]}),
                "toPorts[0].rules",
                "exactly one",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": ["a.com"], "rules": {"http": [{}]}}]}),
                "toPorts[0].serverNames",
                "terminatingTLS",
            ),
            (
                json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "listener": {"name": "l", "envoyConfig": {"name": "e"}}, "rules": {"http": [{}]}}]}),
                "toPorts[0].listener",
                "L7",
            ),
            (
                json!({"toEntities": ["world"], "icmps": [{"fields": [{"type": 8}]}], "toPorts": [{"ports": [{"port": "1"}]}]}),
                "icmps",
                "two rules",
            ),
            (
                json!({"icmps": [{"fields": [{"type": 300}]}]}),
                "icmps[0].fields[0].type",
                "0-255",
            ),
            (
                json!({"toEndpoints": [{"matchLabels": {"app": "x"}}], "toRequires": [{"matchLabels": {"env": "prod"}}]}),
                "toRequires",
                "deprecated",
            ),
            (
                json!({"toNodes": [{"matchLabels": {"role": "gw"}}]}),
                "toNodes",
                "enable-node-selector-labels",
            ),
            (
                json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "In"}]}]}),
                "toEndpoints[0].matchExpressions[0].values",
                "at least one value",
            ),
            (
                json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]}]}),
                "toEndpoints[0].matchExpressions[0].values",
                "no values",
            ),
            (
                json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "in", "values": ["a"]}]}]}),
                "toEndpoints[0].matchExpressions[0].operator",
                "In",
            ),
            (
                json!({"toEndpoints": [{"matchLabels": {"Bad.Prefix/app": "x"}}]}),
                "toEndpoints[0].matchLabels[\"Bad.Prefix/app\"]",
                "label key",
            ),
            (
                json!({"toEndpoints": [{"matchLabels": {"app": "not valid"}}]}),
                "toEndpoints[0].matchLabels[\"app\"]",
                "label value",
            ),
        ]
    }

    #[test]
    fn rejects_bad_rules_naming_the_field() {
        for (rule, path, word) in bad_rules() {
            let err = lint_egress_rule(&rule).expect_err(&rule.to_string());
            assert_eq!(err.path, path, "{rule}: {err}");
            assert!(
                err.message.contains(word),
                "{rule}: {err} should mention {word:?}"
            );
        }
    }

    #[test]
    fn dns_selectors_outside_rules_are_checked_like_to_fqdns_entries() {
        assert_eq!(
            checked_fqdn_selector(&json!({"matchName": "api.example.com"})),
            Ok(FqdnSelector::name("api.example.com"))
        );
        assert_eq!(
            checked_fqdn_selector(&json!({"matchPattern": "**.example.com"})),
            Ok(FqdnSelector::pattern("**.example.com"))
        );
        for (bad, path) in [
            (json!({"matchName": "*.example.com"}), "matchName"),
            (json!({"matchPattern": "a b"}), "matchPattern"),
            (json!({"matchName": "a.com", "matchPattern": "*.a.com"}), ""),
            (json!({"matchNames": "a.com"}), "matchNames"),
            (json!(["a.com"]), ""),
        ] {
            let err = checked_fqdn_selector(&bad).unwrap_err();
            assert_eq!(err.path, path, "{bad}: {err}");
        }
    }

    #[test]
    fn only_patterns_of_stars_match_every_name() {
        for every in ["*", "**", "**.", "***."] {
            assert!(FqdnSelector::pattern(every).matches_every_name(), "{every}");
        }
        for some in ["*.com", "**.cluster.local", "a*", "."] {
            assert!(!FqdnSelector::pattern(some).matches_every_name(), "{some}");
        }
        assert!(!FqdnSelector::name("example.com").matches_every_name());
    }

    #[test]
    fn error_display_puts_the_path_first() {
        let err = lint_egress_rule(&json!({"toPorts": [{"ports": [{"port": 80}]}]})).unwrap_err();
        assert!(
            err.to_string().starts_with("toPorts[0].ports[0].port: "),
            "{err}"
        );
    }

    #[test]
    fn parses_cidrs_like_the_agent() {
        for good in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "::/0",
            "2001:db8::1/128",
        ] {
            assert!(parse_cidr(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "010.0.0.0/8",
            "::/129",
            "x/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains(&parse_cidr("10.9.0.0/16").unwrap()));
        assert!(!net.contains(&parse_cidr("11.0.0.0/16").unwrap()));
        assert!(!net.contains(&parse_cidr("0.0.0.0/0").unwrap()));
        assert!(!net.contains(&parse_cidr("::/64").unwrap()));
    }

    fn mk_policy(egress: Vec<Value>) -> CiliumNetworkPolicy {
        CiliumNetworkPolicy {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            specs: vec![Rule {
                endpoint_selector: Some(EndpointSelector::labels([("app", "x")])),
                egress: egress
                    .iter()
                    .map(|r| parse_egress_rule(r).unwrap())
                    .collect(),
                ..Rule::default()
            }],
        }
    }

    #[test]
    fn fqdn_rules_need_a_dns_rule_in_the_same_rule() {
        let fqdn = json!({"toFQDNs": [{"matchName": "api.example.com"}],
                          "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]});
        let dns = json!({"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}],
                         "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}], "rules": {"dns": [{"matchPattern": "*"}]}}]});
        let plain_dns = json!({"toEndpoints": [{"matchLabels": {"k8s-app": "kube-dns"}}],
                               "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}]});
        assert_eq!(
            lint_policy(&mk_policy(vec![dns.clone(), fqdn.clone()])),
            Ok(())
        );
        let err = lint_policy(&mk_policy(vec![plain_dns, fqdn.clone()])).unwrap_err();
        assert_eq!(err.path, "specs[0].egress[1]");
        assert!(err.message.contains("rules.dns"), "{err}");
        assert!(lint_policy(&mk_policy(vec![fqdn])).is_err());
    }

    #[test]
    fn policy_lint_checks_every_rule_and_the_shape() {
        let bad = json!({"toPorts": [{"ports": [{"port": "0"}]}]});
        let err = lint_policy(&mk_policy(vec![bad])).unwrap_err();
        assert_eq!(err.path, "specs[0].egress[0].toPorts[0].ports[0].port");

        let mut no_selector = mk_policy(vec![json!({"toEntities": ["world"]})]);
        no_selector.specs[0].endpoint_selector = None;
        assert!(
            lint_policy(&no_selector)
                .unwrap_err()
                .message
                .contains("endpointSelector")
        );

        let mut empty = mk_policy(vec![]);
        assert!(
            lint_policy(&empty)
                .unwrap_err()
                .message
                .contains("at least one")
        );
        empty.specs.clear();
        assert_eq!(lint_policy(&empty).unwrap_err().path, "specs");

        let mut unnamed = mk_policy(vec![json!({"toEntities": ["world"]})]);
        unnamed.metadata.name = None;
        assert_eq!(lint_policy(&unnamed).unwrap_err().path, "metadata.name");
    }

    #[test]
    fn policies_read_back_from_the_api_parse() {
        let cnp = json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]},
            "status": {"conditions": []}
        });
        let parsed: CiliumNetworkPolicy = serde_json::from_value(cnp).unwrap();
        assert_eq!(parsed.rules().count(), 1);
        assert_eq!(lint_policy(&parsed), Ok(()));
    }
}
