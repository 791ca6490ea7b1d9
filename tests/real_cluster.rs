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
use support::scenario::{Idp, mk_spark_app};
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
    let sw = cluster
        .sparkward(&SparkwardSetup::with_config(EXTRA_CONFIG))
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

/// The driver pod spark-operator creates for `app`: named `<app>-driver`, the application's
/// driver labels plus spark-operator's, controlled by the application.
fn mk_driver_pod(app: &Value) -> Value {
    let name = app["metadata"]["name"].as_str().unwrap();
    let mut labels = app["spec"]["driver"]["labels"].clone();
    labels["spark-role"] = json!("driver");
    labels["sparkoperator.k8s.io/app-name"] = json!(name);
    labels["sparkoperator.k8s.io/launched-by-spark-operator"] = json!("true");
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
