//! Approved images (`hardening.images`) end to end: sparkward as a process over TLS behind the
//! stand-in API server, which runs sparkward's own webhook configurations the way kube-apiserver
//! does (mutating, re-invocation, then validating on the final object). Pods, their init and
//! ephemeral containers, image swaps on update, executors created by a driver, and every image
//! a SparkApplication or ScheduledSparkApplication names; digest pinning; the boundary attacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::apiserver::{
    CNP, FakeApiServer, POD, Reply, Resource, SCHEDULED_SPARK_APP, SPARK_APP, User,
};
use support::scenario::{Idp, mk_spark_app};
use support::testhook::{Answer, TestHook};
use support::webhook::{Options, Sparkward};

const NS: &str = "spark-jobs";
const POD_MUTATE: &str = "pods.mutate.sparkward.io";
const POD_VALIDATE: &str = "pods.validate.sparkward.io";
const APP_MUTATE: &str = "sparkapplications.mutate.sparkward.io";
const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The platform team's list: Spark's own repository, Docker Hub's official images, and the
/// company registry's `spark/` path.
const ALLOWED: &str = "hardening:\n  images:\n    allowed: [docker.io/apache/spark, docker.io/library/, registry.corp/spark/]\n";
const ALLOWED_LIST: &str = "docker.io/apache/spark, docker.io/library/, registry.corp/spark/";

/// sparkward (the scenario's config plus `extra`) behind the stand-in API server, with its own
/// webhook configurations installed, `spark-jobs` enforced and its `spark` service account.
struct Chain {
    api: FakeApiServer,
    idp: Idp,
    _server: Sparkward,
    _dir: tempfile::TempDir,
}

async fn chain(extra: &str) -> Chain {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({ "sparkward.io/enforce": "true" }));
    api.insert(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": "spark", "namespace": NS },
    }));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Sparkward::start(Options {
        config: Some(idp.config(extra)),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        ..Options::default()
    })
    .await;
    api.install_sparkward_webhooks(&server.base_url(), &server.certs.ca_pem);
    Chain {
        api,
        idp,
        _server: server,
        _dir: dir,
    }
}

fn alice() -> User {
    User::new("oidc:alice")
}

/// The API path of a pod (and its subresource) in `NS`.
fn pod_path(name: &str, sub: Option<&str>) -> String {
    let sub = sub.map(|s| format!("/{s}")).unwrap_or_default();
    format!("/api/v1/namespaces/{NS}/pods/{name}{sub}")
}

impl Chain {
    /// alice's spark-submit driver pod `name` with her token, after `edit`.
    fn pod(&self, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut pod = support::reviews::mk_pod(name, NS);
        pod["metadata"]["annotations"] =
            json!({"sparkward.io/submitter-token": self.idp.token("alice", "x")});
        edit(&mut pod);
        pod
    }

    /// alice's SparkApplication `name` with her token, with `spec` merged into its spec.
    fn app(&self, name: &str, spec: Value) -> Value {
        let mut app = mk_spark_app(name, NS, &self.idp.token("alice", "x"));
        json_patch::merge(&mut app["spec"], &spec);
        app
    }

    /// alice's ScheduledSparkApplication `name` running `app`'s spec every hour.
    fn scheduled(&self, name: &str, spec: Value) -> Value {
        let app = self.app(name, spec);
        json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
            "metadata": app["metadata"],
            "spec": {"schedule": "@every 1h", "template": app["spec"]},
        })
    }

    /// Creates `object` as `user` and expects it admitted; the stored object.
    async fn admitted_as(&self, user: &User, resource: Resource, object: Value) -> Value {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        self.api
            .create_as(user, object)
            .await
            .unwrap_or_else(|status| panic!("{name} was not admitted: {status}"));
        self.api
            .get(resource, NS, &name)
            .unwrap_or_else(|| panic!("{name} was not stored"))
    }

    async fn admitted(&self, resource: Resource, object: Value) -> Value {
        self.admitted_as(&alice(), resource, object).await
    }

    /// Creates `object` as `user` and expects sparkward's `webhook` to deny it for its images;
    /// the message.
    async fn denied_as(
        &self,
        user: &User,
        resource: Resource,
        object: Value,
        webhook: &str,
    ) -> String {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let status = self
            .api
            .create_as(user, object)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} was admitted"));
        assert!(self.api.get(resource, NS, &name).is_none(), "{name} stored");
        denial(&status, webhook, &name)
    }

    async fn denied(&self, resource: Resource, object: Value, webhook: &str) -> String {
        self.denied_as(&alice(), resource, object, webhook).await
    }

    /// A JSON Patch of pod `name` (or its subresource) as alice.
    async fn patch_pod(&self, name: &str, sub: Option<&str>, ops: Value) -> Reply {
        self.api
            .request_as(
                &alice(),
                http::Method::PATCH,
                &pod_path(name, sub),
                Some("application/json-patch+json"),
                Some(&ops),
            )
            .await
    }
}

/// Asserts that `status` is `webhook`'s 403 image denial; its message.
fn denial(status: &Value, webhook: &str, what: &str) -> String {
    assert_eq!(status["code"], 403, "{what}: {status}");
    let message = status["message"].as_str().unwrap().to_string();
    let lead = format!(
        "admission webhook \"{webhook}\" denied the request: the object uses images that are \
         not approved: "
    );
    assert!(message.starts_with(&lead), "{what}: {message}");
    message
}

/// The denial text for `field` holding `image` of `repository` under the `ALLOWED` list.
fn not_allowed(field: &str, image: &str, repository: &str) -> String {
    format!(
        "{field} is '{image}' (repository {repository}), which is not under an allowed prefix: \
         {ALLOWED_LIST}: use an image from one of them; the platform team lists approved \
         registries and repositories in hardening.images.allowed"
    )
}

#[tokio::test]
async fn approved_images_are_admitted_and_others_are_denied_naming_the_field_and_the_rule() {
    let c = chain(ALLOWED).await;

    // Spark's image in its familiar form, an official image, the company registry.
    let pod = c
        .admitted(
            POD,
            c.pod("approved", |p| {
                p["spec"]["initContainers"] = json!([{"name": "fetch", "image": "busybox:1.36"}]);
                p["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "proxy", "image": "registry.corp/spark/proxy:2.1"}));
            }),
        )
        .await;
    assert_eq!(pod["spec"]["containers"][0]["image"], "apache/spark:4.0.0");
    let policies = c.api.list(CNP, Some(NS)).len();
    assert_eq!(policies, 1, "the approved pod's job has its policy");

    // An init container from elsewhere, and the boundary attacks on the Spark repository.
    let cases = [
        (
            "evil-init",
            "spec.initContainers[0].image",
            "docker.io/apache/spark-evil:4.0.0",
            "docker.io/apache/spark-evil",
        ),
        (
            "sparkx",
            "spec.containers[0].image",
            "docker.io/apache/sparkx:1",
            "docker.io/apache/sparkx",
        ),
        (
            "nested",
            "spec.containers[0].image",
            "registry.corp/spark-team/app:1",
            "registry.corp/spark-team/app",
        ),
    ];
    for (name, field, image, repository) in cases {
        let pod = c.pod(name, |p| {
            if field.starts_with("spec.initContainers") {
                p["spec"]["initContainers"] = json!([{"name": "fetch", "image": image}]);
            } else {
                p["spec"]["containers"][0]["image"] = json!(image);
            }
        });
        let message = c.denied(POD, pod, POD_MUTATE).await;
        assert!(
            message.contains(&not_allowed(field, image, repository)),
            "{name}: {message}"
        );
    }

    // A malformed reference is denied, with the reason.
    let message = c
        .denied(
            POD,
            c.pod("upper-case", |p| {
                p["spec"]["containers"][0]["image"] = json!("docker.io/apache/Spark:4.0.0");
            }),
            POD_MUTATE,
        )
        .await;
    assert!(
        message.contains(
            "spec.containers[0].image is 'docker.io/apache/Spark:4.0.0', which is not a valid \
             image reference (the repository path 'apache/Spark' has upper-case letters"
        ),
        "{message}"
    );

    // Every image a SparkApplication names: its own, the executor's, a pod template's, and the
    // Spark properties spark-submit reads.
    let app_cases = [
        (
            "executor-image",
            json!({"executor": {"image": "ghcr.io/evil/spark:1"}}),
            "spec.executor.image",
            "ghcr.io/evil/spark:1",
            "ghcr.io/evil/spark",
        ),
        (
            "conf-image",
            json!({"sparkConf": {"spark.kubernetes.executor.container.image": "quay.io/x/spark:1"}}),
            "spec.sparkConf[\"spark.kubernetes.executor.container.image\"]",
            "quay.io/x/spark:1",
            "quay.io/x/spark",
        ),
        (
            "template-image",
            json!({"driver": {"template": {"spec": {"containers": [
                {"name": "spark-kubernetes-driver"},
                {"name": "helper", "image": "evil.io/helper:1"}]}}}}),
            "spec.driver.template.spec.containers[1].image",
            "evil.io/helper:1",
            "evil.io/helper",
        ),
        (
            "sidecar-image",
            json!({"driver": {"sidecars": [{"name": "s", "image": "docker.io/apache/spark-evil"}]}}),
            "spec.driver.sidecars[0].image",
            "docker.io/apache/spark-evil",
            "docker.io/apache/spark-evil",
        ),
    ];
    for (name, spec, field, image, repository) in app_cases {
        let message = c.denied(SPARK_APP, c.app(name, spec), APP_MUTATE).await;
        assert!(
            message.contains(&not_allowed(field, image, repository)),
            "{name}: {message}"
        );
    }
    let message = c
        .denied(
            SCHEDULED_SPARK_APP,
            c.scheduled(
                "nightly",
                json!({"executor": {"image": "docker.io/bob/spark:evil"}}),
            ),
            APP_MUTATE,
        )
        .await;
    assert!(
        message.contains(&not_allowed(
            "spec.template.executor.image",
            "docker.io/bob/spark:evil",
            "docker.io/bob/spark"
        )),
        "{message}"
    );
    // No denied job left a policy behind: images are checked before the policy is made.
    assert_eq!(c.api.list(CNP, Some(NS)).len(), policies);

    // Approved images everywhere are admitted, and an application that names no image too:
    // spark-operator then passes none to spark-submit, which uses the operator's own default
    // (or fails), and the pods it creates are checked like every other pod.
    let app = c
        .admitted(
            SPARK_APP,
            c.app(
                "approved-app",
                json!({"driver": {"image": "registry.corp/spark/driver:4.0.4"},
                    "sparkConf": {"spark.kubernetes.container.image": "apache/spark:4.0.4"}}),
            ),
        )
        .await;
    assert_eq!(
        app["spec"]["driver"]["image"],
        "registry.corp/spark/driver:4.0.4"
    );
    let mut no_image = c.app("no-image", json!({}));
    no_image["spec"].as_object_mut().unwrap().remove("image");
    c.admitted(SPARK_APP, no_image).await;
    c.admitted(SCHEDULED_SPARK_APP, c.scheduled("nightly-ok", json!({})))
        .await;
}

#[tokio::test]
async fn image_swaps_debug_containers_and_executors_with_unapproved_images_are_denied() {
    let c = chain(ALLOWED).await;
    let driver = c.admitted(POD, c.pod("driver", |_| {})).await;

    // `kubectl set image` to another repository: the validating webhook guards updates.
    let swap = |image: &str| json!([{"op": "replace", "path": "/spec/containers/0/image", "value": image}]);
    let reply = c
        .patch_pod("driver", None, swap("docker.io/bob/spark:evil"))
        .await;
    let message = denial(&reply.body, POD_VALIDATE, "image swap");
    assert!(
        message.contains(&not_allowed(
            "spec.containers[0].image",
            "docker.io/bob/spark:evil",
            "docker.io/bob/spark"
        )),
        "{message}"
    );
    let reply = c
        .patch_pod("driver", None, swap("docker.io/apache/spark:4.0.4"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stored = c.api.get(POD, NS, "driver").unwrap();
    assert_eq!(
        stored["spec"]["containers"][0]["image"],
        "docker.io/apache/spark:4.0.4"
    );

    // A debug container (`kubectl debug`): `pods/ephemeralcontainers`.
    let debug = |image: &str| {
        json!([{"op": "add", "path": "/spec/ephemeralContainers",
            "value": [{"name": "debug", "image": image, "command": ["sh"]}]}])
    };
    let reply = c
        .patch_pod(
            "driver",
            Some("ephemeralcontainers"),
            debug("docker.io/nicolaka/netshoot"),
        )
        .await;
    let message = denial(&reply.body, POD_MUTATE, "debug container");
    assert!(
        message.contains(&not_allowed(
            "spec.ephemeralContainers[0].image",
            "docker.io/nicolaka/netshoot",
            "docker.io/nicolaka/netshoot"
        )),
        "{message}"
    );
    let reply = c
        .patch_pod("driver", Some("ephemeralcontainers"), debug("busybox:1.36"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // An executor the driver creates (its bound token) is checked like any pod.
    let driver_token = User::bound_to_pod(
        NS,
        "spark",
        "driver",
        driver["metadata"]["uid"].as_str().unwrap(),
    );
    let executor = |name: &str, image: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                "labels": {"spark-role": "executor"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "driver",
                    "uid": driver["metadata"]["uid"], "controller": true}]},
            "spec": {"serviceAccountName": "spark", "containers": [
                {"name": "spark-kubernetes-executor", "image": image, "args": ["executor"]}]},
        })
    };
    let message = c
        .denied_as(
            &driver_token,
            POD,
            executor("exec-1", "evil.io/miner:1"),
            POD_MUTATE,
        )
        .await;
    assert!(
        message.contains(&not_allowed(
            "spec.containers[0].image",
            "evil.io/miner:1",
            "evil.io/miner"
        )),
        "{message}"
    );
    c.admitted_as(
        &driver_token,
        POD,
        executor("exec-2", "docker.io/apache/spark:4.0.4"),
    )
    .await;
}

#[tokio::test]
async fn digest_pinning_counts_the_digest_and_the_prefix_still_applies() {
    let c = chain(
        "hardening:\n  images:\n    allowed: [docker.io/apache/spark]\n    requireDigest: true\n",
    )
    .await;
    let message = c
        .denied(
            POD,
            c.pod("tag-only", |p| {
                p["spec"]["containers"][0]["image"] = json!("apache/spark:4.0.0");
            }),
            POD_MUTATE,
        )
        .await;
    assert!(
        message.contains(
            "spec.containers[0].image is 'apache/spark:4.0.0', which is not pinned by digest: \
             pin it: docker.io/apache/spark@sha256:<64 hex digits>"
        ),
        "{message}"
    );
    for (name, image) in [
        ("pinned", format!("docker.io/apache/spark@{SHA}")),
        ("tag-and-digest", format!("apache/spark:4.0.0@{SHA}")),
    ] {
        c.admitted(
            POD,
            c.pod(name, |p| p["spec"]["containers"][0]["image"] = json!(image)),
        )
        .await;
    }
    // Pinned but from the look-alike repository: the prefix decides, on its boundary.
    let evil = format!("docker.io/apache/spark-evil@{SHA}");
    let message = c
        .denied(
            POD,
            c.pod("pinned-evil", |p| {
                p["spec"]["containers"][0]["image"] = json!(evil);
            }),
            POD_MUTATE,
        )
        .await;
    assert!(
        message.contains("(repository docker.io/apache/spark-evil), which is not under an allowed prefix: docker.io/apache/spark:"),
        "{message}"
    );
    // A digest that is not one is refused, not taken for a pin.
    let message = c
        .denied(
            POD,
            c.pod("short-digest", |p| {
                p["spec"]["containers"][0]["image"] = json!("apache/spark@sha256:0123");
            }),
            POD_MUTATE,
        )
        .await;
    assert!(
        message.contains("is not sha256:<64 lower-case hex digits>"),
        "{message}"
    );
    // The application's image is held to the same rule.
    let message = c
        .denied(SPARK_APP, c.app("unpinned-app", json!({})), APP_MUTATE)
        .await;
    assert!(
        message.contains(
            "spec.image is 'docker.io/apache/spark:4.0.4', which is not pinned by digest"
        ),
        "{message}"
    );
    c.admitted(
        SPARK_APP,
        c.app(
            "pinned-app",
            json!({"image": format!("docker.io/apache/spark:4.0.4@{SHA}")}),
        ),
    )
    .await;
}

#[tokio::test]
async fn an_image_another_webhook_swaps_in_after_sparkward_is_denied_on_reinvocation() {
    let c = chain(ALLOWED).await;
    let hook = TestHook::start().await;
    hook.on("/mutate-pods", |_| {
        Answer::patch(json!([{
            "op": "replace", "path": "/spec/containers/0/image", "value": "evil.io/spark:1",
        }]))
    });
    // Its configuration's name sorts after sparkward's, so the API server calls it later and
    // re-invokes sparkward's pod webhook (reinvocationPolicy: IfNeeded) on the changed pod.
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": "zz-image-rewriter" },
        "webhooks": [{
            "name": "rewrite.example.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": { "service": { "name": "rewriter", "namespace": "x", "path": "/mutate-pods" } },
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                "operations": ["CREATE"], "scope": "Namespaced" }],
            "namespaceSelector": { "matchLabels": { "sparkward.io/enforce": "true" } },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
        }],
    });
    c.api
        .install_webhooks(&configuration.to_string(), &hook.target());
    let message = c.denied(POD, c.pod("rewritten", |_| {}), POD_MUTATE).await;
    assert!(
        message.contains(&not_allowed(
            "spec.containers[0].image",
            "evil.io/spark:1",
            "evil.io/spark"
        )),
        "{message}"
    );
}
