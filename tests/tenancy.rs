//! Tenant isolation after admission (`core::ownership`) end to end: every request goes through
//! the stand-in API server's admission chain with sparkward's own webhook configurations, as
//! the user it stands for. Each attack (a tenant editing, deleting, entering, relabelling or
//! minting tokens for another tenant's job, or borrowing spark-operator's labels to claim
//! another tenant's application) sits next to the legitimate flow beside it (the submitter,
//! the job administrators, spark-operator, the job's own driver, the kubelet of the pod's node,
//! Kubernetes' controllers). tests/real_cluster.rs runs the cases a real API server can carry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use support::apiserver::{
    FakeApiServer, Fault, POD, Reply, Resource, SCHEDULED_SPARK_APP, SPARK_APP, User,
};
use support::reviews::{job_of, mk_pod};
use support::scenario::{
    Idp, JOB_ADMIN_GROUP, JOB_ADMIN_USER, JOB_ADMINS_YAML, mk_spark_app, with_identity,
};
use support::testhook::{Answer, TestHook};
use support::webhook::{Options, Sparkward};

const NS: &str = "spark-jobs";
const APP_MUTATE: &str = "sparkapplications.mutate.sparkward.io";
const APP_VALIDATE: &str = "sparkapplications.validate.sparkward.io";
const POD_MUTATE: &str = "pods.mutate.sparkward.io";
const POD_VALIDATE: &str = "pods.validate.sparkward.io";
const POD_STATUS_VALIDATE: &str = "podstatus.validate.sparkward.io";
const TOKEN_VALIDATE: &str = "tokenrequests.validate.sparkward.io";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
/// The node the scheduler binds pods to in these tests, and another one.
const NODE: &str = "node-1";
const OTHER_NODE: &str = "node-2";

fn alice() -> User {
    User::new("oidc:alice")
}

fn bob() -> User {
    User::new("oidc:bob")
}

/// A job administrator by name (`identity.jobAdmins.users`).
fn job_admin() -> User {
    User::new(JOB_ADMIN_USER)
}

/// A job administrator through a group (`identity.jobAdmins.groups`).
fn group_admin() -> User {
    User::new("oidc:carol").group(JOB_ADMIN_GROUP)
}

fn operator() -> User {
    User::service_account("spark-operator", "spark-operator-controller")
}

fn garbage_collector() -> User {
    User::service_account("kube-system", "generic-garbage-collector")
}

/// The kubelet of `node`, as the node authenticator presents it.
fn kubelet(node: &str) -> User {
    User::new(&format!("system:node:{node}")).group("system:nodes")
}

/// The `spark` service account through a token bound to `pod` (a driver's own identity).
fn bound_to(pod: &Value) -> User {
    User::bound_to_pod(
        NS,
        "spark",
        pod["metadata"]["name"].as_str().unwrap(),
        pod["metadata"]["uid"].as_str().unwrap(),
    )
}

/// The stand-in with `NS` enforced and its `spark` service account, sparkward in cluster mode
/// behind its own webhook configurations, with job administrators configured.
struct World {
    api: FakeApiServer,
    idp: Idp,
    server: Sparkward,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({ "sparkward.io/enforce": "true" }));
    api.insert(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": "spark", "namespace": NS },
    }));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Sparkward::start(Options {
        config: Some(with_identity(&idp.config(""), JOB_ADMINS_YAML)),
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

/// The API path of `name` (and its subresource) of `resource` in `NS`.
fn path(resource: Resource, name: &str, sub: Option<&str>) -> String {
    let prefix = if resource.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}", resource.api_version())
    };
    let sub = sub.map(|s| format!("/{s}")).unwrap_or_default();
    format!("{prefix}/namespaces/{NS}/{}/{name}{sub}", resource.plural)
}

/// The `Status` message of an answer.
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
        reply.status,
        reply.body
    );
    reply.body
}

/// Asserts that a not_owner denial names the job, its owner, the requester and who may.
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

/// spark-operator's driver for `app` as v2.4 and later create it: the application's driver
/// labels plus the operator's, controlled by the application (name and uid).
fn operator_driver(app: &Value) -> Value {
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
            "name": format!("{name}-driver"), "namespace": NS, "labels": labels,
            "ownerReferences": [app_reference(app, true)],
        },
        "spec": { "serviceAccountName": "spark", "restartPolicy": "Never",
            "containers": [{ "name": "spark-kubernetes-driver", "image": "docker.io/apache/spark:4.0.4",
                "args": ["driver"] }] },
    })
}

/// An ownerReference to the SparkApplication `app`.
fn app_reference(app: &Value, controller: bool) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "name": app["metadata"]["name"], "uid": app["metadata"]["uid"],
        "controller": controller, "blockOwnerDeletion": true,
    })
}

/// Executor `n` as Spark's driver creates it: `labels` (the job's executor labels, and
/// whatever Spark copies from the operator's settings), controlled by the driver pod.
fn executor_of(driver: &Value, n: u32, labels: &Value) -> Value {
    let name = driver["metadata"]["name"].as_str().unwrap();
    let mut labels = labels.clone();
    labels["spark-role"] = json!("executor");
    labels["spark-exec-id"] = json!(n.to_string());
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-exec-{n}"), "namespace": NS, "labels": labels,
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": name,
                "uid": driver["metadata"]["uid"], "controller": true }],
        },
        "spec": { "serviceAccountName": "spark", "restartPolicy": "Never",
            "containers": [{ "name": "spark-kubernetes-executor", "image": "docker.io/apache/spark:4.0.4",
                "args": ["executor"] }] },
    })
}

/// The `sparkoperator.k8s.io/` labels of a stored pod.
fn operator_labels(pod: &Value) -> Value {
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    Value::Object(
        labels
            .iter()
            .filter(|(k, _)| k.starts_with("sparkoperator.k8s.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

impl World {
    fn token(&self, subject: &str) -> String {
        self.idp.token(subject, "data:read:postgres-main")
    }

    /// `subject`'s SparkApplication `name` with a fresh valid token.
    fn app(&self, subject: &str, name: &str) -> Value {
        mk_spark_app(name, NS, &self.token(subject))
    }

    /// `subject`'s ScheduledSparkApplication `name` with a fresh valid token.
    fn schedule(&self, subject: &str, name: &str) -> Value {
        json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
            "metadata": { "name": name, "namespace": NS,
                "annotations": { "sparkward.io/submitter-token": self.token(subject) } },
            "spec": { "schedule": "@every 1h", "template": mk_spark_app(name, NS, "x")["spec"] },
        })
    }

    /// A spark-submit driver pod `name` with `subject`'s token.
    fn driver(&self, subject: &str, name: &str) -> Value {
        let mut pod = mk_pod(name, NS);
        pod["metadata"]["annotations"] =
            json!({ "sparkward.io/submitter-token": self.token(subject) });
        pod
    }

    /// Creates `object` as `user` and expects it admitted; the stored object.
    async fn admitted(&self, user: &User, object: Value) -> Value {
        let name = object["metadata"]["name"].clone();
        self.api
            .create_as(user, object)
            .await
            .unwrap_or_else(|status| panic!("{name} was not admitted: {status}"))
    }

    /// PATCHes `name` (or its subresource `sub`) as `user` with a patch of `content_type`.
    async fn patch(
        &self,
        user: &User,
        resource: Resource,
        name: &str,
        sub: Option<&str>,
        content_type: &str,
        patch: Value,
    ) -> Reply {
        self.api
            .request_as(
                user,
                Method::PATCH,
                &path(resource, name, sub),
                Some(content_type),
                Some(&patch),
            )
            .await
    }

    async fn delete(&self, user: &User, resource: Resource, name: &str) -> Reply {
        self.api
            .request_as(
                user,
                Method::DELETE,
                &path(resource, name, None),
                None,
                None,
            )
            .await
    }

    /// `kubectl exec` / `attach` / `port-forward` (`sub`) into pod `name` as `user`.
    async fn connect(&self, user: &User, name: &str, sub: &str, query: &str) -> Reply {
        let path = format!("{}?{query}", path(POD, name, Some(sub)));
        self.api
            .request_as(user, Method::POST, &path, None, None)
            .await
    }

    /// A TokenRequest for the `spark` service account as `user`, bound to `bound` (an object
    /// reference) when given.
    async fn token_request(&self, user: &User, bound: Option<Value>) -> Reply {
        let mut spec =
            json!({ "audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600 });
        if let Some(bound) = bound {
            spec["boundObjectRef"] = bound;
        }
        let body = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": spec });
        self.api
            .request_as(
                user,
                Method::POST,
                &format!("/api/v1/namespaces/{NS}/serviceaccounts/spark/token"),
                None,
                Some(&body),
            )
            .await
    }

    /// Binds pod `name` to `node`, as the scheduler does.
    async fn bind(&self, name: &str, node: &str) {
        let body = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node } });
        let reply = self
            .api
            .request_as(
                &User::new("system:kube-scheduler"),
                Method::POST,
                &path(POD, name, Some("binding")),
                None,
                Some(&body),
            )
            .await;
        allowed(reply, "the binding");
    }

    fn stored(&self, resource: Resource, name: &str) -> Option<Value> {
        self.api.get(resource, NS, name)
    }

    /// Asserts that `reply` is a denial by sparkward's webhook `webhook` with reason code
    /// `reason` (as audited in the response); returns the message.
    fn denied(&self, reply: Reply, webhook: &str, reason: &str) -> String {
        let message = message(&reply);
        assert_eq!(
            reply.status, 403,
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

    /// Asserts that `reply` failed after admission (as CONNECT does without a node), not by a
    /// denial of sparkward's: the last call of `webhook` allowed the request.
    fn failed_after_admission(&self, reply: Reply, webhook: &str, expected: &str) {
        let message = message(&reply);
        assert_ne!(reply.status, 403, "{message}");
        assert!(!message.contains("denied the request"), "{message}");
        assert!(message.contains(expected), "{message}");
        let call = self
            .api
            .admission_calls()
            .into_iter()
            .rev()
            .find(|c| c.webhook == webhook)
            .unwrap();
        assert!(call.allowed, "{:?}", call.response);
    }
}

// ---------------------------------------------------------------------------------------------
// SparkApplications and ScheduledSparkApplications
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bob_cannot_edit_or_delete_alices_application_but_she_job_admins_and_the_operator_may_do_their_part()
 {
    let w = world().await;
    let app = w.admitted(&alice(), w.app("alice", "etl")).await;
    let job = job_of(&app);

    // bob rewrites what alice's job runs (image, main file): the job's network access and
    // identity would run his code.
    for spec in [
        json!({ "image": "docker.io/bob/spark:evil" }),
        json!({ "mainApplicationFile": "s3a://bob/exfiltrate.jar" }),
    ] {
        let reply = w
            .patch(
                &bob(),
                SPARK_APP,
                "etl",
                None,
                MERGE,
                json!({ "spec": spec }),
            )
            .await;
        let message = w.denied(reply, APP_VALIDATE, "not_owner");
        names_owner_and_who_may(&message, &job, "oidc:bob");
        assert!(message.contains("may not change its spec"), "{message}");
        assert!(
            message.contains("SparkApplication spark-jobs/etl"),
            "{message}"
        );
    }
    let stored = w.stored(SPARK_APP, "etl").unwrap();
    assert_eq!(stored["spec"], app["spec"], "bob's edits were stored");

    // alice scales her own application; job administrators (by name, by group) edit it.
    let scale = |n: u32| json!({ "spec": { "executor": { "instances": n } } });
    allowed(
        w.patch(&alice(), SPARK_APP, "etl", None, MERGE, scale(4))
            .await,
        "alice scaling her application",
    );
    allowed(
        w.patch(&job_admin(), SPARK_APP, "etl", None, MERGE, scale(3))
            .await,
        "a job administrator's edit",
    );
    allowed(
        w.patch(
            &group_admin(),
            SPARK_APP,
            "etl",
            None,
            MERGE,
            json!({ "spec": { "mainApplicationFile": "local:///opt/spark/examples/jars/v2.jar" } }),
        )
        .await,
        "an edit by a member of the job administrators' group",
    );
    let stored = w.stored(SPARK_APP, "etl").unwrap();
    assert_eq!(stored["spec"]["executor"]["instances"], 3);
    assert_eq!(
        stored["spec"]["mainApplicationFile"],
        "local:///opt/spark/examples/jars/v2.jar"
    );

    // Status is spark-operator's: the operator reports through sparkapplications/status, and
    // not even alice may (the operator deletes driver pods by the name in the status).
    allowed(
        w.patch(
            &operator(),
            SPARK_APP,
            "etl",
            Some("status"),
            MERGE,
            json!({ "status": { "applicationState": { "state": "RUNNING" }, "driverInfo": {} } }),
        )
        .await,
        "the operator's status update",
    );
    let forged_status = json!({ "status": { "applicationState": { "state": "COMPLETED" },
        "driverInfo": { "podName": "bob-driver" } } });
    let reply = w
        .patch(
            &alice(),
            SPARK_APP,
            "etl",
            Some("status"),
            MERGE,
            forged_status,
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "not_owner");
    assert!(
        message.contains("oidc:alice may not write its status"),
        "{message}"
    );
    assert_eq!(
        w.stored(SPARK_APP, "etl").unwrap()["status"]["applicationState"]["state"],
        "RUNNING"
    );

    // The operator adds metadata (its own labels included), but may not touch the spec.
    allowed(
        w.patch(
            &operator(),
            SPARK_APP,
            "etl",
            None,
            MERGE,
            json!({ "metadata": { "labels": { "sparkoperator.k8s.io/queue": "batch" },
                "annotations": { "sparkoperator.k8s.io/last-attempt": "1" } } }),
        )
        .await,
        "the operator's metadata",
    );
    let reply = w
        .patch(&operator(), SPARK_APP, "etl", None, MERGE, scale(40))
        .await;
    let message = w.denied(reply, APP_VALIDATE, "not_owner");
    assert!(message.contains("may not change its spec"), "{message}");
    // bob may not label it either.
    let reply = w
        .patch(
            &bob(),
            SPARK_APP,
            "etl",
            None,
            MERGE,
            json!({ "metadata": { "labels": { "team": "bob" } } }),
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "not_owner");
    assert!(
        message.contains("may not change its labels, annotations"),
        "{message}"
    );

    // bob may not delete it; alice may.
    let message = w.denied(
        w.delete(&bob(), SPARK_APP, "etl").await,
        APP_VALIDATE,
        "not_owner",
    );
    names_owner_and_who_may(&message, &job, "oidc:bob");
    assert!(message.contains("may not delete it"), "{message}");
    assert!(w.stored(SPARK_APP, "etl").is_some());
    allowed(
        w.delete(&alice(), SPARK_APP, "etl").await,
        "alice deleting her application",
    );
    assert!(w.stored(SPARK_APP, "etl").is_none());
}

#[tokio::test]
async fn bob_cannot_edit_alices_schedule_but_she_and_job_admins_may() {
    let w = world().await;
    let schedule = w.admitted(&alice(), w.schedule("alice", "nightly")).await;
    let schedule_id = schedule["metadata"]["annotations"]["sparkward.io/schedule-id"]
        .as_str()
        .unwrap()
        .to_string();

    // Every run the operator starts from the template inherits alice's identity.
    let reply = w
        .patch(
            &bob(),
            SCHEDULED_SPARK_APP,
            "nightly",
            None,
            MERGE,
            json!({ "spec": { "template": { "image": "docker.io/bob/spark:evil" } } }),
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "not_owner");
    names_owner_and_who_may(&message, &schedule_id, "oidc:bob");
    assert!(
        message.contains("ScheduledSparkApplication spark-jobs/nightly"),
        "{message}"
    );
    let message = w.denied(
        w.delete(&bob(), SCHEDULED_SPARK_APP, "nightly").await,
        APP_VALIDATE,
        "not_owner",
    );
    assert!(message.contains("may not delete it"), "{message}");
    assert_eq!(
        w.stored(SCHEDULED_SPARK_APP, "nightly").unwrap()["spec"],
        schedule["spec"]
    );

    allowed(
        w.patch(
            &alice(),
            SCHEDULED_SPARK_APP,
            "nightly",
            None,
            MERGE,
            json!({ "spec": { "schedule": "@every 2h" } }),
        )
        .await,
        "alice changing her schedule",
    );
    allowed(
        w.patch(
            &group_admin(),
            SCHEDULED_SPARK_APP,
            "nightly",
            None,
            MERGE,
            json!({ "spec": { "suspend": true } }),
        )
        .await,
        "a job administrator suspending the schedule",
    );
    // The operator reports the schedule's state; alice may not.
    allowed(
        w.patch(
            &operator(),
            SCHEDULED_SPARK_APP,
            "nightly",
            Some("status"),
            MERGE,
            json!({ "status": { "scheduleState": "Scheduled" } }),
        )
        .await,
        "the operator's status update",
    );
    let reply = w
        .patch(
            &alice(),
            SCHEDULED_SPARK_APP,
            "nightly",
            Some("status"),
            MERGE,
            json!({ "status": { "scheduleState": "FailedValidation" } }),
        )
        .await;
    w.denied(reply, APP_VALIDATE, "not_owner");
    let stored = w.stored(SCHEDULED_SPARK_APP, "nightly").unwrap();
    assert_eq!(stored["spec"]["schedule"], "@every 2h");
    assert_eq!(stored["spec"]["suspend"], true);
    assert_eq!(stored["status"]["scheduleState"], "Scheduled");
    allowed(
        w.delete(&alice(), SCHEDULED_SPARK_APP, "nightly").await,
        "alice deleting her schedule",
    );
}

// ---------------------------------------------------------------------------------------------
// Pods: edits, exec/attach/port-forward, debug containers, status
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bob_cannot_swap_the_image_of_alices_driver_or_enter_it_but_she_and_job_admins_may() {
    let w = world().await;
    let driver = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    let job = job_of(&driver);
    let swap = |image: &str| json!([{ "op": "replace", "path": "/spec/containers/0/image", "value": image }]);

    let reply = w
        .patch(
            &bob(),
            POD,
            "alice-driver",
            None,
            JSON_PATCH,
            swap("docker.io/bob/spark:evil"),
        )
        .await;
    let message = w.denied(reply, POD_VALIDATE, "not_owner");
    names_owner_and_who_may(&message, &job, "oidc:bob");
    assert!(message.contains("Pod spark-jobs/alice-driver"), "{message}");
    assert!(message.contains("may not change its spec"), "{message}");
    assert_eq!(
        w.stored(POD, "alice-driver").unwrap()["spec"]["containers"][0]["image"],
        driver["spec"]["containers"][0]["image"]
    );
    allowed(
        w.patch(
            &alice(),
            POD,
            "alice-driver",
            None,
            JSON_PATCH,
            swap("apache/spark:4.0.4"),
        )
        .await,
        "alice updating her driver's image",
    );
    assert_eq!(
        w.stored(POD, "alice-driver").unwrap()["spec"]["containers"][0]["image"],
        "apache/spark:4.0.4"
    );

    // exec, attach and port-forward are CONNECT requests: bob is refused at admission.
    let entries = [
        ("exec", "command=sh&stdin=true&stdout=true&tty=true"),
        ("attach", "stdin=true&stdout=true"),
        ("portforward", "ports=4040"),
    ];
    for (sub, query) in entries {
        let reply = w.connect(&bob(), "alice-driver", sub, query).await;
        let message = w.denied(reply, POD_VALIDATE, "not_owner");
        names_owner_and_who_may(&message, &job, "oidc:bob");
        assert!(message.contains("may not enter it"), "{sub}: {message}");
    }
    // alice and job administrators pass admission; the stand-in then fails the CONNECT the
    // way kube-apiserver does for a pod no node runs.
    let no_host = "pod alice-driver does not have a host assigned";
    for (user, (sub, query)) in [
        (alice(), entries[0]),
        (alice(), entries[2]),
        (job_admin(), entries[0]),
        (group_admin(), entries[1]),
    ] {
        let reply = w.connect(&user, "alice-driver", sub, query).await;
        w.failed_after_admission(reply, POD_VALIDATE, no_host);
    }

    // A debug container is entering too.
    let debug = |name: &str, security: Value| {
        let mut container = json!({ "name": name, "image": "docker.io/library/busybox:1.36",
            "command": ["sh"], "stdin": true, "tty": true,
            "targetContainerName": "spark-kubernetes-driver" });
        if !security.is_null() {
            container["securityContext"] = security;
        }
        json!([{ "op": "add", "path": "/spec/ephemeralContainers", "value": [container] }])
    };
    let reply = w
        .patch(
            &bob(),
            POD,
            "alice-driver",
            Some("ephemeralcontainers"),
            JSON_PATCH,
            debug("bob-debug", Value::Null),
        )
        .await;
    let message = w.denied(reply, POD_VALIDATE, "not_owner");
    assert!(message.contains("may not enter it"), "{message}");
    // alice's is hardened like every other container, and must not be weaker.
    let reply = w
        .patch(
            &alice(),
            POD,
            "alice-driver",
            Some("ephemeralcontainers"),
            JSON_PATCH,
            debug("root-debug", json!({ "privileged": true })),
        )
        .await;
    let message = w.denied(reply, POD_MUTATE, "hardening");
    assert!(message.contains("privileged"), "{message}");
    allowed(
        w.patch(
            &alice(),
            POD,
            "alice-driver",
            Some("ephemeralcontainers"),
            JSON_PATCH,
            debug("debug", Value::Null),
        )
        .await,
        "alice's debug container",
    );
    let stored = w.stored(POD, "alice-driver").unwrap();
    let containers = stored["spec"]["ephemeralContainers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let security = &containers[0]["securityContext"];
    assert_eq!(containers[0]["name"], "debug");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
    assert_eq!(
        security["capabilities"]["drop"],
        json!(["ALL"]),
        "{security}"
    );
}

#[tokio::test]
async fn a_job_pods_status_is_written_by_the_kubelet_of_its_node_and_its_labels_stay_even_through_pods_status()
 {
    let w = world().await;
    let driver = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    let job = job_of(&driver);
    w.bind("alice-driver", NODE).await;

    // pods/status writes labels too (kube-apiserver keeps them): sparkward's stay, for
    // everybody, the owner included.
    let relabel =
        json!({ "metadata": { "labels": { "sparkward.io/job-id": "sj-aaaaaaaaaaaaaaaaaaaa" } } });
    for user in [bob(), alice()] {
        let reply = w
            .patch(
                &user,
                POD,
                "alice-driver",
                Some("status"),
                MERGE,
                relabel.clone(),
            )
            .await;
        let message = w.denied(reply, POD_STATUS_VALIDATE, "immutable");
        assert!(message.contains("sparkward.io/job-id"), "{message}");
    }
    assert_eq!(job_of(&w.stored(POD, "alice-driver").unwrap()), job);

    // Status itself is the kubelet's (and Kubernetes' controllers'), not a tenant's.
    let failed = json!({ "status": { "phase": "Failed", "message": "killed by bob" } });
    for (user, name) in [(bob(), "oidc:bob"), (alice(), "oidc:alice")] {
        let reply = w
            .patch(
                &user,
                POD,
                "alice-driver",
                Some("status"),
                MERGE,
                failed.clone(),
            )
            .await;
        let message = w.denied(reply, POD_STATUS_VALIDATE, "not_owner");
        assert!(
            message.contains(&format!("{name} may not write its status")),
            "{message}"
        );
    }
    assert_eq!(
        w.stored(POD, "alice-driver").unwrap()["status"]["phase"],
        "Pending"
    );

    // The kubelet of the pod's node writes it; its writes skip the webhook (matchCondition).
    w.api.clear_admission_calls();
    allowed(
        w.patch(
            &kubelet(NODE),
            POD,
            "alice-driver",
            Some("status"),
            MERGE,
            json!({ "status": { "phase": "Running" } }),
        )
        .await,
        "the kubelet's status update",
    );
    assert!(
        w.api
            .admission_calls()
            .iter()
            .all(|c| c.webhook != POD_STATUS_VALIDATE),
        "the kubelet's status write reached sparkward"
    );
    // So do Kubernetes' controllers (the scheduler's conditions), through sparkward.
    allowed(
        w.patch(
            &User::new("system:kube-scheduler"),
            POD,
            "alice-driver",
            Some("status"),
            MERGE,
            json!({ "status": { "conditions": [{ "type": "PodScheduled", "status": "True" }] } }),
        )
        .await,
        "the scheduler's status update",
    );
    let stored = w.stored(POD, "alice-driver").unwrap();
    assert_eq!(stored["status"]["phase"], "Running");
    assert_eq!(stored["status"]["conditions"][0]["type"], "PodScheduled");
}

// ---------------------------------------------------------------------------------------------
// Deletes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_jobs_executors_are_relabelled_and_deleted_by_its_own_driver_the_garbage_collector_and_their_kubelet_not_by_another_driver()
 {
    let w = world().await;
    let alices_driver = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    let bobs_driver = w.admitted(&bob(), w.driver("bob", "bob-driver")).await;
    let job = job_of(&alices_driver);
    for n in 1..=3 {
        let executor = w
            .admitted(
                &bound_to(&alices_driver),
                executor_of(&alices_driver, n, &json!({})),
            )
            .await;
        assert_eq!(job_of(&executor), job);
    }

    // bob's driver runs as the same service account, and so does bob's code: neither may touch
    // alice's executors.
    let inactive = json!({ "metadata": { "labels": { "spark-exec-inactive": "true" } } });
    let reply = w
        .patch(
            &bound_to(&bobs_driver),
            POD,
            "alice-driver-exec-1",
            None,
            MERGE,
            inactive.clone(),
        )
        .await;
    let message = w.denied(reply, POD_VALIDATE, "not_owner");
    assert!(
        message.contains(
            "system:serviceaccount:spark-jobs:spark may not change its labels, annotations"
        ),
        "{message}"
    );
    for user in [bound_to(&bobs_driver), bob()] {
        let reply = w.delete(&user, POD, "alice-driver-exec-1").await;
        let message = w.denied(reply, POD_VALIDATE, "not_owner");
        assert!(message.contains("may not delete it"), "{message}");
    }
    assert!(w.stored(POD, "alice-driver-exec-1").is_some());

    // alice's driver relabels (decommission) and deletes its own executors...
    allowed(
        w.patch(
            &bound_to(&alices_driver),
            POD,
            "alice-driver-exec-1",
            None,
            MERGE,
            inactive,
        )
        .await,
        "the driver relabelling its executor",
    );
    allowed(
        w.delete(&bound_to(&alices_driver), POD, "alice-driver-exec-1")
            .await,
        "the driver deleting its executor",
    );
    // ...but not itself: a driver's token is no delete right on its own job's driver.
    w.denied(
        w.delete(&bound_to(&alices_driver), POD, "alice-driver")
            .await,
        POD_VALIDATE,
        "not_owner",
    );

    // The garbage collector deletes dependents of deleted owners.
    allowed(
        w.delete(&garbage_collector(), POD, "alice-driver-exec-2")
            .await,
        "the garbage collector's delete",
    );

    // The kubelet makes the final delete of the pods on its node, no others.
    w.bind("alice-driver-exec-3", NODE).await;
    let message = w.denied(
        w.delete(&kubelet(OTHER_NODE), POD, "alice-driver-exec-3")
            .await,
        POD_VALIDATE,
        "not_owner",
    );
    assert!(
        message.contains("system:node:node-2 may not delete it"),
        "{message}"
    );
    allowed(
        w.delete(&kubelet(NODE), POD, "alice-driver-exec-3").await,
        "the kubelet's delete",
    );
    for n in 1..=3 {
        assert!(w.stored(POD, &format!("alice-driver-exec-{n}")).is_none());
    }

    // bob may not delete alice's driver; alice may.
    let message = w.denied(
        w.delete(&bob(), POD, "alice-driver").await,
        POD_VALIDATE,
        "not_owner",
    );
    names_owner_and_who_may(&message, &job, "oidc:bob");
    allowed(
        w.delete(&alice(), POD, "alice-driver").await,
        "alice deleting her driver",
    );
    assert!(w.stored(POD, "alice-driver").is_none());
}

/// An eviction deletes the pod (through the registry, without a second admission of the
/// DELETE), so it must be held to the same owners as a DELETE: a namespace editor has
/// `pods/eviction` (the built-in `edit` role grants it) and, with no PodDisruptionBudget on
/// Spark pods, could otherwise kill any other tenant's job.
#[tokio::test]
async fn bob_cannot_evict_alices_driver_which_would_delete_it() {
    let w = world().await;
    let driver = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    let job = job_of(&driver);
    let eviction = json!({ "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": { "name": "alice-driver", "namespace": NS } });
    let reply = w
        .api
        .request_as(
            &bob(),
            Method::POST,
            &path(POD, "alice-driver", Some("eviction")),
            None,
            Some(&eviction),
        )
        .await;
    let message = message(&reply);
    assert_eq!(
        reply.status,
        403,
        "bob's eviction of alice's driver was admitted ({}: {}) and the driver {}",
        reply.status,
        reply.body,
        if w.stored(POD, "alice-driver").is_some() {
            "is still there"
        } else {
            "was deleted"
        }
    );
    assert!(message.contains("denied the request"), "{message}");
    names_owner_and_who_may(&message, &job, "oidc:bob");
    assert!(w.stored(POD, "alice-driver").is_some());

    // alice may evict her own.
    allowed(
        w.api
            .request_as(
                &alice(),
                Method::POST,
                &path(POD, "alice-driver", Some("eviction")),
                None,
                Some(&eviction),
            )
            .await,
        "alice evicting her driver",
    );
    assert!(w.stored(POD, "alice-driver").is_none());

    // A node drain (the cluster autoscaler, in `identity.evictors` by default) may evict it too.
    w.admitted(&alice(), w.driver("alice", "alice-driver-2"))
        .await;
    let drained = json!({ "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": { "name": "alice-driver-2", "namespace": NS } });
    allowed(
        w.api
            .request_as(
                &User::service_account("kube-system", "cluster-autoscaler"),
                Method::POST,
                &path(POD, "alice-driver-2", Some("eviction")),
                None,
                Some(&drained),
            )
            .await,
        "the cluster autoscaler draining alice's driver",
    );
    assert!(w.stored(POD, "alice-driver-2").is_none());
}

// ---------------------------------------------------------------------------------------------
// TokenRequests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_bound_to_alices_driver_is_minted_only_for_the_kubelet_of_its_node_and_job_admins()
{
    let w = world().await;
    let driver = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    let job = job_of(&driver);
    let bound = |uid: bool| {
        let mut r = json!({ "apiVersion": "v1", "kind": "Pod", "name": "alice-driver" });
        if uid {
            r["uid"] = driver["metadata"]["uid"].clone();
        }
        r
    };

    // Whoever holds such a token creates pods as alice's driver (executor lineage).
    for (user, name, with_uid) in [
        (bob(), "oidc:bob", true),
        (bob(), "oidc:bob", false),
        (alice(), "oidc:alice", true),
        (kubelet(NODE), "system:node:node-1", true),
    ] {
        let reply = w.token_request(&user, Some(bound(with_uid))).await;
        let message = w.denied(reply, TOKEN_VALIDATE, "not_owner");
        assert!(
            message.contains(&format!(
                "{name} may not mint a service-account token bound to it"
            )),
            "{message}"
        );
        assert!(
            message.contains("and the kubelet of the node the pod runs on"),
            "{message}"
        );
    }
    names_owner_and_who_may(
        &w.denied(
            w.token_request(&bob(), Some(bound(true))).await,
            TOKEN_VALIDATE,
            "not_owner",
        ),
        &job,
        "oidc:bob",
    );

    // Once the pod is bound to a node, that node's kubelet mounts its token; another's may not.
    w.bind("alice-driver", NODE).await;
    let reply = w
        .token_request(&kubelet(OTHER_NODE), Some(bound(true)))
        .await;
    w.denied(reply, TOKEN_VALIDATE, "not_owner");
    // The kubelet asks at once, before sparkward's watch-fed cache has seen the binding:
    // sparkward reads the pod from the API server rather than refuse on a stale node.
    let minted = allowed(
        w.token_request(&kubelet(NODE), Some(bound(true))).await,
        "the token of the driver's node's kubelet",
    );
    assert!(minted["status"]["token"].as_str().is_some(), "{minted}");
    for user in [job_admin(), group_admin()] {
        allowed(
            w.token_request(&user, Some(bound(true))).await,
            "a job administrator's token",
        );
    }
    // A token bound to no pod carries no job identity: not sparkward's to guard.
    allowed(w.token_request(&bob(), None).await, "bob's unbound token");
}

// ---------------------------------------------------------------------------------------------
// A lagging pod cache: a pod name reused while sparkward's watch has not caught up
// ---------------------------------------------------------------------------------------------

impl World {
    /// Waits until sparkward's pod cache holds `pod`: a job administrator's TokenRequest bound
    /// to it (naming its uid) is then decided without a direct read of the pod.
    async fn until_cached(&self, pod: &Value) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let direct = format!("/api/v1/namespaces/{NS}/pods/{name}");
        let bound = json!({ "apiVersion": "v1", "kind": "Pod", "name": name,
            "uid": pod["metadata"]["uid"] });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.api.clear_requests();
            let reply = self.token_request(&job_admin(), Some(bound.clone())).await;
            allowed(reply, "a job administrator's token");
            let read = self.api.requests().iter().any(|r| {
                r.method == Method::GET && r.path.split('?').next() == Some(direct.as_str())
            });
            if !read {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached sparkward's cache"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stalls sparkward's pod watch (its cluster-wide list/watch of job pods): the open watch
    /// ends and the next one is answered only after two minutes, so sparkward's pod cache keeps
    /// what it holds now. What the API server stores is unaffected, and direct reads of one
    /// pod are not delayed. (Watches lag in real clusters too: a loaded API server, a relist
    /// after 410 Gone.)
    fn stall_pod_watch(&self) {
        self.api.inject(
            Fault::delay(Duration::from_secs(120))
                .method(Method::GET)
                .path("/api/v1/pods?")
                .times(100),
        );
        // A write after this is never delivered on a watch opened before it.
        self.api.drop_watches();
    }
}

/// sparkward's TokenRequest guard reads the bound pod from its watch-fed cache and, when the
/// request's uid differs from the cached pod's, lets the request pass, on the grounds that the
/// API server will refuse a token bound to an earlier pod of that name. With a lagging cache it
/// is the other way round: the cache holds the earlier pod and the request names the current
/// one, which the API server accepts. A stale cache must never widen access.
#[tokio::test]
async fn bob_gets_no_token_bound_to_alices_new_driver_while_sparkwards_cache_still_holds_the_old_pod_of_that_name()
 {
    let w = world().await;
    let first = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    w.until_cached(&first).await;
    w.stall_pod_watch();
    allowed(
        w.delete(&alice(), POD, "alice-driver").await,
        "alice deleting her driver",
    );
    let second = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    assert_ne!(second["metadata"]["uid"], first["metadata"]["uid"]);
    let bound = json!({ "apiVersion": "v1", "kind": "Pod", "name": "alice-driver",
        "uid": second["metadata"]["uid"] });
    let reply = w.token_request(&bob(), Some(bound)).await;
    assert_eq!(
        reply.status, 403,
        "bob got a token bound to alice's driver ({}): {}",
        reply.status, reply.body
    );
    let message = w.denied(reply, TOKEN_VALIDATE, "not_owner");
    names_owner_and_who_may(&message, &job_of(&second), "oidc:bob");
}

/// The same lag for exec: bob's pod is deleted and alice creates one of the same name; while
/// sparkward's cache still holds bob's pod, it takes alice's for his.
#[tokio::test]
async fn bob_cannot_exec_into_alices_pod_that_reuses_the_name_of_his_deleted_one_while_sparkwards_cache_lags()
 {
    let w = world().await;
    let his = w.admitted(&bob(), w.driver("bob", "etl-driver")).await;
    w.until_cached(&his).await;
    w.stall_pod_watch();
    allowed(
        w.delete(&bob(), POD, "etl-driver").await,
        "bob deleting his driver",
    );
    let alices = w.admitted(&alice(), w.driver("alice", "etl-driver")).await;
    let reply = w
        .connect(&bob(), "etl-driver", "exec", "command=sh&stdout=true")
        .await;
    assert_eq!(
        reply.status, 403,
        "bob's exec into alice's pod passed admission ({}): {}",
        reply.status, reply.body
    );
    let message = w.denied(reply, POD_VALIDATE, "not_owner");
    names_owner_and_who_may(&message, &job_of(&alices), "oidc:bob");
}

// ---------------------------------------------------------------------------------------------
// spark-operator's labels and the operator's drivers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bob_cannot_put_spark_operator_labels_or_owners_naming_alices_application_into_his() {
    let w = world().await;
    let alices = w.admitted(&alice(), w.app("alice", "alice-etl")).await;
    let claim = json!({ "sparkoperator.k8s.io/app-name": "alice-etl" });
    let conf = |key: &str| json!({ key: "alice-etl" });
    let variants: [(&str, Value); 8] = [
        (
            "spec.driver.labels",
            json!({ "spec": { "driver": { "labels": claim } } }),
        ),
        (
            "spec.executor.labels",
            json!({ "spec": { "executor": { "labels": claim } } }),
        ),
        (
            "spec.driver.serviceLabels",
            json!({ "spec": { "driver": { "serviceLabels": claim } } }),
        ),
        (
            "metadata.labels",
            json!({ "metadata": { "labels": claim } }),
        ),
        (
            "spec.sparkConf",
            json!({ "spec": { "sparkConf": conf("spark.kubernetes.driver.label.sparkoperator.k8s.io/app-name") } }),
        ),
        (
            "spec.sparkConf",
            json!({ "spec": { "sparkConf": conf("spark.kubernetes.executor.label.sparkoperator.k8s.io/app-name") } }),
        ),
        (
            "spec.driver.template.metadata.labels",
            json!({ "spec": { "driver": { "template": { "metadata": { "labels": claim } } } } }),
        ),
        (
            "spec.driver.template.metadata.ownerReferences",
            json!({ "spec": { "driver": { "template": { "metadata": {
                "ownerReferences": [app_reference(&alices, true)] } } } } }),
        ),
    ];
    for (field, addition) in &variants {
        let mut his = w.app("bob", "bob-etl");
        merge(&mut his, addition);
        let reply = w.api.create_as(&bob(), his).await;
        let status = reply.expect_err(&format!("bob's {field} claim was admitted"));
        let message = status["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(&format!("admission webhook \"{APP_MUTATE}\" denied")),
            "{field}: {message}"
        );
        assert!(message.contains(field), "{field}: {message}");
        let call = w
            .api
            .admission_calls()
            .into_iter()
            .rev()
            .find(|c| c.webhook == APP_MUTATE)
            .unwrap();
        assert_eq!(
            call.response.unwrap()["auditAnnotations"]["reason"],
            "spoofing"
        );
        assert!(w.stored(SPARK_APP, "bob-etl").is_none());
    }
    // The same in a schedule's template.
    let mut schedule = w.schedule("bob", "bob-nightly");
    merge(
        &mut schedule,
        &json!({ "spec": { "template": { "driver": { "labels": claim } } } }),
    );
    let status = w
        .api
        .create_as(&bob(), schedule)
        .await
        .expect_err("bob's schedule claiming alice's application was admitted");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("spec.template.driver.labels"),
        "{status}"
    );

    // Beside it: bob's own application is admitted, and he cannot add the claim afterwards.
    let his = w.admitted(&bob(), w.app("bob", "bob-etl")).await;
    assert_ne!(job_of(&his), job_of(&alices));
    let reply = w
        .patch(
            &bob(),
            SPARK_APP,
            "bob-etl",
            None,
            MERGE,
            json!({ "spec": { "driver": { "labels": claim } } }),
        )
        .await;
    let message = w.denied(reply, APP_VALIDATE, "immutable");
    assert!(
        message.contains("sparkoperator.k8s.io/app-name"),
        "{message}"
    );
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

#[tokio::test]
async fn an_operator_driver_joins_alices_job_only_when_her_application_controls_it_and_its_executors_keep_its_labels()
 {
    let w = world().await;
    let alices = w.admitted(&alice(), w.app("alice", "alice-etl")).await;
    let bobs = w.admitted(&bob(), w.app("bob", "bob-etl")).await;
    let job = job_of(&alices);

    // Controlled by bob's application while naming alice's: refused when the operator creates
    // it.
    let mut driver = operator_driver(&alices);
    driver["metadata"]["ownerReferences"] = json!([app_reference(&bobs, true)]);
    let status = w
        .api
        .create_as(&operator(), driver)
        .await
        .expect_err("a driver controlled by bob's application joined alice's job");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains(POD_MUTATE), "{message}");
    assert!(
        message.contains("owned by SparkApplication bob-etl"),
        "{message}"
    );

    // Shapes only the final object shows: refused in the validating pass.
    let mut two_owners = operator_driver(&alices);
    two_owners["metadata"]["ownerReferences"] =
        json!([app_reference(&alices, false), app_reference(&bobs, true)]);
    let mut no_owner = operator_driver(&alices);
    no_owner["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    for (pod, expected) in [
        (two_owners, "is controlled by SparkApplication bob-etl"),
        (no_owner, "has no controller ownerReference to it"),
    ] {
        let reply = w
            .api
            .request_as(
                &operator(),
                Method::POST,
                &format!("/api/v1/namespaces/{NS}/pods"),
                None,
                Some(&pod),
            )
            .await;
        let message = w.denied(reply, POD_VALIDATE, "lineage");
        assert!(message.contains(expected), "{message}");
        assert!(w.stored(POD, "alice-etl-driver").is_none());
    }

    // A mutating webhook after sparkward's (spark-operator's own, before v2.4, set the
    // controller reference there) that makes bob's application the controller: sparkward is
    // re-invoked, and the validating pass sees the final owner.
    let hook = TestHook::start().await;
    let bobs_reference = app_reference(&bobs, true);
    hook.on("/mutate-pods", move |request| {
        if request["object"]["metadata"]["labels"]["spark-role"] == "driver" {
            Answer::patch(json!([{ "op": "add", "path": "/metadata/ownerReferences",
                "value": [bobs_reference.clone()] }]))
        } else {
            Answer::allow()
        }
    });
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": "zz-spark-operator-webhook" },
        "webhooks": [{
            "name": "mutate-pods.sparkoperator.k8s.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": { "service": { "name": "spark-operator-webhook", "namespace": "spark-operator", "path": "/mutate-pods" } },
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                "operations": ["CREATE"], "scope": "Namespaced" }],
            "namespaceSelector": { "matchLabels": { "sparkward.io/enforce": "true" } },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
        }],
    });
    w.api
        .install_webhooks(&configuration.to_string(), &hook.target());
    let mut unowned = operator_driver(&alices);
    unowned["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let reply = w
        .api
        .request_as(
            &operator(),
            Method::POST,
            &format!("/api/v1/namespaces/{NS}/pods"),
            None,
            Some(&unowned),
        )
        .await;
    let message = w.denied(reply, POD_VALIDATE, "lineage");
    assert!(
        message.contains("is controlled by SparkApplication bob-etl"),
        "{message}"
    );
    assert_eq!(hook.received().len(), 1);
    w.api.clear_webhooks();
    w.api
        .install_sparkward_webhooks(&w.server.base_url(), &w.server.certs.ca_pem);

    // The driver spark-operator really creates joins alice's job, with the operator's labels.
    let driver = w.admitted(&operator(), operator_driver(&alices)).await;
    assert_eq!(job_of(&driver), job);
    assert_eq!(driver["metadata"]["labels"]["sparkward.io/role"], "driver");
    let labels = operator_labels(&driver);
    assert_eq!(labels["sparkoperator.k8s.io/app-name"], "alice-etl");
    assert_eq!(labels.as_object().unwrap().len(), 3, "{labels}");

    // Its executors, created with the driver's bound token, carry the same operator labels
    // (Spark copies them from the operator's executor label settings) and join the job.
    let mut executor_labels = alices["spec"]["executor"]["labels"].clone();
    merge(&mut executor_labels, &labels);
    for n in 1..=2 {
        let executor = w
            .admitted(
                &bound_to(&driver),
                executor_of(&driver, n, &executor_labels),
            )
            .await;
        assert_eq!(job_of(&executor), job);
        assert_eq!(operator_labels(&executor), labels);
    }
    // One naming another application is not its driver's.
    let mut foreign = executor_labels.clone();
    foreign["sparkoperator.k8s.io/app-name"] = json!("bob-etl");
    let reply = w
        .api
        .request_as(
            &bound_to(&driver),
            Method::POST,
            &format!("/api/v1/namespaces/{NS}/pods"),
            None,
            Some(&executor_of(&driver, 3, &foreign)),
        )
        .await;
    let message = w.denied(reply, POD_MUTATE, "spoofing");
    assert!(
        message.contains("an executor carries only the sparkoperator.k8s.io/ labels of its driver"),
        "{message}"
    );
}

#[tokio::test]
async fn a_tenants_own_pod_may_not_carry_spark_operator_labels() {
    let w = world().await;
    w.admitted(&alice(), w.app("alice", "alice-etl")).await;
    for (key, value) in [
        ("sparkoperator.k8s.io/app-name", "alice-etl"),
        ("sparkoperator.k8s.io/launched-by-spark-operator", "true"),
    ] {
        let mut pod = w.driver("bob", "bob-driver");
        pod["metadata"]["labels"][key] = json!(value);
        let reply = w
            .api
            .request_as(
                &bob(),
                Method::POST,
                &format!("/api/v1/namespaces/{NS}/pods"),
                None,
                Some(&pod),
            )
            .await;
        let message = w.denied(reply, POD_MUTATE, "spoofing");
        assert!(message.contains(key), "{message}");
        assert!(w.stored(POD, "bob-driver").is_none());
    }
    // Without them it is his own job; he may not add them later.
    let his = w.admitted(&bob(), w.driver("bob", "bob-driver")).await;
    job_of(&his);
    let reply = w
        .patch(
            &bob(),
            POD,
            "bob-driver",
            None,
            MERGE,
            json!({ "metadata": { "labels": { "sparkoperator.k8s.io/app-name": "alice-etl" } } }),
        )
        .await;
    let message = w.denied(reply, POD_VALIDATE, "immutable");
    assert!(
        message.contains("sparkoperator.k8s.io/app-name"),
        "{message}"
    );
}
