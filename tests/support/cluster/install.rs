//! What the harness installs into the control plane: the upstream CRDs, sparkward the way
//! production installs it, spark-operator's RBAC, and per-namespace tenancy (the tenant Role,
//! the driver's service account).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use super::super::scenario::{Idp, with_identity};
use super::super::webhook::{Options, Sparkward};
use super::{PATIENCE, POLL, RealCluster, api, create, process};

/// The namespace sparkward runs in (deploy/base/namespace.yaml).
pub const SPARKWARD_NAMESPACE: &str = "sparkward-system";
/// sparkward's own service account (deploy/base/rbac.yaml).
pub const SPARKWARD_SERVICE_ACCOUNT: &str = "sparkward";
/// spark-operator's controller identity, as in the scenario config's `trustedCreators`.
pub const OPERATOR_NAMESPACE: &str = "spark-operator";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "spark-operator-controller";
/// The Role tenants get in their namespace.
pub const TENANT_ROLE: &str = "tenant-edit";
/// Field manager of everything the harness writes.
const MANAGER: &str = "sparkward-tests";

fn err(what: &str) -> impl Fn(kube::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------------------------------------
// CRDs
// ---------------------------------------------------------------------------------------------

/// Creates every CustomResourceDefinition of the upstream schema files and waits until each is
/// Established (served).
pub async fn install_crds(admin: &Client, schemas: &Path) -> Result<(), String> {
    let files = [
        "sparkoperator.k8s.io_sparkapplications.yaml",
        "sparkoperator.k8s.io_scheduledsparkapplications.yaml",
        "ciliumnetworkpolicies.yaml",
        "ciliumclusterwidenetworkpolicies.yaml",
    ];
    // Parsed and created concurrently: both the YAML parsing here and kube-apiserver's work on
    // each CRD (structural schema, OpenAPI) take a while, and overlap.
    let parsed = futures::future::try_join_all(files.map(|file| {
        let path = schemas.join(file);
        async move {
            tokio::task::spawn_blocking(move || super::super::upstream::load_yaml_documents(&path))
                .await
                .map_err(|e| e.to_string())?
        }
    }))
    .await?;
    let mut crds = Vec::new();
    for mut crd in parsed
        .into_iter()
        .flatten()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        // What a CRD manifest may carry from the cluster it was exported from.
        if let Some(meta) = crd["metadata"].as_object_mut() {
            for key in ["creationTimestamp", "resourceVersion", "uid", "generation"] {
                meta.remove(key);
            }
        }
        if let Some(obj) = crd.as_object_mut() {
            obj.remove("status");
        }
        crds.push(crd);
    }
    let pp = PostParams::default();
    futures::future::try_join_all(crds.iter().map(|crd| async {
        create(admin, crd, &pp)
            .await
            .map_err(|e| format!("CRD {}: {e}", crd["metadata"]["name"]))
    }))
    .await?;
    let names: Vec<String> = crds
        .iter()
        .map(|crd| {
            crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let crds = api(
        admin,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
    );
    let deadline = Instant::now() + PATIENCE;
    for name in names {
        loop {
            let crd = crds.get(&name).await.map_err(err(&name))?;
            let established = super::to_json(&crd)["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not Established after {PATIENCE:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Namespaces and tenants
// ---------------------------------------------------------------------------------------------

/// What a namespace editor may do to the kinds a Spark tenant works with (the built-in `edit`
/// ClusterRole is assembled by kube-controller-manager's aggregation controller, which is not
/// always running here, so the tenant Role lists them itself).
fn tenant_rules() -> Value {
    let edit = json!([
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection"
    ]);
    json!([
        {"apiGroups": [""], "resources": ["pods", "configmaps", "serviceaccounts", "services", "persistentvolumeclaims"], "verbs": edit},
        {"apiGroups": [""], "resources": ["pods/exec", "pods/attach", "pods/portforward"], "verbs": ["get", "create"]},
        {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["pods/log", "pods/status"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": ["sparkoperator.k8s.io"], "resources": ["sparkapplications", "scheduledsparkapplications"], "verbs": edit},
        {"apiGroups": ["sparkoperator.k8s.io"], "resources": ["sparkapplications/status", "scheduledsparkapplications/status"], "verbs": ["get"]},
        {"apiGroups": ["cilium.io"], "resources": ["ciliumnetworkpolicies"], "verbs": edit},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": edit},
    ])
}

/// What a Spark driver's service account needs to run executors.
fn driver_rules() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
         "verbs": ["get", "list", "watch", "create", "delete", "deletecollection", "patch"]},
    ])
}

/// What spark-operator's controller does: SparkApplications (and their status), driver pods,
/// their Services and ConfigMaps, in any namespace.
fn operator_rules() -> Value {
    let all = json!([
        "get", "list", "watch", "create", "update", "patch", "delete"
    ]);
    json!([
        {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "events"], "verbs": all},
        {"apiGroups": ["sparkoperator.k8s.io"], "resources": [
            "sparkapplications", "sparkapplications/status", "sparkapplications/finalizers",
            "scheduledsparkapplications", "scheduledsparkapplications/status", "scheduledsparkapplications/finalizers"],
         "verbs": all},
    ])
}

pub async fn create_namespace(admin: &Client, name: &str, labels: Value) -> Result<(), String> {
    let pp = PostParams::default();
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "spark", "namespace": name}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "spark-driver", "namespace": name}, "rules": driver_rules()}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "spark-driver", "namespace": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spark-driver"},
            "subjects": [{"kind": "ServiceAccount", "name": "spark", "namespace": name}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": TENANT_ROLE, "namespace": name}, "rules": tenant_rules()}),
    ];
    for object in objects {
        match create(admin, &object, &pp).await {
            Ok(_) => {}
            // The `default` service account, when kube-controller-manager made it first.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(format!("{}: {e}", object["kind"])),
        }
    }
    Ok(())
}

pub async fn bind_tenant(admin: &Client, namespace: &str, user: &str) -> Result<(), String> {
    let binding_name = format!(
        "{TENANT_ROLE}-{}",
        user.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            })
            .collect::<String>()
    );
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": binding_name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TENANT_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
    match create(admin, &binding, &PostParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// sparkward
// ---------------------------------------------------------------------------------------------

/// How sparkward is installed (one installation per test binary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparkwardSetup {
    /// YAML appended to the scenario config (`Idp::config`), e.g. a `lifecycle:` section.
    pub extra_config: String,
    /// Lines added to the config's `identity:` section (`scenario::with_identity`), e.g.
    /// `scenario::JOB_ADMINS_YAML`.
    pub identity_extra: String,
    /// Webhooks left out of the configurations: `validating` / `mutating` for a whole
    /// configuration, a webhook name such as `sparkapplications.validate.sparkward.io`, or
    /// `<name>:<OPERATION>` to drop one operation from that webhook's rules (e.g.
    /// `pods.validate.sparkward.io:CREATE` keeps it for UPDATE). Default:
    /// `SPARKWARD_REALAPI_OMIT_WEBHOOKS` (comma separated), so a run can leave webhooks out
    /// without editing the tests.
    pub omit_webhooks: Vec<String>,
}

impl SparkwardSetup {
    pub fn with_config(extra_config: &str) -> Self {
        let omit_webhooks = std::env::var("SPARKWARD_REALAPI_OMIT_WEBHOOKS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Self {
            extra_config: extra_config.into(),
            identity_extra: String::new(),
            omit_webhooks,
        }
    }

    /// The same setup with `yaml` added to the config's `identity:` section.
    pub fn with_identity(mut self, yaml: &str) -> Self {
        self.identity_extra = yaml.into();
        self
    }

    fn omits(&self, config_kind: &str, webhook: &str) -> bool {
        let whole = match config_kind {
            "MutatingWebhookConfiguration" => "mutating",
            _ => "validating",
        };
        self.omit_webhooks
            .iter()
            .any(|o| o == whole || o == webhook)
    }

    /// The operations left out of `webhook`'s rules.
    fn omitted_operations(&self, webhook: &str) -> Vec<&str> {
        self.omit_webhooks
            .iter()
            .filter_map(|o| o.split_once(':'))
            .filter(|(name, _)| *name == webhook)
            .map(|(_, op)| op)
            .collect()
    }

    /// `webhook` without the omitted operations; `None` when no rule is left.
    fn trim(&self, mut webhook: Value) -> Option<Value> {
        let name = webhook["name"].as_str().unwrap_or_default().to_string();
        let omitted = self.omitted_operations(&name);
        if omitted.is_empty() {
            return Some(webhook);
        }
        let rules: Vec<Value> = webhook["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut rule| {
                let ops: Vec<Value> = rule["operations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|op| !omitted.contains(&op.as_str().unwrap_or_default()))
                    .collect();
                rule["operations"] = Value::Array(ops);
                (!rule["operations"].as_array()?.is_empty()).then_some(rule)
            })
            .collect();
        if rules.is_empty() {
            return None;
        }
        webhook["rules"] = Value::Array(rules);
        Some(webhook)
    }
}

/// sparkward running as its own service account with its webhooks installed.
pub struct Installed {
    pub setup: SparkwardSetup,
    /// The test identity provider sparkward trusts (its JWKS endpoint runs on the harness's
    /// background runtime).
    pub idp: Idp,
    pub sparkward: Sparkward,
    /// The config sparkward runs with.
    pub config: String,
    /// Names of the webhooks that are installed.
    pub webhooks: Vec<String>,
}

impl Installed {
    /// Audit lines sparkward has written so far (JSON objects from its stdout).
    pub fn audit_lines(&self) -> Vec<Value> {
        self.sparkward.audit_lines()
    }

    /// Whether the webhook named `name` (e.g. `pods.validate.sparkward.io`) is installed.
    pub fn has_webhook(&self, name: &str) -> bool {
        self.webhooks.iter().any(|w| w == name)
    }

    /// Whether the webhook named `name` is installed and called for `operation`.
    pub fn covers(&self, name: &str, operation: &str) -> bool {
        self.has_webhook(name) && !self.setup.omitted_operations(name).contains(&operation)
    }

    /// sparkward's audit and log lines about `namespace`.
    pub fn print_namespace(&self, namespace: &str) {
        let needle = format!("\"namespace\":\"{namespace}\"");
        let pick = |all: &std::sync::Mutex<Vec<String>>| -> String {
            let all = all.lock().expect("lock");
            let lines: Vec<&str> = all
                .iter()
                .filter(|l| l.contains(&needle))
                .map(String::as_str)
                .collect();
            lines.join("\n")
        };
        eprintln!(
            "----- sparkward's audit lines for namespace {namespace} -----\n{}",
            pick(&self.sparkward.stdout)
        );
        eprintln!(
            "----- sparkward's log lines for namespace {namespace} -----\n{}",
            pick(&self.sparkward.stderr)
        );
    }

    pub fn print_logs(&self, lines: usize) {
        let tail = |all: Vec<String>| all[all.len().saturating_sub(lines)..].join("\n");
        eprintln!(
            "----- last {lines} lines of sparkward's stderr -----\n{}",
            tail(self.sparkward.stderr.lock().expect("lock").clone())
        );
        eprintln!(
            "----- last {lines} audit lines of sparkward -----\n{}",
            tail(self.sparkward.stdout.lock().expect("lock").clone())
        );
    }
}

/// Every document `kubectl kustomize <dir>` renders (the same renderer production uses).
pub fn kustomize(dir: &Path) -> Result<Vec<Value>, String> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| {
            format!("cannot run kubectl ({e}); the harness renders deploy/ and webhook-config/ with kubectl kustomize")
        })?;
    if !output.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The webhook configurations of `webhook-config/`, pointed at `base_url` (sparkward on
/// 127.0.0.1) with `ca_pem` as the caBundle, without the omitted webhooks.
pub fn webhook_configurations(
    setup: &SparkwardSetup,
    base_url: &str,
    ca_pem: &str,
) -> Result<Vec<Value>, String> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for mut doc in kustomize(&crate_dir.join("webhook-config"))? {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let webhooks: Vec<Value> = doc["webhooks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| !setup.omits(&kind, w["name"].as_str().unwrap_or_default()))
            .filter_map(|w| setup.trim(w))
            .map(|mut w| {
                let path = w["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                w["clientConfig"] = json!({
                    "url": format!("{base_url}{path}"),
                    "caBundle": sparkward::certs::ca_bundle(ca_pem),
                });
                w
            })
            .collect();
        if webhooks.is_empty() {
            continue;
        }
        doc["webhooks"] = Value::Array(webhooks);
        out.push(doc);
    }
    Ok(out)
}

/// Installs sparkward: RBAC from `deploy/`, spark-operator's RBAC, a TokenRequest token for
/// sparkward's service account, the identity provider, `sparkward serve`, the webhook
/// configurations; returns once the API server calls the webhooks.
pub async fn install(cluster: RealCluster, setup: SparkwardSetup) -> Result<Installed, String> {
    let admin = cluster.admin().await;
    let pp = PostParams::default();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));

    // sparkward's namespace and RBAC, exactly as `kubectl apply -k deploy/` would create them.
    const RBAC_KINDS: [&str; 6] = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let deploy = kustomize(&crate_dir.join("deploy"))?;
    for doc in deploy
        .iter()
        .filter(|d| RBAC_KINDS.contains(&d["kind"].as_str().unwrap_or_default()))
    {
        create(&admin, doc, &pp)
            .await
            .map_err(|e| format!("deploy/ {} {}: {e}", doc["kind"], doc["metadata"]["name"]))?;
    }

    // spark-operator's controller identity and what it may do.
    let operator = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "spark-operator-controller"}, "rules": operator_rules()}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "spark-operator-controller"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "spark-operator-controller"},
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}]}),
    ];
    for object in operator {
        create(&admin, &object, &pp)
            .await
            .map_err(|e| format!("operator RBAC {}: {e}", object["kind"]))?;
    }

    // A token of sparkward's own service account, from the TokenRequest API
    // (`kubectl create token sparkward -n sparkward-system`).
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(24 * 3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), SPARKWARD_NAMESPACE)
        .create_token_request(SPARKWARD_SERVICE_ACCOUNT, &pp, &request)
        .await
        .map_err(err("TokenRequest for sparkward"))?
        .status
        .ok_or("TokenRequest without status")?
        .token;
    let kubeconfig = cluster.run_dir().join("sparkward.kubeconfig");
    std::fs::write(
        &kubeconfig,
        cluster.kubeconfig(json!({ "token": token })).to_string(),
    )
    .map_err(|e| e.to_string())?;

    let idp = Idp::start().await;
    let config = with_identity(&idp.config(&setup.extra_config), &setup.identity_extra);
    let sparkward = Sparkward::start(Options {
        config: Some(config.clone()),
        kubeconfig: Some(kubeconfig),
        ..Options::default()
    })
    .await;
    process::kill_at_exit(sparkward.child.id());

    let configurations =
        webhook_configurations(&setup, &sparkward.base_url(), &sparkward.certs.ca_pem)?;
    let mut webhooks = Vec::new();
    for doc in &configurations {
        for w in doc["webhooks"].as_array().into_iter().flatten() {
            webhooks.push(w["name"].as_str().unwrap_or_default().to_string());
        }
        create(&admin, doc, &pp)
            .await
            .map_err(|e| format!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]))?;
    }
    let installed = Installed {
        setup,
        idp,
        sparkward,
        config,
        webhooks,
    };
    wait_until_called(&cluster, &admin, &installed).await?;
    Ok(installed)
}

/// kube-apiserver loads webhook configurations through an informer, a moment after they are
/// created: dry-run ConfigMaps in a probe namespace until sparkward has audited a call of each
/// installed ConfigMap webhook for the same probe.
async fn wait_until_called(
    cluster: &RealCluster,
    admin: &Client,
    installed: &Installed,
) -> Result<(), String> {
    let expected: Vec<&str> = [
        ("configmaps.mutate.sparkward.io", "mutate"),
        ("configmaps.validate.sparkward.io", "validate"),
    ]
    .into_iter()
    .filter(|(name, _)| installed.has_webhook(name))
    .map(|(_, mode)| mode)
    .collect();
    let namespace = "sparkward-probe";
    create_namespace(admin, namespace, json!({"sparkward.io/enforce": "true"})).await?;
    let deadline = Instant::now() + PATIENCE;
    for attempt in 0u32.. {
        let name = format!("probe-{attempt}");
        let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": {"k": "v"}});
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let _ = create(admin, &probe, &dry_run).await;
        let seen: Vec<String> = installed
            .audit_lines()
            .into_iter()
            .filter(|l| l["namespace"] == namespace && l["name"] == name.as_str())
            .filter_map(|l| l["webhook"].as_str().map(String::from))
            .collect();
        if expected.iter().all(|m| seen.iter().any(|s| s == m)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            cluster.print_logs(40);
            return Err(format!(
                "kube-apiserver did not call sparkward's webhooks {expected:?} within {PATIENCE:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Managed policies (label `app.kubernetes.io/managed-by=sparkward`) in `namespace`.
pub async fn managed_policies(client: &Client, namespace: &str) -> Vec<Value> {
    api(
        client,
        "cilium.io/v2",
        "CiliumNetworkPolicy",
        Some(namespace),
    )
    .list(&ListParams::default().labels("app.kubernetes.io/managed-by=sparkward"))
    .await
    .expect("list policies")
    .items
    .iter()
    .map(super::to_json)
    .collect()
}
