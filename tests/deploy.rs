#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The install manifests, as `kubectl kustomize` renders them: `deploy/`, its host-network
//! overlay, `webhook-config/` and `certs/cert-manager/`.
//!
//! Every rendered document is deserialised into its k8s-openapi type and serialised back; a
//! field that does not survive the round trip is one the API would prune or reject (a typo
//! such as `readinesProbe`), and fails the test. On the typed objects the tests check what the
//! installation guide promises: least-privilege RBAC (exactly [`RBAC`]), a hardened and highly
//! available Deployment, webhook configurations with every required setting, a configuration
//! sparkward itself accepts, and a default-deny CiliumClusterwideNetworkPolicy that passes the
//! real Cilium CRD schema (found through `SPARKWARD_UPSTREAM_DIR`, default `../shared`).
//!
//! Needs `kubectl` (with its built-in kustomize) on PATH; `.ci/run` installs it.

#[allow(dead_code)]
#[path = "support/pss.rs"]
mod pss;
#[allow(dead_code)]
#[path = "support/upstream.rs"]
mod upstream;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhookConfiguration, RuleWithOperations,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sparkward::config::{Config, HumanDuration};
use sparkward::core::cilium::lint_egress_rule;
use sparkward::core::policy::cluster_dns_selectors;

// ---------------------------------------------------------------------------------------------
// What sparkward may do with the Kubernetes API. This table is the contract between the code
// and deploy/base/rbac.yaml: the RBAC tests require the rendered roles to grant exactly this,
// and the API calls the code makes are to be checked against it.
// ---------------------------------------------------------------------------------------------

/// Where a grant applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// A ClusterRole bound with a ClusterRoleBinding.
    Cluster,
    /// A Role (and RoleBinding) in this namespace only.
    Namespace(&'static str),
}

/// One resource and the verbs sparkward uses on it.
struct Grant {
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    scope: Scope,
}

const RBAC: &[Grant] = &[
    Grant {
        group: "",
        resource: "pods",
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
    },
    Grant {
        group: "sparkoperator.k8s.io",
        resource: "sparkapplications",
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
    },
    Grant {
        group: "sparkoperator.k8s.io",
        resource: "scheduledsparkapplications",
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
    },
    Grant {
        group: "cilium.io",
        resource: "ciliumnetworkpolicies",
        verbs: &["list", "watch", "create", "patch", "delete"],
        scope: Scope::Cluster,
    },
    Grant {
        group: "",
        resource: "secrets",
        verbs: &["create", "patch", "delete"],
        scope: Scope::Cluster,
    },
    Grant {
        group: "",
        resource: "namespaces",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
    },
    Grant {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        scope: Scope::Namespace(NAMESPACE),
    },
];

const NAMESPACE: &str = "sparkward-system";
const NAME: &str = "sparkward";
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:sparkward-system:sparkward";
const ENFORCE_LABEL: &str = "sparkward.io/enforce";
const SERVICE_DNS_NAMES: [&str; 2] = [
    "sparkward.sparkward-system.svc",
    "sparkward.sparkward-system.svc.cluster.local",
];
/// Kinds without a k8s-openapi type; each has its own checks below.
const CUSTOM_KINDS: [&str; 3] = ["CiliumClusterwideNetworkPolicy", "Issuer", "Certificate"];

// ---------------------------------------------------------------------------------------------
// Rendering and typed parsing.
// ---------------------------------------------------------------------------------------------

fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// kubectl releases before 1.27 embed kustomize v2-v4, which cannot render these
/// kustomizations (directories under `resources:`, `patches:` with targets).
const MIN_KUBECTL_MINOR: u32 = 27;

const INSTALL_KUBECTL: &str = "install a current kubectl from https://kubernetes.io/docs/tasks/tools/ \
     (Debian bookworm's kubernetes-client package is 1.20, too old)";

/// Runs `kubectl <args>` and returns stdout; a missing or too old kubectl fails with how to
/// get a usable one.
fn kubectl(args: &[&str]) -> String {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(check_kubectl_version);
    run_kubectl(args)
}

fn check_kubectl_version() {
    let json = run_kubectl(&["version", "--client", "-o", "json"]);
    let version: Value = serde_json::from_str(&json).expect("kubectl version prints JSON");
    let client = &version["clientVersion"];
    let minor: u32 = client["minor"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('+')
        .parse()
        .unwrap_or(0);
    assert!(
        client["major"] == "1" && minor >= MIN_KUBECTL_MINOR,
        "kubectl {} is too old to render the manifests (needs 1.{MIN_KUBECTL_MINOR} or newer, \
         with kustomize v5): {INSTALL_KUBECTL}",
        client["gitVersion"].as_str().unwrap_or("(unknown version)")
    );
}

fn run_kubectl(args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .args(args)
        .current_dir(project_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}): these tests render the manifests with kubectl's \
                 built-in kustomize; {INSTALL_KUBECTL}; .ci/run installs kubectl on CI machines"
            )
        });
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
}

/// Every document `kubectl kustomize <dir>` renders, as JSON values (cached per directory).
fn render(dir: &str) -> Vec<Value> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(docs) = cache.lock().unwrap().get(dir) {
        return docs.clone();
    }
    let text = kubectl(&["kustomize", dir]);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("kubectl kustomize {dir} printed unparsable YAML: {e}"));
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert!(!docs.is_empty(), "kubectl kustomize {dir} rendered nothing");
    cache.lock().unwrap().insert(dir.to_string(), docs.clone());
    docs
}

fn describe(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Deserialises `doc` into `T` (the error names the field path) and requires every field to
/// survive the round trip back to JSON.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let what = describe(doc);
    let value: T = serde_path_to_error::deserialize(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: {} (at {})", e.inner(), e.path()));
    let back = serde_json::to_value(&value).unwrap();
    let mut lost = Vec::new();
    lost_fields(doc, &back, &mut String::new(), &mut lost);
    assert!(
        lost.is_empty(),
        "{what}: fields its type does not have or changes (a typo, or the wrong place): {lost:#?}"
    );
    value
}

/// Paths in `original` that are missing from, or different in, `round_tripped`.
fn lost_fields(original: &Value, round_tripped: &Value, path: &mut String, out: &mut Vec<String>) {
    match (original, round_tripped) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match b.get(key) {
                    Some(other) => lost_fields(value, other, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                lost_fields(x, y, path, out);
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

/// The typed objects of one rendered kustomization.
#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    config_maps: Vec<ConfigMap>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    pdbs: Vec<PodDisruptionBudget>,
    priority_classes: Vec<PriorityClass>,
    mutating: Vec<MutatingWebhookConfiguration>,
    validating: Vec<ValidatingWebhookConfiguration>,
    /// Documents of [`CUSTOM_KINDS`], untyped.
    custom: Vec<Value>,
    /// `kind name` of every document, in order.
    index: Vec<String>,
}

impl Manifests {
    fn load(dir: &str) -> Self {
        let mut m = Manifests::default();
        for doc in render(dir) {
            m.index.push(describe(&doc));
            match doc["kind"].as_str().unwrap_or_default() {
                "Namespace" => m.namespaces.push(typed(&doc)),
                "ServiceAccount" => m.service_accounts.push(typed(&doc)),
                "ClusterRole" => m.cluster_roles.push(typed(&doc)),
                "ClusterRoleBinding" => m.cluster_role_bindings.push(typed(&doc)),
                "Role" => m.roles.push(typed(&doc)),
                "RoleBinding" => m.role_bindings.push(typed(&doc)),
                "ConfigMap" => m.config_maps.push(typed(&doc)),
                "Deployment" => m.deployments.push(typed(&doc)),
                "Service" => m.services.push(typed(&doc)),
                "PodDisruptionBudget" => m.pdbs.push(typed(&doc)),
                "PriorityClass" => m.priority_classes.push(typed(&doc)),
                "MutatingWebhookConfiguration" => m.mutating.push(typed(&doc)),
                "ValidatingWebhookConfiguration" => m.validating.push(typed(&doc)),
                kind if CUSTOM_KINDS.contains(&kind) => m.custom.push(doc),
                kind => panic!("{dir} renders a {kind}, which these tests do not know"),
            }
        }
        m
    }

    fn custom_of(&self, kind: &str) -> Vec<&Value> {
        self.custom.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn deployment(&self) -> &Deployment {
        assert_eq!(self.deployments.len(), 1, "one Deployment");
        &self.deployments[0]
    }

    fn pod_spec(&self) -> &PodSpec {
        self.deployment()
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("the Deployment has a pod template")
    }

    fn container(&self) -> &Container {
        let spec = self.pod_spec();
        assert_eq!(spec.containers.len(), 1, "one container");
        &spec.containers[0]
    }

    /// The shipped configuration, validated by sparkward's own loader.
    fn config(&self) -> (String, Config) {
        let cm = self
            .config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("sparkward-config"))
            .expect("ConfigMap sparkward-config");
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("config.yaml"))
            .expect("sparkward-config has the key config.yaml")
            .clone();
        let config = Config::from_yaml(&text)
            .unwrap_or_else(|e| panic!("the shipped config.yaml does not load: {e}"));
        (text, config)
    }
}

fn base() -> Manifests {
    Manifests::load("deploy/")
}

fn host_network() -> Manifests {
    Manifests::load("deploy/overlays/host-network/")
}

fn webhooks() -> Manifests {
    Manifests::load("webhook-config/")
}

fn cert_manager() -> Manifests {
    Manifests::load("certs/cert-manager/")
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn duration(text: &str) -> Duration {
    HumanDuration::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_kustomization_renders_into_known_kinds_without_unknown_fields() {
    for dir in [
        "deploy/",
        "deploy/overlays/host-network/",
        "webhook-config/",
        "certs/cert-manager/",
    ] {
        let m = Manifests::load(dir);
        assert!(!m.index.is_empty(), "{dir}");
    }
}

#[test]
fn the_round_trip_catches_a_misspelt_field() {
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 443, "targetPrt": "https"}]}
    });
    let result = std::panic::catch_unwind(|| typed::<Service>(&doc));
    assert!(result.is_err(), "targetPrt must not pass unnoticed");
}

#[test]
fn the_base_holds_exactly_the_install_objects() {
    let m = base();
    let got: BTreeSet<&str> = m.index.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "Namespace sparkward-system",
        "ServiceAccount sparkward",
        "ClusterRole sparkward",
        "ClusterRoleBinding sparkward",
        "Role sparkward-leader-election",
        "RoleBinding sparkward-leader-election",
        "ConfigMap sparkward-config",
        "Deployment sparkward",
        "Service sparkward",
        "PodDisruptionBudget sparkward",
        "PriorityClass sparkward-critical",
        "CiliumClusterwideNetworkPolicy sparkward-enforced-namespaces-default-deny",
    ]
    .into();
    assert_eq!(got, want);
    assert_eq!(m.index.len(), want.len(), "no duplicates");
    for doc in render("deploy/") {
        let namespaced = !matches!(
            doc["kind"].as_str(),
            Some(
                "Namespace"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "PriorityClass"
                    | "CiliumClusterwideNetworkPolicy"
            )
        );
        let ns = doc["metadata"]["namespace"].as_str();
        if namespaced {
            assert_eq!(ns, Some(NAMESPACE), "{}", describe(&doc));
        } else {
            assert_eq!(ns, None, "{} is cluster-scoped", describe(&doc));
        }
    }
}

#[test]
fn the_sparkward_namespace_is_never_enforced_and_runs_restricted() {
    let m = base();
    let labels = m.namespaces[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(name_of(&m.namespaces[0].metadata), NAMESPACE);
    assert!(!labels.contains_key(ENFORCE_LABEL), "{labels:?}");
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
}

// ---------------------------------------------------------------------------------------------
// The Deployment.
// ---------------------------------------------------------------------------------------------

/// Everything the guide promises about the pod, for the base and the overlay alike.
fn assert_hardened_and_available(m: &Manifests) {
    let d = m.deployment();
    assert_eq!(name_of(&d.metadata), NAME);
    let spec = d.spec.as_ref().unwrap();
    assert!(spec.replicas.unwrap_or(1) >= 2, "at least two replicas");
    let pod = m.pod_spec();
    let c = m.container();

    assert_eq!(pod.service_account_name.as_deref(), Some(NAME));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("sparkward-critical")
    );
    assert!(pod.termination_grace_period_seconds.unwrap_or(30) >= 30);
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/sparkward/sparkward:0.1.0")
    );

    // Pod-level security context.
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    let uid = psc.run_as_user.expect("pod runAsUser");
    assert!(uid > 0, "non-root UID, got {uid}");
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );

    // Container-level security context.
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert!(sc.run_as_user.is_none_or(|u| u > 0));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.as_ref().is_none_or(Vec::is_empty), "no added caps");
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );

    // Probes on the metrics port.
    let http = |p: Option<&k8s_openapi::api::core::v1::Probe>| {
        let get = p
            .and_then(|p| p.http_get.clone())
            .expect("an httpGet probe");
        (get.path.unwrap_or_default(), get.port)
    };
    let metrics = IntOrString::String("metrics".into());
    assert_eq!(
        http(c.liveness_probe.as_ref()),
        ("/healthz".into(), metrics.clone())
    );
    assert_eq!(
        http(c.readiness_probe.as_ref()),
        ("/readyz".into(), metrics)
    );

    // Resources: requests and limits for CPU and memory.
    let res = c.resources.as_ref().expect("resources");
    for (what, map) in [("requests", &res.requests), ("limits", &res.limits)] {
        let map = map.as_ref().unwrap_or_else(|| panic!("resources.{what}"));
        for r in ["cpu", "memory"] {
            assert!(map.contains_key(r), "resources.{what}.{r}");
        }
    }

    // Never two replicas on one node; spread over zones.
    let selector_is_ours = |s: Option<&LabelSelector>| {
        s.and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("app.kubernetes.io/name"))
            .map(String::as_str)
            == Some(NAME)
    };
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .expect("required pod anti-affinity");
    assert!(
        anti.iter()
            .any(|t| t.topology_key == "kubernetes.io/hostname"
                && selector_is_ours(t.label_selector.as_ref())),
        "anti-affinity across nodes for sparkward's own pods"
    );
    let spread = pod
        .topology_spread_constraints
        .as_ref()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|t| t.topology_key == "topology.kubernetes.io/zone"
                && selector_is_ours(t.label_selector.as_ref()))
    );

    // preStop: the kubelet's own sleep (no shell in the image), so endpoints drain first.
    let sleep = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .expect("preStop sleep action");
    assert_eq!(sleep.seconds, 5);
    assert!(
        c.lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_some_and(|h| h.exec.is_none() && h.http_get.is_none())
    );

    // The pod selector of the Deployment, Service and PDB is the same.
    let ours = |s: &LabelSelector| selector_is_ours(Some(s));
    assert!(ours(&spec.selector));
    let pdb = &m.pdbs[0];
    let pdb_spec = pdb.spec.as_ref().unwrap();
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(1)));
    assert!(pdb_spec.selector.as_ref().is_some_and(ours));
    let svc_selector = m.services[0]
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get("app.kubernetes.io/name"));
    assert_eq!(svc_selector.map(String::as_str), Some(NAME));
}

#[test]
fn the_deployment_is_hardened_and_highly_available() {
    assert_hardened_and_available(&base());
}

#[test]
fn the_host_network_deployment_is_hardened_and_highly_available() {
    assert_hardened_and_available(&host_network());
}

/// The Deployment's pod template as a Pod, for the restricted-profile checker.
fn template_pod(m: &Manifests) -> k8s_openapi::api::core::v1::Pod {
    k8s_openapi::api::core::v1::Pod {
        metadata: Default::default(),
        spec: Some(m.pod_spec().clone()),
        status: None,
    }
}

#[test]
fn the_deployment_meets_the_restricted_pod_security_profile_its_namespace_enforces() {
    assert_eq!(
        pss::restricted_violations(&template_pod(&base())),
        Vec::<String>::new()
    );
    // The overlay's only deviation is the host network it exists for.
    assert_eq!(
        pss::restricted_violations(&template_pod(&host_network())),
        vec!["hostNetwork is true".to_string()]
    );
}

#[test]
fn the_deployment_runs_serve_with_the_mounted_config_certificate_and_stamp_key() {
    let m = base();
    let c = m.container();
    assert_eq!(
        c.args.as_deref().unwrap_or_default(),
        [
            "serve",
            "--config",
            "/etc/sparkward/config.yaml",
            "--tls-cert",
            "/etc/sparkward/tls/tls.crt",
            "--tls-key",
            "/etc/sparkward/tls/tls.key",
        ]
    );
    let files = mounted_files(&m);
    let files: BTreeMap<&str, (&str, &str, &str)> = files
        .iter()
        .map(|(path, (kind, name, key))| (path.as_str(), (*kind, name.as_str(), key.as_str())))
        .collect();
    assert_eq!(
        files,
        BTreeMap::from([
            (
                "/etc/sparkward/config.yaml",
                ("ConfigMap", "sparkward-config", "config.yaml")
            ),
            (
                "/etc/sparkward/tls/tls.crt",
                ("Secret", "sparkward-tls", "tls.crt")
            ),
            (
                "/etc/sparkward/tls/tls.key",
                ("Secret", "sparkward-tls", "tls.key")
            ),
            (
                sparkward::config::DEFAULT_STAMP_KEY_FILE,
                ("Secret", "sparkward-stamp-keys", "keys")
            ),
        ])
    );
}

/// Every file the container sees from a ConfigMap or Secret: path → (kind, name, key).
/// Requires read-only mounts without subPath (subPath mounts never receive updates).
fn mounted_files(m: &Manifests) -> BTreeMap<String, (&'static str, String, String)> {
    let pod = m.pod_spec();
    let c = m.container();
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let mut files = BTreeMap::new();
    for mount in c.volume_mounts.as_deref().unwrap_or_default() {
        assert_eq!(mount.read_only, Some(true), "{} read-only", mount.name);
        assert!(
            mount.sub_path.is_none() && mount.sub_path_expr.is_none(),
            "{}: subPath mounts never see ConfigMap/Secret updates",
            mount.name
        );
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .expect("mounted volume exists");
        let mut add = |kind: &'static str, name: &str, items: Option<&Vec<_>>| {
            let items: &Vec<k8s_openapi::api::core::v1::KeyToPath> =
                items.expect("explicit items, so the paths are known");
            for item in items {
                files.insert(
                    format!("{}/{}", mount.mount_path, item.path),
                    (kind, name.to_string(), item.key.clone()),
                );
            }
        };
        if let Some(p) = &volume.projected {
            for source in p.sources.as_deref().unwrap_or_default() {
                if let Some(cm) = &source.config_map {
                    add("ConfigMap", &cm.name, cm.items.as_ref());
                }
                if let Some(s) = &source.secret {
                    add("Secret", &s.name, s.items.as_ref());
                }
            }
        }
        if let Some(cm) = &volume.config_map {
            add("ConfigMap", &cm.name, cm.items.as_ref());
        }
        if let Some(s) = &volume.secret {
            add(
                "Secret",
                s.secret_name.as_deref().unwrap_or_default(),
                s.items.as_ref(),
            );
        }
    }
    files
}

#[test]
fn graceful_shutdown_fits_in_the_termination_grace_period() {
    let m = base();
    let (_, config) = m.config();
    let grace = m.pod_spec().termination_grace_period_seconds.unwrap_or(30);
    let pre_stop = 5;
    let needed = pre_stop + config.server.drain_timeout.as_secs() as i64;
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s + drainTimeout"
    );
}

#[test]
fn the_service_and_probes_reach_named_container_ports() {
    for (m, https, metrics) in [(base(), 8443, 9090), (host_network(), 10443, 10090)] {
        let c = m.container();
        let ports: BTreeMap<String, i32> = c
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            BTreeMap::from([("https".into(), https), ("metrics".into(), metrics)])
        );
        let svc = &m.services[0];
        assert_eq!(name_of(&svc.metadata), NAME);
        let svc_ports: BTreeMap<i32, IntOrString> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.port, p.target_port.expect("explicit targetPort")))
            .collect();
        assert_eq!(
            svc_ports,
            BTreeMap::from([
                (443, IntOrString::String("https".into())),
                (9090, IntOrString::String("metrics".into())),
            ])
        );
        // The listen flags agree with the container ports (defaults 8443/9090 in the base).
        let args = c.args.clone().unwrap_or_default();
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .map(|i| args[i + 1].clone())
        };
        let listen = flag("--listen").unwrap_or_else(|| "0.0.0.0:8443".into());
        let metrics_listen = flag("--metrics-listen").unwrap_or_else(|| "0.0.0.0:9090".into());
        assert!(listen.ends_with(&format!(":{https}")), "{listen}");
        assert!(
            metrics_listen.ends_with(&format!(":{metrics}")),
            "{metrics_listen}"
        );
    }
}

#[test]
fn the_host_network_overlay_uses_the_node_network_with_its_own_ports() {
    let m = host_network();
    let pod = m.pod_spec();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    for port in m.container().ports.as_deref().unwrap_or_default() {
        // Ports of the kubelet, kube-proxy and control-plane components on a node.
        assert!(
            !(10248..=10259).contains(&port.container_port),
            "port {} is taken on nodes",
            port.container_port
        );
    }
    let labels = m.namespaces[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged"),
        "host networking is outside the baseline profile"
    );
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/warn")
            .map(String::as_str),
        Some("restricted")
    );
    // Everything else is the base, unchanged.
    let b = base();
    assert_eq!(m.index, b.index);
    assert_eq!(m.config().0, b.config().0);
    assert_eq!(m.cluster_roles, b.cluster_roles);
}

#[test]
fn the_priority_class_is_high_but_user_definable_and_not_the_default() {
    let m = base();
    let pc = &m.priority_classes[0];
    assert_eq!(name_of(&pc.metadata), "sparkward-critical");
    assert!(
        pc.value >= 1_000_000 && pc.value <= 1_000_000_000,
        "{}",
        pc.value
    );
    assert_ne!(pc.global_default, Some(true));
}

// ---------------------------------------------------------------------------------------------
// RBAC.
// ---------------------------------------------------------------------------------------------

type Granted = BTreeSet<(Scope, String, String, String)>;

fn rules_granted(
    scope: Scope,
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
    out: &mut Granted,
) {
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "no non-resource URLs: {rule:?}"
        );
        assert!(
            rule.resource_names.is_none(),
            "resourceNames are not used (see rbac.yaml): {rule:?}"
        );
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    out.insert((scope, group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
}

#[test]
fn rbac_grants_exactly_the_table() {
    let m = base();
    let mut granted = Granted::new();
    for role in &m.cluster_roles {
        assert!(role.aggregation_rule.is_none());
        rules_granted(
            Scope::Cluster,
            role.rules.as_deref().unwrap_or_default(),
            &mut granted,
        );
    }
    for role in &m.roles {
        let ns = role.metadata.namespace.as_deref().expect("Role namespace");
        assert_eq!(ns, NAMESPACE);
        rules_granted(
            Scope::Namespace(NAMESPACE),
            role.rules.as_deref().unwrap_or_default(),
            &mut granted,
        );
    }
    let want: Granted = RBAC
        .iter()
        .flat_map(|g| {
            g.verbs.iter().map(move |v| {
                (
                    g.scope,
                    g.group.to_string(),
                    g.resource.to_string(),
                    v.to_string(),
                )
            })
        })
        .collect();
    let extra: Vec<_> = granted.difference(&want).collect();
    let missing: Vec<_> = want.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "granted but not in the table: {extra:#?}\nin the table but not granted: {missing:#?}"
    );
}

#[test]
fn rbac_has_no_wildcards_never_reads_secrets_and_creates_only_policies_secrets_and_leases() {
    for doc in render("deploy/") {
        if !matches!(doc["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        let text = doc["rules"].to_string();
        assert!(!text.contains('*'), "{}: {text}", describe(&doc));
        // Secrets: created, adopted and deleted (jobs' RPC Secrets), never read.
        for rule in doc["rules"].as_array().unwrap() {
            if rule["resources"].to_string().contains("secrets") {
                let verbs = rule["verbs"].to_string();
                for read in ["\"get\"", "\"list\"", "\"watch\""] {
                    assert!(!verbs.contains(read), "{}: {text}", describe(&doc));
                }
            }
        }
        for rule in doc["rules"].as_array().unwrap() {
            let verbs = rule["verbs"].as_array().unwrap();
            if verbs.iter().any(|v| v == "create") {
                let resources: Vec<&str> = rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                assert!(
                    resources
                        .iter()
                        .all(|r| matches!(*r, "ciliumnetworkpolicies" | "secrets" | "leases")),
                    "{}: create on {resources:?}",
                    describe(&doc)
                );
            }
        }
    }
}

#[test]
fn the_roles_are_bound_to_sparkwards_service_account_only() {
    let m = base();
    assert_eq!(m.service_accounts.len(), 1);
    assert_eq!(name_of(&m.service_accounts[0].metadata), NAME);
    let only_us = |subjects: Option<&Vec<Subject>>| {
        let subjects = subjects.expect("subjects");
        subjects.len() == 1
            && subjects[0].kind == "ServiceAccount"
            && subjects[0].name == NAME
            && subjects[0].namespace.as_deref() == Some(NAMESPACE)
    };
    assert_eq!(m.cluster_role_bindings.len(), 1);
    let crb = &m.cluster_role_bindings[0];
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(crb.role_ref.name, name_of(&m.cluster_roles[0].metadata));
    assert!(only_us(crb.subjects.as_ref()));
    assert_eq!(m.role_bindings.len(), 1);
    let rb = &m.role_bindings[0];
    assert_eq!(rb.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(rb.role_ref.name, name_of(&m.roles[0].metadata));
    assert!(only_us(rb.subjects.as_ref()));
}

// ---------------------------------------------------------------------------------------------
// The configuration.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_shipped_config_loads_with_sparkwards_own_loader() {
    let m = base();
    let (_, config) = m.config();
    let identity = config.identity.as_ref().expect("identity is configured");
    assert!(identity.issuer.starts_with("https://"));
    assert!(!identity.audiences.is_empty());
    assert_eq!(config.lifecycle.lease_namespace, NAMESPACE);
    assert!(
        config
            .policy
            .managers
            .iter()
            .any(|m| m == SERVICE_ACCOUNT_USER)
    );
    assert!(config.policy.apply_timeout < config.server.review_deadline);

    // The realistic scope mappings the guide describes.
    let scopes: BTreeMap<&String, Vec<Value>> = config
        .policy
        .scopes
        .iter()
        .map(|(scope, rules)| {
            let json = rules.iter().map(|r| serde_json::to_value(r).unwrap());
            (scope, json.collect())
        })
        .collect();
    let rules = |scope: &str| -> &Vec<Value> {
        scopes
            .get(&scope.to_string())
            .unwrap_or_else(|| panic!("scope {scope} mapped"))
    };
    assert!(rules("data:read:postgres-main")[0]["toEndpoints"].is_array());
    assert!(rules("stream:kafka-events")[0]["toEndpoints"].is_array());
    assert!(rules("storage:s3-lakehouse")[0]["toFQDNs"].is_array());
    // `world` only with ports: never a blanket allow.
    for (scope, rules) in &scopes {
        for rule in rules {
            let world = rule["toEntities"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == "world" || x == "all"));
            if world {
                assert!(rule["toPorts"].is_array(), "{scope}: world without ports");
            }
        }
    }
}

#[test]
fn check_config_accepts_the_shipped_config() {
    let (text, _) = base().config();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sparkward"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sparkward check-config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_config_yaml_is_what_the_config_map_ships() {
    let (text, _) = base().config();
    for path in ["deploy/config.yaml", "deploy/base/config.yaml"] {
        let file = std::fs::read_to_string(project_dir().join(path)).unwrap();
        assert_eq!(file, text, "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook configurations.
// ---------------------------------------------------------------------------------------------

/// The fields shared by mutating and validating webhooks.
struct Hook<'a> {
    config: &'static str,
    name: &'a str,
    client: &'a WebhookClientConfig,
    rules: &'a [RuleWithOperations],
    namespace_selector: Option<&'a LabelSelector>,
    failure_policy: Option<&'a str>,
    side_effects: &'a str,
    versions: &'a [String],
    match_policy: Option<&'a str>,
    timeout: Option<i32>,
    reinvocation: Option<&'a str>,
    match_conditions: &'a [MatchCondition],
}

fn hooks(m: &Manifests) -> Vec<Hook<'_>> {
    assert_eq!(m.mutating.len(), 1);
    assert_eq!(m.validating.len(), 1);
    let mut out = Vec::new();
    for w in m.mutating[0].webhooks.as_deref().unwrap_or_default() {
        out.push(Hook {
            config: "mutating",
            name: &w.name,
            client: &w.client_config,
            rules: w.rules.as_deref().unwrap_or_default(),
            namespace_selector: w.namespace_selector.as_ref(),
            failure_policy: w.failure_policy.as_deref(),
            side_effects: &w.side_effects,
            versions: &w.admission_review_versions,
            match_policy: w.match_policy.as_deref(),
            timeout: w.timeout_seconds,
            reinvocation: w.reinvocation_policy.as_deref(),
            match_conditions: w.match_conditions.as_deref().unwrap_or_default(),
        });
    }
    for w in m.validating[0].webhooks.as_deref().unwrap_or_default() {
        out.push(Hook {
            config: "validating",
            name: &w.name,
            client: &w.client_config,
            rules: w.rules.as_deref().unwrap_or_default(),
            namespace_selector: w.namespace_selector.as_ref(),
            failure_policy: w.failure_policy.as_deref(),
            side_effects: &w.side_effects,
            versions: &w.admission_review_versions,
            match_policy: w.match_policy.as_deref(),
            timeout: w.timeout_seconds,
            reinvocation: None,
            match_conditions: w.match_conditions.as_deref().unwrap_or_default(),
        });
    }
    out
}

/// (group, version, resource, operation) of every rule of the given webhooks.
fn routes<'a>(
    hooks: impl Iterator<Item = &'a Hook<'a>>,
) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for h in hooks {
        for rule in h.rules {
            assert_eq!(rule.scope.as_deref(), Some("Namespaced"), "{}", h.name);
            for g in rule.api_groups.as_deref().unwrap_or_default() {
                for v in rule.api_versions.as_deref().unwrap_or_default() {
                    for r in rule.resources.as_deref().unwrap_or_default() {
                        for o in rule.operations.as_deref().unwrap_or_default() {
                            assert!(
                                !(g.contains('*')
                                    || v.contains('*')
                                    || r.contains('*')
                                    || o == "*"),
                                "{}: wildcard in {rule:?}",
                                h.name
                            );
                            out.insert((g.clone(), v.clone(), r.clone(), o.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

fn expand(table: &[(&str, &str, &str, &[&str])]) -> BTreeSet<(String, String, String, String)> {
    table
        .iter()
        .flat_map(|(g, v, r, ops)| {
            ops.iter()
                .map(move |o| (g.to_string(), v.to_string(), r.to_string(), o.to_string()))
        })
        .collect()
}

const SPARK: &str = "sparkoperator.k8s.io";
const CREATE_UPDATE: &[&str] = &["CREATE", "UPDATE"];

#[test]
fn every_webhook_carries_the_required_settings() {
    let m = webhooks();
    let all = hooks(&m);
    assert!(all.len() >= 2);
    for h in &all {
        let what = format!("{} webhook {}", h.config, h.name);
        let service = h.client.service.as_ref().expect("a Service reference");
        assert!(h.client.url.is_none(), "{what}");
        assert_eq!(service.name, NAME, "{what}");
        assert_eq!(service.namespace, NAMESPACE, "{what}");
        assert_eq!(service.port, Some(443), "{what}");
        let path = if h.config == "mutating" {
            "/mutate"
        } else {
            "/validate"
        };
        assert_eq!(service.path.as_deref(), Some(path), "{what}");
        assert!(
            h.client.ca_bundle.is_none(),
            "{what}: caBundle is injected, not shipped"
        );

        let selector = h.namespace_selector.expect("namespaceSelector");
        assert_eq!(
            selector.match_labels,
            Some(BTreeMap::from([(ENFORCE_LABEL.into(), "true".into())])),
            "{what}"
        );
        let excluded: BTreeSet<&str> = selector
            .match_expressions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
            .flat_map(|e| e.values.as_deref().unwrap_or_default())
            .map(String::as_str)
            .collect();
        assert!(
            excluded.contains(NAMESPACE) && excluded.contains("kube-system"),
            "{what}: excludes {excluded:?}"
        );
        assert_eq!(h.failure_policy, Some("Fail"), "{what}");
        assert_eq!(h.side_effects, "NoneOnDryRun", "{what}");
        assert_eq!(h.versions, ["v1".to_string()], "{what}");
        assert_eq!(h.match_policy, Some("Equivalent"), "{what}");
        let timeout = h.timeout.expect("explicit timeoutSeconds");
        assert!((1..=10).contains(&timeout), "{what}: {timeout}");
        if h.config == "mutating" {
            assert_eq!(timeout, 10, "{what}");
        }
    }
    for config in [&m.mutating[0].metadata, &m.validating[0].metadata] {
        assert_eq!(name_of(config), NAME);
        let inject = config
            .annotations
            .as_ref()
            .and_then(|a| a.get("cert-manager.io/inject-ca-from"));
        assert_eq!(
            inject.map(String::as_str),
            Some("sparkward-system/sparkward-serving")
        );
    }
}

#[test]
fn the_webhook_rules_route_exactly_what_sparkward_handles() {
    let m = webhooks();
    let all = hooks(&m);
    let common: &[(&str, &str, &str, &[&str])] = &[
        (SPARK, "v1beta2", "sparkapplications", CREATE_UPDATE),
        (
            SPARK,
            "v1beta2",
            "scheduledsparkapplications",
            CREATE_UPDATE,
        ),
        ("", "v1", "pods", CREATE_UPDATE),
        ("", "v1", "pods/ephemeralcontainers", &["UPDATE"]),
        // spark-submit's driver ConfigMap (spark.properties) can hold the token.
        ("", "v1", "configmaps", CREATE_UPDATE),
    ];
    assert_eq!(
        routes(all.iter().filter(|h| h.config == "mutating")),
        expand(common)
    );
    // The validating webhooks also guard what happens to a job after admission: updates,
    // deletes, status writes, debug containers, exec/attach/port-forward and tokens bound to
    // a job's pods.
    const CUD: &[&str] = &["CREATE", "UPDATE", "DELETE"];
    let validating: &[(&str, &str, &str, &[&str])] = &[
        (SPARK, "v1beta2", "sparkapplications", CUD),
        (SPARK, "v1beta2", "scheduledsparkapplications", CUD),
        (SPARK, "v1beta2", "sparkapplications/status", &["UPDATE"]),
        (
            SPARK,
            "v1beta2",
            "scheduledsparkapplications/status",
            &["UPDATE"],
        ),
        ("", "v1", "pods", CUD),
        ("", "v1", "pods/ephemeralcontainers", &["UPDATE"]),
        ("", "v1", "pods/status", &["UPDATE"]),
        ("", "v1", "pods/exec", &["CONNECT"]),
        ("", "v1", "pods/attach", &["CONNECT"]),
        ("", "v1", "pods/portforward", &["CONNECT"]),
        ("", "v1", "pods/eviction", &["CREATE"]),
        ("", "v1", "pods/resize", &["UPDATE"]),
        ("", "v1", "serviceaccounts/token", &["CREATE"]),
        // Jobs' RPC Secrets only (an objectSelector on managed-by=sparkward).
        ("", "v1", "secrets", CUD),
        ("", "v1", "configmaps", CREATE_UPDATE),
        ("cilium.io", "v2", "ciliumnetworkpolicies", CUD),
        // Kubernetes NetworkPolicies add allowed traffic too: guarded like unmanaged CNPs.
        ("networking.k8s.io", "v1", "networkpolicies", CUD),
    ];
    assert_eq!(
        routes(all.iter().filter(|h| h.config == "validating")),
        expand(validating)
    );
}

#[test]
fn webhook_names_are_unique_and_fully_qualified() {
    let m = webhooks();
    for config in ["mutating", "validating"] {
        let names: Vec<&str> = hooks(&m)
            .iter()
            .filter(|h| h.config == config)
            .map(|h| h.name)
            .collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for name in names {
            assert!(
                name.ends_with(".sparkward.io") && name.split('.').count() >= 3,
                "{name}"
            );
        }
    }
}

#[test]
fn only_the_pod_webhook_is_reinvoked() {
    let m = webhooks();
    for h in hooks(&m).iter().filter(|h| h.config == "mutating") {
        let pods = h.rules.iter().any(|r| {
            r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x.starts_with("pods"))
        });
        let spark = h.rules.iter().any(|r| {
            r.api_groups
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|g| g == SPARK)
        });
        assert!(
            !(pods && spark),
            "{}: pods and Spark objects are separate webhooks",
            h.name
        );
        let want = if pods { "IfNeeded" } else { "Never" };
        assert_eq!(h.reinvocation, Some(want), "{}", h.name);
    }
}

#[test]
fn webhook_timeouts_outlast_sparkwards_own_deadlines() {
    let (_, config) = base().config();
    let deadline = config.server.review_deadline;
    assert!(config.policy.apply_timeout < deadline);
    let defaults = Config::default();
    let m = webhooks();
    for h in hooks(&m) {
        // Handlers that may call the API or the IdP: mutation, and pod validation (creator
        // lookups). They must answer before the API server gives up.
        let does_io = h.config == "mutating"
            || h.rules.iter().any(|r| {
                r.resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|x| x == "pods")
            });
        let timeout = Duration::from_secs(h.timeout.unwrap() as u64);
        if does_io {
            assert!(
                timeout > deadline && timeout > defaults.server.review_deadline,
                "{}: timeoutSeconds {timeout:?} must exceed server.reviewDeadline {deadline:?}",
                h.name
            );
        }
    }
}

#[test]
fn only_the_policy_and_pod_status_webhooks_skip_requests_and_only_their_exempt_ones() {
    let m = webhooks();
    let all = hooks(&m);
    for h in &all {
        let cnp = h.rules.iter().any(|r| {
            r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == "ciliumnetworkpolicies")
        });
        let pod_status = h.rules.iter().any(|r| {
            r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == "pods/status")
        });
        if pod_status {
            // The kubelets' own status updates skip the round trip (NodeRestriction limits
            // them); everybody else's status writes are checked.
            assert_eq!(h.rules.len(), 1, "{}: pod status alone", h.name);
            assert_eq!(h.match_conditions.len(), 1, "{}", h.name);
            assert_eq!(
                h.match_conditions[0].expression.replace(' ', ""),
                "!('system:nodes'inrequest.userInfo.groups)",
                "{}",
                h.name
            );
            continue;
        }
        let secrets = h.rules.iter().any(|r| {
            r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == "secrets")
        });
        if !cnp && !secrets {
            assert!(h.match_conditions.is_empty(), "{}", h.name);
            continue;
        }
        assert_eq!(h.rules.len(), 1, "{}: policies alone", h.name);
        assert_eq!(h.match_conditions.len(), 1, "{}", h.name);
        let expr = h.match_conditions[0].expression.replace(' ', "");
        assert_eq!(
            expr,
            format!("request.userInfo.username!='{SERVICE_ACCOUNT_USER}'"),
            "{}",
            h.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates.
// ---------------------------------------------------------------------------------------------

fn read(path: &str) -> String {
    std::fs::read_to_string(project_dir().join(path)).unwrap()
}

/// The `kubectl patch <kind>webhookconfiguration sparkward` JSON patches of certs/README.md,
/// with the shell's `\"` unescaped and `$CA_BUNDLE` substituted.
fn documented_patches(bundle: &str) -> BTreeMap<String, String> {
    let re = regex::Regex::new(
        r#"(?s)kubectl patch (mutating|validating)webhookconfiguration sparkward --type=json -p "(\[.*?\])""#,
    )
    .unwrap();
    re.captures_iter(&read("certs/README.md"))
        .map(|c| {
            let body = c[2].replace("\\\"", "\"").replace("$CA_BUNDLE", bundle);
            (c[1].to_string(), body)
        })
        .collect()
}

#[test]
fn the_dev_guide_patches_a_ca_bundle_into_every_webhook() {
    let bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let patches = documented_patches(bundle);
    assert_eq!(patches.len(), 2, "one patch per configuration");
    let dir = tempfile::tempdir().unwrap();
    for doc in render("webhook-config/") {
        let config = if doc["kind"] == "MutatingWebhookConfiguration" {
            "mutating"
        } else {
            "validating"
        };
        let file = dir.path().join(format!("{config}.json"));
        std::fs::write(&file, doc.to_string()).unwrap();
        let patched = kubectl(&[
            "patch",
            "--local",
            "-f",
            file.to_str().unwrap(),
            "--type=json",
            "-p",
            &patches[config],
            "-o",
            "json",
        ]);
        let patched: Value = serde_json::from_str(&patched).unwrap();
        let hooks = patched["webhooks"].as_array().unwrap();
        for hook in hooks {
            assert_eq!(
                hook["clientConfig"]["caBundle"], bundle,
                "{config} webhook {} has no caBundle after the documented patch",
                hook["name"]
            );
        }
    }
}

#[test]
fn the_dev_guide_builds_a_tls_secret_for_the_service_names() {
    let guide = read("certs/README.md");
    let mut certs = vec!["certs", "--out", "OUT"];
    for name in SERVICE_DNS_NAMES {
        assert!(
            guide.contains(&format!("--dns {name}")),
            "guide names {name}"
        );
        certs.extend(["--dns", name]);
    }
    let secret_cmd = "kubectl -n sparkward-system create secret generic sparkward-tls \
                      --type=kubernetes.io/tls";
    assert!(
        guide.contains(secret_cmd),
        "guide creates the Secret with: {secret_cmd}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let certs: Vec<&str> = certs
        .into_iter()
        .map(|a| if a == "OUT" { out } else { a })
        .collect();
    let run = Command::new(env!("CARGO_BIN_EXE_sparkward"))
        .args(&certs)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bundle = String::from_utf8(run.stdout).unwrap().trim().to_string();

    let from = |key: &str| format!("--from-file={key}={out}/{key}");
    let json = kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "generic",
        "sparkward-tls",
        "--type=kubernetes.io/tls",
        &from("tls.crt"),
        &from("tls.key"),
        &from("ca.crt"),
        "--dry-run=client",
        "-o",
        "json",
    ]);
    let secret: Secret = serde_json::from_str(&json).unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["ca.crt", "tls.crt", "tls.key"]));
    // The printed caBundle is the CA in the Secret, base64 encoded.
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(&bundle)
        .unwrap();
    assert_eq!(data["ca.crt"].0, ca);
}

#[test]
fn cert_manager_issues_a_rotating_serving_certificate_from_a_private_ca() {
    let m = cert_manager();
    let issuers = m.custom_of("Issuer");
    let certificates = m.custom_of("Certificate");
    assert_eq!(issuers.len(), 2);
    assert_eq!(certificates.len(), 2);
    for doc in issuers.iter().chain(&certificates) {
        assert_eq!(doc["apiVersion"], "cert-manager.io/v1", "{}", describe(doc));
        assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{}", describe(doc));
    }
    let by_name = |list: &[&Value], name: &str| -> Value {
        list.iter()
            .find(|d| d["metadata"]["name"] == name)
            .map(|d| (*d).clone())
            .unwrap_or_else(|| panic!("{name}"))
    };

    let serving = by_name(&certificates, "sparkward-serving");
    let spec = &serving["spec"];
    assert_eq!(spec["secretName"], "sparkward-tls");
    let dns: BTreeSet<&str> = spec["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(dns, BTreeSet::from(SERVICE_DNS_NAMES));
    let lifetime = duration(spec["duration"].as_str().expect("duration"));
    let renew = duration(spec["renewBefore"].as_str().expect("renewBefore"));
    assert!(
        renew < lifetime && renew >= lifetime / 6,
        "{renew:?} of {lifetime:?}"
    );
    let key = &spec["privateKey"];
    assert_eq!(key["rotationPolicy"], "Always");
    let ok_key = (key["algorithm"] == "ECDSA" && key["size"] == 256)
        || (key["algorithm"] == "RSA" && key["size"] == 2048);
    assert!(ok_key, "{key}");
    assert_ne!(spec["isCA"], true);

    // serving → CA Issuer → CA Certificate → self-signed bootstrap Issuer.
    assert_eq!(spec["issuerRef"]["kind"], "Issuer");
    let ca_issuer = by_name(&issuers, spec["issuerRef"]["name"].as_str().unwrap());
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA Issuer");
    let ca_cert = certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("the CA Certificate");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let bootstrap = by_name(
        &issuers,
        ca_cert["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    assert!(bootstrap["spec"]["selfSigned"].is_object());

    // The webhook configurations inject the CA of exactly this Certificate.
    let inject = format!(
        "{NAMESPACE}/{}",
        serving["metadata"]["name"].as_str().unwrap()
    );
    for doc in render("webhook-config/") {
        assert_eq!(
            doc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            inject,
            "{}",
            describe(&doc)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The default-deny policy for enforced namespaces.
// ---------------------------------------------------------------------------------------------

fn default_deny() -> Value {
    let m = base();
    let policies = m.custom_of("CiliumClusterwideNetworkPolicy");
    assert_eq!(policies.len(), 1);
    policies[0].clone()
}

#[test]
fn the_default_deny_policy_isolates_enforced_namespaces_except_for_dns() {
    let policy = default_deny();
    assert_eq!(policy["apiVersion"], "cilium.io/v2");
    let spec = &policy["spec"];
    assert!(policy.get("specs").is_none());
    assert_eq!(
        spec["endpointSelector"],
        serde_json::json!({"matchLabels": {
            "k8s:io.cilium.k8s.namespace.labels.sparkward.io/enforce": "true"
        }})
    );
    assert_eq!(
        spec["enableDefaultDeny"],
        serde_json::json!({"ingress": true, "egress": true})
    );
    // Ingress: present (default deny on agents without enableDefaultDeny) but selecting no peer.
    assert_eq!(spec["ingress"], serde_json::json!([{}]));
    for key in ["ingressDeny", "egressDeny"] {
        assert!(spec.get(key).is_none(), "{key}");
    }

    // Egress: DNS only, to the same DNS pods as the job policies (config policy.dns).
    let (_, config) = base().config();
    let egress = spec["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 1);
    let rule = &egress[0];
    lint_egress_rule(rule).unwrap_or_else(|e| panic!("sparkward's own lint: {e}"));
    let selector = &rule["toEndpoints"][0]["matchLabels"];
    assert_eq!(
        selector["k8s:io.kubernetes.pod.namespace"],
        config.policy.dns_namespace.as_str()
    );
    for (k, v) in &config.policy.dns_match_labels {
        assert_eq!(selector[format!("k8s:{k}")], v.as_str(), "{k}");
    }
    let ports = rule["toPorts"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    let protocols: BTreeSet<(&str, &str)> = ports[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_str().unwrap(), p["protocol"].as_str().unwrap()))
        .collect();
    assert_eq!(protocols, BTreeSet::from([("53", "UDP"), ("53", "TCP")]));
    // The cluster's own names only, exactly the patterns every job policy starts its DNS list
    // with: the proxy joins the lists of all policies selecting a pod, so anything wider here
    // would widen every job's list.
    let cluster = cluster_dns_selectors(&config.policy.cluster_domain);
    assert_eq!(
        ports[0]["rules"],
        serde_json::json!({ "dns": cluster }),
        "the default-deny DNS list must be the cluster patterns of policy.clusterDomain"
    );
}

#[test]
fn the_default_deny_policy_validates_against_the_cilium_crd_schema() {
    let dir = std::env::var_os("SPARKWARD_UPSTREAM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_dir().join("../shared"));
    let path = dir.join("schemas/ciliumclusterwidenetworkpolicies.yaml");
    if !path.is_file() {
        if std::env::var("SPARKWARD_REQUIRE_UPSTREAM").as_deref() == Ok("1") {
            panic!(
                "SPARKWARD_REQUIRE_UPSTREAM=1 but upstream CRD schemas were not found at {}",
                dir.display()
            );
        }
        // Straight to stderr, past libtest's capture: a skip must be visible.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: upstream CRD schemas not found at {}; run scripts/fetch-upstream",
            dir.display()
        );
        return;
    }
    let validator =
        upstream::CrdValidator::load(upstream::Crd::CiliumClusterwideNetworkPolicy, &path).unwrap();
    let policy = default_deny();
    if let Err(violations) = validator.validate(&policy) {
        panic!("the default-deny policy violates the CRD schema: {violations:#?}");
    }
    // The validator is strict: a misspelt field would be caught.
    let mut typo = policy.clone();
    typo["spec"]["enableDefaultDeny"]["ingres"] = Value::Bool(true);
    assert!(validator.validate(&typo).is_err());
}

// ---------------------------------------------------------------------------------------------
// Examples.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_enforced_namespace_example_is_labelled_and_kept_out_of_the_base() {
    let docs = upstream::load_yaml_documents(
        &project_dir().join("deploy/examples/enforced-namespace.yaml"),
    )
    .unwrap();
    assert_eq!(docs.len(), 1);
    let ns: Namespace = typed(&docs[0]);
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get(ENFORCE_LABEL).map(String::as_str), Some("true"));
    let name = ns.metadata.name.unwrap();
    assert!(
        !base().index.contains(&format!("Namespace {name}")),
        "examples are not installed by deploy/"
    );
}

#[test]
fn the_user_guide_annotates_a_manifest_without_a_cluster() {
    // README, "Submit a job": the token goes in with `kubectl annotate --local`, piped to
    // `kubectl create` (client-side apply would copy it into last-applied-configuration).
    let guide = read("README.md");
    assert!(guide.contains("kubectl annotate --local -f orders-etl.yaml -o yaml"));
    assert!(guide.contains("| kubectl create -f -"));
    let out = kubectl(&[
        "annotate",
        "--local",
        "-f",
        "tests/fixtures/apps/pyspark-etl.yaml",
        "-o",
        "json",
        "sparkward.io/submitter-token=header.payload.signature",
    ]);
    let app: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(app["kind"], "SparkApplication");
    assert_eq!(
        app["metadata"]["annotations"]["sparkward.io/submitter-token"],
        "header.payload.signature"
    );
}
