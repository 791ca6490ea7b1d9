//! Rendering a job's CiliumNetworkPolicy from its granted scopes (DESIGN.md, "The CNP").
//!
//! Pure: the same input and configuration always give the same policy, byte for byte once
//! serialised (scopes are sorted and de-duplicated, maps are `BTreeMap`s), and nothing here
//! touches the network. Applying the policy is `k8s::policy`'s job.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::{PolicyConfig, UnknownScopes};
use crate::core::cilium::{
    self, CiliumNetworkPolicy, EgressRule, EndpointSelector, Entity, FqdnSelector, IngressRule,
    L7Rules, LintError, POD_NAMESPACE_LABEL, PortProtocol, PortRule, Protocol, Rule,
};
use crate::core::labels::{
    JOB_ID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SPARK_ROLE_LABEL, USER_LABEL, is_label_value,
    policy_name,
};

/// What the policy is rendered from: the admitted job and the scopes its token granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyInput<'a> {
    pub job_id: &'a str,
    pub namespace: &'a str,
    /// Label-safe user (`labels::user_label`, the injective scheme): the policy's
    /// `sparkward.io/user` label. Selection is by job id only, so a policy never depends on it.
    pub user_label: &'a str,
    /// Granted scopes as they came from the token, in any order, possibly repeated.
    pub scopes: &'a [String],
}

/// A rendered policy and what the admission answer should tell about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedPolicy {
    pub policy: CiliumNetworkPolicy,
    /// Granted scopes that contributed rules, sorted.
    pub mapped_scopes: Vec<String>,
    /// Granted scopes with no mapping, sorted (only non-empty under `unknownScopes: ignore`).
    pub unknown_scopes: Vec<String>,
    /// Messages for the kubectl user (admission `warnings`).
    pub warnings: Vec<String>,
}

/// Why no policy could be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "the token grants scopes that have no network rule in sparkward's policy.scopes: {}; \
         ask the security team to map them, or request a token without them",
        quoted(.0)
    )]
    UnknownScopes(Vec<String>),
    #[error("cannot render a policy: {field} '{value}' is not a valid label value")]
    InvalidInput { field: &'static str, value: String },
    #[error("the rendered policy {name} fails the Cilium lint: {error}")]
    Lint { name: String, error: LintError },
}

fn quoted(scopes: &[String]) -> String {
    scopes
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the job's policy: a job-wide rule (ingress from the job only; egress to the job,
/// to cluster DNS and to every rule of every granted, mapped scope, in scope-name order) and,
/// with `driverToApiServer`, a driver rule that reaches the Kubernetes API.
pub fn render_policy(
    input: &PolicyInput<'_>,
    cfg: &PolicyConfig,
) -> Result<RenderedPolicy, PolicyError> {
    for (field, value) in [
        ("job id", input.job_id),
        ("namespace", input.namespace),
        ("user label", input.user_label),
    ] {
        if value.is_empty() || !is_label_value(value) {
            return Err(PolicyError::InvalidInput {
                field,
                value: value.to_string(),
            });
        }
    }

    // Sorted and de-duplicated so the rule order does not depend on the token's scope order.
    let granted: BTreeSet<&str> = input
        .scopes
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let (mapped, unknown): (Vec<&str>, Vec<&str>) =
        granted.iter().partition(|s| cfg.scopes.contains_key(**s));
    let unknown: Vec<String> = unknown.into_iter().map(String::from).collect();
    if !unknown.is_empty() && cfg.unknown_scopes == UnknownScopes::Deny {
        return Err(PolicyError::UnknownScopes(unknown));
    }

    let job = EndpointSelector::labels([(JOB_ID_LABEL, input.job_id)]);
    let scope_rules: Vec<&EgressRule> = mapped
        .iter()
        .flat_map(|scope| cfg.scopes.get(*scope).into_iter().flatten())
        .collect();
    let mut egress = vec![
        EgressRule {
            to_endpoints: Some(vec![job.clone()]),
            ..EgressRule::default()
        },
        dns_rule(cfg, dns_allow_list(cfg, &scope_rules)),
    ];
    egress.extend(scope_rules.into_iter().cloned());

    let mut specs = vec![Rule {
        endpoint_selector: Some(job.clone()),
        ingress: vec![IngressRule {
            from_endpoints: Some(vec![job]),
            ..IngressRule::default()
        }],
        egress,
        description: Some(format!(
            "sparkward job {}: traffic within the job, cluster DNS and the granted scopes",
            input.job_id
        )),
        ..Rule::default()
    }];
    if cfg.driver_to_api_server {
        specs.push(Rule {
            endpoint_selector: Some(EndpointSelector::labels([
                (JOB_ID_LABEL, input.job_id),
                (SPARK_ROLE_LABEL, "driver"),
            ])),
            egress: vec![EgressRule {
                to_entities: Some(vec![Entity::KubeApiserver]),
                ..EgressRule::default()
            }],
            description: Some(format!(
                "sparkward job {}: the Spark driver creates its executors through the Kubernetes API",
                input.job_id
            )),
            ..Rule::default()
        });
    }

    let name = policy_name(input.job_id);
    let policy = CiliumNetworkPolicy {
        api_version: cilium::API_VERSION.to_string(),
        kind: cilium::KIND.to_string(),
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(input.namespace.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (JOB_ID_LABEL.to_string(), input.job_id.to_string()),
                (USER_LABEL.to_string(), input.user_label.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: None,
        specs,
    };
    // Scope rules were linted when the config loaded; this also guards configs built in code
    // and the rules sparkward adds itself.
    cilium::lint_policy(&policy).map_err(|error| PolicyError::Lint {
        name: name.clone(),
        error,
    })?;

    let warnings = unknown
        .iter()
        .map(|s| format!("scope '{s}' has no network rule mapped; it grants no network access"))
        .collect();
    Ok(RenderedPolicy {
        policy,
        mapped_scopes: mapped.into_iter().map(String::from).collect(),
        unknown_scopes: unknown,
        warnings,
    })
}

/// How many labels in front of the cluster domain the single-label patterns of
/// [`cluster_dns_selectors`] reach. With Kubernetes' `ndots:5`, a name with up to four dots
/// goes through the search list, whose deepest entry inside the cluster domain is
/// `<namespace>.svc.<domain>`: at most 5 + 2 labels. The cluster's own records are shallower
/// (`_port._proto.<service>.<namespace>.svc` has 5).
const CLUSTER_NAME_DEPTH: usize = 7;

/// The names below the cluster domain, as DNS patterns: every job may resolve them.
///
/// Cilium's DNS proxy answers a name no pattern allows with REFUSED (the agent's default
/// `--tofqdns-dns-reject-response-code`), and resolvers take REFUSED for a failure, not for
/// "no such name": they stop walking the search list there (musl gives up the lookup, glibc
/// does not try the remaining search domains). With `ndots:5` the expansions come first, so
/// they must be allowed or Spark's own names break: the driver's `kubernetes.default.svc` is
/// first asked as `kubernetes.default.svc.<ns>.svc.cluster.local`, an executor's
/// `<app>-driver-svc.<ns>.svc` as `<app>-driver-svc.<ns>.svc.<ns>.svc.cluster.local`, and an
/// external `api.example.com` as `api.example.com.<ns>.svc.cluster.local` (then below
/// `svc.cluster.local` and `cluster.local`) before `api.example.com` itself. Allowing the whole
/// cluster domain covers all of them. The cluster DNS answers those names itself (NXDOMAIN for
/// expansions that do not exist, after which the resolver moves on), so none of these queries
/// leaves the cluster and they cannot carry data out.
///
/// `*` in a Cilium pattern never crosses a dot. `**.` as a leading label matches any number
/// of labels since Cilium 1.19; older agents read it as a single label. The single-label
/// patterns for 2 to [`CLUSTER_NAME_DEPTH`] labels make the same names resolvable there.
pub fn cluster_dns_selectors(cluster_domain: &str) -> Vec<FqdnSelector> {
    let mut selectors = Vec::with_capacity(CLUSTER_NAME_DEPTH);
    selectors.push(FqdnSelector::pattern(format!("**.{cluster_domain}")));
    for depth in 2..=CLUSTER_NAME_DEPTH {
        selectors.push(FqdnSelector::pattern(format!(
            "{}{cluster_domain}",
            "*.".repeat(depth)
        )));
    }
    selectors
}

/// What the job may resolve: the cluster's names, `policy.dnsAllow`, and every `toFQDNs`
/// selector of its scope rules (a name it may connect to is a name it must be able to look
/// up), in that order without repeats. Nothing else: a job that could resolve any name could
/// send data out through the queries themselves (DNS tunnelling).
fn dns_allow_list(cfg: &PolicyConfig, scope_rules: &[&EgressRule]) -> Vec<FqdnSelector> {
    let mut allowed = cluster_dns_selectors(&cfg.cluster_domain);
    let scope_fqdns = scope_rules
        .iter()
        .flat_map(|rule| rule.to_fqdns.iter().flatten());
    for selector in cfg.dns_allow.iter().chain(scope_fqdns) {
        if !allowed.contains(selector) {
            allowed.push(selector.clone());
        }
    }
    allowed
}

/// Egress to the cluster DNS pods on 53/UDP and 53/TCP through Cilium's DNS proxy
/// (`rules.dns`), which lets the lookups in `allowed` through, refuses the rest, and teaches
/// `toFQDNs` rules the addresses it saw. The DNS pods live in another namespace, which a
/// namespaced policy must name with Cilium's namespace label.
fn dns_rule(cfg: &PolicyConfig, allowed: Vec<FqdnSelector>) -> EgressRule {
    let mut labels = cfg.dns_match_labels.clone();
    // The configured namespace wins over a namespace label in matchLabels.
    labels.insert(POD_NAMESPACE_LABEL.to_string(), cfg.dns_namespace.clone());
    EgressRule {
        to_endpoints: Some(vec![EndpointSelector {
            match_labels: Some(labels),
            match_expressions: None,
        }]),
        to_ports: Some(vec![PortRule {
            ports: Some(vec![
                PortProtocol::new(53, Protocol::Udp),
                PortProtocol::new(53, Protocol::Tcp),
            ]),
            rules: Some(L7Rules {
                dns: Some(allowed),
                ..L7Rules::default()
            }),
            ..PortRule::default()
        }]),
        ..EgressRule::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;

    const JOB: &str = "sj-abcdefghijklmnopqrst";

    fn rule(raw: Value) -> EgressRule {
        cilium::parse_egress_rule(&raw).unwrap()
    }

    fn mk_config(unknown_scopes: UnknownScopes) -> PolicyConfig {
        PolicyConfig {
            dns_namespace: "kube-system".into(),
            dns_match_labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
            driver_to_api_server: true,
            unknown_scopes,
            apply_timeout: Duration::from_secs(5),
            managers: vec![],
            cluster_domain: "cluster.local".into(),
            dns_allow: vec![],
            scopes: BTreeMap::from([
                (
                    "data:read:postgres-main".to_string(),
                    vec![rule(json!({
                        "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "databases", "db": "postgres-main"}}],
                        "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}]
                    }))],
                ),
                (
                    "stream:kafka".to_string(),
                    vec![rule(json!({
                        "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kafka", "app": "kafka"}}],
                        "toPorts": [{"ports": [{"port": "9092", "protocol": "TCP"}]}]
                    }))],
                ),
                (
                    "s3:read".to_string(),
                    vec![
                        rule(json!({"toFQDNs": [{"matchPattern": "*.s3.amazonaws.com"}],
                               "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]})),
                        rule(json!({"toCIDRSet": [{"cidr": "52.216.0.0/15"}],
                               "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]})),
                    ],
                ),
            ]),
        }
    }

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn mk_input<'a>(scopes: &'a [String]) -> PolicyInput<'a> {
        PolicyInput {
            job_id: JOB,
            namespace: "team-a",
            user_label: "alice",
            scopes,
        }
    }

    /// The cluster-domain patterns as they appear in a rendered DNS rule.
    fn cluster_patterns(domain: &str) -> Vec<Value> {
        let mut patterns = vec![json!({"matchPattern": format!("**.{domain}")})];
        let mut prefix = String::from("*.");
        for _ in 2..=7 {
            prefix.push_str("*.");
            patterns.push(json!({"matchPattern": format!("{prefix}{domain}")}));
        }
        patterns
    }

    /// The `rules.dns` list of the rendered job policy.
    fn dns_list(rendered: &RenderedPolicy) -> Vec<Value> {
        egress_json(rendered)[1]["toPorts"][0]["rules"]["dns"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn egress_json(rendered: &RenderedPolicy) -> Vec<Value> {
        rendered.policy.specs[0]
            .egress
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }

    #[test]
    fn renders_the_documented_shape() {
        let granted = scopes(&["data:read:postgres-main"]);
        let cfg = mk_config(UnknownScopes::Ignore);
        let out = render_policy(&mk_input(&granted), &cfg).unwrap();
        let doc = serde_json::to_value(&out.policy).unwrap();
        let job = json!({"matchLabels": {"sparkward.io/job-id": JOB}});
        assert_eq!(
            doc,
            json!({
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNetworkPolicy",
                "metadata": {
                    "name": format!("sparkward-{JOB}"),
                    "namespace": "team-a",
                    "labels": {
                        "app.kubernetes.io/managed-by": "sparkward",
                        "sparkward.io/job-id": JOB,
                        "sparkward.io/user": "alice"
                    }
                },
                "specs": [
                    {
                        "endpointSelector": job,
                        "ingress": [{"fromEndpoints": [job]}],
                        "egress": [
                            {"toEndpoints": [job]},
                            {"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}],
                             "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}, {"port": "53", "protocol": "TCP"}],
                                          "rules": {"dns": cluster_patterns("cluster.local")}}]},
                            cfg.scopes["data:read:postgres-main"][0]
                        ],
                        "description": format!("sparkward job {JOB}: traffic within the job, cluster DNS and the granted scopes")
                    },
                    {
                        "endpointSelector": {"matchLabels": {"sparkward.io/job-id": JOB, "spark-role": "driver"}},
                        "egress": [{"toEntities": ["kube-apiserver"]}],
                        "description": format!("sparkward job {JOB}: the Spark driver creates its executors through the Kubernetes API")
                    }
                ]
            })
        );
        assert_eq!(out.mapped_scopes, scopes(&["data:read:postgres-main"]));
        assert!(out.unknown_scopes.is_empty());
        assert!(out.warnings.is_empty());
    }

    #[test]
    fn grants_exactly_the_rules_of_the_granted_scopes() {
        let cfg = mk_config(UnknownScopes::Ignore);
        let kafka = &cfg.scopes["stream:kafka"][0];
        let postgres = &cfg.scopes["data:read:postgres-main"][0];
        // (granted scopes, scope rules expected after the job and DNS rules, in order)
        let cases: Vec<(Vec<&str>, Vec<&EgressRule>)> = vec![
            (vec![], vec![]),
            (vec!["data:read:postgres-main"], vec![postgres]),
            (vec!["stream:kafka"], vec![kafka]),
            (
                vec!["stream:kafka", "data:read:postgres-main"],
                vec![postgres, kafka],
            ),
            (vec!["s3:read"], cfg.scopes["s3:read"].iter().collect()),
            (vec!["openid", "profile"], vec![]),
        ];
        for (granted, want) in cases {
            let granted = scopes(&granted);
            let out = render_policy(&mk_input(&granted), &cfg).unwrap();
            let egress = &out.policy.specs[0].egress;
            assert_eq!(egress.len(), 2 + want.len(), "{granted:?}");
            let got: Vec<&EgressRule> = egress[2..].iter().collect();
            assert_eq!(got, want, "{granted:?}");
        }
    }

    #[test]
    fn a_token_without_the_kafka_scope_gets_no_kafka_rule() {
        let cfg = mk_config(UnknownScopes::Ignore);
        let granted = scopes(&["data:read:postgres-main", "s3:read"]);
        let out = render_policy(&mk_input(&granted), &cfg).unwrap();
        let text = serde_json::to_string(&out.policy).unwrap();
        assert!(!text.contains("9092"), "{text}");
        assert!(!text.contains("\"kafka\""), "{text}");
        assert_eq!(
            out.mapped_scopes,
            scopes(&["data:read:postgres-main", "s3:read"])
        );
    }

    #[test]
    fn unknown_scopes_are_ignored_with_a_warning() {
        let cfg = mk_config(UnknownScopes::Ignore);
        let granted = scopes(&["stream:kafka", "zeta", "alpha", "zeta"]);
        let out = render_policy(&mk_input(&granted), &cfg).unwrap();
        assert_eq!(out.unknown_scopes, scopes(&["alpha", "zeta"]));
        assert_eq!(out.mapped_scopes, scopes(&["stream:kafka"]));
        assert_eq!(
            out.warnings,
            vec![
                "scope 'alpha' has no network rule mapped; it grants no network access".to_string(),
                "scope 'zeta' has no network rule mapped; it grants no network access".to_string(),
            ]
        );
        assert_eq!(egress_json(&out).len(), 3);
    }

    #[test]
    fn unknown_scopes_deny_when_configured() {
        let cfg = mk_config(UnknownScopes::Deny);
        let granted = scopes(&["stream:kafka", "zeta", "alpha"]);
        let err = render_policy(&mk_input(&granted), &cfg).unwrap_err();
        assert_eq!(err, PolicyError::UnknownScopes(scopes(&["alpha", "zeta"])));
        let text = err.to_string();
        assert!(text.contains("'alpha', 'zeta'"), "{text}");
        assert!(text.contains("security team"), "{text}");
        assert!(text.contains("token without them"), "{text}");
        // Only known scopes: deny mode renders normally.
        let known = scopes(&["stream:kafka"]);
        assert!(render_policy(&mk_input(&known), &cfg).is_ok());
    }

    #[test]
    fn driver_rule_follows_the_setting() {
        let mut cfg = mk_config(UnknownScopes::Ignore);
        let granted = scopes(&[]);
        assert_eq!(
            render_policy(&mk_input(&granted), &cfg)
                .unwrap()
                .policy
                .specs
                .len(),
            2
        );
        cfg.driver_to_api_server = false;
        let out = render_policy(&mk_input(&granted), &cfg).unwrap();
        assert_eq!(out.policy.specs.len(), 1);
        assert!(
            !serde_json::to_string(&out.policy)
                .unwrap()
                .contains("kube-apiserver")
        );
    }

    #[test]
    fn same_input_gives_byte_identical_output() {
        let cfg = mk_config(UnknownScopes::Ignore);
        let a = scopes(&["s3:read", "stream:kafka", "data:read:postgres-main", "x"]);
        let b = scopes(&[
            "x",
            "data:read:postgres-main",
            "stream:kafka",
            "s3:read",
            "s3:read",
        ]);
        let ra = render_policy(&mk_input(&a), &cfg).unwrap();
        let rb = render_policy(&mk_input(&b), &cfg).unwrap();
        assert_eq!(
            serde_json::to_string(&ra.policy).unwrap(),
            serde_json::to_string(&rb.policy).unwrap()
        );
        assert_eq!(
            serde_saphyr::to_string(&ra.policy).unwrap(),
            serde_saphyr::to_string(&rb.policy).unwrap()
        );
        assert_eq!(ra, rb);
    }

    #[test]
    fn dns_namespace_is_written_with_ciliums_namespace_label() {
        let mut cfg = mk_config(UnknownScopes::Ignore);
        cfg.dns_namespace = "dns".into();
        cfg.dns_match_labels = BTreeMap::from([
            ("k8s:io.kubernetes.pod.namespace".into(), "elsewhere".into()),
            ("app".into(), "coredns".into()),
        ]);
        let out = render_policy(&mk_input(&[]), &cfg).unwrap();
        assert_eq!(
            egress_json(&out)[1]["toEndpoints"][0]["matchLabels"],
            json!({"k8s:io.kubernetes.pod.namespace": "dns", "app": "coredns"})
        );
    }

    #[test]
    fn bad_inputs_and_scope_rules_are_errors_not_policies() {
        let cfg = mk_config(UnknownScopes::Ignore);
        let bad_user = PolicyInput {
            user_label: "alice@example.com",
            ..mk_input(&[])
        };
        assert!(matches!(
            render_policy(&bad_user, &cfg),
            Err(PolicyError::InvalidInput {
                field: "user label",
                ..
            })
        ));

        // A rule that parses but every agent would reject (configs built in code skip the
        // load-time lint): the final lint of the rendered policy catches it.
        let mut broken = mk_config(UnknownScopes::Ignore);
        let granted = scopes(&["bad"]);
        broken.scopes.insert(
            "bad".into(),
            vec![rule(
                json!({"toFQDNs": [{"matchName": "a.com"}], "toEntities": ["world"]}),
            )],
        );
        assert!(matches!(
            render_policy(&mk_input(&granted), &broken),
            Err(PolicyError::Lint { .. })
        ));
    }

    #[test]
    fn cluster_patterns_reach_every_depth_a_search_list_expansion_has() {
        let patterns = cluster_dns_selectors("cluster.local");
        let json: Vec<Value> = patterns
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        assert_eq!(json, cluster_patterns("cluster.local"));
        assert_eq!(patterns[0], FqdnSelector::pattern("**.cluster.local"));
        assert_eq!(
            patterns.last(),
            Some(&FqdnSelector::pattern("*.*.*.*.*.*.*.cluster.local"))
        );
        // Names the resolver sends for Spark (ndots:5, namespace spark-jobs), by label count
        // in front of the cluster domain: each has a single-label pattern of that depth.
        for name in [
            "kubernetes.default.svc",
            "kubernetes.default.svc.svc",
            "kubernetes.default.svc.spark-jobs.svc",
            "etl-driver-svc.spark-jobs.svc.spark-jobs.svc",
            "lakehouse-prod.s3.eu-central-1.amazonaws.com.spark-jobs.svc",
        ] {
            let depth = name.split('.').count();
            let want = format!("{}cluster.local", "*.".repeat(depth));
            assert!(
                patterns.contains(&FqdnSelector::pattern(want.clone())),
                "{name}: {want}"
            );
        }
        for p in &patterns {
            assert!(!p.matches_every_name(), "{p:?}");
            assert_eq!(cilium::lint_fqdn_selector(p), Ok(()), "{p:?}");
        }
    }

    #[test]
    fn the_dns_rule_allows_the_cluster_the_allow_list_and_the_scopes_names_only() {
        let mut cfg = mk_config(UnknownScopes::Ignore);
        cfg.scopes.insert(
            "api:partner".into(),
            vec![
                rule(json!({"toFQDNs": [{"matchName": "api.partner.example"}, {"matchPattern": "*.s3.amazonaws.com"}],
                       "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]})),
                rule(json!({"toFQDNs": [{"matchName": "sts.amazonaws.com"}],
                       "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]})),
            ],
        );
        let with = |extra: Vec<Value>| {
            let mut want = cluster_patterns("cluster.local");
            want.extend(extra);
            want
        };
        // (granted scopes, dnsAllow, expected list after the cluster patterns)
        let allow = vec![FqdnSelector::name("repo.maven.apache.org")];
        let cases: Vec<(Vec<&str>, Vec<FqdnSelector>, Vec<Value>)> = vec![
            (vec![], vec![], vec![]),
            // A scope without toFQDNs adds no name.
            (vec!["data:read:postgres-main"], vec![], vec![]),
            (
                vec!["s3:read"],
                vec![],
                vec![json!({"matchPattern": "*.s3.amazonaws.com"})],
            ),
            (
                vec!["data:read:postgres-main"],
                allow.clone(),
                vec![json!({"matchName": "repo.maven.apache.org"})],
            ),
            // dnsAllow first, then the scopes in name order; a selector two scopes share once.
            (
                vec!["s3:read", "api:partner", "stream:kafka"],
                allow.clone(),
                vec![
                    json!({"matchName": "repo.maven.apache.org"}),
                    json!({"matchName": "api.partner.example"}),
                    json!({"matchPattern": "*.s3.amazonaws.com"}),
                    json!({"matchName": "sts.amazonaws.com"}),
                ],
            ),
        ];
        for (granted, dns_allow, extra) in cases {
            cfg.dns_allow = dns_allow;
            let granted = scopes(&granted);
            let out = render_policy(&mk_input(&granted), &cfg).unwrap();
            assert_eq!(dns_list(&out), with(extra), "{granted:?}");
            let text = serde_json::to_string(&out.policy).unwrap();
            assert!(!text.contains(r#""matchPattern":"*""#), "{text}");
            assert_eq!(cilium::lint_policy(&out.policy), Ok(()));
        }
    }

    #[test]
    fn the_cluster_domain_is_configurable() {
        let mut cfg = mk_config(UnknownScopes::Ignore);
        cfg.cluster_domain = "k8s.corp.example".into();
        let out = render_policy(&mk_input(&[]), &cfg).unwrap();
        assert_eq!(dns_list(&out), cluster_patterns("k8s.corp.example"));
        assert!(
            !serde_json::to_string(&out.policy)
                .unwrap()
                .contains("cluster.local")
        );
    }

    #[test]
    fn rendered_policies_pass_the_lint() {
        let cfg = mk_config(UnknownScopes::Ignore);
        let all: Vec<String> = cfg.scopes.keys().cloned().collect();
        let out = render_policy(&mk_input(&all), &cfg).unwrap();
        assert_eq!(cilium::lint_policy(&out.policy), Ok(()));
    }
}
