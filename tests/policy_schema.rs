//! Rendered policies against the real Cilium CRD schema, and the lint against the same schema.
//!
//! The schema is upstream's `ciliumnetworkpolicies.yaml` (version v2, `openAPIV3Schema`), found
//! through `SPARKWARD_UPSTREAM_DIR` (default `../shared`). Without it the tests say they were
//! skipped, unless `SPARKWARD_REQUIRE_UPSTREAM=1` (CI), where that is a failure.
//!
//! The schema is made to reject unknown fields (`additionalProperties: false` on every object
//! with properties): the real API server would prune them silently, which would silently change
//! the policy, so for sparkward an unknown field is as wrong as a wrong type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::{Value, json};
use sparkward::config::Config;
use sparkward::core::cilium::{self, lint_egress_rule};
use sparkward::core::policy::{PolicyInput, render_policy};

// --- schema loading: small and local on purpose; tests/support/ will replace it -------------

fn upstream_dir() -> PathBuf {
    std::env::var_os("SPARKWARD_UPSTREAM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// The CNP v2 validator, or `None` (after saying so) when the upstream files are absent.
fn cnp_validator() -> Option<jsonschema::Validator> {
    let path = upstream_dir().join("schemas/ciliumnetworkpolicies.yaml");
    if !path.exists() {
        let msg = format!(
            "skipped: upstream CRD schemas not found at {}; run scripts/fetch-upstream",
            path.display()
        );
        if std::env::var("SPARKWARD_REQUIRE_UPSTREAM").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        println!("{msg}");
        return None;
    }
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut schema = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v2")
        .expect("CRD has version v2")["schema"]["openAPIV3Schema"]
        .clone();
    to_strict_json_schema(&mut schema);
    Some(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            // The formats the API server checks for CRDs that matter here; idn-hostname is not
            // one of them (kube-openapi ignores it), so neither do we.
            .with_format("cidr", is_go_cidr)
            .with_format("idn-hostname", |_: &str| true)
            .build(&schema)
            .unwrap(),
    )
}

/// OpenAPI v3 → JSON Schema: `nullable: true` becomes a `null` type, and objects with
/// `properties` reject other keys unless `x-kubernetes-preserve-unknown-fields` is set.
fn to_strict_json_schema(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    if obj.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(t)) = obj.get("type").cloned()
    {
        obj.insert("type".into(), json!([t, "null"]));
    }
    // Go's RE2 `\PC` (no control or other category-C characters) is not ECMA-262, which the
    // validator checks patterns against; approximate it by the control characters. Only
    // `spec.log.value` uses it, which sparkward never writes.
    if let Some(Value::String(p)) = obj.get_mut("pattern") {
        *p = p.replace("\\PC", "[^\\x00-\\x1f\\x7f-\\x9f]");
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.get("type") == Some(&json!("object"))
        && obj.contains_key("properties")
        && !obj.contains_key("additionalProperties")
        && !preserve
    {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(to_strict_json_schema);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = obj.get_mut(key) {
            to_strict_json_schema(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            list.iter_mut().for_each(to_strict_json_schema);
        }
    }
}

/// Go's `net.ParseCIDR`, which the API server uses for `format: cidr`: an address (no leading
/// zeros, no zone) and a decimal prefix length that may have leading zeros.
fn is_go_cidr(text: &str) -> bool {
    let Some((addr, bits)) = text.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

fn schema_errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

// --- rendered policies -----------------------------------------------------------------------

const CONFIG: &str = r#"
policy:
  dns: { namespace: kube-system, matchLabels: { k8s-app: kube-dns } }
  scopes:
    data:read:postgres-main:
      - toEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": databases, db: postgres-main } }]
        toPorts: [{ ports: [{ port: "5432", protocol: TCP }] }]
    api:partner:
      - toFQDNs: [{ matchName: api.partner.example }, { matchPattern: "*.cdn.partner.example" }]
        toPorts: [{ ports: [{ port: "443", protocol: TCP }] }]
    net:onprem:
      - toCIDRSet: [{ cidr: 10.40.0.0/16, except: [10.40.9.0/24] }]
        toPorts: [{ ports: [{ port: "8443", protocol: TCP }, { port: "9000", endPort: 9100, protocol: TCP }] }]
    net:internet:
      - toEntities: [world]
        toPorts: [{ ports: [{ port: "443", protocol: TCP }] }]
    stream:events:
      - toEndpoints: [{ matchExpressions: [{ key: app, operator: In, values: [kafka] }], matchLabels: { "k8s:io.kubernetes.pod.namespace": kafka } }]
        toPorts: [{ ports: [{ port: "9092", protocol: TCP }], rules: { kafka: [{ role: consume, topic: events }] } }]
    net:ping:
      - toEntities: [cluster]
        icmps: [{ fields: [{ type: 8 }, { type: EchoRequest, family: IPv6 }] }]
"#;

#[test]
fn rendered_policies_validate_against_the_crd_schema() {
    let Some(validator) = cnp_validator() else {
        return;
    };
    let mut cfg = Config::from_yaml(CONFIG).unwrap().policy;
    let all: Vec<String> = cfg.scopes.keys().cloned().collect();
    let cases: Vec<Vec<String>> = vec![
        vec![],
        vec!["data:read:postgres-main".into()],
        vec!["api:partner".into()],
        vec!["net:onprem".into()],
        vec!["net:internet".into(), "unmapped".into()],
        all,
    ];
    let mut checked = 0;
    for driver in [true, false] {
        cfg.driver_to_api_server = driver;
        for scopes in &cases {
            let input = PolicyInput {
                job_id: "sj-abcdefghijklmnopqrst",
                namespace: "team-a",
                user_label: "alice-example.com-1a2b3c4d",
                scopes,
            };
            let rendered = render_policy(&input, &cfg).unwrap();
            let doc = serde_json::to_value(&rendered.policy).unwrap();
            let errors = schema_errors(&validator, &doc);
            assert!(errors.is_empty(), "{scopes:?}: {errors:#?}\n{doc:#}");
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

#[test]
fn the_strict_schema_rejects_unknown_fields() {
    let Some(validator) = cnp_validator() else {
        return;
    };
    let cfg = Config::from_yaml(CONFIG).unwrap().policy;
    let scopes = vec!["net:internet".to_string()];
    let input = PolicyInput {
        job_id: "sj-abcdefghijklmnopqrst",
        namespace: "team-a",
        user_label: "alice",
        scopes: &scopes,
    };
    let mut doc = serde_json::to_value(render_policy(&input, &cfg).unwrap().policy).unwrap();
    doc["specs"][0]["egress"][2]["toPort"] = json!([]);
    let errors = schema_errors(&validator, &doc);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/specs/0/egress/2") && e.contains("toPort")),
        "{errors:#?}"
    );
}

// --- the lint and the schema agree -------------------------------------------------------------

/// What the lint and the schema should say about one egress rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Both accept.
    Good,
    /// Both reject.
    Bad,
    /// The schema accepts but the lint rejects: something every Cilium agent rejects (the
    /// whole policy would not be imported) or sparkward's own contract. The reason says which.
    LintOnly(&'static str),
}
use Verdict::{Bad, Good, LintOnly};

fn corpus() -> Vec<(Value, Verdict)> {
    let tcp = |port: &str| json!({"ports": [{"port": port, "protocol": "TCP"}]});
    vec![
        // Accepted by both.
        (
            json!({"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "databases", "db": "postgres-main"}}], "toPorts": [tcp("5432")]}),
            Good,
        ),
        (
            json!({"toFQDNs": [{"matchName": "api.example.com"}, {"matchPattern": "*.example.com"}], "toPorts": [tcp("443")]}),
            Good,
        ),
        (
            json!({"toCIDRSet": [{"cidr": "10.20.0.0/16", "except": ["10.20.5.0/24"]}]}),
            Good,
        ),
        (
            json!({"toCIDRSet": [{"cidrGroupRef": "partner-networks"}], "toPorts": [tcp("443")]}),
            Good,
        ),
        (json!({"toCIDR": ["192.0.2.10/32", "2001:db8::/32"]}), Good),
        (
            json!({"toEntities": ["world"], "toPorts": [tcp("443")]}),
            Good,
        ),
        (json!({"toEntities": ["kube-apiserver"]}), Good),
        (
            json!({"toPorts": [{"ports": [{"port": "9000", "endPort": 9100}]}]}),
            Good,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "8472", "protocol": "UDP"}, {"port": "3868", "protocol": "SCTP"}, {"port": "1", "protocol": "ANY"}]}]}),
            Good,
        ),
        (
            json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "In", "values": ["kafka"]}]}], "toPorts": [{"ports": [{"port": "9092", "protocol": "TCP"}], "rules": {"kafka": [{"role": "produce", "topic": "t"}]}}]}),
            Good,
        ),
        (
            json!({"toFQDNs": [{"matchName": "api.example.com"}], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "terminatingTLS": {"secret": {"name": "t"}}, "originatingTLS": {"secret": {"name": "o", "namespace": "n"}}, "serverNames": ["api.example.com"], "rules": {"http": [{"method": "GET", "path": "/v1/.*", "headerMatches": [{"name": "x-team", "value": "a"}]}]}}]}),
            Good,
        ),
        (
            json!({"toEndpoints": [{}], "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}]}),
            Good,
        ),
        (
            json!({"toServices": [{"k8sService": {"serviceName": "vault", "namespace": "secrets"}}], "toPorts": [tcp("8200")]}),
            Good,
        ),
        (
            json!({"toServices": [{"k8sServiceSelector": {"selector": {"matchLabels": {"app": "vault"}}}}]}),
            Good,
        ),
        (
            json!({"toEntities": ["cluster"], "icmps": [{"fields": [{"type": 8}, {"type": "EchoRequest", "family": "IPv6"}, {"type": "255"}]}]}),
            Good,
        ),
        (
            json!({"toEndpoints": [{"matchLabels": {"app": "x"}}], "authentication": {"mode": "required"}}),
            Good,
        ),
        (
            json!({"toGroups": [{"aws": {"securityGroupsIds": ["sg-1"], "region": "eu-west-1"}}]}),
            Good,
        ),
        (
            json!({"toFQDNs": [{"matchName": "a.example"}], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "listener": {"name": "l", "envoyConfig": {"name": "e", "kind": "CiliumEnvoyConfig"}, "priority": 10}}]}),
            Good,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}], "rules": {"l7proto": "binaryproto", "l7": [{"cmd": "READ"}]}}]}),
            Good,
        ),
        // Rejected by both.
        (json!("toEndpoints"), Bad),
        (json!({"toEndpoint": [{}]}), Bad),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "proto": "TCP"}]}]}),
            Bad,
        ),
        (json!({"toPorts": [{"port": "80"}]}), Bad),
        (json!({"toPorts": [{"ports": [{"port": 5432}]}]}), Bad),
        (json!({"toPorts": [{"ports": [{"port": ""}]}]}), Bad),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "protocol": "tcp"}]}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "protocol": "ICMP"}]}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "endPort": 70000}]}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "endPort": "90"}]}]}),
            Bad,
        ),
        (json!({"toEntities": ["wrld"]}), Bad),
        (json!({"toEntities": ["world-ipv4"]}), Bad),
        (json!({"toCIDR": ["10.0.0.1"]}), Bad),
        (json!({"toCIDR": ["10.0.0.0/33"]}), Bad),
        (json!({"toCIDR": ["10.0.0.300/8"]}), Bad),
        (json!({"toCIDR": ["010.0.0.0/8"]}), Bad),
        (
            json!({"toCIDRSet": [{"cidr": "10.0.0.0/16", "cidrGroupRef": "g"}]}),
            Bad,
        ),
        (json!({"toCIDRSet": [{}]}), Bad),
        (json!({"toCIDRSet": [{"cidrGroupRef": "Bad_Name"}]}), Bad),
        (
            json!({"toCIDRSet": [{"cidr": "10.0.0.0/16", "except": ["10.0.1.0"]}]}),
            Bad,
        ),
        (
            json!({"toFQDNs": [{"matchName": "a.com", "matchPattern": "*.a.com"}]}),
            Bad,
        ),
        (json!({"toFQDNs": [{"matchName": "*.a.com"}]}), Bad),
        (json!({"toFQDNs": [{}]}), Bad),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}], "rules": {}}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}], "rules": {"http": [{}], "dns": [{"matchPattern": "*"}]}}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}], "rules": {"l7": [{"a": "b"}]}}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": []}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "terminatingTLS": {"trustedCA": "ca.crt"}}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "listener": {"name": "l", "envoyConfig": {"name": "e"}, "priority": 101}}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "9092", "protocol": "TCP"}], "rules": {"kafka": [{"role": "read"}]}}]}),
            Bad,
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}], "rules": {"http": [{"headerMatches": [{"name": "x", "mismatch": "DROP"}]}]}}]}),
            Bad,
        ),
        (
            json!({"toEntities": ["world"], "icmps": [{"fields": [{"type": "Foo"}]}]}),
            Bad,
        ),
        (
            json!({"toEntities": ["world"], "icmps": [{"fields": [{"type": 8, "family": "IPv5"}]}]}),
            Bad,
        ),
        (
            json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "in", "values": ["a"]}]}]}),
            Bad,
        ),
        (
            json!({"toEndpoints": [{"matchLabels": {"app": "not valid"}}]}),
            Bad,
        ),
        (
            json!({"toEndpoints": [{"matchLabels": {"app": "x"}}], "authentication": {"mode": "always"}}),
            Bad,
        ),
        // Accepted by the schema, rejected by every Cilium agent (the policy would not be
        // imported at all, leaving the job without allow rules).
        (
            json!({"toFQDNs": [{"matchName": "a.com"}], "toEndpoints": [{}]}),
            LintOnly("agent: one peer selector per rule"),
        ),
        (
            json!({"toCIDR": ["10.0.0.0/8"], "toEntities": ["world"]}),
            LintOnly("agent: one peer selector per rule"),
        ),
        (
            json!({"toPorts": [{"ports": [{"protocol": "TCP"}]}]}),
            LintOnly("agent: port must be specified"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "0053"}]}]}),
            LintOnly("agent: leading zero parses as octal"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "08"}]}]}),
            LintOnly("agent: invalid octal"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "65536"}]}]}),
            LintOnly("agent: 16-bit overflow; the CRD pattern is unanchored"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "53", "endPort": 54}], "rules": {"dns": [{"matchPattern": "*"}]}}]}),
            LintOnly("agent: DNS rules take no port ranges"),
        ),
        (
            json!({"toPorts": [{"rules": {"dns": [{"matchPattern": "*"}]}}]}),
            LintOnly("agent: DNS rules need port 53"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "112", "protocol": "VRRP"}]}]}),
            LintOnly("agent: VRRP needs --enable-extended-ip-protocols and no port"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80"}], "rules": {"http": [{}]}}]}),
            LintOnly("agent: L7 rules only on TCP"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "serverNames": ["a.com"], "rules": {"http": [{}]}}]}),
            LintOnly("agent: serverNames with L7 need terminatingTLS"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}], "listener": {"name": "l", "envoyConfig": {"name": "e"}}, "rules": {"http": [{}]}}]}),
            LintOnly("agent: listener with L7 rules"),
        ),
        (
            json!({"toEntities": ["world"], "icmps": [{"fields": [{"type": 8}]}], "toPorts": [tcp("80")]}),
            LintOnly("agent: icmps with toPorts"),
        ),
        (
            json!({"toEntities": ["world"], "icmps": [{"fields": [{"type": 300}]}]}),
            LintOnly("agent: ICMP type is 8 bits; the schema bounds only strings"),
        ),
        (
            json!({"toNodes": [{"matchLabels": {"role": "gw"}}]}),
            LintOnly("agent: toNodes needs --enable-node-selector-labels"),
        ),
        (
            json!({"toCIDR": ["10.0.0.0/08"]}),
            LintOnly("agent: netip.ParsePrefix rejects leading zeros in the length"),
        ),
        (
            json!({"toCIDRSet": [{"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}]}),
            LintOnly("agent: except outside cidr"),
        ),
        (
            json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "In"}]}]}),
            LintOnly("agent: In without values"),
        ),
        (
            json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]}]}),
            LintOnly("agent: Exists with values"),
        ),
        (
            json!({"toEndpoints": [{"matchExpressions": [{"key": "app", "operator": "In", "values": ["not valid"]}]}]}),
            LintOnly("agent: invalid label value in expression"),
        ),
        (
            json!({"toEndpoints": [{"matchLabels": {"Bad.Prefix/app": "x"}}]}),
            LintOnly("agent: invalid label key"),
        ),
        // Accepted by the schema and the agent, rejected by sparkward's contract.
        (
            json!({}),
            LintOnly("sparkward: an empty rule allows nothing"),
        ),
        (
            json!({"authentication": {"mode": "required"}}),
            LintOnly("sparkward: no peer and no port allows nothing"),
        ),
        (
            json!({"toEndpoints": [{}], "toPorts": [{}]}),
            LintOnly("sparkward: toPorts without ports opens every port"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "0"}]}]}),
            LintOnly("sparkward: port 0 is every port"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "http"}]}]}),
            LintOnly("sparkward: named ports"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80abc"}]}]}),
            LintOnly("sparkward: named port (unanchored CRD pattern)"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "9000", "endPort": 8000}]}]}),
            LintOnly("sparkward: endPort below port"),
        ),
        (
            json!({"toPorts": [{"ports": [{"port": "80", "endPort": 0}]}]}),
            LintOnly("sparkward: endPort 0"),
        ),
        (
            json!({"toEndpoints": [{"matchLabels": {"app": "x"}}], "toRequires": [{"matchLabels": {"env": "prod"}}]}),
            LintOnly("sparkward: toRequires is deprecated and crosses scopes"),
        ),
    ]
}

fn in_policy(rule: &Value) -> Value {
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "specs": [{"endpointSelector": {}, "egress": [rule]}]
    })
}

#[test]
fn lint_and_schema_agree_except_on_agent_side_rules() {
    let Some(validator) = cnp_validator() else {
        return;
    };
    let mut mismatches = Vec::new();
    for (rule, want) in corpus() {
        let schema = schema_errors(&validator, &in_policy(&rule));
        let lint = lint_egress_rule(&rule);
        let got = match (schema.is_empty(), &lint) {
            (true, Ok(())) => Some(Good),
            (false, Err(_)) => Some(Bad),
            (true, Err(_)) => match want {
                LintOnly(_) => Some(want),
                _ => None,
            },
            // The lint must never accept what the schema rejects.
            (false, Ok(())) => None,
        };
        if got != Some(want) {
            mismatches.push(format!(
                "{rule}\n  want {want:?}; schema: {schema:?}; lint: {lint:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn lint_rejections_name_a_field_and_a_fix() {
    // Every LintOnly case must explain itself: a path (or the whole rule) and a message long
    // enough to say what to write instead.
    for (rule, want) in corpus() {
        if let LintOnly(_) = want {
            let err = lint_egress_rule(&rule).unwrap_err();
            assert!(err.message.len() > 40, "{rule}: {err}");
        }
    }
    let err = lint_egress_rule(&json!({"toPorts": [{"ports": [{"port": "80", "proto": "TCP"}]}]}))
        .unwrap_err();
    assert_eq!(err.path, "toPorts[0].ports[0].proto");
    assert!(
        err.message.contains("protocol"),
        "lists the valid keys: {err}"
    );
    assert!(cilium::parse_egress_rule(&json!({"toEntities": ["world"]})).is_ok());
}
