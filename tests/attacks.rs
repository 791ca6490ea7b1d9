//! The attack catalogue: a job's identity (and so its network access) comes from who creates a
//! pod, never from labels a pod carries, and nobody can edit it afterwards. Every attack goes
//! over real TLS to sparkward in cluster mode, with lookups answered by the stand-in API server
//! through sparkward's watch-backed caches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::Method;
use serde_json::{Value, json};
use support::apiserver::{CNP, FakeApiServer};
use support::reviews::{Review, job_of, patched};
use support::scenario::{Idp, OPERATOR, mk_spark_app};
use support::webhook::{HttpVersion, Options, Sparkward, WebhookClient};

const NS: &str = "spark-jobs";
const SPARKWARD_SA: &str = "system:serviceaccount:sparkward-system:sparkward";

/// A cluster with one admitted job: alice's SparkApplication, its operator-created driver pod
/// and one executor, all stored in the stand-in as the API server would store them.
struct World {
    api: FakeApiServer,
    idp: Idp,
    _server: Sparkward,
    client: WebhookClient,
    app: Value,
    driver: Value,
    job: String,
    _dir: tempfile::TempDir,
}

impl World {
    async fn mutate(&self, review: &Review) -> Value {
        let (status, answer) = self.client.review("/mutate", &review.build()).await;
        assert_eq!(status, 200);
        answer
    }

    async fn validate(&self, review: &Review) -> Value {
        let (status, answer) = self.client.review("/validate", &review.build()).await;
        assert_eq!(status, 200);
        answer
    }

    /// Mutate, then store the patched object in the stand-in (what the API server does).
    async fn admit_and_store(&self, review: &Review) -> Value {
        let request = review.build();
        let (_, answer) = self.client.review("/mutate", &request).await;
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        let obj = patched(&request, &answer);
        // The validating webhook sees the final object of the same request, in a call of its
        // own (a fresh uid, as the API server sends it).
        let final_review = review.next_call(obj, true);
        let obj = final_review.object.clone();
        let validated = self.validate(&final_review).await;
        assert_eq!(validated["response"]["allowed"], true, "{validated}");
        self.api.insert(obj)
    }
}

fn denied(answer: &Value) -> String {
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mk_driver_pod(app: &Value) -> Value {
    let mut labels = app["spec"]["driver"]["labels"].clone();
    labels["spark-role"] = json!("driver");
    labels["sparkoperator.k8s.io/app-name"] = app["metadata"]["name"].clone();
    labels["sparkoperator.k8s.io/launched-by-spark-operator"] = json!("true");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{}-driver", app["metadata"]["name"].as_str().unwrap()),
            "namespace": NS, "labels": labels,
            "ownerReferences": [{"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                "name": app["metadata"]["name"], "uid": app["metadata"]["uid"], "controller": true}],
        },
        "spec": {"serviceAccountName": "spark", "containers": [{"name": "spark-kubernetes-driver", "image": "apache/spark:4.0.4"}]}
    })
}

fn mk_executor_pod(driver: &Value, n: u32, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{}-exec-{n}", driver["metadata"]["name"].as_str().unwrap()),
            "namespace": NS, "labels": labels,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": driver["metadata"]["name"],
                "uid": driver["metadata"]["uid"], "controller": true}],
        },
        "spec": {"serviceAccountName": "spark", "containers": [{"name": "spark-kubernetes-executor", "image": "apache/spark:4.0.4"}]}
    })
}

fn exec_labels(job_source: &Value) -> Value {
    let mut labels = job_source["spec"]["executor"]["labels"].clone();
    labels["spark-role"] = json!("executor");
    labels["spark-exec-id"] = json!("1");
    labels
}

async fn world() -> World {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({"sparkward.io/enforce": "true"}));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Sparkward::start(Options {
        config: Some(idp.config("")),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        ..Options::default()
    })
    .await;
    let client = s.client(HttpVersion::Http1);
    let mut w = World {
        api,
        idp,
        _server: s,
        client,
        app: Value::Null,
        driver: Value::Null,
        job: String::new(),
        _dir: dir,
    };
    let review = Review::spark_app(mk_spark_app(
        "alice-etl",
        NS,
        &w.idp.token("alice", "data:read:postgres-main"),
    ))
    .user("oidc:alice");
    w.app = w.admit_and_store(&review).await;
    w.job = job_of(&w.app);
    let driver_review = Review::pod(mk_driver_pod(&w.app)).user(OPERATOR);
    w.driver = w.admit_and_store(&driver_review).await;
    assert_eq!(w.driver["metadata"]["labels"]["sparkward.io/job-id"], w.job);
    w
}

/// Waits until sparkward's pod cache has seen `name` (it answers from the cache afterwards).
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

#[tokio::test]
async fn legitimate_operator_driver_and_executors_are_admitted_from_the_cache() {
    let w = world().await;
    settle().await;
    w.api.clear_requests();
    let driver_name = w.driver["metadata"]["name"].as_str().unwrap();
    let driver_uid = w.driver["metadata"]["uid"].as_str().unwrap();
    for n in 1..=3 {
        let exec = mk_executor_pod(&w.driver, n, exec_labels(&w.app));
        let answer = w
            .mutate(&Review::pod(exec.clone()).bound_to_pod("spark", driver_name, driver_uid))
            .await;
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        let request = Review::pod(exec)
            .bound_to_pod("spark", driver_name, driver_uid)
            .build();
        let out = patched(&request, &answer);
        assert_eq!(out["metadata"]["labels"]["sparkward.io/job-id"], w.job);
        assert_eq!(out["metadata"]["labels"]["sparkward.io/role"], "executor");
    }
    // The common case costs no API round trip: the driver came from the watch-backed cache.
    let reads: Vec<String> = w
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::GET && !r.is_watch() && r.path.contains("/pods/"))
        .map(|r| r.path)
        .collect();
    assert!(reads.is_empty(), "direct reads: {reads:?}");
    // Executors reuse the job's single policy.
    assert_eq!(w.api.list(CNP, Some(NS)).len(), 1);
}

#[tokio::test]
async fn a_spark_submit_driver_with_a_token_and_its_executors_are_admitted() {
    let w = world().await;
    let mut driver = support::reviews::mk_pod("bob-wordcount-driver", NS);
    driver["metadata"]["annotations"] =
        json!({"sparkward.io/submitter-token": w.idp.token("bob", "stream:kafka-events")});
    let review = Review::pod(driver).user("oidc:bob");
    let stored = w.admit_and_store(&review).await;
    let job = job_of(&stored);
    assert_eq!(w.api.list(CNP, Some(NS)).len(), 2);
    settle().await;
    let exec = mk_executor_pod(
        &stored,
        1,
        json!({"spark-role": "executor", "spark-exec-id": "1"}),
    );
    let r = Review::pod(exec).bound_to_pod(
        "spark",
        "bob-wordcount-driver",
        stored["metadata"]["uid"].as_str().unwrap(),
    );
    let request = r.build();
    let answer = w.mutate(&r).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        patched(&request, &answer)["metadata"]["labels"]["sparkward.io/job-id"],
        job
    );
}

#[tokio::test]
async fn a_bare_pod_claiming_another_jobs_id_is_denied() {
    let w = world().await;
    let mut pod = support::reviews::mk_pod("sneaky", NS);
    pod["metadata"]["labels"]["sparkward.io/job-id"] = json!(w.job);
    let message = denied(&w.mutate(&Review::pod(pod).user("oidc:mallory")).await);
    assert!(
        message.contains("sparkward.io/job-id") && message.contains(&w.job),
        "{message}"
    );
}

#[tokio::test]
async fn a_bare_pod_claiming_another_jobs_id_with_the_attackers_own_token_is_denied() {
    let w = world().await;
    let mut pod = support::reviews::mk_pod("sneaky", NS);
    pod["metadata"]["labels"]["sparkward.io/job-id"] = json!(w.job);
    pod["metadata"]["annotations"] =
        json!({"sparkward.io/submitter-token": w.idp.token("mallory", "data:read:postgres-main")});
    let message = denied(&w.mutate(&Review::pod(pod).user("oidc:mallory")).await);
    assert!(message.contains("claims job"), "{message}");
    assert_eq!(
        w.api.list(CNP, Some(NS)).len(),
        1,
        "no policy for the attacker"
    );
}

#[tokio::test]
async fn an_executor_of_job_a_claiming_job_b_is_denied() {
    let w = world().await;
    // Job B: bob's spark-submit job.
    let mut b = support::reviews::mk_pod("bob-driver", NS);
    b["metadata"]["annotations"] =
        json!({"sparkward.io/submitter-token": w.idp.token("bob", "stream:kafka-events")});
    let b_review = Review::pod(b).user("oidc:bob");
    let job_b = job_of(&w.admit_and_store(&b_review).await);
    settle().await;
    // Alice's driver (job A) creates a pod labelled with job B to get Kafka access.
    let mut labels = exec_labels(&w.app);
    labels["sparkward.io/job-id"] = json!(job_b);
    labels["sparkward.io/user"] = json!("bob");
    let exec = mk_executor_pod(&w.driver, 7, labels);
    let review = Review::pod(exec).bound_to_pod(
        "spark",
        w.driver["metadata"]["name"].as_str().unwrap(),
        w.driver["metadata"]["uid"].as_str().unwrap(),
    );
    let message = denied(&w.mutate(&review).await);
    assert!(
        message.contains(&job_b) && message.contains(&w.job),
        "{message}"
    );
    // Nor may the driver pass a pod off as another application's driver.
    let mut fake_driver = mk_driver_pod(&w.app);
    fake_driver["metadata"]["name"] = json!("second-driver");
    let review = Review::pod(fake_driver).bound_to_pod(
        "spark",
        w.driver["metadata"]["name"].as_str().unwrap(),
        w.driver["metadata"]["uid"].as_str().unwrap(),
    );
    assert!(denied(&w.mutate(&review).await).contains("only create executor"));
}

#[tokio::test]
async fn an_operator_pod_naming_an_application_that_was_never_admitted_is_denied() {
    let w = world().await;
    // Stored directly, bypassing admission (e.g. created before sparkward was enforced).
    let mut rogue = mk_spark_app("rogue", NS, "x");
    rogue["metadata"]["annotations"] = json!({});
    let rogue = w.api.insert(rogue);
    let pod = mk_driver_pod(&rogue);
    let message = denied(&w.mutate(&Review::pod(pod).user(OPERATOR)).await);
    assert!(message.contains("never admitted"), "{message}");
    // And one that does not exist at all.
    let mut ghost = mk_driver_pod(&w.app);
    ghost["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = json!("ghost");
    ghost["metadata"]["ownerReferences"] = json!([]);
    assert!(denied(&w.mutate(&Review::pod(ghost).user(OPERATOR)).await).contains("does not exist"));
}

#[tokio::test]
async fn editing_identity_labels_after_admission_is_denied() {
    let w = world().await;
    let mut edited = w.driver.clone();
    edited["metadata"]["labels"]["sparkward.io/job-id"] = json!("sj-aaaaaaaaaaaaaaaaaaaa");
    let message = denied(
        &w.validate(
            &Review::pod(edited)
                .update(w.driver.clone())
                .user("oidc:alice"),
        )
        .await,
    );
    assert!(
        message.contains("sparkward.io/job-id") && message.contains("would change"),
        "{message}"
    );
    // Removing a label, or relabelling the Spark role, is an edit too.
    let mut removed = w.driver.clone();
    removed["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("sparkward.io/user");
    denied(
        &w.validate(&Review::pod(removed).update(w.driver.clone()))
            .await,
    );
    let mut role = w.driver.clone();
    role["metadata"]["labels"]["spark-role"] = json!("executor");
    denied(
        &w.validate(&Review::pod(role).update(w.driver.clone()))
            .await,
    );
}

#[tokio::test]
async fn removing_read_only_root_filesystem_by_update_is_denied() {
    let w = world().await;
    let mut app = w.app.clone();
    app["spec"]["driver"]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("readOnlyRootFilesystem");
    let message = denied(
        &w.validate(
            &Review::spark_app(app)
                .update(w.app.clone())
                .user("oidc:alice"),
        )
        .await,
    );
    assert!(
        message.contains("spec.driver.securityContext.readOnlyRootFilesystem"),
        "{message}"
    );
    let mut app = w.app.clone();
    app["spec"]["executor"]["securityContext"]["readOnlyRootFilesystem"] = json!(false);
    assert!(
        denied(
            &w.validate(&Review::spark_app(app).update(w.app.clone()))
                .await
        )
        .contains("readOnlyRootFilesystem")
    );
}

#[tokio::test]
async fn an_ephemeral_debug_container_running_as_root_is_denied() {
    let w = world().await;
    let mut debug = w.driver.clone();
    debug["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "image": "busybox", "securityContext": {"runAsUser": 0}}]);
    let review = Review::pod(debug.clone())
        .update(w.driver.clone())
        .sub_resource("ephemeralcontainers")
        .user("oidc:alice");
    let message = denied(&w.mutate(&review).await);
    assert!(
        message.contains("spec.ephemeralContainers[0].securityContext.runAsUser"),
        "{message}"
    );
    assert!(denied(&w.validate(&review).await).contains("runAsUser"));
    // A debug container without settings is hardened instead.
    debug["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    let review = Review::pod(debug)
        .update(w.driver.clone())
        .sub_resource("ephemeralcontainers")
        .user("oidc:alice");
    let request = review.build();
    let answer = w.mutate(&review).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let out = patched(&request, &answer);
    assert_eq!(
        out["spec"]["ephemeralContainers"][0]["securityContext"]["allowPrivilegeEscalation"],
        false
    );
}

#[tokio::test]
async fn users_cannot_delete_edit_or_forge_managed_policies() {
    let w = world().await;
    let cnp = w.api.list(CNP, Some(NS)).remove(0);
    let delete = Review::cnp(cnp.clone()).delete().user("oidc:alice");
    assert!(denied(&w.validate(&delete).await).contains("managed by sparkward"));
    let mut opened = cnp.clone();
    opened["specs"][0]["egress"] = json!([{"toEntities": ["world"]}]);
    denied(
        &w.validate(&Review::cnp(opened).update(cnp.clone()).user("oidc:alice"))
            .await,
    );
    let mut forged = cnp.clone();
    forged["metadata"]["name"] = json!("sparkward-forged");
    denied(&w.validate(&Review::cnp(forged).user("oidc:mallory")).await);
    // Stripping the managed-by label is a change to a managed policy as well.
    let mut unlabelled = cnp.clone();
    unlabelled["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app.kubernetes.io/managed-by");
    denied(
        &w.validate(
            &Review::cnp(unlabelled)
                .update(cnp.clone())
                .user("oidc:alice"),
        )
        .await,
    );
    // sparkward itself and the garbage collector may.
    let allowed = w
        .validate(
            &Review::cnp(cnp.clone())
                .delete()
                .user("system:serviceaccount:kube-system:generic-garbage-collector"),
        )
        .await;
    assert_eq!(allowed["response"]["allowed"], true);
    assert_eq!(
        w.validate(&Review::cnp(cnp).user(SPARKWARD_SA)).await["response"]["allowed"],
        true
    );
}

#[tokio::test]
async fn a_spark_application_update_that_swaps_the_user_label_is_denied() {
    let w = world().await;
    let mut app = w.app.clone();
    app["metadata"]["labels"]["sparkward.io/user"] = json!("bob");
    let message = denied(
        &w.validate(
            &Review::spark_app(app)
                .update(w.app.clone())
                .user("oidc:alice"),
        )
        .await,
    );
    assert!(message.contains("sparkward.io/user"), "{message}");
    let mut app = w.app.clone();
    app["spec"]["executor"]["labels"]["sparkward.io/job-id"] = json!("sj-bbbbbbbbbbbbbbbbbbbb");
    denied(
        &w.validate(&Review::spark_app(app).update(w.app.clone()))
            .await,
    );
}

#[tokio::test]
async fn status_updates_and_the_operators_metadata_edits_are_admitted() {
    let w = world().await;
    // The operator adds a finalizer and its own labels.
    let mut app = w.app.clone();
    app["metadata"]["finalizers"] = json!(["sparkoperator.k8s.io/finalizer"]);
    app["metadata"]["labels"]["sparkoperator.k8s.io/submission-id"] = json!("abc");
    let ok = w
        .validate(&Review::spark_app(app).update(w.app.clone()).user(OPERATOR))
        .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");
    // Status updates.
    let mut app = w.app.clone();
    app["status"] = json!({"applicationState": {"state": "RUNNING"}});
    let ok = w
        .validate(
            &Review::spark_app(app)
                .update(w.app.clone())
                .sub_resource("status")
                .user(OPERATOR),
        )
        .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");
    // Pod label added by someone else (not sparkward.io/) is fine.
    let mut pod = w.driver.clone();
    pod["metadata"]["labels"]["team"] = json!("data");
    let ok = w
        .validate(&Review::pod(pod).update(w.driver.clone()).user("oidc:alice"))
        .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");
}

#[tokio::test]
async fn a_scheduled_run_inherits_the_schedules_identity_and_gets_its_own_job() {
    let w = world().await;
    let mut scheduled = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
        "metadata": {"name": "nightly", "namespace": NS,
            "annotations": {"sparkward.io/submitter-token": w.idp.token("carol", "stream:kafka-events")}},
        "spec": {"schedule": "@every 1h", "template": mk_spark_app("x", NS, "x")["spec"]}
    });
    let review = Review::scheduled_app(scheduled.clone()).user("oidc:carol");
    let stored = w.admit_and_store(&review).await;
    assert!(
        stored["metadata"]["annotations"]
            .get("sparkward.io/submitter-token")
            .is_none()
    );
    assert_eq!(
        stored["metadata"]["annotations"]["sparkward.io/scopes"],
        "stream:kafka-events"
    );
    settle().await;
    // spark-operator creates a run: the schedule's labels, an ownerReference, no token.
    let mut run = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": "nightly-1700000000", "namespace": NS,
            "labels": stored["metadata"]["labels"],
            "ownerReferences": [{"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
                "name": "nightly", "uid": stored["metadata"]["uid"], "blockOwnerDeletion": true}]},
        "spec": stored["spec"]["template"],
    });
    run["metadata"]["labels"]["sparkoperator.k8s.io/scheduled-app-name"] = json!("nightly");
    let run_review = Review::spark_app(run.clone()).user(OPERATOR);
    let stored_run = w.admit_and_store(&run_review).await;
    assert_eq!(
        stored_run["metadata"]["annotations"]["sparkward.io/submitter"],
        "carol"
    );
    let run_job = job_of(&stored_run);
    assert_ne!(run_job, w.job);
    let policy = w.api.get(CNP, NS, &format!("sparkward-{run_job}")).unwrap();
    assert!(
        policy["specs"].to_string().contains("9092"),
        "the run gets the schedule's scopes"
    );
    // Somebody else cannot pass a SparkApplication off as a run of carol's schedule.
    let forged = Review::spark_app(run.clone()).user("oidc:mallory");
    denied(&w.mutate(&forged).await);
    // And a schedule created with hand-written identity annotations is not trusted.
    scheduled["metadata"]["name"] = json!("forged");
    scheduled["metadata"]["annotations"] = json!({"sparkward.io/submitter": "carol", "sparkward.io/issuer": support::scenario::ISSUER});
    denied(
        &w.mutate(&Review::scheduled_app(scheduled).user("oidc:mallory"))
            .await,
    );
}

#[tokio::test]
async fn a_token_written_below_a_key_that_holds_a_stored_token_is_denied() {
    // A SparkApplication stored before the token rule, with an identity-provider token as a
    // `sparkConf` key (keys there are free-form). Updating the object must stay possible, but
    // a new token written below that key is a bearer token being stored like any other.
    let w = world().await;
    let stored = w.idp.token("alice", "data:read:postgres-main");
    let mut old = w.app.clone();
    old["spec"]["sparkConf"][stored.as_str()] = json!("plain");

    // The owner's unrelated edit is admitted: the stored token is not what it adds.
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["team"] = json!("data");
    let ok = w
        .validate(
            &Review::spark_app(relabelled)
                .update(old.clone())
                .user("oidc:alice"),
        )
        .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");

    // A fresh token as the value under the stored key is denied, named by its field.
    let mut pasted = old.clone();
    pasted["spec"]["sparkConf"][stored.as_str()] = json!(w.idp.token("bob", "storage:s3-lake"));
    let message = denied(
        &w.validate(
            &Review::spark_app(pasted)
                .update(old.clone())
                .user("oidc:alice"),
        )
        .await,
    );
    assert!(message.contains("bearer token"), "{message}");
    assert!(message.contains("spec.sparkConf"), "{message}");
}
