//! Spark's own security per job, end to end: sparkward runs as a process in cluster mode, its
//! own webhook configurations are registered with the stand-in API server, and every request
//! goes through the stand-in's admission chain (mutating, then validating on the final object)
//! as the user it stands for. Each attack (a weaker setting, the RPC secret in clear, a tenant
//! touching the job's Secret) sits next to the legitimate flow beside it.
//!
//! The profiles of these tests: `default` (the per-job secret, RPC authentication and
//! encryption, local-storage encryption, UI ACLs with two admin groups) for `spark-jobs`;
//! `open` (nothing) and `strict` (the secret plus further settings) for namespaces that select
//! them with `sparkward.io/spark-profile`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use http::Method;
use serde_json::{Value, json};
use support::apiserver::{
    CNP, CONFIG_MAP, FakeApiServer, Fault, POD, Reply, Resource, SCHEDULED_SPARK_APP, SECRET,
    SPARK_APP, User,
};
use support::reviews::{job_of, mk_pod};
use support::scenario::{Idp, mk_spark_app};
use support::testhook::{Answer, TestHook};
use support::webhook::{Options, Sparkward};

const NS: &str = "spark-jobs";
/// A namespace whose profile asks for nothing.
const OPEN_NS: &str = "spark-open";
/// A namespace whose profile adds settings of its own.
const STRICT_NS: &str = "spark-strict";
/// A namespace that names a profile the configuration does not define.
const TYPO_NS: &str = "spark-typo";

const APP_MUTATE: &str = "sparkapplications.mutate.sparkward.io";
const APP_VALIDATE: &str = "sparkapplications.validate.sparkward.io";
const POD_MUTATE: &str = "pods.mutate.sparkward.io";
const CM_MUTATE: &str = "configmaps.mutate.sparkward.io";
const SECRET_VALIDATE: &str = "secrets.validate.sparkward.io";
const MERGE: &str = "application/merge-patch+json";
const SECRET_FILE: &str = "/etc/sparkward/rpc/secret";

/// The profiles, and a lifecycle quick enough for a test (the controller's tick is 5 s).
const SPARK_YAML: &str = r#"spark:
  profiles:
    default:
      rpcSecret: true
      settings: { spark.authenticate: "true", spark.network.crypto.enabled: "true", spark.io.encryption.enabled: "true" }
      uiAcls: { adminGroups: [data-admins, sre] }
    open:
      rpcSecret: false
    strict:
      rpcSecret: true
      settings: { spark.network.crypto.enabled: "true", spark.io.encryption.enabled: "true", spark.io.encryption.keySizeBits: "256", spark.network.crypto.saslFallback: "false" }
lifecycle:
  endGrace: 1s
  orphanGrace: 9s
  lease: { duration: 3s }
"#;

/// How long a lifecycle action may take to show: a tick, the grace, the Lease.
const PATIENCE: Duration = Duration::from_secs(40);

fn alice() -> User {
    User::new("oidc:alice")
}

fn bob() -> User {
    User::new("oidc:bob")
}

fn operator() -> User {
    User::service_account("spark-operator", "spark-operator-controller")
}

fn garbage_collector() -> User {
    User::service_account("kube-system", "generic-garbage-collector")
}

/// The `spark` service account through a token bound to `pod` (a driver's own identity).
fn bound_to(pod: &Value) -> User {
    User::bound_to_pod(
        pod["metadata"]["namespace"].as_str().unwrap(),
        "spark",
        pod["metadata"]["name"].as_str().unwrap(),
        pod["metadata"]["uid"].as_str().unwrap(),
    )
}

struct World {
    api: FakeApiServer,
    idp: Idp,
    server: Sparkward,
    _dir: tempfile::TempDir,
}

/// The stand-in with the test namespaces (created before sparkward starts, so that its
/// namespace cache has their labels), sparkward with `SPARK_YAML` and `policy` lines added to
/// its `policy:` section, behind its own webhook configurations.
async fn world_with(policy: &str) -> World {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({ "sparkward.io/enforce": "true" }));
    for (ns, profile) in [
        (OPEN_NS, "open"),
        (STRICT_NS, "strict"),
        (TYPO_NS, "nonexistent"),
    ] {
        api.ensure_namespace(
            ns,
            json!({ "sparkward.io/enforce": "true", "sparkward.io/spark-profile": profile }),
        );
    }
    api.ensure_namespace("sparkward-system", json!({}));
    for ns in [NS, OPEN_NS, STRICT_NS, TYPO_NS] {
        api.insert(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "spark", "namespace": ns },
        }));
    }
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = idp
        .config(SPARK_YAML)
        .replacen("policy:\n", &format!("policy:\n{policy}"), 1);
    let server = Sparkward::start(Options {
        config: Some(config),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        ..Options::default()
    })
    .await;
    api.install_sparkward_webhooks(&server.base_url(), &server.certs.ca_pem);
    World {
        api,
        idp,
        server,
        _dir: dir,
    }
}

async fn world() -> World {
    world_with("").await
}

/// The API path of `resource` in `ns` (its collection, or `name` and its subresource).
fn path(resource: Resource, ns: &str, name: Option<&str>) -> String {
    let prefix = if resource.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}", resource.api_version())
    };
    let name = name.map(|n| format!("/{n}")).unwrap_or_default();
    format!("{prefix}/namespaces/{ns}/{}{name}", resource.plural)
}

fn message(reply: &Reply) -> String {
    reply.body["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts that the request succeeded; its answer's body.
fn allowed(reply: Reply, what: &str) -> Value {
    assert!(
        (200..300).contains(&reply.status),
        "{what} was refused ({}): {}",
        reply.body["code"],
        reply.body
    );
    reply.body
}

/// The base64 text of a Secret's `secret` key, and its bytes.
fn secret_data(secret: &Value) -> (String, Vec<u8>) {
    let text = secret["data"]["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no data.secret in {secret}"))
        .to_string();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .unwrap();
    (text, bytes)
}

/// spark-operator's driver for `app`: the application's driver labels plus the operator's,
/// controlled by the application.
fn operator_driver(app: &Value) -> Value {
    let name = app["metadata"]["name"].as_str().unwrap();
    let ns = app["metadata"]["namespace"].as_str().unwrap();
    let mut labels = app["spec"]["driver"]["labels"].clone();
    labels["spark-role"] = json!("driver");
    labels["spark-app-name"] = json!(name);
    labels["sparkoperator.k8s.io/app-name"] = json!(name);
    labels["sparkoperator.k8s.io/launched-by-spark-operator"] = json!("true");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-driver"), "namespace": ns, "labels": labels,
            "ownerReferences": [{
                "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                "name": name, "uid": app["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": { "serviceAccountName": "spark", "restartPolicy": "Never",
            "containers": [{ "name": "spark-kubernetes-driver",
                "image": "docker.io/apache/spark:4.0.4", "args": ["driver"] }] },
    })
}

/// Executor `n` as Spark's driver creates it, controlled by the driver pod.
fn executor_of(driver: &Value, n: u32) -> Value {
    let name = driver["metadata"]["name"].as_str().unwrap();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-exec-{n}"), "namespace": driver["metadata"]["namespace"],
            "labels": { "spark-role": "executor", "spark-exec-id": n.to_string() },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": name,
                "uid": driver["metadata"]["uid"], "controller": true }],
        },
        "spec": { "serviceAccountName": "spark", "restartPolicy": "Never",
            "containers": [{ "name": "spark-kubernetes-executor",
                "image": "docker.io/apache/spark:4.0.4", "args": ["executor"] }] },
    })
}

/// Asserts that `pod` mounts its job's RPC Secret read-only in its Spark container `container`
/// (and nowhere else), and carries no secret in its environment.
fn assert_mounts_the_jobs_secret(pod: &Value, job: &str, container: &str) {
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let ours: Vec<&Value> = volumes
        .iter()
        .filter(|v| v["name"] == "sparkward-rpc")
        .collect();
    assert_eq!(ours.len(), 1, "{volumes:?}");
    assert_eq!(
        ours[0]["secret"],
        json!({ "secretName": format!("sparkward-{job}-rpc"), "defaultMode": 0o440,
            "items": [{ "key": "secret", "path": "secret" }] })
    );
    for c in pod["spec"]["containers"].as_array().unwrap() {
        let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
        let rpc: Vec<&Value> = mounts
            .iter()
            .filter(|m| m["name"] == "sparkward-rpc")
            .collect();
        if c["name"] == container {
            assert_eq!(
                rpc,
                vec![
                    &json!({ "name": "sparkward-rpc", "mountPath": "/etc/sparkward/rpc", "readOnly": true })
                ],
                "{c}"
            );
        } else {
            assert!(rpc.is_empty(), "{c}");
        }
        assert!(!c.to_string().contains("_SPARK_AUTH_SECRET"), "{c}");
    }
}

impl World {
    fn token(&self, subject: &str) -> String {
        self.idp.token(subject, "data:read:postgres-main")
    }

    /// `subject`'s SparkApplication `name` in `ns`, with `conf` as its sparkConf (if any).
    fn app_in(&self, ns: &str, name: &str, conf: Option<Value>) -> Value {
        let mut app = mk_spark_app(name, ns, &self.token("alice"));
        if let Some(conf) = conf {
            app["spec"]["sparkConf"] = conf;
        }
        app
    }

    fn app(&self, name: &str) -> Value {
        self.app_in(NS, name, None)
    }

    /// alice's ScheduledSparkApplication `name`, its template with `conf`.
    fn schedule(&self, name: &str, conf: Option<Value>) -> Value {
        let mut template = mk_spark_app(name, NS, "x")["spec"].clone();
        if let Some(conf) = conf {
            template["sparkConf"] = conf;
        }
        json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
            "metadata": { "name": name, "namespace": NS,
                "annotations": { "sparkward.io/submitter-token": self.token("alice") } },
            "spec": { "schedule": "@every 1h", "template": template },
        })
    }

    async fn create(&self, user: &User, object: &Value) -> Reply {
        let api_version = object["apiVersion"].as_str().unwrap();
        let kind = object["kind"].as_str().unwrap();
        let resource = Resource::for_kind(api_version, kind).unwrap();
        let ns = object["metadata"]["namespace"].as_str().unwrap();
        self.api
            .request_as(
                user,
                Method::POST,
                &path(resource, ns, None),
                None,
                Some(object),
            )
            .await
    }

    /// Creates `object` as `user` and expects it admitted; the stored object.
    async fn admitted(&self, user: &User, object: &Value) -> Value {
        let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
        allowed(self.create(user, object).await, &what)
    }

    async fn patch(&self, user: &User, resource: Resource, name: &str, patch: Value) -> Reply {
        self.api
            .request_as(
                user,
                Method::PATCH,
                &path(resource, NS, Some(name)),
                Some(MERGE),
                Some(&patch),
            )
            .await
    }

    async fn delete(&self, user: &User, resource: Resource, name: &str) -> Reply {
        self.api
            .request_as(
                user,
                Method::DELETE,
                &path(resource, NS, Some(name)),
                None,
                None,
            )
            .await
    }

    /// Asserts that `reply` is a denial by sparkward's webhook `webhook` with reason code
    /// `reason` (as audited in its answer); returns the message.
    fn denied(&self, reply: Reply, webhook: &str, reason: &str) -> String {
        let message = message(&reply);
        assert!(
            !(200..300).contains(&reply.status),
            "expected {webhook} to deny ({reason}): {}",
            reply.body
        );
        assert!(
            message.contains(&format!(
                "admission webhook \"{webhook}\" denied the request"
            )),
            "expected a denial by {webhook}: {message}"
        );
        let call = self
            .api
            .admission_calls()
            .into_iter()
            .rev()
            .find(|c| c.webhook == webhook && !c.allowed)
            .unwrap();
        assert_eq!(
            call.response.unwrap()["auditAnnotations"]["reason"],
            reason,
            "{message}"
        );
        message
    }

    fn secrets(&self, ns: &str) -> Vec<Value> {
        self.api.list(SECRET, Some(ns))
    }

    fn rpc_secret(&self, job: &str) -> Option<Value> {
        self.api.get(SECRET, NS, &format!("sparkward-{job}-rpc"))
    }

    /// Waits (up to `PATIENCE`) until `done` holds.
    async fn eventually(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}:\n{}",
                self.server.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the job's Secret has an ownerReference to `owner` (adoption).
    async fn adopted(&self, job: &str, owner: &Value) {
        let uid = owner["metadata"]["uid"].clone();
        self.eventually("the Secret's adoption", |w| {
            w.rpc_secret(job).is_some_and(|s| {
                s["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
            })
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// SparkApplications and their pods
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_spark_application_gets_the_enforced_conf_and_every_pod_of_it_mounts_the_jobs_secret() {
    let w = world().await;
    let app = w.admitted(&alice(), &w.app("etl")).await;
    let job = job_of(&app);
    let conf = &app["spec"]["sparkConf"];
    for (key, value) in [
        ("spark.authenticate", "true"),
        ("spark.network.crypto.enabled", "true"),
        ("spark.io.encryption.enabled", "true"),
        ("spark.authenticate.secret.file", SECRET_FILE),
        ("spark.acls.enable", "true"),
        // The verified submitter, not the requester's Kubernetes name.
        ("spark.ui.view.acls", "alice"),
        ("spark.modify.acls", "alice"),
        ("spark.admin.acls.groups", "data-admins,sre"),
    ] {
        assert_eq!(conf[key], value, "{key} in {conf}");
    }
    // No secret in clear and no per-role file that would bypass the mounted one.
    for key in [
        "spark.authenticate.secret",
        "spark.authenticate.secret.driver.file",
        "spark.authenticate.secret.executor.file",
    ] {
        assert!(conf.get(key).is_none(), "{key} in {conf}");
    }
    let annotations = &app["metadata"]["annotations"];
    assert_eq!(annotations["sparkward.io/spark-profile"], "default");
    assert_eq!(
        annotations["sparkward.io/rpc-secret"],
        format!("sparkward-{job}-rpc")
    );
    // The application spec gets the writable emptyDirs of the hardening but not the secret's
    // volume: each pod gets that from sparkward's pod webhook, whatever the operator's version
    // does with spec volumes.
    assert!(
        !app["spec"].to_string().contains("sparkward-rpc"),
        "{}",
        app["spec"]
    );

    // spark-operator's driver and the executors the driver creates mount the job's Secret.
    let driver = w.admitted(&operator(), &operator_driver(&app)).await;
    assert_eq!(job_of(&driver), job);
    assert_mounts_the_jobs_secret(&driver, &job, "spark-kubernetes-driver");
    for n in 1..=2 {
        let executor = w
            .admitted(&bound_to(&driver), &executor_of(&driver, n))
            .await;
        assert_eq!(job_of(&executor), job);
        assert_mounts_the_jobs_secret(&executor, &job, "spark-kubernetes-executor");
    }

    // A pod of the job that brings a volume of that name for another Secret is denied: nothing
    // stands in for the job's secret.
    let mut swapped = executor_of(&driver, 3);
    swapped["spec"]["volumes"] =
        json!([{ "name": "sparkward-rpc", "secret": { "secretName": "bobs-known-secret" } }]);
    let reply = w.create(&bound_to(&driver), &swapped).await;
    let message = w.denied(reply, POD_MUTATE, "hardening");
    assert!(
        message.contains("spec.volumes[0]") && message.contains("is not the job's Secret"),
        "{message}"
    );
    assert!(w.api.get(POD, NS, "etl-driver-exec-3").is_none());
}

#[tokio::test]
async fn the_rpc_secret_exists_before_the_answer_holds_256_random_bits_and_is_never_shown() {
    let w = world().await;
    w.api.clear_requests();
    let app = w.admitted(&alice(), &w.app("etl")).await;
    let job = job_of(&app);
    let name = format!("sparkward-{job}-rpc");
    let secret = w.rpc_secret(&job).expect("the job's Secret");
    let labels = &secret["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "sparkward");
    assert_eq!(labels["sparkward.io/job-id"], job.as_str());
    assert_eq!(labels["sparkward.io/user"], "alice");
    assert_eq!(secret["immutable"], true);
    assert_eq!(secret["type"], "Opaque");
    let (text, bytes) = secret_data(&secret);
    assert_eq!(bytes.len(), 32, "256 bits");

    // Order, in the stand-in's request log (in order of answer): the job's policy, then its
    // Secret, created by sparkward while the application's create was in admission, and
    // answered before the application was stored and the create answered.
    let requests = w.api.requests();
    let position = |pred: &dyn Fn(&support::apiserver::RecordedRequest) -> bool| {
        requests.iter().position(pred).unwrap()
    };
    let app_create =
        position(&|r| r.method == Method::POST && r.path.contains("/sparkapplications"));
    let secret_create = position(&|r| {
        r.method == Method::POST && r.path.contains(&format!("/namespaces/{NS}/secrets"))
    });
    let policy_apply =
        position(&|r| r.method == Method::PATCH && r.path.contains("ciliumnetworkpolicies"));
    assert!(policy_apply < secret_create, "{requests:#?}");
    assert!(secret_create < app_create, "{requests:#?}");
    let (s, a) = (&requests[secret_create], &requests[app_create]);
    assert!(s.received >= a.received && s.answered <= a.answered);
    assert_eq!(s.status, Some(201));
    assert_eq!(s.query("fieldManager").as_deref(), Some("sparkward"));
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path.contains("/secrets") && r.method == Method::POST)
            .count(),
        1,
        "one Secret for one job"
    );

    // Another job, another secret (and neither is all zeroes).
    let other = w.admitted(&alice(), &w.app("etl-2")).await;
    let (other_text, other_bytes) = secret_data(&w.rpc_secret(&job_of(&other)).unwrap());
    assert_ne!(other_bytes, bytes);
    assert!(bytes.iter().any(|b| *b != 0) && other_bytes.iter().any(|b| *b != 0));

    // The secret is nowhere but in the Secret: not in what the webhooks answered, not in the
    // stored objects, not in the audit lines or the logs.
    w.server
        .audit_line(|l| l["name"] == "etl-2" && l["allowed"] == true)
        .await;
    for secret in [&text, &other_text] {
        for call in w.api.admission_calls() {
            let seen = format!("{} {:?}", call.request, call.response);
            assert!(!seen.contains(secret.as_str()), "{}", call.webhook);
        }
        for stored in [
            w.api.get(SPARK_APP, NS, "etl").unwrap(),
            w.api.get(SPARK_APP, NS, "etl-2").unwrap(),
        ] {
            assert!(!stored.to_string().contains(secret.as_str()));
        }
        let audit = serde_json::to_string(&w.server.audit_lines()).unwrap();
        assert!(!audit.contains(secret.as_str()));
        assert!(!w.server.stderr_text().contains(secret.as_str()));
    }
    let line = w
        .server
        .audit_line(|l| l["name"] == "etl" && l["allowed"] == true)
        .await;
    assert_eq!(line["jobId"], job.as_str(), "{line}");
    assert!(w.api.get(SECRET, NS, &name).is_some());

    // A dry run is answered the same way and creates nothing.
    let before = w.secrets(NS).len();
    let reply = w
        .api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{}?dryRun=All", path(SPARK_APP, NS, None)),
            None,
            Some(&w.app("dry")),
        )
        .await;
    let dry = allowed(reply, "the dry run");
    assert_eq!(
        dry["spec"]["sparkConf"]["spark.authenticate.secret.file"],
        SECRET_FILE
    );
    let dry_job = job_of(&dry);
    assert!(w.rpc_secret(&dry_job).is_none());
    assert_eq!(w.secrets(NS).len(), before);
    assert!(w.api.get(SPARK_APP, NS, "dry").is_none());
}

// ---------------------------------------------------------------------------------------------
// spark-submit: a driver pod with its own token, its spark.properties ConfigMap, executors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_spark_submit_driver_its_properties_and_its_executors_get_the_settings_and_an_auth_secret_env_is_denied()
 {
    let w = world().await;
    let mut pod = mk_pod("pi-driver", NS);
    pod["metadata"]["annotations"] = json!({ "sparkward.io/submitter-token": w.token("alice") });
    let driver = w.admitted(&alice(), &pod).await;
    let job = job_of(&driver);
    assert_mounts_the_jobs_secret(&driver, &job, "spark-kubernetes-driver");
    assert!(w.rpc_secret(&job).is_some(), "a new job gets its Secret");

    // spark-submit then writes the driver's properties, controlled by the driver pod.
    let owner = json!([{ "apiVersion": "v1", "kind": "Pod", "name": "pi-driver",
        "uid": driver["metadata"]["uid"], "controller": true }]);
    let submitted =
        "spark.app.name=pi\nspark.kubernetes.namespace=spark-jobs\nspark.authenticate true\n";
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "spark-drv-pi-conf-map", "namespace": NS, "ownerReferences": owner },
        "data": { "spark.properties": submitted } });
    let stored = w.admitted(&alice(), &cm).await;
    let properties = stored["data"]["spark.properties"].as_str().unwrap();
    assert!(properties.starts_with(submitted), "{properties}");
    for line in [
        "spark.authenticate.secret.file=/etc/sparkward/rpc/secret\n",
        "spark.network.crypto.enabled=true\n",
        "spark.io.encryption.enabled=true\n",
        "spark.acls.enable=true\n",
        "spark.ui.view.acls=alice\n",
        "spark.modify.acls=alice\n",
        "spark.admin.acls.groups=data-admins,sre\n",
    ] {
        assert!(properties.contains(line), "no {line:?} in {properties}");
    }
    // What was there already is not added again.
    assert!(
        !properties.contains("spark.authenticate=true"),
        "{properties}"
    );

    // A weaker line (the last one of a key wins, as in java.util.Properties) is denied.
    let mut weaker = cm.clone();
    weaker["metadata"]["name"] = json!("spark-drv-pi-conf-map-2");
    weaker["data"]["spark.properties"] =
        json!("spark.io.encryption.enabled=true\nspark.io.encryption.enabled=false\n");
    let message = w.denied(w.create(&alice(), &weaker).await, CM_MUTATE, "hardening");
    assert!(
        message.contains("spark.io.encryption.enabled") && message.contains("remove it"),
        "{message}"
    );
    assert!(
        w.api
            .get(CONFIG_MAP, NS, "spark-drv-pi-conf-map-2")
            .is_none()
    );

    // The executors the driver creates mount the job's Secret.
    let executor = w
        .admitted(&bound_to(&driver), &executor_of(&driver, 1))
        .await;
    assert_eq!(job_of(&executor), job);
    assert_mounts_the_jobs_secret(&executor, &job, "spark-kubernetes-executor");

    // An executor with the secret in its environment (a driver started without the secret
    // file property) is denied with what to do.
    let mut leaky = executor_of(&driver, 2);
    leaky["spec"]["containers"][0]["env"] = json!([
        { "name": "SPARK_EXECUTOR_ID", "value": "2" },
        { "name": "_SPARK_AUTH_SECRET", "value": "c2VjcmV0LWluLWNsZWFy" },
    ]);
    let message = w.denied(
        w.create(&bound_to(&driver), &leaky).await,
        POD_MUTATE,
        "hardening",
    );
    for needle in [
        "spec.containers[0].env[1]",
        "_SPARK_AUTH_SECRET",
        "spark.authenticate.secret.file",
    ] {
        assert!(message.contains(needle), "no '{needle}' in: {message}");
    }
    assert!(!message.contains("c2VjcmV0LWluLWNsZWFy"), "{message}");
    assert!(w.api.get(POD, NS, "pi-driver-exec-2").is_none());
    // The same for a new driver of alice's that brings one.
    let mut leaky_driver = mk_pod("pi-2-driver", NS);
    leaky_driver["metadata"]["annotations"] =
        json!({ "sparkward.io/submitter-token": w.token("alice") });
    leaky_driver["spec"]["containers"][0]["env"] =
        json!([{ "name": "_SPARK_AUTH_SECRET", "value": "x" }]);
    let message = w.denied(
        w.create(&alice(), &leaky_driver).await,
        POD_MUTATE,
        "hardening",
    );
    assert!(message.contains("_SPARK_AUTH_SECRET"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Weaker values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn weaker_spark_settings_are_denied_naming_the_key_and_the_fix_and_the_enforced_values_pass()
{
    let w = world().await;
    for (key, value) in [
        ("spark.authenticate", "false"),
        ("spark.network.crypto.enabled", "false"),
        ("spark.io.encryption.enabled", "false"),
        ("spark.authenticate.secret.file", "/tmp/a-file-i-wrote"),
        (
            "spark.authenticate.secret.executor.file",
            "/tmp/a-file-i-wrote",
        ),
        ("spark.acls.enable", "false"),
        ("spark.ui.view.acls", "*"),
        ("spark.admin.acls.groups", "everyone"),
    ] {
        let app = w.app_in(NS, "weak", Some(json!({ key: value })));
        let message = w.denied(w.create(&alice(), &app).await, APP_MUTATE, "hardening");
        for needle in [
            format!("spec.sparkConf[\"{key}\"]"),
            format!("is '{value}'"),
            "remove it".to_string(),
            "Spark security profile 'default'".to_string(),
        ] {
            assert!(message.contains(&needle), "no '{needle}' in: {message}");
        }
    }
    // A secret in clear is denied without repeating it.
    let app = w.app_in(
        NS,
        "weak",
        Some(json!({ "spark.authenticate.secret": "hunter2-in-clear" })),
    );
    let message = w.denied(w.create(&alice(), &app).await, APP_MUTATE, "hardening");
    assert!(
        message.contains("spec.sparkConf[\"spark.authenticate.secret\"]")
            && message.contains("holds an RPC secret in clear"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    // Nothing was created for any of them.
    assert!(w.api.get(SPARK_APP, NS, "weak").is_none());
    assert!(w.secrets(NS).is_empty(), "{:?}", w.secrets(NS));
    assert!(w.api.list(CNP, Some(NS)).is_empty());

    // The enforced values themselves, written by the user, pass unchanged.
    let app = w.app_in(
        NS,
        "explicit",
        Some(json!({
            "spark.authenticate": "true", "spark.network.crypto.enabled": "true",
            "spark.io.encryption.enabled": "true", "spark.ui.view.acls": "alice",
            "spark.executor.cores": "2",
        })),
    );
    let stored = w.admitted(&alice(), &app).await;
    assert_eq!(stored["spec"]["sparkConf"]["spark.executor.cores"], "2");
    assert_eq!(
        stored["spec"]["sparkConf"]["spark.authenticate.secret.file"],
        SECRET_FILE
    );

    // An update that takes a setting back is denied by the validating webhook.
    let reply = w
        .patch(
            &alice(),
            SPARK_APP,
            "explicit",
            json!({ "spec": { "sparkConf": { "spark.network.crypto.enabled": "false" } } }),
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "hardening");
    assert!(
        message.contains("spec.sparkConf[\"spark.network.crypto.enabled\"]"),
        "{message}"
    );
    let reply = w
        .patch(
            &alice(),
            SPARK_APP,
            "explicit",
            json!({ "spec": { "sparkConf": { "spark.io.encryption.enabled": null } } }),
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "not_hardened");
    assert!(message.contains("spark.io.encryption.enabled"), "{message}");
    allowed(
        w.patch(
            &alice(),
            SPARK_APP,
            "explicit",
            json!({ "spec": { "sparkConf": { "spark.executor.cores": "4" } } }),
        )
        .await,
        "alice's own setting",
    );
}

// ---------------------------------------------------------------------------------------------
// ScheduledSparkApplications
// ---------------------------------------------------------------------------------------------

/// A run of `schedule` as spark-operator creates it: the template, owned by the schedule.
fn run_of(schedule: &Value, n: u32) -> Value {
    let name = schedule["metadata"]["name"].as_str().unwrap();
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": { "name": format!("{name}-{n}"), "namespace": NS,
            "ownerReferences": [{ "apiVersion": "sparkoperator.k8s.io/v1beta2",
                "kind": "ScheduledSparkApplication", "name": name,
                "uid": schedule["metadata"]["uid"], "controller": true }] },
        "spec": schedule["spec"]["template"],
    })
}

#[tokio::test]
async fn a_schedules_template_gets_the_settings_and_stays_with_them_and_each_run_is_checked_again()
{
    let w = world().await;
    let schedule = w.admitted(&alice(), &w.schedule("nightly", None)).await;
    let conf = &schedule["spec"]["template"]["sparkConf"];
    assert_eq!(conf["spark.authenticate.secret.file"], SECRET_FILE);
    assert_eq!(conf["spark.io.encryption.enabled"], "true");
    assert_eq!(conf["spark.ui.view.acls"], "alice");
    // A schedule is no job: its runs get their Secrets.
    assert!(w.secrets(NS).is_empty());

    // A weaker template is denied at creation.
    let weak = w.schedule(
        "weak",
        Some(json!({ "spark.network.crypto.enabled": "false" })),
    );
    let message = w.denied(w.create(&alice(), &weak).await, APP_MUTATE, "hardening");
    assert!(
        message.contains("spec.template.sparkConf[\"spark.network.crypto.enabled\"]"),
        "{message}"
    );

    // An update of the template that takes a setting back is denied as well (every run would
    // be denied later, where nobody watches).
    let reply = w
        .patch(
            &alice(),
            SCHEDULED_SPARK_APP,
            "nightly",
            json!({ "spec": { "template": { "sparkConf": { "spark.io.encryption.enabled": "false" } } } }),
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "hardening");
    assert!(
        message.contains("spec.template.sparkConf[\"spark.io.encryption.enabled\"]"),
        "{message}"
    );
    allowed(
        w.patch(
            &alice(),
            SCHEDULED_SPARK_APP,
            "nightly",
            json!({ "spec": { "schedule": "@every 2h" } }),
        )
        .await,
        "alice changing her schedule",
    );

    // A mutating webhook after sparkward's that weakens the template: sparkward is not
    // re-invoked for schedules, and the validating pass sees the final template.
    let hook = TestHook::start().await;
    hook.on("/weaken", |request| {
        if request["kind"]["kind"] == "ScheduledSparkApplication" {
            Answer::patch(json!([{ "op": "replace",
                "path": "/spec/template/sparkConf/spark.authenticate", "value": "false" }]))
        } else {
            Answer::allow()
        }
    });
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": "zz-later-webhook" },
        "webhooks": [{
            "name": "weaken.example.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": { "service": { "name": "later", "namespace": "later", "path": "/weaken" } },
            "rules": [{ "apiGroups": ["sparkoperator.k8s.io"], "apiVersions": ["v1beta2"],
                "resources": ["scheduledsparkapplications"], "operations": ["CREATE"],
                "scope": "Namespaced" }],
            "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
        }],
    });
    w.api
        .install_webhooks(&configuration.to_string(), &hook.target());
    let message = w.denied(
        w.create(&alice(), &w.schedule("weakened-later", None))
            .await,
        APP_VALIDATE,
        "hardening",
    );
    assert!(
        message.contains("spec.template.sparkConf[\"spark.authenticate\"]"),
        "{message}"
    );
    assert!(
        w.api
            .get(SCHEDULED_SPARK_APP, NS, "weakened-later")
            .is_none()
    );
    w.api.clear_webhooks();
    w.api
        .install_sparkward_webhooks(&w.server.base_url(), &w.server.certs.ca_pem);

    // Each run the operator creates is a job of its own, with its own Secret.
    let schedule = w.api.get(SCHEDULED_SPARK_APP, NS, "nightly").unwrap();
    let run = w.admitted(&operator(), &run_of(&schedule, 1)).await;
    let job = job_of(&run);
    assert_eq!(run["spec"]["sparkConf"]["spark.ui.view.acls"], "alice");
    assert!(w.rpc_secret(&job).is_some());

    // A schedule stored weaker before this check existed (written here straight into the
    // store): its runs are denied when the operator creates them.
    let mut old = w.api.get(SCHEDULED_SPARK_APP, NS, "nightly").unwrap();
    old["metadata"]["name"] = json!("legacy");
    for field in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
    ] {
        old["metadata"].as_object_mut().unwrap().remove(field);
    }
    old["spec"]["template"]["sparkConf"]["spark.authenticate"] = json!("false");
    let legacy = w.api.insert(old);
    let message = w.denied(
        w.create(&operator(), &run_of(&legacy, 1)).await,
        APP_MUTATE,
        "hardening",
    );
    assert!(
        message.contains("spec.sparkConf[\"spark.authenticate\"]"),
        "{message}"
    );
    assert!(w.api.get(SPARK_APP, NS, "legacy-1").is_none());
}

// ---------------------------------------------------------------------------------------------
// The Secret guard
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tenants_cannot_change_delete_or_forge_a_jobs_secret_and_the_garbage_collector_may_delete_it()
 {
    let w = world().await;
    let app = w.admitted(&alice(), &w.app("etl")).await;
    let job = job_of(&app);
    let name = format!("sparkward-{job}-rpc");
    let original = w.rpc_secret(&job).unwrap();

    // bob (another tenant) and alice (the job's submitter) alike: no change, no delete.
    for user in [bob(), alice()] {
        for patch in [
            // Stripping the label would take the Secret out of the guard's selector.
            json!({ "metadata": { "labels": { "app.kubernetes.io/managed-by": null } } }),
            json!({ "metadata": { "annotations": { "note": "mine now" } } }),
        ] {
            let message = w.denied(
                w.patch(&user, SECRET, &name, patch).await,
                SECRET_VALIDATE,
                "not_manager",
            );
            assert!(
                message.contains(&format!("Secret {name} is a job's RPC secret"))
                    && message.contains(&format!("{} may not change it", user.username)),
                "{message}"
            );
        }
        let message = w.denied(
            w.delete(&user, SECRET, &name).await,
            SECRET_VALIDATE,
            "not_manager",
        );
        assert!(message.contains("may not delete it"), "{message}");
    }
    let now = w.rpc_secret(&job).unwrap();
    assert_eq!(now["metadata"]["labels"], original["metadata"]["labels"]);
    assert_eq!(now["data"], original["data"]);

    // A forged managed Secret (for a job that has none yet, or to pass off as one) is refused.
    let forged = json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "sparkward-sj-aaaaaaaaaaaaaaaaaaaa-rpc", "namespace": NS,
            "labels": { "app.kubernetes.io/managed-by": "sparkward" } },
        "data": { "secret": "Ym9icy1zZWNyZXQ=" } });
    let message = w.denied(
        w.create(&bob(), &forged).await,
        SECRET_VALIDATE,
        "not_manager",
    );
    assert!(message.contains("may not create it"), "{message}");

    // Tenants' own Secrets never reach sparkward.
    w.api.clear_admission_calls();
    let own = json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "bobs-db-password", "namespace": NS },
        "data": { "password": "aHVudGVyMg==" } });
    w.admitted(&bob(), &own).await;
    assert!(
        w.api
            .admission_calls()
            .iter()
            .all(|c| c.webhook != SECRET_VALIDATE),
        "{:?}",
        w.api.admission_calls()
    );

    // The garbage collector (one of policy.managers) removes it with its job.
    allowed(
        w.delete(&garbage_collector(), SECRET, &name).await,
        "the garbage collector's delete",
    );
    assert!(w.rpc_secret(&job).is_none());
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_secret_is_adopted_by_its_application_and_goes_when_the_job_completes_or_is_deleted() {
    let w = world().await;
    let done = w.admitted(&alice(), &w.app("done")).await;
    let deleted = w.admitted(&alice(), &w.app("deleted")).await;
    let running = w.admitted(&alice(), &w.app("running")).await;
    let (done_job, deleted_job, running_job) = (job_of(&done), job_of(&deleted), job_of(&running));
    for (job, app) in [
        (&done_job, &done),
        (&deleted_job, &deleted),
        (&running_job, &running),
    ] {
        w.adopted(job, app).await;
    }

    // spark-operator reports the end: after the grace, the Secret goes with the policy.
    w.api
        .update_status(
            SPARK_APP,
            NS,
            "done",
            json!({ "applicationState": { "state": "COMPLETED" }, "driverInfo": {} }),
        )
        .unwrap();
    w.eventually("the completed job's Secret and policy to go", |w| {
        w.rpc_secret(&done_job).is_none()
            && w.api
                .get(CNP, NS, &format!("sparkward-{done_job}"))
                .is_none()
    })
    .await;
    assert!(w.api.get(SPARK_APP, NS, "done").is_some());

    // alice deletes her application: its dependents go with it (garbage collection, through
    // the ownerReference the lifecycle controller set).
    allowed(
        w.delete(&alice(), SPARK_APP, "deleted").await,
        "alice deleting her application",
    );
    w.eventually("the deleted job's Secret to go", |w| {
        w.rpc_secret(&deleted_job).is_none()
    })
    .await;

    // A running job keeps its Secret.
    assert!(w.rpc_secret(&running_job).is_some());
}

#[tokio::test]
async fn a_secret_whose_job_was_refused_after_sparkward_is_reaped_with_its_policy() {
    let w = world().await;
    // A validating webhook after sparkward's refuses the application: sparkward's mutating
    // call has already created the job's policy and Secret.
    let hook = TestHook::start().await;
    hook.on("/refuse", |request| {
        if request["name"] == "doomed" {
            Answer::deny("not today")
        } else {
            Answer::allow()
        }
    });
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": "quota" },
        "webhooks": [{
            "name": "quota.example.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": { "service": { "name": "quota", "namespace": "quota", "path": "/refuse" } },
            "rules": [{ "apiGroups": ["sparkoperator.k8s.io"], "apiVersions": ["v1beta2"],
                "resources": ["sparkapplications"], "operations": ["CREATE"],
                "scope": "Namespaced" }],
            "failurePolicy": "Fail", "sideEffects": "None", "timeoutSeconds": 5,
        }],
    });
    w.api
        .install_webhooks(&configuration.to_string(), &hook.target());
    let reply = w.create(&alice(), &w.app("doomed")).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(message(&reply).contains("not today"));
    let secrets = w.secrets(NS);
    assert_eq!(secrets.len(), 1, "the orphan: {secrets:?}");
    let job = secrets[0]["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(w.api.get(CNP, NS, &format!("sparkward-{job}")).is_some());

    // After the orphan grace both go.
    w.eventually("the orphaned Secret and policy to be reaped", |w| {
        w.rpc_secret(&job).is_none() && w.api.get(CNP, NS, &format!("sparkward-{job}")).is_none()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Fail closed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_failed_secret_create_denies_the_job_and_the_policy_left_behind_is_reaped() {
    let w = world_with("  applyTimeout: 1s\n").await;
    // The API server fails every Secret create (a broken etcd, an admission plugin refusing).
    w.api.inject(
        Fault::status(500)
            .method(Method::POST)
            .path(&format!("/namespaces/{NS}/secrets"))
            .times(1000),
    );
    let reply = w.create(&alice(), &w.app("etl")).await;
    let message = w.denied(reply, APP_MUTATE, "policy_apply");
    assert!(
        message.contains("the job's RPC Secret sparkward-sj-")
            && message.contains("could not be created"),
        "{message}"
    );
    assert!(w.api.get(SPARK_APP, NS, "etl").is_none());
    assert!(w.secrets(NS).is_empty());
    // The policy came first and stays behind, with no job: the lifecycle controller reaps it.
    let policies = w.api.list(CNP, Some(NS));
    assert_eq!(policies.len(), 1, "{policies:?}");
    w.eventually("the left-over policy to be reaped", |w| {
        w.api.list(CNP, Some(NS)).is_empty()
    })
    .await;

    // A Secret create that gets no answer in time is a denial too; whatever the API server
    // stored late is reaped with the policy.
    w.api.clear_faults();
    w.api.inject(
        Fault::delay(Duration::from_secs(2))
            .method(Method::POST)
            .path(&format!("/namespaces/{NS}/secrets")),
    );
    let reply = w.create(&alice(), &w.app("slow")).await;
    let message = w.denied(reply, APP_MUTATE, "policy_apply");
    assert!(message.contains("could not be created"), "{message}");
    assert!(w.api.get(SPARK_APP, NS, "slow").is_none());
    w.eventually("nothing left of the refused job", |w| {
        w.api.list(CNP, Some(NS)).is_empty() && w.secrets(NS).is_empty()
    })
    .await;

    // When the API server is well again, the job is admitted with its Secret.
    let app = w.admitted(&alice(), &w.app("etl")).await;
    assert!(w.rpc_secret(&job_of(&app)).is_some());
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn namespaces_choose_their_profile_by_label_and_an_unknown_profile_is_a_denial() {
    let w = world().await;

    // `open`: nothing enforced, no Secret, no mount.
    let app = w.admitted(&alice(), &w.app_in(OPEN_NS, "etl", None)).await;
    let job = job_of(&app);
    assert!(app["spec"]["sparkConf"].is_null(), "{}", app["spec"]);
    assert_eq!(
        app["metadata"]["annotations"]["sparkward.io/spark-profile"],
        "open"
    );
    assert!(
        app["metadata"]["annotations"]
            .get("sparkward.io/rpc-secret")
            .is_none()
    );
    assert!(w.secrets(OPEN_NS).is_empty());
    let driver = w.admitted(&operator(), &operator_driver(&app)).await;
    assert_eq!(job_of(&driver), job);
    assert!(!driver["spec"].to_string().contains("sparkward-rpc"));
    // Spark generates the secret itself there and hands it to executors in the environment:
    // that namespace's choice, not denied.
    let mut executor = executor_of(&driver, 1);
    executor["spec"]["containers"][0]["env"] =
        json!([{ "name": "_SPARK_AUTH_SECRET", "value": "generated-by-spark" }]);
    w.admitted(&bound_to(&driver), &executor).await;

    // `strict`: the Secret plus its own settings.
    let app = w
        .admitted(&alice(), &w.app_in(STRICT_NS, "etl", None))
        .await;
    let conf = &app["spec"]["sparkConf"];
    assert_eq!(conf["spark.io.encryption.keySizeBits"], "256");
    assert_eq!(conf["spark.network.crypto.saslFallback"], "false");
    assert_eq!(conf["spark.authenticate"], "true");
    assert_eq!(conf["spark.authenticate.secret.file"], SECRET_FILE);
    assert!(conf.get("spark.acls.enable").is_none(), "{conf}");
    assert_eq!(w.secrets(STRICT_NS).len(), 1);
    let reply = w
        .create(
            &alice(),
            &w.app_in(
                STRICT_NS,
                "weak",
                Some(json!({ "spark.io.encryption.keySizeBits": "128" })),
            ),
        )
        .await;
    let message = w.denied(reply, APP_MUTATE, "hardening");
    assert!(
        message.contains("spark.io.encryption.keySizeBits")
            && message.contains("profile 'strict' requires '256'"),
        "{message}"
    );

    // A label naming no profile: denied (never a silent fallback to weaker settings).
    let reply = w.create(&alice(), &w.app_in(TYPO_NS, "etl", None)).await;
    let message = w.denied(reply, APP_MUTATE, "unavailable");
    assert!(
        message.contains("'nonexistent'") && message.contains("sparkward.io/spark-profile"),
        "{message}"
    );
    assert!(w.secrets(TYPO_NS).is_empty());
}

// ---------------------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------------------

/// Runs `sparkward check-config` on a config of `spark` alone; exit code and output.
fn check_config(spark: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, spark).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sparkward"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_config_accepts_the_test_profiles_and_rejects_bad_ones_naming_the_field() {
    let (code, text) = check_config(SPARK_YAML);
    assert_eq!(code, Some(0), "{text}");
    for (spark, needle) in [
        ("spark:\n  defaultProfile: strcit\n", "spark.defaultProfile"),
        (
            "spark:\n  profiles:\n    p: { rpcSecret: true, settings: { spark.authenticate: \"false\" } }\n",
            "spark.profiles[\"p\"].settings[\"spark.authenticate\"]",
        ),
        (
            "spark:\n  profiles:\n    p: { settings: { spark.network.crypto.enabled: \"true\" } }\n",
            "spark.network.crypto.enabled needs spark.authenticate",
        ),
        (
            "spark:\n  profiles:\n    p: { rpcSecret: true, settings: { spark.authenticate.secret: \"s\" } }\n",
            "spark.profiles[\"p\"].settings[\"spark.authenticate.secret\"]",
        ),
        (
            "spark:\n  profiles:\n    p: { settings: { spark.authenticate.secret.file: \"/x\" } }\n",
            "sparkward's to set",
        ),
        (
            "spark:\n  profiles:\n    p: { settings: { not.spark: \"x\" } }\n",
            "must be a Spark property",
        ),
        (
            "spark:\n  profiles:\n    \"Bad Name\": { rpcSecret: true }\n",
            "profile names must be label values",
        ),
        (
            "spark:\n  profiles:\n    p: { uiAcls: { adminGroups: [\"a,b\"] } }\n",
            "spark.profiles[\"p\"].uiAcls.adminGroups",
        ),
        (
            "spark:\n  profileLabel: \"not a label\"\n",
            "spark.profileLabel",
        ),
        (
            "spark:\n  profiles:\n    p: { rpcSecret: true, typo: 1 }\n",
            "typo",
        ),
    ] {
        let (code, text) = check_config(spark);
        assert_ne!(code, Some(0), "accepted:\n{spark}\n{text}");
        assert!(text.contains(needle), "no '{needle}' for:\n{spark}\n{text}");
    }
}
