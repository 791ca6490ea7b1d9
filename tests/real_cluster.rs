//! The real-API end-to-end suite: etcd + kube-apiserver (+ kube-controller-manager for garbage
//! collection) from `../shared/kube`, sparkward running as its own service account with the
//! project's own webhook configurations, and every request made through the real API server as
//! the user it stands for (tenants, spark-operator, a driver's bound token) by impersonation.
//! Nothing here calls the webhook directly: kube-apiserver decides when and how.
//!
//! Skipped (one line) without `../shared/kube`; `SPARKWARD_REQUIRE_KUBE=1` makes that a failure.
//!
//! What kube-apiserver (v1.36) was seen to do toward webhooks, which the stand-in and the
//! review builders must match (the last two tests pin the first two points; the others were
//! seen with a recording webhook on the same binaries):
//! - every webhook call has its own `request.uid`: the mutating call, a re-invocation and the
//!   validating call of one create all differ;
//! - an object created with `generateName` has no name in any mutating review (neither
//!   `request.name` nor `metadata.name`); the name is generated between the mutating and the
//!   validating webhooks, which see it;
//! - a server-side dry run sends `dryRun: true` to mutating and validating webhooks alike
//!   (`options.dryRun: ["All"]`);
//! - an impersonated request's `userInfo` is exactly the impersonated user, its groups plus
//!   `system:authenticated`, and its extras under their unescaped keys; a client certificate's
//!   own userInfo carries an `authentication.kubernetes.io/credential-id` extra instead;
//! - built-in admission runs before the webhooks: a pod's review already has the
//!   ServiceAccount plugin's projected `kube-api-access-*` volume;
//! - the webhook URL gets `?timeout=<N>s` appended;
//! - `kubectl exec` on a pod without a node still sends CONNECT reviews (`PodExecOptions`,
//!   subresource `exec`, no oldObject), twice with kubectl 1.32 (WebSocket, then the SPDY
//!   fallback), before failing with "does not have a host assigned"; deleting a pod without a
//!   node sends two DELETE reviews (graceful, then immediate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sparkward::core::labels::is_job_id;
use sparkward::core::policy::cluster_dns_selectors;
use support::cluster::install::managed_policies;
use support::cluster::{
    Identity, Installed, RealCluster, SparkwardSetup, TestNamespace, api, api_of, create,
    rejection, to_json, wait_for,
};
use support::scenario::{Idp, JOB_ADMIN_GROUP, JOB_ADMIN_USER, JOB_ADMINS_YAML, mk_spark_app};
use support::testhook::{Answer, TestHook};

/// The scenario config plus a short end grace, so a completed job's policy goes quickly.
const EXTRA_CONFIG: &str = "lifecycle:\n  endGrace: 2s\n";
const SPARK_APP: (&str, &str) = ("sparkoperator.k8s.io/v1beta2", "SparkApplication");
const CNP: (&str, &str) = ("cilium.io/v2", "CiliumNetworkPolicy");
const NETWORK_POLICY: (&str, &str) = ("networking.k8s.io/v1", "NetworkPolicy");
const GARBAGE_COLLECTOR: &str = "system:serviceaccount:kube-system:generic-garbage-collector";

/// One test's view: the shared control plane and sparkward, its own enforced namespace, and
/// clients for the admin and the tenant alice (`oidc:alice`).
struct World {
    sw: Arc<Installed>,
    ns: TestNamespace,
    admin: Client,
    alice: Client,
}

async fn world(prefix: &str) -> Option<World> {
    let cluster = RealCluster::shared().await?;
    // Job administrators (`JOB_ADMINS_YAML`) for the tenant-isolation cases; nobody else here
    // acts under their names.
    let sw = cluster
        .sparkward(&SparkwardSetup::with_config(EXTRA_CONFIG).with_identity(JOB_ADMINS_YAML))
        .await;
    let ns = cluster.enforced_namespace(prefix).await;
    let alice = cluster.client_as(&ns.tenant("oidc:alice").await).await;
    let admin = cluster.admin().await;
    Some(World {
        sw,
        ns,
        admin,
        alice,
    })
}

impl World {
    fn cluster(&self) -> &RealCluster {
        self.ns.cluster()
    }

    fn token(&self, subject: &str, scopes: &str) -> String {
        self.sw.idp.token(subject, scopes)
    }

    /// alice's SparkApplication `name` with a valid token for `scopes`, as she submits it.
    fn alices_app(&self, name: &str, scopes: &str) -> Value {
        mk_spark_app(name, &self.ns.name, &self.token("alice", scopes))
    }

    /// Creates alice's application and expects it admitted; the stored object.
    async fn admitted_app(&self, name: &str, scopes: &str) -> Value {
        create(
            &self.alice,
            &self.alices_app(name, scopes),
            &PostParams::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("alice's SparkApplication {name} was not admitted: {e}"))
    }

    async fn get(&self, (api_version, kind): (&str, &str), name: &str) -> Option<Value> {
        api(&self.admin, api_version, kind, Some(&self.ns.name))
            .get_opt(name)
            .await
            .expect("get")
            .map(|o| to_json(&o))
    }

    async fn policies(&self) -> Vec<Value> {
        managed_policies(&self.admin, &self.ns.name).await
    }

    async fn as_operator(&self) -> Client {
        self.cluster().client_as(&Identity::operator()).await
    }
}

fn job_of(object: &Value) -> String {
    let job = object["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job id on {object}"))
        .to_string();
    assert!(is_job_id(&job), "{job}");
    job
}

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// The message of a denial by the sparkward webhook `webhook`.
fn denied_by(result: Result<Value, kube::Error>, webhook: &str) -> String {
    let (code, message) = rejection(result);
    assert!(
        message.contains(&format!(
            "admission webhook \"{webhook}\" denied the request"
        )),
        "expected a denial by {webhook}, got {code}: {message}"
    );
    message
}

/// The driver pod spark-operator (v2.4 and later) creates for `app`: named `<app>-driver`, the
/// application's driver labels plus Spark's and spark-operator's, controlled by the
/// application (name and uid).
fn mk_driver_pod(app: &Value) -> Value {
    let name = app["metadata"]["name"].as_str().unwrap();
    let mut labels = app["spec"]["driver"]["labels"].clone();
    labels["spark-role"] = json!("driver");
    labels["spark-app-name"] = json!(name);
    labels["spark-app-selector"] = json!("spark-0f6e1b6c2d3a4e5f");
    labels["sparkoperator.k8s.io/app-name"] = json!(name);
    labels["sparkoperator.k8s.io/launched-by-spark-operator"] = json!("true");
    labels["sparkoperator.k8s.io/submission-id"] = json!("7a1f3c4e-5b6d-4e8f-9a0b-1c2d3e4f5a6b");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-driver"), "namespace": app["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [{"apiVersion": SPARK_APP.0, "kind": SPARK_APP.1, "name": name,
                "uid": app["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"serviceAccountName": "spark", "restartPolicy": "Never",
            "containers": [{"name": "spark-kubernetes-driver", "image": "docker.io/apache/spark:4.0.4", "args": ["driver"]}]}
    })
}

/// Executor `n` as the driver creates it: the job's executor labels (copied by Spark from the
/// application or its configuration), controlled by the driver pod.
fn mk_executor_pod(driver: &Value, n: u32, job_labels: &Value) -> Value {
    let driver_name = driver["metadata"]["name"].as_str().unwrap();
    let mut labels = job_labels.clone();
    labels["spark-role"] = json!("executor");
    labels["spark-exec-id"] = json!(n.to_string());
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{driver_name}-exec-{n}"), "namespace": driver["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": driver_name,
                "uid": driver["metadata"]["uid"], "controller": true}],
        },
        "spec": {"serviceAccountName": "spark", "restartPolicy": "Never",
            "containers": [{"name": "spark-kubernetes-executor", "image": "docker.io/apache/spark:4.0.4", "args": ["executor"]}]}
    })
}

fn assert_hardened_pod(pod: &Value) {
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 185, "{pod}");
    assert_eq!(
        pod["spec"]["securityContext"]["runAsNonRoot"], true,
        "{pod}"
    );
    for c in pod["spec"]["containers"].as_array().unwrap() {
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{c}");
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"], false,
            "{c}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Admission of new jobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn alices_spark_application_is_admitted_hardened_and_gets_its_policy() {
    let Some(w) = world("app").await else { return };
    let token = w.token("alice", "data:read:postgres-main");
    let submitted = mk_spark_app("etl", &w.ns.name, &token);
    let app = create(&w.alice, &submitted, &PostParams::default())
        .await
        .expect("alice's SparkApplication is admitted");

    let job = job_of(&app);
    let annotations = &app["metadata"]["annotations"];
    assert!(
        annotations.get("sparkward.io/submitter-token").is_none(),
        "{app}"
    );
    assert_eq!(app["metadata"]["labels"]["sparkward.io/user"], "alice");
    assert_eq!(annotations["sparkward.io/submitter"], "alice");
    assert_eq!(
        annotations["sparkward.io/scopes"],
        "data:read:postgres-main"
    );
    assert_eq!(
        annotations["sparkward.io/policy"],
        format!("sparkward-{job}")
    );
    for role in ["driver", "executor"] {
        assert_eq!(
            app["spec"][role]["labels"]["sparkward.io/job-id"], job,
            "{role}"
        );
        assert_eq!(
            app["spec"][role]["securityContext"]["runAsUser"], 185,
            "{role}"
        );
        assert_eq!(
            app["spec"][role]["podSecurityContext"]["fsGroup"], 185,
            "{role}"
        );
    }
    // What is stored is what the create answered.
    let stored = w.get(SPARK_APP, "etl").await.expect("stored");
    assert_eq!(job_of(&stored), job);
    assert!(!stored.to_string().contains(signature(&token)));

    // The policy exists, and kube-apiserver stored it through the real Cilium CRD schema
    // without pruning anything: the DNS proxy rule and the scope's port survived.
    let policy = w
        .get(CNP, &format!("sparkward-{job}"))
        .await
        .expect("the job's CiliumNetworkPolicy");
    let labels = &policy["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "sparkward");
    assert_eq!(labels["sparkward.io/job-id"], job);
    let specs = policy["specs"].as_array().expect("specs");
    assert_eq!(
        specs[0]["endpointSelector"]["matchLabels"],
        json!({"sparkward.io/job-id": job})
    );
    let egress = specs[0]["egress"].to_string();
    // The DNS proxy rule survived with its allow-list: the cluster's names, no "*".
    let dns = &specs[0]["egress"][1]["toPorts"][0]["rules"]["dns"];
    assert_eq!(
        dns,
        &json!(cluster_dns_selectors("cluster.local")),
        "{egress}"
    );
    assert!(
        egress.contains("postgres-main") && egress.contains("\"5432\""),
        "{egress}"
    );
    assert_eq!(
        specs[1]["egress"],
        json!([{"toEntities": ["kube-apiserver"]}])
    );
    assert_eq!(w.policies().await.len(), 1);
}

#[tokio::test]
async fn a_server_side_dry_run_is_allowed_and_creates_no_policy() {
    let Some(w) = world("dry-run").await else {
        return;
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answer = create(
        &w.alice,
        &w.alices_app("etl", "data:read:postgres-main"),
        &dry_run,
    )
    .await
    .expect("a dry run of a valid submission is allowed");
    // The answer shows what would be stored, with sparkward's mutation...
    job_of(&answer);
    assert!(
        answer["metadata"]["annotations"]
            .get("sparkward.io/submitter-token")
            .is_none()
    );
    // ...but nothing was stored and no policy was created.
    assert!(w.get(SPARK_APP, "etl").await.is_none());
    assert!(w.policies().await.is_empty());
}

#[tokio::test]
async fn the_operators_driver_and_an_executor_with_the_drivers_token_join_the_job() {
    let Some(w) = world("operator").await else {
        return;
    };
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let job = job_of(&app);

    let operator = w.as_operator().await;
    let driver = create(&operator, &mk_driver_pod(&app), &PostParams::default())
        .await
        .expect("the operator's driver pod is admitted");
    assert_eq!(job_of(&driver), job);
    assert_eq!(driver["metadata"]["labels"]["sparkward.io/role"], "driver");
    assert_hardened_pod(&driver);

    // The driver creates executors with its own service-account token, bound to its pod.
    let as_driver = w.cluster().client_as(&w.ns.driver_token(&driver)).await;
    let executor = create(
        &as_driver,
        &mk_executor_pod(&driver, 1, &app["spec"]["executor"]["labels"]),
        &PostParams::default(),
    )
    .await
    .expect("the driver's executor is admitted");
    assert_eq!(job_of(&executor), job);
    assert_eq!(
        executor["metadata"]["labels"]["sparkward.io/role"],
        "executor"
    );
    assert_hardened_pod(&executor);
    // Still one job, one policy.
    assert_eq!(w.policies().await.len(), 1);
}

#[tokio::test]
async fn a_scheduled_application_and_the_operators_run_of_it_each_get_a_job() {
    let Some(w) = world("scheduled").await else {
        return;
    };
    let template = mk_spark_app("x", &w.ns.name, "x")["spec"].clone();
    let scheduled = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": "nightly", "namespace": w.ns.name,
            "annotations": {"sparkward.io/submitter-token": w.token("alice", "stream:kafka-events")}},
        "spec": {"schedule": "@every 1h", "template": template},
    });
    let stored = create(&w.alice, &scheduled, &PostParams::default())
        .await
        .expect("alice's ScheduledSparkApplication is admitted");
    let annotations = &stored["metadata"]["annotations"];
    assert!(annotations.get("sparkward.io/submitter-token").is_none());
    assert_eq!(annotations["sparkward.io/submitter"], "alice");
    assert_eq!(annotations["sparkward.io/scopes"], "stream:kafka-events");

    // spark-operator starts a run: the schedule's labels, an ownerReference, no token.
    let mut labels = stored["metadata"]["labels"].clone();
    labels["sparkoperator.k8s.io/scheduled-app-name"] = json!("nightly");
    let run = json!({
        "apiVersion": SPARK_APP.0, "kind": SPARK_APP.1,
        "metadata": {"name": "nightly-1700000000", "namespace": w.ns.name, "labels": labels,
            "ownerReferences": [{"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
                "name": "nightly", "uid": stored["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": stored["spec"]["template"],
    });
    let run = create(&w.as_operator().await, &run, &PostParams::default())
        .await
        .expect("the operator's run of the schedule is admitted");
    assert_eq!(
        run["metadata"]["annotations"]["sparkward.io/submitter"],
        "alice"
    );
    let job = job_of(&run);
    let policy = w
        .get(CNP, &format!("sparkward-{job}"))
        .await
        .expect("the run's own policy");
    assert!(
        policy["specs"].to_string().contains("\"9092\""),
        "the run gets the schedule's scopes: {policy}"
    );
}

#[tokio::test]
async fn a_spark_submit_driver_with_its_own_token_is_its_own_job() {
    let Some(w) = world("submit").await else {
        return;
    };
    let token = w.token("alice", "stream:kafka-events");
    let mut pod = support::reviews::mk_pod("wordcount-driver", &w.ns.name);
    pod["metadata"]["annotations"] = json!({"sparkward.io/submitter-token": token});
    let driver = create(&w.alice, &pod, &PostParams::default())
        .await
        .expect("a spark-submit driver with a valid token is admitted");
    let job = job_of(&driver);
    assert!(
        driver["metadata"]["annotations"]
            .get("sparkward.io/submitter-token")
            .is_none()
    );
    assert!(!driver.to_string().contains(signature(&token)));
    assert_hardened_pod(&driver);
    let policy = w
        .get(CNP, &format!("sparkward-{job}"))
        .await
        .expect("the driver's own policy");
    assert!(policy["specs"].to_string().contains("\"9092\""), "{policy}");

    let as_driver = w.cluster().client_as(&w.ns.driver_token(&driver)).await;
    let job_labels = json!({"sparkward.io/job-id": job, "sparkward.io/user": "alice"});
    let executor = create(
        &as_driver,
        &mk_executor_pod(&driver, 1, &job_labels),
        &PostParams::default(),
    )
    .await
    .expect("its executor is admitted");
    assert_eq!(job_of(&executor), job);
    assert_eq!(w.policies().await.len(), 1);
}

#[tokio::test]
async fn the_token_is_never_stored_not_even_in_kubectls_last_applied_configuration() {
    let Some(w) = world("no-token").await else {
        return;
    };
    let token = w.token("alice", "data:read:postgres-main");
    // Client-side `kubectl apply` copies the whole manifest, token included, into an annotation.
    let mut app = mk_spark_app("etl", &w.ns.name, &token);
    let manifest = app.clone();
    app["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(manifest.to_string());
    create(&w.alice, &app, &PostParams::default())
        .await
        .expect("admitted");
    let stored = w.get(SPARK_APP, "etl").await.expect("stored");
    assert!(
        !stored.to_string().contains(signature(&token)),
        "token stored: {stored}"
    );
    let last =
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("the last-applied annotation is kept");
    assert!(last.contains("\"name\":\"etl\""), "{last}");
    // Nor in sparkward's audit stream.
    assert!(
        w.sw.audit_lines()
            .iter()
            .all(|l| !l.to_string().contains(signature(&token)))
    );
}

#[tokio::test]
async fn a_token_copied_into_spark_conf_is_scrubbed_and_one_in_an_env_var_is_denied() {
    let Some(w) = world("token-copy").await else {
        return;
    };
    let token = w.token("alice", "data:read:postgres-main");
    // spark-operator would pass these to spark-submit, which puts them on the driver and
    // executor pods: a copy of the token on every pod of the job.
    let mut app = mk_spark_app("etl", &w.ns.name, &token);
    app["spec"]["sparkConf"] = json!({
        "spark.kubernetes.driver.annotation.sparkward.io/submitter-token": token,
        "spark.kubernetes.executor.annotation.sparkward.io/submitter-token": token,
        "spark.app.name": "etl",
    });
    create(&w.alice, &app, &PostParams::default())
        .await
        .expect("the application is admitted, its copies scrubbed");
    let stored = w.get(SPARK_APP, "etl").await.expect("stored");
    let text = stored.to_string();
    // (managedFields still lists the keys the request set, the property names among them,
    // but no value.)
    assert!(!text.contains(signature(&token)), "token stored: {text}");
    // The user's own property is kept, the token properties are gone, and the namespace's
    // Spark security profile added its properties.
    let conf = stored["spec"]["sparkConf"].as_object().unwrap();
    assert_eq!(conf["spark.app.name"], "etl");
    assert!(
        conf.keys().all(|k| !k.contains("submitter-token")),
        "{conf:?}"
    );
    assert_eq!(conf["spark.authenticate"], "true");
    assert_eq!(w.policies().await.len(), 1);

    // A copy sparkward cannot scrub is denied, naming the field, before any policy exists.
    let token = w.token("alice", "data:read:postgres-main");
    let mut app = mk_spark_app("etl-2", &w.ns.name, &token);
    app["spec"]["driver"]["env"] = json!([{"name": "IDP_TOKEN", "value": token}]);
    let message = denied_by(
        create(&w.alice, &app, &PostParams::default()).await,
        "sparkapplications.mutate.sparkward.io",
    );
    assert!(
        message.contains("spec.driver.env[0].value holds a copy of the submitter token"),
        "{message}"
    );
    assert!(!message.contains(signature(&token)), "{message}");
    assert!(w.get(SPARK_APP, "etl-2").await.is_none());
    assert_eq!(w.policies().await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Denials
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expired_and_borrowed_tokens_are_denied() {
    let Some(w) = world("bad-token").await else {
        return;
    };
    let mut claims = Idp::claims("alice", "data:read:postgres-main");
    let now = support::scenario::now();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = w.sw.idp.keys[0].token(&claims);
    let message = denied_by(
        create(
            &w.alice,
            &mk_spark_app("expired", &w.ns.name, &expired),
            &PostParams::default(),
        )
        .await,
        "sparkapplications.mutate.sparkward.io",
    );
    assert!(message.contains("token expired"), "{message}");

    // bob's valid token, submitted by alice.
    let borrowed = w.token("bob", "data:read:postgres-main");
    let message = denied_by(
        create(
            &w.alice,
            &mk_spark_app("borrowed", &w.ns.name, &borrowed),
            &PostParams::default(),
        )
        .await,
        "sparkapplications.mutate.sparkward.io",
    );
    assert!(message.contains("token belongs to oidc:bob"), "{message}");
    assert!(w.get(SPARK_APP, "expired").await.is_none());
    assert!(w.get(SPARK_APP, "borrowed").await.is_none());
    assert!(w.policies().await.is_empty());
}

#[tokio::test]
async fn a_tenant_cannot_change_the_job_id_of_an_admitted_application() {
    let Some(w) = world("update").await else {
        return;
    };
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let apps = api_of(&w.alice, &app);
    // An unrelated label is alice's to change...
    apps.patch(
        "etl",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "data"}}})),
    )
    .await
    .expect("alice may edit her own labels");
    // ...the job id is not.
    let result = apps
        .patch(
            "etl",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"sparkward.io/job-id": "sj-aaaaaaaaaaaaaaaaaaaa"}}}),
            ),
        )
        .await
        .map(|o| to_json(&o));
    let message = denied_by(result, "sparkapplications.validate.sparkward.io");
    assert!(message.contains("sparkward.io/job-id"), "{message}");
    assert_eq!(
        job_of(&w.get(SPARK_APP, "etl").await.unwrap()),
        job_of(&app)
    );
}

#[tokio::test]
async fn tenants_cannot_delete_edit_or_forge_managed_policies() {
    let Some(w) = world("cnp-guard").await else {
        return;
    };
    // A managed policy, created by sparkward's own service account (what its server-side apply
    // does; the webhook's matchCondition skips sparkward itself).
    let as_sparkward = w
        .cluster()
        .client_as(&Identity::service_account("sparkward-system", "sparkward"))
        .await;
    let managed = json!({
        "apiVersion": CNP.0, "kind": CNP.1,
        "metadata": {"name": "sparkward-sj-aaaaaaaaaaaaaaaaaaaa", "namespace": w.ns.name,
            "labels": {"app.kubernetes.io/managed-by": "sparkward", "sparkward.io/job-id": "sj-aaaaaaaaaaaaaaaaaaaa"}},
        "specs": [{"endpointSelector": {"matchLabels": {"sparkward.io/job-id": "sj-aaaaaaaaaaaaaaaaaaaa"}},
            "egress": [{"toEndpoints": [{"matchLabels": {"sparkward.io/job-id": "sj-aaaaaaaaaaaaaaaaaaaa"}}]}]}],
    });
    create(&as_sparkward, &managed, &PostParams::default())
        .await
        .expect("sparkward's service account creates managed policies");
    let name = managed["metadata"]["name"].as_str().unwrap();
    let policies = api_of(&w.alice, &managed);
    let webhook = "ciliumnetworkpolicies.validate.sparkward.io";

    // RBAC lets alice do all of this (she edits policies in her namespace); sparkward does not.
    let delete = policies
        .delete(name, &DeleteParams::default())
        .await
        .map(|_| Value::Null);
    denied_by(delete, webhook);
    let edit = policies
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"specs": [{"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]}]}),
            ),
        )
        .await
        .map(|o| to_json(&o));
    denied_by(edit, webhook);
    let unlabel = policies
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}})),
        )
        .await
        .map(|o| to_json(&o));
    denied_by(unlabel, webhook);
    let mut forged = managed.clone();
    forged["metadata"]["name"] = json!("sparkward-sj-bbbbbbbbbbbbbbbbbbbb");
    denied_by(
        create(&w.alice, &forged, &PostParams::default()).await,
        webhook,
    );
    assert!(w.get(CNP, name).await.is_some());

    // Without the label it is still a network policy, which tenants do not write either.
    let mut own = managed.clone();
    own["metadata"] = json!({"name": "alice-egress", "namespace": w.ns.name});
    denied_by(
        create(&w.alice, &own, &PostParams::default()).await,
        webhook,
    );
}

#[tokio::test]
async fn a_tenant_cannot_open_world_egress_with_her_own_cilium_policy() {
    let Some(w) = world("cnp-tenant").await else {
        return;
    };
    let egress = json!({
        "apiVersion": CNP.0, "kind": CNP.1,
        "metadata": {"name": "alice-egress", "namespace": w.ns.name},
        "specs": [{"endpointSelector": {},
            "egress": [{"toEntities": ["world"], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]}],
    });
    // RBAC grants her the verbs (tenant-edit); sparkward refuses, and says where to go instead.
    let message = denied_by(
        create(&w.alice, &egress, &PostParams::default()).await,
        "ciliumnetworkpolicies.validate.sparkward.io",
    );
    assert!(
        message.contains("ask the security team for a scope") && message.contains("policy.scopes"),
        "{message}"
    );
    assert!(w.get(CNP, "alice-egress").await.is_none());

    // One that is there already (written by sparkward's account, which RBAC lets create
    // policies and the webhook skips): she can neither widen nor delete it.
    let as_sparkward = w
        .cluster()
        .client_as(&Identity::service_account("sparkward-system", "sparkward"))
        .await;
    create(&as_sparkward, &egress, &PostParams::default())
        .await
        .expect("sparkward's account writes policies");
    let policies = api_of(&w.alice, &egress);
    let widen = policies
        .patch(
            "alice-egress",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"specs": [{"endpointSelector": {}, "egress": [{"toEntities": ["all"]}]}]}),
            ),
        )
        .await
        .map(|o| to_json(&o));
    denied_by(widen, "ciliumnetworkpolicies.validate.sparkward.io");
    let delete = policies
        .delete("alice-egress", &DeleteParams::default())
        .await
        .map(|_| Value::Null);
    denied_by(delete, "ciliumnetworkpolicies.validate.sparkward.io");
    assert!(w.get(CNP, "alice-egress").await.is_some());
}

#[tokio::test]
async fn a_tenant_cannot_open_ingress_into_another_job_with_a_network_policy() {
    let Some(w) = world("np-tenant").await else {
        return;
    };
    // bob's job, admitted in the same namespace: its pods carry its job id.
    let bobs_client = w.cluster().client_as(&w.ns.tenant("oidc:bob").await).await;
    let bobs_app = create(
        &bobs_client,
        &mk_spark_app(
            "bob-etl",
            &w.ns.name,
            &w.token("bob", "data:read:postgres-main"),
        ),
        &PostParams::default(),
    )
    .await
    .expect("bob's SparkApplication is admitted");
    let bobs_job = job_of(&bobs_app);
    let into_bob = json!({
        "apiVersion": NETWORK_POLICY.0, "kind": NETWORK_POLICY.1,
        "metadata": {"name": "into-bob", "namespace": w.ns.name},
        "spec": {
            "podSelector": {"matchLabels": {"sparkward.io/job-id": bobs_job}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
        },
    });
    let message = denied_by(
        create(&w.alice, &into_bob, &PostParams::default()).await,
        "networkpolicies.validate.sparkward.io",
    );
    assert!(
        message.contains("oidc:alice may not create NetworkPolicy into-bob"),
        "{message}"
    );
    assert!(w.get(NETWORK_POLICY, "into-bob").await.is_none());
}

/// alice's spark-submit driver pod `name` with her token for `w`, its spec merged with `spec`.
fn alices_pod(w: &World, name: &str, spec: Value) -> Value {
    let mut pod = support::reviews::mk_pod(name, &w.ns.name);
    pod["metadata"]["annotations"] = json!({"sparkward.io/submitter-token": w.token("alice", "x")});
    json_patch::merge(&mut pod["spec"], &spec);
    pod
}

#[tokio::test]
async fn the_root_group_is_denied_through_the_real_api_server_naming_the_field() {
    let Some(w) = world("root-group").await else {
        return;
    };
    let pod = alices_pod(
        &w,
        "root-group",
        json!({"securityContext": {"runAsGroup": 0}}),
    );
    let message = denied_by(
        create(&w.alice, &pod, &PostParams::default()).await,
        "pods.mutate.sparkward.io",
    );
    assert!(
        message.contains(
            "spec.securityContext.runAsGroup is 0 (the root group): remove it (sparkward sets 185)"
        ),
        "{message}"
    );
    let mut app = w.alices_app("root-fs-group", "data:read:postgres-main");
    app["spec"]["driver"]["podSecurityContext"] = json!({"fsGroup": 0});
    let message = denied_by(
        create(&w.alice, &app, &PostParams::default()).await,
        "sparkapplications.mutate.sparkward.io",
    );
    assert!(
        message.contains("spec.driver.podSecurityContext.fsGroup is 0 (the root group)"),
        "{message}"
    );
    assert!(w.get(SPARK_APP, "root-fs-group").await.is_none());
    assert!(w.policies().await.is_empty());
}

/// kube-apiserver's own PodSecurity admission (restricted) accepts only `drop: ["ALL"]`; a
/// lower-case `all` passes it only because sparkward's mutating webhook rewrote it, and the
/// object is stored with `ALL`.
#[tokio::test]
async fn a_lower_case_drop_all_is_stored_as_all_and_passes_pod_security_restricted() {
    let Some(w) = world("drop-all").await else {
        return;
    };
    let restricted = json!({"pod-security.kubernetes.io/enforce": "restricted"});
    // Without sparkward (a namespace it does not enforce), the API server refuses `all`...
    let plain = w.cluster().namespace("psa-only", restricted.clone()).await;
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "lower-case-all", "namespace": plain.name},
        "spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 185,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "docker.io/apache/spark:4.0.4",
                "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["all"]}}}]},
    });
    let (code, message) = rejection(create(&w.admin, &pod, &PostParams::default()).await);
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("violates PodSecurity \"restricted")
            && message.contains("capabilities.drop=[\"ALL\"]"),
        "{message}"
    );
    // ... and accepts the same pod with `ALL`.
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["ALL"]);
    create(&w.admin, &pod, &PostParams::default())
        .await
        .expect("the restricted profile accepts drop ALL");

    // In an enforced namespace that is also restricted, alice's pod with `all` is admitted.
    let labels = json!({"sparkward.io/enforce": "true",
        "pod-security.kubernetes.io/enforce": "restricted"});
    let ns = w.cluster().namespace("drop-all-psa", labels).await;
    let alice = w.cluster().client_as(&ns.tenant("oidc:alice").await).await;
    let mut pod = support::reviews::mk_pod("lower-case-all", &ns.name);
    pod["metadata"]["annotations"] = json!({"sparkward.io/submitter-token": w.token("alice", "x")});
    pod["spec"]["containers"][0]["securityContext"] = json!({"capabilities": {"drop": ["all"]}});
    let stored = create(&alice, &pod, &PostParams::default())
        .await
        .expect("sparkward rewrites all to ALL and the restricted profile admits the pod");
    assert_eq!(
        stored["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"]),
        "{stored}"
    );
    assert_hardened_pod(&stored);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

/// Waits until the job's policy has an ownerReference to `app` and returns the policy.
async fn adopted_policy(w: &World, app: &Value) -> Value {
    let name = format!("sparkward-{}", job_of(app));
    let uid = app["metadata"]["uid"].clone();
    wait_for("the policy's adoption by its SparkApplication", || async {
        let policy = w.get(CNP, &name).await?;
        let owners = policy["metadata"]["ownerReferences"].as_array()?.clone();
        owners
            .iter()
            .any(|o| o["uid"] == uid && o["kind"] == SPARK_APP.1)
            .then_some(policy)
    })
    .await
}

#[tokio::test]
async fn a_completed_applications_policy_is_adopted_then_deleted_after_the_grace() {
    let Some(w) = world("completed").await else {
        return;
    };
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let name = format!("sparkward-{}", job_of(&app));
    adopted_policy(&w, &app).await;

    // spark-operator reports the end of the application (status subresource).
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    api_of(&w.as_operator().await, &app)
        .patch_status(
            "etl",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "applicationState": {"state": "COMPLETED"}, "driverInfo": {},
                "terminationTime": now}})),
        )
        .await
        .expect("the operator updates the status");
    wait_for("the completed job's policy to be deleted", || async {
        w.get(CNP, &name).await.is_none().then_some(())
    })
    .await;
    // The application itself stays: this was the lifecycle controller, not garbage collection.
    assert!(w.get(SPARK_APP, "etl").await.is_some());
}

#[tokio::test]
async fn garbage_collection_removes_the_policy_with_its_application() {
    let Some(w) = world("gc").await else { return };
    w.cluster().with_controller_manager().await;
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let name = format!("sparkward-{}", job_of(&app));
    adopted_policy(&w, &app).await;

    api_of(&w.alice, &app)
        .delete("etl", &DeleteParams::default())
        .await
        .expect("alice deletes her application");
    wait_for("garbage collection of the policy", || async {
        w.get(CNP, &name).await.is_none().then_some(())
    })
    .await;
    // The garbage collector's delete went through sparkward's policy guard, which let it
    // through (it is one of policy.managers).
    let audited = w.sw.audit_lines().into_iter().find(|l| {
        l["name"] == name.as_str()
            && l["operation"] == "DELETE"
            && l["requester"] == GARBAGE_COLLECTOR
    });
    let audited = audited.expect("sparkward saw the garbage collector's DELETE");
    assert_eq!(audited["allowed"], true, "{audited}");
}

// ---------------------------------------------------------------------------------------------
// Spark's own security (tests/spark_security.rs has the failure cases against the stand-in)
// ---------------------------------------------------------------------------------------------

const SECRET: (&str, &str) = ("v1", "Secret");

#[tokio::test]
async fn real_api_server_stores_the_spark_settings_and_the_jobs_secret_which_goes_with_its_application()
 {
    let Some(w) = world("spark-rpc").await else {
        return;
    };
    w.cluster().with_controller_manager().await;
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let job = job_of(&app);
    // kube-apiserver stored the properties through the real SparkApplication schema.
    let stored = w.get(SPARK_APP, "etl").await.expect("stored");
    let conf = &stored["spec"]["sparkConf"];
    for (key, value) in [
        ("spark.authenticate", "true"),
        ("spark.network.crypto.enabled", "true"),
        ("spark.io.encryption.enabled", "true"),
        (
            "spark.authenticate.secret.file",
            "/etc/sparkward/rpc/secret",
        ),
    ] {
        assert_eq!(conf[key], value, "{key} in {conf}");
    }
    // The job's Secret exists (sparkward created it before answering), 256 bits, immutable.
    let name = format!("sparkward-{job}-rpc");
    let secret = w.get(SECRET, &name).await.expect("the job's RPC Secret");
    assert_eq!(secret["immutable"], true);
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sparkward"
    );
    let data = secret["data"]["secret"].as_str().expect("data.secret");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap();
    assert_eq!(bytes.len(), 32);
    assert!(!stored.to_string().contains(data));

    // The lifecycle controller makes the application its owner...
    let uid = app["metadata"]["uid"].clone();
    wait_for("the Secret's adoption by its SparkApplication", || async {
        let secret = w.get(SECRET, &name).await?;
        let owners = secret["metadata"]["ownerReferences"].as_array()?.clone();
        owners
            .iter()
            .any(|o| o["uid"] == uid && o["kind"] == SPARK_APP.1 && o["name"] == "etl")
            .then_some(())
    })
    .await;
    // ... so kube-controller-manager's garbage collector removes it with the application.
    api_of(&w.alice, &app)
        .delete("etl", &DeleteParams::default())
        .await
        .expect("alice deletes her application");
    wait_for("garbage collection of the Secret", || async {
        w.get(SECRET, &name).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn real_api_server_refuses_a_weaker_spark_setting_naming_the_key() {
    let Some(w) = world("spark-weak").await else {
        return;
    };
    let mut app = w.alices_app("weak", "data:read:postgres-main");
    app["spec"]["sparkConf"] = json!({ "spark.network.crypto.enabled": "false" });
    let message = denied_by(
        create(&w.alice, &app, &PostParams::default()).await,
        "sparkapplications.mutate.sparkward.io",
    );
    assert!(
        message.contains("spec.sparkConf[\"spark.network.crypto.enabled\"]")
            && message.contains("remove it"),
        "{message}"
    );
    assert!(w.get(SPARK_APP, "weak").await.is_none());
    assert!(w.policies().await.is_empty(), "no policy for a refused job");
}

// ---------------------------------------------------------------------------------------------
// The admission stamp through the real API server (tests/stamp.rs has the same cases, and key
// rotation, expiry and retried calls, against the stand-in: this binary shares one sparkward,
// whose key file and validity every test here relies on)
// ---------------------------------------------------------------------------------------------

/// What every stamp denial says, whatever the cause.
const STAMP_NOT_VALID: &str = "sparkward.io/stamp annotation that is not valid for this request";
/// The cause of a stamp bound to another object, namespace, kind or requester.
const STAMP_MISMATCH: &str = "does not match this object, namespace, kind and requester";

/// The stored object as a client resubmits it (`kubectl get -o json`, edited, created again).
fn resubmittable(stored: &Value) -> Value {
    let mut object = stored.clone();
    let meta = object["metadata"].as_object_mut().unwrap();
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "generation",
    ] {
        meta.remove(field);
    }
    object.as_object_mut().unwrap().remove("status");
    object
}

/// Copies every `sparkward.io/` label and annotation of `from` (its stamp included) onto
/// `onto`, as a tenant who read `from` would.
fn copy_identity(from: &Value, onto: &mut Value) {
    for field in ["labels", "annotations"] {
        let Some(source) = from["metadata"][field].as_object() else {
            continue;
        };
        if !onto["metadata"][field].is_object() {
            onto["metadata"][field] = json!({});
        }
        for (k, v) in source
            .iter()
            .filter(|(k, _)| k.starts_with("sparkward.io/"))
        {
            onto["metadata"][field][k] = v.clone();
        }
    }
}

/// The `i`th field of an object's stamp (`v1.<key>.<expiry>.<flags>.<source>.<mac>`).
fn stamp_field(object: &Value, i: usize) -> String {
    let stamp = object["metadata"]["annotations"]["sparkward.io/stamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no stamp on {object}"));
    stamp.split('.').nth(i).unwrap().to_string()
}

/// A spark-submit driver pod of `subject` with a valid token.
fn submitted_driver(w: &World, subject: &str, name: &str) -> Value {
    let mut pod = support::reviews::mk_pod(name, &w.ns.name);
    pod["metadata"]["annotations"] = json!({
        "sparkward.io/submitter-token": w.token(subject, "data:read:postgres-main")});
    pod
}

impl World {
    /// The message of `result`, a denial by `webhook` for its stamp: the message says so and
    /// sparkward audited the reason code `stamp` for `namespace`/`name`.
    async fn stamp_denied(
        &self,
        result: Result<Value, kube::Error>,
        webhook: &str,
        namespace: &str,
        name: &str,
    ) -> String {
        let message = denied_by(result, webhook);
        assert!(message.contains(STAMP_NOT_VALID), "{message}");
        wait_for("sparkward's audit line of the stamp denial", || async {
            self.sw
                .audit_lines()
                .iter()
                .any(|l| {
                    l["namespace"] == namespace
                        && l["name"] == name
                        && l["reason"] == "stamp"
                        && l["allowed"] == false
                })
                .then_some(())
        })
        .await;
        message
    }

    /// Deletes `object` as `client` and waits until it is gone.
    async fn delete(&self, client: &Client, object: &Value) {
        let name = object["metadata"]["name"].as_str().unwrap();
        api_of(client, object)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
        let kind = (
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        );
        wait_for("the deletion", || async {
            self.get(kind, name).await.is_none().then_some(())
        })
        .await;
    }

    /// Policy names in this namespace.
    async fn policy_names(&self) -> Vec<String> {
        self.policies()
            .await
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn real_api_server_refuses_bobs_copy_of_alices_stamp_on_his_application_a_pod_and_in_another_namespace()
 {
    let Some(w) = world("stamp-copy").await else {
        return;
    };
    let bob = w.cluster().client_as(&w.ns.tenant("oidc:bob").await).await;
    let other = w.cluster().enforced_namespace("stamp-copy-b").await;
    let bob_elsewhere = w.cluster().client_as(&other.tenant("oidc:bob").await).await;
    let alices = w.admitted_app("etl", "data:read:postgres-main").await;
    let pp = PostParams::default();

    // bob carries his own valid token each time: the stamp alone decides.
    let mut his_app = mk_spark_app(
        "bob-etl",
        &w.ns.name,
        &w.token("bob", "stream:kafka-events"),
    );
    copy_identity(&alices, &mut his_app);
    let message = w
        .stamp_denied(
            create(&bob, &his_app, &pp).await,
            "sparkapplications.mutate.sparkward.io",
            &w.ns.name,
            "bob-etl",
        )
        .await;
    assert!(message.contains(STAMP_MISMATCH), "{message}");

    let mut his_pod = submitted_driver(&w, "bob", "bob-driver");
    copy_identity(&alices, &mut his_pod);
    let message = w
        .stamp_denied(
            create(&bob, &his_pod, &pp).await,
            "pods.mutate.sparkward.io",
            &w.ns.name,
            "bob-driver",
        )
        .await;
    assert!(message.contains(STAMP_MISMATCH), "{message}");

    let mut elsewhere = resubmittable(&alices);
    elsewhere["metadata"]["namespace"] = json!(other.name);
    elsewhere["metadata"]["annotations"]["sparkward.io/submitter-token"] =
        json!(w.token("bob", "data:read:postgres-main"));
    let message = w
        .stamp_denied(
            create(&bob_elsewhere, &elsewhere, &pp).await,
            "sparkapplications.mutate.sparkward.io",
            &other.name,
            "etl",
        )
        .await;
    assert!(message.contains(STAMP_MISMATCH), "{message}");

    assert!(w.get(SPARK_APP, "bob-etl").await.is_none());
    assert!(w.get(("v1", "Pod"), "bob-driver").await.is_none());
    assert!(managed_policies(&w.admin, &other.name).await.is_empty());
    assert_eq!(
        w.policy_names().await,
        [format!("sparkward-{}", job_of(&alices))]
    );

    // Beside it, bob's own submission is admitted as his own job.
    let his = create(
        &bob,
        &mk_spark_app(
            "bob-etl",
            &w.ns.name,
            &w.token("bob", "stream:kafka-events"),
        ),
        &pp,
    )
    .await
    .expect("bob's own SparkApplication is admitted");
    assert_ne!(job_of(&his), job_of(&alices));
    assert_eq!(w.policies().await.len(), 2);
}

#[tokio::test]
async fn real_api_server_refuses_alices_own_stamp_replayed_onto_another_name() {
    let Some(w) = world("stamp-rename").await else {
        return;
    };
    let first = w.admitted_app("etl", "data:read:postgres-main").await;
    let mut second = resubmittable(&first);
    second["metadata"]["name"] = json!("etl-2");
    second["metadata"]["annotations"]["sparkward.io/submitter-token"] =
        json!(w.token("alice", "data:read:postgres-main"));
    let message = w
        .stamp_denied(
            create(&w.alice, &second, &PostParams::default()).await,
            "sparkapplications.mutate.sparkward.io",
            &w.ns.name,
            "etl-2",
        )
        .await;
    assert!(message.contains(STAMP_MISMATCH), "{message}");
    assert!(w.get(SPARK_APP, "etl-2").await.is_none());
    assert_eq!(w.policies().await.len(), 1);
}

#[tokio::test]
async fn real_api_server_refuses_a_dry_runs_stamp_on_the_real_create() {
    let Some(w) = world("stamp-dry-run").await else {
        return;
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = create(
        &w.alice,
        &w.alices_app("etl", "data:read:postgres-main"),
        &dry_run,
    )
    .await
    .expect("a dry run of a valid submission is allowed");
    assert_eq!(stamp_field(&answered, 3), "d");
    let message = w
        .stamp_denied(
            create(&w.alice, &resubmittable(&answered), &PostParams::default()).await,
            "sparkapplications.mutate.sparkward.io",
            &w.ns.name,
            "etl",
        )
        .await;
    assert!(message.contains("dry run"), "{message}");
    assert!(w.get(SPARK_APP, "etl").await.is_none());
    assert!(w.policies().await.is_empty());
}

/// The documented residual: within its validity the same requester can replay a stamp onto an
/// object of the same kind, namespace and name after deleting the original; it is taken for a
/// re-invocation, carries the identity verified for her moments before and starts nothing.
#[tokio::test]
async fn documented_residual_real_api_server_admits_the_same_requesters_replay_of_the_same_name_within_validity_without_a_new_policy()
 {
    let Some(w) = world("stamp-residual").await else {
        return;
    };
    let original = w.admitted_app("etl", "data:read:postgres-main").await;
    let policy = format!("sparkward-{}", job_of(&original));
    w.delete(&w.alice, &original).await;
    let replayed = create(&w.alice, &resubmittable(&original), &PostParams::default())
        .await
        .expect("the documented residual: the same requester's replay is admitted");
    assert_eq!(job_of(&replayed), job_of(&original));
    let uid = replayed["metadata"]["uid"].clone();
    assert_ne!(uid, original["metadata"]["uid"]);
    wait_for("the replay's audit line", || async {
        w.sw.audit_lines()
            .iter()
            .any(|l| {
                l["namespace"] == w.ns.name.as_str()
                    && l["name"] == "etl"
                    && l["webhook"] == "mutate"
                    && l["identitySource"] == "reinvocation"
                    && l["allowed"] == true
            })
            .then_some(())
    })
    .await;
    let names = w.policy_names().await;
    assert!(
        names.iter().all(|n| *n == policy),
        "a replay created a policy: {names:?}"
    );
}

#[tokio::test]
async fn real_api_server_reinvokes_sparkward_after_a_later_webhook_replaces_the_security_context() {
    let Some(w) = world("stamp-reinvoke").await else {
        return;
    };
    // spark-operator's pod webhook replaces the Spark container's securityContext wholesale.
    // Its configuration's name sorts after `sparkward`, so kube-apiserver calls it after
    // sparkward; it selects only this test's namespace and fails open, so it cannot disturb
    // the other tests of this binary even if this one stops half way.
    let hook = TestHook::start().await;
    hook.on("/mutate", |request| {
        if request["kind"]["kind"] == "Pod" {
            Answer::patch(json!([{
                "op": "add", "path": "/spec/containers/0/securityContext",
                "value": {"runAsUser": 185},
            }]))
        } else {
            Answer::allow()
        }
    });
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": format!("zz-spark-operator-{}", w.ns.name)},
        "webhooks": [{
            "name": "mutate-pods.sparkoperator.k8s.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": format!("{}/mutate", hook.base_url),
                "caBundle": sparkward::certs::ca_bundle(&hook.ca_pem)},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "configmaps"],
                "operations": ["CREATE"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": w.ns.name}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": 5,
        }],
    });
    create(&w.admin, &configuration, &PostParams::default())
        .await
        .expect("the second mutating webhook is registered");
    // kube-apiserver picks configurations up through an informer: probe with dry-run
    // ConfigMaps until the hook is called.
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut probe = 0;
    wait_for("kube-apiserver to call the second webhook", || {
        probe += 1;
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("probe-{probe}"), "namespace": w.ns.name}});
        let (admin, dry_run, hook) = (&w.admin, &dry_run, &hook);
        async move {
            let _ = create(admin, &config_map, dry_run).await;
            hook.received()
                .iter()
                .any(|r| r.request["kind"]["kind"] == "ConfigMap")
                .then_some(())
        }
    })
    .await;

    let driver = create(
        &w.alice,
        &submitted_driver(&w, "alice", "wordcount-driver"),
        &PostParams::default(),
    )
    .await
    .expect("the driver is admitted");
    api(
        &w.admin,
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        None,
    )
    .delete(
        configuration["metadata"]["name"].as_str().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .expect("the second webhook is removed");

    // The second webhook ran after sparkward and replaced the hardened context it saw...
    let pods: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|r| r.request["kind"]["kind"] == "Pod")
        .collect();
    assert_eq!(pods.len(), 1);
    let seen = &pods[0].request["object"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(seen["readOnlyRootFilesystem"], true, "{seen}");
    // ...and what is stored is hardened again by sparkward's re-invocation.
    assert_hardened_pod(&driver);
    let container = &driver["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        container["capabilities"]["drop"],
        json!(["ALL"]),
        "{container}"
    );

    // sparkward was called twice in the mutating phase (own uids; the second a re-invocation)
    // and once to validate; one job, one policy.
    let audited = wait_for("sparkward's three audit lines for the driver", || async {
        let lines: Vec<Value> =
            w.sw.audit_lines()
                .into_iter()
                .filter(|l| {
                    l["namespace"] == w.ns.name.as_str()
                        && l["name"] == "wordcount-driver"
                        && l["kind"] == "Pod"
                })
                .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    let calls: Vec<(&str, &str, bool)> = audited
        .iter()
        .map(|l| {
            (
                l["webhook"].as_str().unwrap(),
                l["identitySource"].as_str().unwrap_or(""),
                l["allowed"] == true,
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("mutate", "token", true),
            ("mutate", "reinvocation", true),
            ("validate", "token", true)
        ]
    );
    let uids: std::collections::BTreeSet<&str> =
        audited.iter().map(|l| l["uid"].as_str().unwrap()).collect();
    assert_eq!(uids.len(), 3, "{audited:#?}");
    assert_eq!(
        w.policy_names().await,
        [format!("sparkward-{}", job_of(&driver))]
    );
}

/// A spark-submit driver pod of alice named by the API server (`generateName` only).
fn generated_driver(w: &World) -> Value {
    let mut pod = submitted_driver(w, "alice", "unused");
    pod["metadata"].as_object_mut().unwrap().remove("name");
    pod["metadata"]["generateName"] = json!("wordcount-driver-");
    pod
}

#[tokio::test]
async fn real_api_server_admits_a_generate_name_driver_and_refuses_its_stamp_on_a_named_pod() {
    let Some(w) = world("stamp-generate").await else {
        return;
    };
    let stored = create(&w.alice, &generated_driver(&w), &PostParams::default())
        .await
        .expect("a generateName driver is admitted");
    assert!(
        stored["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("wordcount-driver-")
    );
    assert_eq!(stamp_field(&stored, 3), "g");
    assert_eq!(w.policies().await.len(), 1);

    let mut named = submitted_driver(&w, "alice", "wordcount-driver-copy");
    copy_identity(&stored, &mut named);
    let message = w
        .stamp_denied(
            create(&w.alice, &named, &PostParams::default()).await,
            "pods.mutate.sparkward.io",
            &w.ns.name,
            "wordcount-driver-copy",
        )
        .await;
    assert!(message.contains("unassigned name"), "{message}");
    assert!(
        w.get(("v1", "Pod"), "wordcount-driver-copy")
            .await
            .is_none()
    );
    assert_eq!(w.policies().await.len(), 1);
}

/// The stored generateName pod, resubmitted as `kubectl get -o json` shows it (generateName
/// kept) under an explicit name: kube-apiserver never shows a mutating webhook a name for a
/// generateName request, so a prefix-bound stamp on a named object is a copy.
#[tokio::test]
async fn real_api_server_refuses_a_generate_name_stamp_copied_with_its_prefix_onto_a_named_pod() {
    let Some(w) = world("stamp-generate-copy").await else {
        return;
    };
    let stored = create(&w.alice, &generated_driver(&w), &PostParams::default())
        .await
        .expect("a generateName driver is admitted");
    let mut copy = resubmittable(&stored);
    copy["metadata"]["name"] = json!("wordcount-driver-copy");
    assert_eq!(copy["metadata"]["generateName"], "wordcount-driver-");
    let message = w
        .stamp_denied(
            create(&w.alice, &copy, &PostParams::default()).await,
            "pods.mutate.sparkward.io",
            &w.ns.name,
            "wordcount-driver-copy",
        )
        .await;
    assert!(message.contains("unassigned name"), "{message}");
    assert!(
        w.get(("v1", "Pod"), "wordcount-driver-copy")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn real_api_server_refuses_an_executors_stamp_replayed_by_another_driver_of_the_same_service_account()
 {
    let Some(w) = world("stamp-executor").await else {
        return;
    };
    let bob = w.cluster().client_as(&w.ns.tenant("oidc:bob").await).await;
    let pp = PostParams::default();
    // Two jobs in one namespace whose drivers run as the same service account.
    let alices_driver = create(
        &w.alice,
        &submitted_driver(&w, "alice", "alice-driver"),
        &pp,
    )
    .await
    .expect("alice's driver");
    let bobs_driver = create(&bob, &submitted_driver(&w, "bob", "bob-driver"), &pp)
        .await
        .expect("bob's driver");
    let as_alices_driver = w
        .cluster()
        .client_as(&w.ns.driver_token(&alices_driver))
        .await;
    let as_bobs_driver = w
        .cluster()
        .client_as(&w.ns.driver_token(&bobs_driver))
        .await;
    let no_labels = json!({});
    let alices_exec = create(
        &as_alices_driver,
        &mk_executor_pod(&alices_driver, 1, &no_labels),
        &pp,
    )
    .await
    .expect("alice's executor");
    assert_eq!(job_of(&alices_exec), job_of(&alices_driver));
    assert_eq!(stamp_field(&alices_exec, 4), "p");
    let bobs_exec = create(
        &as_bobs_driver,
        &mk_executor_pod(&bobs_driver, 1, &no_labels),
        &pp,
    )
    .await
    .expect("bob's executor");
    assert_eq!(job_of(&bobs_exec), job_of(&bobs_driver));

    // bob's driver may not delete alice's executor (ownership)...
    let refused = api_of(&as_bobs_driver, &alices_exec)
        .delete("alice-driver-exec-1", &DeleteParams::default())
        .await
        .map(|_| ())
        .expect_err("bob's driver deleted alice's executor");
    assert!(refused.to_string().contains("belongs to job"), "{refused}");
    // ...and once alice's own driver has deleted it, bob's cannot recreate it, stamp and all.
    w.delete(&as_alices_driver, &alices_exec).await;
    let message = w
        .stamp_denied(
            create(&as_bobs_driver, &resubmittable(&alices_exec), &pp).await,
            "pods.mutate.sparkward.io",
            &w.ns.name,
            "alice-driver-exec-1",
        )
        .await;
    assert!(message.contains(STAMP_MISMATCH), "{message}");
    assert!(w.get(("v1", "Pod"), "alice-driver-exec-1").await.is_none());
    assert_eq!(w.policies().await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Tenant isolation after admission (tests/tenancy.rs has the same cases against the stand-in):
// who may change, delete, enter or mint tokens for a job's objects, and spark-operator's labels
// ---------------------------------------------------------------------------------------------

const APP_MUTATE: &str = "sparkapplications.mutate.sparkward.io";
const APP_VALIDATE: &str = "sparkapplications.validate.sparkward.io";
const POD_MUTATE: &str = "pods.mutate.sparkward.io";
const POD_VALIDATE: &str = "pods.validate.sparkward.io";
const POD_STATUS_VALIDATE: &str = "podstatus.validate.sparkward.io";
const TOKEN_VALIDATE: &str = "tokenrequests.validate.sparkward.io";
/// The node pods are bound to here (no kubelet runs: the binding is what the scheduler writes),
/// and another one.
const NODE: &str = "node-1";
const OTHER_NODE: &str = "node-2";

/// The kubelet of `node` as the node authenticator presents it.
fn kubelet(node: &str) -> Identity {
    Identity {
        user: format!("system:node:{node}"),
        groups: vec!["system:nodes".into()],
        extra: Default::default(),
    }
}

/// A SparkApplication as `client` sees it (its API).
fn apps_of(client: &Client, w: &World) -> kube::Api<kube::api::DynamicObject> {
    api(client, SPARK_APP.0, SPARK_APP.1, Some(&w.ns.name))
}

fn pods_of(client: &Client, w: &World) -> kube::Api<kube::api::DynamicObject> {
    api(client, "v1", "Pod", Some(&w.ns.name))
}

/// A ScheduledSparkApplication of `subject` with a valid token.
fn mk_schedule(w: &World, subject: &str, name: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": name, "namespace": w.ns.name,
            "annotations": {"sparkward.io/submitter-token": w.token(subject, "data:read:postgres-main")}},
        "spec": {"schedule": "@every 1h", "template": mk_spark_app(name, &w.ns.name, "x")["spec"]},
    })
}

/// An ownerReference to the SparkApplication `app`.
fn app_reference(app: &Value, controller: bool) -> Value {
    json!({"apiVersion": SPARK_APP.0, "kind": SPARK_APP.1, "name": app["metadata"]["name"],
        "uid": app["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": true})
}

/// JSON merge of `addition` into `target` (objects merged, everything else replaced).
fn merge(target: &mut Value, addition: &Value) {
    match (target, addition) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, a) => *t = a.clone(),
    }
}

/// The `sparkoperator.k8s.io/` labels of a stored object.
fn operator_labels(object: &Value) -> Value {
    let labels = object["metadata"]["labels"].as_object().unwrap();
    Value::Object(
        labels
            .iter()
            .filter(|(k, _)| k.starts_with("sparkoperator.k8s.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

impl World {
    /// A client for tenant `user` (the tenant Role in this namespace).
    async fn tenant(&self, user: &str) -> Client {
        self.cluster().client_as(&self.ns.tenant(user).await).await
    }

    /// Grants `user` `rules` in this namespace on top of the tenant Role, so that sparkward,
    /// not RBAC, decides what the tests try; returns once the authorizer allows the first verb
    /// of each rule.
    async fn grant(&self, user: &str, role: &str, rules: Value) {
        let pp = PostParams::default();
        let ns = &self.ns.name;
        let subject = user.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let objects = [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": role, "namespace": ns}, "rules": rules}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("{role}-{subject}"), "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}),
        ];
        for object in objects {
            match create(&self.admin, &object, &pp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("granting {role} to {user}: {e}"),
            }
        }
        for rule in rules.as_array().unwrap() {
            let resource = rule["resources"][0].as_str().unwrap();
            let verb = rule["verbs"][0].as_str().unwrap();
            let group = rule["apiGroups"][0].as_str().unwrap();
            self.await_rbac(user, group, verb, resource).await;
        }
    }

    /// Binds `user` here to the ClusterRole `system:aggregate-to-edit`: the rules Kubernetes
    /// puts into its built-in `edit` role (aggregated by kube-controller-manager, which these
    /// tests do not always run), i.e. what a namespace editor may do. Returns once the
    /// authorizer lets `user` `verb` `resource`.
    async fn bind_edit_role(&self, user: &str, verb: &str, resource: &str) {
        let subject = user.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("edit-{subject}"), "namespace": self.ns.name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": "system:aggregate-to-edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
        create(&self.admin, &binding, &PostParams::default())
            .await
            .unwrap_or_else(|e| panic!("binding {user} to the edit rules: {e}"));
        self.await_rbac(user, "", verb, resource).await;
    }

    /// Waits until the authorizer lets `user` `verb` `resource` (`pods/eviction` form) of API
    /// group `group` here.
    async fn await_rbac(&self, user: &str, group: &str, verb: &str, resource: &str) {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": {
                "namespace": self.ns.name, "verb": verb, "group": group,
                "resource": resource, "subresource": subresource}}});
        wait_for(&format!("RBAC to let {user} {verb} {resource}"), || async {
            let answer = create(&self.admin, &review, &PostParams::default())
                .await
                .ok()?;
            (answer["status"]["allowed"] == true).then_some(())
        })
        .await;
    }

    /// The message of `result`, a denial by sparkward's `webhook` with reason code `reason`:
    /// the message says so, and sparkward audited that reason for `name` in this namespace.
    async fn refused<T: std::fmt::Debug>(
        &self,
        result: Result<T, kube::Error>,
        webhook: &str,
        name: &str,
        reason: &str,
    ) -> String {
        let (code, message) = rejection(result);
        assert!(
            message.contains(&format!(
                "admission webhook \"{webhook}\" denied the request"
            )),
            "expected a denial by {webhook}, got {code}: {message}"
        );
        wait_for("sparkward's audit line of the denial", || async {
            self.sw
                .audit_lines()
                .iter()
                .any(|l| {
                    l["namespace"] == self.ns.name.as_str()
                        && l["name"] == name
                        && l["reason"] == reason
                        && l["allowed"] == false
                })
                .then_some(())
        })
        .await;
        message
    }

    /// POSTs a CONNECT subresource (`exec`, `attach`, `portforward`) of pod `name` as `client`
    /// the way kubectl starts one; the API server's error.
    async fn connect(&self, client: &Client, name: &str, sub: &str, query: &str) -> kube::Error {
        let request = http::Request::post(format!(
            "/api/v1/namespaces/{}/pods/{name}/{sub}?{query}",
            self.ns.name
        ))
        .body(Vec::new())
        .unwrap();
        client
            .request_text(request)
            .await
            .expect_err("a CONNECT to a pod no kubelet runs cannot succeed")
    }

    /// Binds pod `name` to `node`, as the scheduler does.
    async fn bind(&self, name: &str, node: &str) {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        pods_of(&self.admin, self)
            .create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("binding {name} to {node}: {e}"));
    }

    /// Evicts pod `name` as `client` (what `kubectl drain` does).
    async fn evict(&self, client: &Client, name: &str) -> Result<Value, kube::Error> {
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": self.ns.name}});
        pods_of(client, self)
            .create_subresource::<Value, Value>("eviction", name, &PostParams::default(), &eviction)
            .await
    }

    /// A TokenRequest for the `spark` service account as `client`, bound to `pod` when given.
    async fn token_request(
        &self,
        client: &Client,
        pod: Option<&Value>,
    ) -> Result<Value, kube::Error> {
        let mut spec = json!({"expirationSeconds": 3600});
        if let Some(pod) = pod {
            spec["boundObjectRef"] = json!({"apiVersion": "v1", "kind": "Pod",
                "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]});
        }
        let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": spec});
        api(client, "v1", "ServiceAccount", Some(&self.ns.name))
            .create_subresource::<Value, Value>("token", "spark", &PostParams::default(), &request)
            .await
    }
}

/// Asserts that a not_owner denial names the job, its owner (alice), the requester and who may.
fn names_owner_and_who_may(message: &str, job: &str, requester: &str) {
    for needle in [
        format!("belongs to job {job} of oidc:alice"),
        format!("{requester} may not"),
        "Only the job's submitter (oidc:alice) and the job administrators \
         (identity.jobAdmins) may"
            .to_string(),
    ] {
        assert!(message.contains(&needle), "no '{needle}' in: {message}");
    }
}

#[tokio::test]
async fn real_api_server_refuses_bobs_edits_and_delete_of_alices_application_and_lets_her_job_admins_and_the_operator_do_their_part()
 {
    let Some(w) = world("own-app").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    let admin = w.tenant(JOB_ADMIN_USER).await;
    let mut carol = w.ns.tenant("oidc:carol").await;
    carol.groups = vec![JOB_ADMIN_GROUP.into()];
    let group_admin = w.cluster().client_as(&carol).await;
    // RBAC lets a namespace editor write status: sparkward, not RBAC, keeps it the operator's.
    w.grant(
        "oidc:alice",
        "status-writer",
        json!([{"apiGroups": ["sparkoperator.k8s.io"], "resources": ["sparkapplications/status"],
            "verbs": ["patch", "update"]}]),
    )
    .await;
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let job = job_of(&app);
    let pp = PatchParams::default();

    for spec in [
        json!({"image": "docker.io/bob/spark:evil"}),
        json!({"mainApplicationFile": "s3a://bob/exfiltrate.jar"}),
    ] {
        let result = apps_of(&bob, &w)
            .patch("etl", &pp, &Patch::Merge(json!({"spec": spec})))
            .await;
        let message = w.refused(result, APP_VALIDATE, "etl", "not_owner").await;
        names_owner_and_who_may(&message, &job, "oidc:bob");
        assert!(message.contains("may not change its spec"), "{message}");
    }
    assert_eq!(w.get(SPARK_APP, "etl").await.unwrap()["spec"], app["spec"]);

    let scale = |n: u32| Patch::Merge(json!({"spec": {"executor": {"instances": n}}}));
    apps_of(&w.alice, &w)
        .patch("etl", &pp, &scale(4))
        .await
        .expect("alice scales her application");
    apps_of(&admin, &w)
        .patch("etl", &pp, &scale(3))
        .await
        .expect("a job administrator edits it");
    apps_of(&group_admin, &w)
        .patch(
            "etl",
            &pp,
            &Patch::Merge(
                json!({"spec": {"mainApplicationFile": "local:///opt/spark/examples/jars/v2.jar"}}),
            ),
        )
        .await
        .expect("a member of the job administrators' group edits it");
    let stored = w.get(SPARK_APP, "etl").await.unwrap();
    assert_eq!(stored["spec"]["executor"]["instances"], 3);

    // Status is the operator's; alice, though RBAC lets her, may not forge it.
    let operator = w.as_operator().await;
    apps_of(&operator, &w)
        .patch_status(
            "etl",
            &pp,
            &Patch::Merge(
                json!({"status": {"applicationState": {"state": "RUNNING"}, "driverInfo": {}}}),
            ),
        )
        .await
        .expect("the operator writes the status");
    let result = apps_of(&w.alice, &w)
        .patch_status(
            "etl",
            &pp,
            &Patch::Merge(
                json!({"status": {"applicationState": {"state": "COMPLETED"},
                "driverInfo": {"podName": "bob-driver"}}}),
            ),
        )
        .await;
    let message = w.refused(result, APP_VALIDATE, "etl", "not_owner").await;
    assert!(
        message.contains("oidc:alice may not write its status"),
        "{message}"
    );
    // The operator adds metadata, its own labels included.
    apps_of(&operator, &w)
        .patch(
            "etl",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"sparkoperator.k8s.io/queue": "batch"}}})),
        )
        .await
        .expect("the operator adds metadata");
    let stored = w.get(SPARK_APP, "etl").await.unwrap();
    assert_eq!(stored["status"]["applicationState"]["state"], "RUNNING");
    assert_eq!(
        stored["metadata"]["labels"]["sparkoperator.k8s.io/queue"],
        "batch"
    );

    let result = apps_of(&bob, &w)
        .delete("etl", &DeleteParams::default())
        .await;
    let message = w.refused(result, APP_VALIDATE, "etl", "not_owner").await;
    assert!(message.contains("oidc:bob may not delete it"), "{message}");
    assert!(w.get(SPARK_APP, "etl").await.is_some());
    w.delete(&w.alice, &app).await;
}

#[tokio::test]
async fn real_api_server_refuses_bobs_edit_of_alices_schedule_and_lets_her_change_it() {
    let Some(w) = world("own-schedule").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    let pp = PostParams::default();
    let schedule = create(&w.alice, &mk_schedule(&w, "alice", "nightly"), &pp)
        .await
        .expect("alice's schedule is admitted");
    let schedule_id = schedule["metadata"]["annotations"]["sparkward.io/schedule-id"]
        .as_str()
        .unwrap()
        .to_string();
    let schedules = |client: &Client| api_of(client, &schedule);

    let result = schedules(&bob)
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"image": "docker.io/bob/spark:evil"}}})),
        )
        .await;
    let message = w
        .refused(result, APP_VALIDATE, "nightly", "not_owner")
        .await;
    names_owner_and_who_may(&message, &schedule_id, "oidc:bob");
    assert!(
        message.contains(&format!("ScheduledSparkApplication {}/nightly", w.ns.name)),
        "{message}"
    );
    schedules(&w.alice)
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedule": "@every 2h"}})),
        )
        .await
        .expect("alice changes her schedule");
    let stored = w
        .get(
            ("sparkoperator.k8s.io/v1beta2", "ScheduledSparkApplication"),
            "nightly",
        )
        .await
        .unwrap();
    assert_eq!(stored["spec"]["schedule"], "@every 2h");
    assert_eq!(stored["spec"]["template"], schedule["spec"]["template"]);
}

#[tokio::test]
async fn real_api_server_refuses_bob_editing_or_entering_alices_driver_and_lets_her_and_job_admins_in()
 {
    let Some(w) = world("own-pod").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    let admin = w.tenant(JOB_ADMIN_USER).await;
    let driver = create(
        &w.alice,
        &submitted_driver(&w, "alice", "alice-driver"),
        &PostParams::default(),
    )
    .await
    .expect("alice's driver");
    let job = job_of(&driver);
    let pp = PatchParams::default();
    let image = |image: &str| {
        Patch::Strategic(json!({"spec": {"containers": [
            {"name": "spark-kubernetes-driver", "image": image}]}}))
    };

    let result = pods_of(&bob, &w)
        .patch("alice-driver", &pp, &image("docker.io/bob/spark:evil"))
        .await;
    let message = w
        .refused(result, POD_VALIDATE, "alice-driver", "not_owner")
        .await;
    names_owner_and_who_may(&message, &job, "oidc:bob");
    assert!(message.contains("may not change its spec"), "{message}");
    pods_of(&w.alice, &w)
        .patch("alice-driver", &pp, &image("docker.io/apache/spark:4.0.4"))
        .await
        .expect("alice updates her driver's image");
    let stored = w.get(("v1", "Pod"), "alice-driver").await.unwrap();
    assert_eq!(
        stored["spec"]["containers"][0]["image"],
        "docker.io/apache/spark:4.0.4"
    );

    // CONNECT: kube-apiserver asks the webhooks first, then notices that no node runs the pod.
    let entries = [
        ("exec", "command=sh&stdin=true&stdout=true&tty=true"),
        ("attach", "stdin=true&stdout=true"),
        ("portforward", "ports=4040"),
    ];
    for (sub, query) in entries {
        let result: Result<(), kube::Error> =
            Err(w.connect(&bob, "alice-driver", sub, query).await);
        let message = w
            .refused(result, POD_VALIDATE, "alice-driver", "not_owner")
            .await;
        assert!(
            message.contains("oidc:bob may not enter it"),
            "{sub}: {message}"
        );
    }
    for (client, (sub, query)) in [
        (&w.alice, entries[0]),
        (&w.alice, entries[2]),
        (&admin, entries[0]),
    ] {
        let (code, message) =
            rejection::<()>(Err(w.connect(client, "alice-driver", sub, query).await));
        assert!(!message.contains("denied the request"), "{sub}: {message}");
        assert!(
            message.contains("does not have a host assigned"),
            "{sub}: {code} {message}"
        );
    }

    // Debug containers are entering too; alice's is hardened like every other container.
    let debug = |name: &str| {
        Patch::Strategic(json!({"spec": {"ephemeralContainers": [{"name": name,
            "image": "docker.io/library/busybox:1.36", "command": ["sh"], "stdin": true, "tty": true,
            "targetContainerName": "spark-kubernetes-driver"}]}}))
    };
    let result = pods_of(&bob, &w)
        .patch_subresource(
            "ephemeralcontainers",
            "alice-driver",
            &pp,
            &debug("bob-debug"),
        )
        .await;
    let message = w
        .refused(result, POD_VALIDATE, "alice-driver", "not_owner")
        .await;
    assert!(message.contains("oidc:bob may not enter it"), "{message}");
    let stored = to_json(
        &pods_of(&w.alice, &w)
            .patch_subresource("ephemeralcontainers", "alice-driver", &pp, &debug("debug"))
            .await
            .expect("alice's debug container"),
    );
    let containers = stored["spec"]["ephemeralContainers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let security = &containers[0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
    assert_eq!(
        security["capabilities"]["drop"],
        json!(["ALL"]),
        "{security}"
    );
}

#[tokio::test]
async fn real_api_server_keeps_a_job_pods_labels_through_pods_status_and_leaves_its_status_to_the_kubelet()
 {
    let Some(w) = world("pod-status").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    for user in ["oidc:alice", "oidc:bob"] {
        w.grant(
            user,
            "pod-status-writer",
            json!([{"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]}]),
        )
        .await;
    }
    let driver = create(
        &w.alice,
        &submitted_driver(&w, "alice", "alice-driver"),
        &PostParams::default(),
    )
    .await
    .expect("alice's driver");
    let job = job_of(&driver);
    w.bind("alice-driver", NODE).await;
    let pp = PatchParams::default();

    // kube-apiserver's pods/status takes labels too: sparkward's stay, for everybody.
    let relabel = Patch::Merge(json!({"metadata": {"labels": {
        "sparkward.io/job-id": "sj-aaaaaaaaaaaaaaaaaaaa"}}}));
    for client in [&bob, &w.alice] {
        let result = pods_of(client, &w)
            .patch_status("alice-driver", &pp, &relabel)
            .await;
        let message = w
            .refused(result, POD_STATUS_VALIDATE, "alice-driver", "immutable")
            .await;
        assert!(message.contains("sparkward.io/job-id"), "{message}");
    }
    // Status is the kubelet's.
    let result = pods_of(&bob, &w)
        .patch_status(
            "alice-driver",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Failed", "message": "killed by bob"}})),
        )
        .await;
    let message = w
        .refused(result, POD_STATUS_VALIDATE, "alice-driver", "not_owner")
        .await;
    assert!(
        message.contains("oidc:bob may not write its status"),
        "{message}"
    );
    let stored = w.get(("v1", "Pod"), "alice-driver").await.unwrap();
    assert_eq!(job_of(&stored), job);
    assert_eq!(stored["status"]["phase"], "Pending");

    let as_kubelet = w.cluster().client_as(&kubelet(NODE)).await;
    pods_of(&as_kubelet, &w)
        .patch_status(
            "alice-driver",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("the kubelet of the pod's node writes its status");
    let stored = w.get(("v1", "Pod"), "alice-driver").await.unwrap();
    assert_eq!(stored["status"]["phase"], "Running");
}

#[tokio::test]
async fn real_api_server_lets_the_garbage_collector_the_kubelet_and_the_jobs_driver_delete_its_pods_and_collects_them_with_the_application()
 {
    let Some(w) = world("own-delete").await else {
        return;
    };
    w.cluster().with_controller_manager().await;
    let pp = PostParams::default();
    let app = w.admitted_app("etl", "data:read:postgres-main").await;
    let policy = format!("sparkward-{}", job_of(&app));
    adopted_policy(&w, &app).await;
    let driver = create(&w.as_operator().await, &mk_driver_pod(&app), &pp)
        .await
        .expect("the operator's driver");
    let as_driver = w.cluster().client_as(&w.ns.driver_token(&driver)).await;
    let mut executors = Vec::new();
    for n in 1..=4 {
        let labels = app["spec"]["executor"]["labels"].clone();
        executors.push(
            create(&as_driver, &mk_executor_pod(&driver, n, &labels), &pp)
                .await
                .expect("the driver's executor"),
        );
    }
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };

    // The driver deletes its executors.
    w.delete(&as_driver, &executors[0]).await;
    // So does the garbage collector (as its own service account).
    let gc = w
        .cluster()
        .client_as(&Identity::service_account(
            "kube-system",
            "generic-garbage-collector",
        ))
        .await;
    w.delete(&gc, &executors[1]).await;
    // The kubelet makes the final delete of a pod on its node; another node's may not.
    w.bind("etl-driver-exec-3", NODE).await;
    let other = w.cluster().client_as(&kubelet(OTHER_NODE)).await;
    let result = pods_of(&other, &w).delete("etl-driver-exec-3", &now).await;
    let message = w
        .refused(result, POD_VALIDATE, "etl-driver-exec-3", "not_owner")
        .await;
    assert!(
        message.contains("system:node:node-2 may not delete it"),
        "{message}"
    );
    let own = w.cluster().client_as(&kubelet(NODE)).await;
    pods_of(&own, &w)
        .delete("etl-driver-exec-3", &now)
        .await
        .expect("the kubelet deletes a pod of its node");
    wait_for("the kubelet's delete", || async {
        w.get(("v1", "Pod"), "etl-driver-exec-3")
            .await
            .is_none()
            .then_some(())
    })
    .await;

    // alice deletes her application; kube-controller-manager's garbage collector deletes its
    // driver (and through it the last executor) and its policy, and sparkward lets it.
    w.delete(&w.alice, &app).await;
    for name in ["etl-driver", "etl-driver-exec-4"] {
        wait_for(&format!("garbage collection of {name}"), || async {
            w.get(("v1", "Pod"), name).await.is_none().then_some(())
        })
        .await;
    }
    wait_for("garbage collection of the policy", || async {
        w.get(CNP, &policy).await.is_none().then_some(())
    })
    .await;
    for name in ["etl-driver", "etl-driver-exec-4"] {
        let audited = w.sw.audit_lines().into_iter().find(|l| {
            l["namespace"] == w.ns.name.as_str()
                && l["name"] == name
                && l["kind"] == "Pod"
                && l["operation"] == "DELETE"
                && l["requester"] == GARBAGE_COLLECTOR
        });
        let audited = audited.unwrap_or_else(|| panic!("sparkward saw no GC delete of {name}"));
        assert_eq!(audited["allowed"], true, "{audited}");
    }
}

#[tokio::test]
async fn real_api_server_mints_tokens_bound_to_alices_driver_only_for_its_kubelet_and_job_admins() {
    let Some(w) = world("own-token").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    let admin = w.tenant(JOB_ADMIN_USER).await;
    let driver = create(
        &w.alice,
        &submitted_driver(&w, "alice", "alice-driver"),
        &PostParams::default(),
    )
    .await
    .expect("alice's driver");
    let job = job_of(&driver);

    // RBAC lets every tenant mint tokens for the namespace's service accounts.
    let message = w
        .refused(
            w.token_request(&bob, Some(&driver)).await,
            TOKEN_VALIDATE,
            "spark",
            "not_owner",
        )
        .await;
    names_owner_and_who_may(&message, &job, "oidc:bob");
    assert!(
        message.contains("oidc:bob may not mint a service-account token bound to it"),
        "{message}"
    );
    w.token_request(&admin, Some(&driver))
        .await
        .expect("a job administrator's token bound to the driver");
    w.token_request(&bob, None)
        .await
        .expect("a token bound to no pod is no job's");

    // The kubelet of the pod's node: the Node authorizer and sparkward's pod cache both learn
    // of the binding from their watches, a moment after the scheduler's write.
    w.bind("alice-driver", NODE).await;
    let as_kubelet = w.cluster().client_as(&kubelet(NODE)).await;
    let minted = wait_for("the kubelet's token for its pod", || async {
        w.token_request(&as_kubelet, Some(&driver)).await.ok()
    })
    .await;
    assert!(minted["status"]["token"].as_str().is_some(), "{minted}");
}

#[tokio::test]
async fn real_api_server_refuses_spark_operator_labels_from_tenants_and_drivers_their_application_does_not_control()
 {
    let Some(w) = world("lineage").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    let pp = PostParams::default();
    let alices = w.admitted_app("alice-etl", "data:read:postgres-main").await;
    let job = job_of(&alices);
    let bobs_app = || {
        mk_spark_app(
            "bob-etl",
            &w.ns.name,
            &w.token("bob", "data:read:postgres-main"),
        )
    };

    // bob's application naming alice's, wherever spark-operator would copy it onto pods.
    let claim = json!({"sparkoperator.k8s.io/app-name": "alice-etl"});
    for (field, addition) in [
        (
            "spec.driver.labels",
            json!({"spec": {"driver": {"labels": claim}}}),
        ),
        ("metadata.labels", json!({"metadata": {"labels": claim}})),
        (
            "spec.sparkConf",
            json!({"spec": {"sparkConf": {
                "spark.kubernetes.driver.label.sparkoperator.k8s.io/app-name": "alice-etl"}}}),
        ),
        (
            "spec.driver.template.metadata.ownerReferences",
            json!({"spec": {"driver": {"template": {"metadata": {
                "ownerReferences": [app_reference(&alices, true)]}}}}}),
        ),
    ] {
        let mut his = bobs_app();
        merge(&mut his, &addition);
        let message = w
            .refused(
                create(&bob, &his, &pp).await,
                APP_MUTATE,
                "bob-etl",
                "spoofing",
            )
            .await;
        assert!(message.contains(field), "{field}: {message}");
    }
    assert!(w.get(SPARK_APP, "bob-etl").await.is_none());
    let bobs = create(&bob, &bobs_app(), &pp)
        .await
        .expect("bob's own application");

    // Drivers the operator creates for alice's application whose final form is not controlled
    // by it: refused in the validating pass.
    let operator = w.as_operator().await;
    let mut two_owners = mk_driver_pod(&alices);
    two_owners["metadata"]["ownerReferences"] =
        json!([app_reference(&alices, false), app_reference(&bobs, true)]);
    let mut no_owner = mk_driver_pod(&alices);
    no_owner["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    for (pod, expected) in [
        (two_owners, "is controlled by SparkApplication bob-etl"),
        (no_owner, "has no controller ownerReference to it"),
    ] {
        let message = w
            .refused(
                create(&operator, &pod, &pp).await,
                POD_VALIDATE,
                "alice-etl-driver",
                "lineage",
            )
            .await;
        assert!(message.contains(expected), "{message}");
    }
    assert!(w.get(("v1", "Pod"), "alice-etl-driver").await.is_none());

    // The operator's real driver joins alice's job; its executors, created with its bound
    // token, carry its operator labels and join too.
    let driver = create(&operator, &mk_driver_pod(&alices), &pp)
        .await
        .expect("the operator's driver");
    assert_eq!(job_of(&driver), job);
    let labels = operator_labels(&driver);
    assert_eq!(labels.as_object().unwrap().len(), 3, "{labels}");
    let as_driver = w.cluster().client_as(&w.ns.driver_token(&driver)).await;
    let mut executor_labels = alices["spec"]["executor"]["labels"].clone();
    merge(&mut executor_labels, &labels);
    let executor = create(
        &as_driver,
        &mk_executor_pod(&driver, 1, &executor_labels),
        &pp,
    )
    .await
    .expect("the driver's executor with its operator labels");
    assert_eq!(job_of(&executor), job);
    assert_eq!(operator_labels(&executor), labels);

    // A tenant's own pod may carry none of them.
    let mut pod = submitted_driver(&w, "bob", "bob-driver");
    pod["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = json!("alice-etl");
    let message = w
        .refused(
            create(&bob, &pod, &pp).await,
            POD_MUTATE,
            "bob-driver",
            "spoofing",
        )
        .await;
    assert!(
        message.contains("sparkoperator.k8s.io/app-name"),
        "{message}"
    );
    assert!(w.get(("v1", "Pod"), "bob-driver").await.is_none());
}

/// An eviction deletes the pod through the registry without a second admission of a DELETE,
/// so it must be held to the same owners as a DELETE: Kubernetes' built-in `edit` role grants
/// every namespace editor `pods/eviction`, and Spark pods have no PodDisruptionBudget.
#[tokio::test]
async fn real_api_server_refuses_bobs_eviction_of_alices_driver() {
    let Some(w) = world("evict").await else {
        return;
    };
    for user in ["oidc:alice", "oidc:bob"] {
        w.bind_edit_role(user, "create", "pods/eviction").await;
    }
    let bob = w.cluster().client_as(&Identity::user("oidc:bob")).await;
    let driver = create(
        &w.alice,
        &submitted_driver(&w, "alice", "alice-driver"),
        &PostParams::default(),
    )
    .await
    .expect("alice's driver");
    match w.evict(&bob, "alice-driver").await {
        Ok(answer) => {
            let left = w.get(("v1", "Pod"), "alice-driver").await;
            panic!(
                "bob's eviction of alice's driver was admitted ({answer}) and the driver {}",
                if left.is_some() {
                    "is still there"
                } else {
                    "was deleted"
                }
            )
        }
        Err(e) => {
            let (code, message) = rejection::<()>(Err(e));
            assert_eq!(code, 403, "{message}");
            names_owner_and_who_may(&message, &job_of(&driver), "oidc:bob");
        }
    }
    assert!(w.get(("v1", "Pod"), "alice-driver").await.is_some());
    // alice may evict her own driver.
    w.evict(&w.alice, "alice-driver")
        .await
        .expect("alice evicts her driver");
}

/// In-place resize (`pods/resize`) changes a pod's container resources: a spec change, which
/// only the job's submitter and job administrators may make. (The built-in `edit` role does not
/// grant `pods/resize`; a cluster that lets tenants resize their own pods grants it like this.)
#[tokio::test]
async fn real_api_server_refuses_bobs_resize_of_alices_driver() {
    let Some(w) = world("resize").await else {
        return;
    };
    let bob = w.tenant("oidc:bob").await;
    for user in ["oidc:alice", "oidc:bob"] {
        w.grant(
            user,
            "resizer",
            json!([{"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch", "update"]}]),
        )
        .await;
    }
    let mut pod = submitted_driver(&w, "alice", "alice-driver");
    pod["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let driver = create(&w.alice, &pod, &PostParams::default())
        .await
        .expect("alice's driver");
    let cpu = |cpu: &str| {
        Patch::Strategic(
            json!({"spec": {"containers": [{"name": "spark-kubernetes-driver",
            "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}}),
        )
    };
    let limit = |pod: &Value| pod["spec"]["containers"][0]["resources"]["limits"]["cpu"].clone();
    match pods_of(&bob, &w)
        .patch_subresource(
            "resize",
            "alice-driver",
            &PatchParams::default(),
            &cpu("10m"),
        )
        .await
    {
        Ok(resized) => panic!(
            "bob's resize of alice's driver was admitted: its cpu limit is now {}",
            limit(&to_json(&resized))
        ),
        Err(e) => {
            let (code, message) = rejection::<()>(Err(e));
            assert_eq!(code, 403, "{message}");
            names_owner_and_who_may(&message, &job_of(&driver), "oidc:bob");
        }
    }
    let stored = w.get(("v1", "Pod"), "alice-driver").await.unwrap();
    assert_eq!(limit(&stored), "1");
    // alice may resize her own driver.
    let resized = pods_of(&w.alice, &w)
        .patch_subresource("resize", "alice-driver", &PatchParams::default(), &cpu("2"))
        .await
        .expect("alice resizes her driver");
    assert_eq!(limit(&to_json(&resized)), "2");
}

// ---------------------------------------------------------------------------------------------
// Facts about the real API server that the stand-in must match
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn real_api_server_gives_each_webhook_call_its_own_uid() {
    let Some(w) = world("uids").await else { return };
    assert!(
        w.sw.covers("sparkapplications.validate.sparkward.io", "CREATE"),
        "this test needs the validating webhook (SPARKWARD_REALAPI_OMIT_WEBHOOKS leaves it out)"
    );
    // Whether or not it is admitted, both webhooks are called for this one create.
    let _ = create(
        &w.alice,
        &w.alices_app("etl", "data:read:postgres-main"),
        &PostParams::default(),
    )
    .await;
    let calls: Vec<Value> =
        w.sw.audit_lines()
            .into_iter()
            .filter(|l| l["namespace"] == w.ns.name.as_str() && l["name"] == "etl")
            .collect();
    let uid_of = |webhook: &str| -> String {
        calls
            .iter()
            .find(|l| l["webhook"] == webhook)
            .and_then(|l| l["uid"].as_str())
            .unwrap_or_else(|| panic!("no {webhook} call audited: {calls:#?}"))
            .to_string()
    };
    let (mutating, validating) = (uid_of("mutate"), uid_of("validate"));
    assert_ne!(
        mutating, validating,
        "one create, two webhook calls, two request uids"
    );
}

#[tokio::test]
async fn real_api_server_names_a_generate_name_pod_only_after_the_mutating_webhooks() {
    let Some(w) = world("generate-name").await else {
        return;
    };
    assert!(
        w.sw.covers("pods.validate.sparkward.io", "CREATE"),
        "this test needs the validating webhook (SPARKWARD_REALAPI_OMIT_WEBHOOKS leaves it out)"
    );
    // spark-submit names its driver itself, but kubectl create and client libraries often
    // leave the name to the API server.
    let mut pod = support::reviews::mk_pod("unused", &w.ns.name);
    pod["metadata"].as_object_mut().unwrap().remove("name");
    pod["metadata"]["generateName"] = json!("wordcount-driver-");
    pod["metadata"]["annotations"] = json!({
        "sparkward.io/submitter-token": w.token("alice", "stream:kafka-events")});
    let _ = create(&w.alice, &pod, &PostParams::default()).await;
    let calls: Vec<Value> =
        w.sw.audit_lines()
            .into_iter()
            .filter(|l| l["namespace"] == w.ns.name.as_str() && l["kind"] == "Pod")
            .collect();
    let mutating: Vec<&Value> = calls.iter().filter(|l| l["webhook"] == "mutate").collect();
    let validating: Vec<&Value> = calls
        .iter()
        .filter(|l| l["webhook"] == "validate")
        .collect();
    assert!(!mutating.is_empty() && !validating.is_empty(), "{calls:#?}");
    for call in mutating {
        assert!(
            call["name"].as_str().is_none_or(str::is_empty),
            "the mutating webhook sees no name yet: {call}"
        );
    }
    for call in validating {
        let name = call["name"].as_str().unwrap_or_default();
        assert!(
            name.starts_with("wordcount-driver-") && name.len() > "wordcount-driver-".len(),
            "the validating webhook sees the generated name: {call}"
        );
    }
}
