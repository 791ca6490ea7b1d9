//! The admission stamp (`sparkward.io/stamp`, see `core::stamp`) end to end: every request goes
//! through the stand-in API server's admission chain with sparkward's own webhook
//! configurations, as the user it stands for, so each webhook call has its own uid and the
//! stamp is the only link between the calls of one request. Each attack (a stamp copied onto
//! another object, kind, namespace, name or requester, a dry-run stamp, an expired stamp, a
//! stamp under a rotated-out key) sits next to the legitimate flow it must not break
//! (re-invocation by a later webhook, generateName, key rotation, a retried call). The
//! documented residual (same requester, same name, within validity) is pinned by name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::Method;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use sparkward::core::stamp::StampKeys;

use support::apiserver::{CNP, FakeApiServer, POD, Resource, SPARK_APP, User};
use support::reviews::{Review, answered_job, job_of, mk_pod, patched};
use support::scenario::{Idp, mk_spark_app};
use support::testhook::{Answer, TestHook};
use support::webhook::{HttpVersion, Options, Sparkward};

const NS: &str = "spark-jobs";
/// A second enforced namespace, where bob is a tenant too.
const NS_B: &str = "team-b";
const STAMP: &str = "sparkward.io/stamp";
const APP_MUTATE: &str = "sparkapplications.mutate.sparkward.io";
const POD_MUTATE: &str = "pods.mutate.sparkward.io";
const POD_VALIDATE: &str = "pods.validate.sparkward.io";
/// What every stamp denial says, whatever the cause.
const NOT_VALID: &str = "sparkward.io/stamp annotation that is not valid for this request";
/// The cause of a stamp bound to another object, namespace, kind or requester.
const MISMATCH: &str = "does not match this object, namespace, kind and requester";

fn alice() -> User {
    User::new("oidc:alice")
}

fn bob() -> User {
    User::new("oidc:bob")
}

/// A key-file line with a fixed test key (32 bytes of `byte`).
fn key_line(id: &str, byte: u8) -> String {
    StampKeys::line_for(id, &[byte; 32])
}

/// The stand-in with both namespaces enforced, sparkward in cluster mode behind its own webhook
/// configurations, and a stamp key file the test controls.
struct World {
    api: FakeApiServer,
    idp: Idp,
    server: Sparkward,
    key_file: PathBuf,
    _dir: tempfile::TempDir,
}

struct Setup<'a> {
    /// YAML appended to the scenario config, inside its `policy:` section (indented lines) and
    /// then top-level sections.
    extra: &'a str,
    /// `stamp.validity`, when not the default.
    validity: Option<&'a str>,
    /// The key file's initial content.
    keys: String,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            extra: "",
            validity: None,
            keys: key_line("k1", 1),
        }
    }
}

async fn world() -> World {
    world_with(Setup::default()).await
}

async fn world_with(setup: Setup<'_>) -> World {
    let api = FakeApiServer::start().await;
    for ns in [NS, NS_B] {
        api.ensure_namespace(ns, json!({ "sparkward.io/enforce": "true" }));
    }
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("stamp-keys");
    std::fs::write(&key_file, &setup.keys).unwrap();
    let validity = setup
        .validity
        .map(|v| format!("  validity: {v}\n"))
        .unwrap_or_default();
    let config = idp.config(&format!(
        "{}stamp:\n  keyFile: {}\n{validity}",
        setup.extra,
        key_file.display()
    ));
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
        key_file,
        _dir: dir,
    }
}

impl World {
    fn token(&self, subject: &str) -> String {
        self.idp.token(subject, "data:read:postgres-main")
    }

    /// `subject`'s SparkApplication `name` in `ns` with a fresh valid token.
    fn app(&self, subject: &str, name: &str, ns: &str) -> Value {
        mk_spark_app(name, ns, &self.token(subject))
    }

    /// A spark-submit driver pod `name` in `NS` with `subject`'s token.
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

    /// Deletes an object through the API as `user`.
    async fn delete(&self, user: &User, resource: Resource, ns: &str, name: &str) {
        let prefix = if resource.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}", resource.api_version())
        };
        let path = format!("{prefix}/namespaces/{ns}/{}/{name}", resource.plural);
        let reply = self
            .api
            .request_as(user, Method::DELETE, &path, None, None)
            .await;
        assert_eq!(reply.status, 200, "delete {path}: {}", reply.body);
        assert!(self.api.get(resource, ns, name).is_none());
    }

    /// Names of the CiliumNetworkPolicies in every namespace.
    fn policies(&self) -> BTreeSet<String> {
        self.api
            .list(CNP, None)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Asserts that `result` is a denial by sparkward's webhook `webhook` with the reason code
    /// `stamp`; returns the message.
    fn stamp_denial(&self, result: Result<Value, Value>, webhook: &str) -> String {
        let status = match result {
            Ok(stored) => panic!("expected {webhook} to deny the stamp, it was stored: {stored}"),
            Err(status) => status,
        };
        let message = status["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains(&format!(
                "admission webhook \"{webhook}\" denied the request"
            )),
            "expected a denial by {webhook}: {status}"
        );
        assert!(message.contains(NOT_VALID), "{message}");
        let call = self
            .api
            .admission_calls()
            .into_iter()
            .rev()
            .find(|c| c.webhook == webhook)
            .unwrap();
        assert!(!call.allowed);
        assert_eq!(
            call.response.unwrap()["auditAnnotations"]["reason"],
            "stamp",
            "{message}"
        );
        message
    }

    /// Rewrites the key file the way a Secret update lands (a new file swapped in) and waits
    /// until sparkward has swapped the keys in: its success counter reaches `reloads` (it counts
    /// after the swap; sparkward's log line comes just before it), and the log names exactly
    /// `ids` (comma separated, signing key first).
    async fn rotate_keys(&self, content: &str, ids: &str, reloads: u64) {
        let next = self.key_file.with_extension("next");
        std::fs::write(&next, content).unwrap();
        std::fs::rename(&next, &self.key_file).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let series = "sparkward_stamp_key_reloads_total{outcome=\"success\"} ";
        loop {
            let (_, metrics) = self.server.probe("/metrics").await.unwrap();
            let swapped = metrics
                .lines()
                .find_map(|l| l.strip_prefix(series))
                .and_then(|n| n.trim().parse::<f64>().ok())
                .is_some_and(|n| n >= reloads as f64);
            let logged = self.server.stderr.lock().unwrap().iter().any(|line| {
                serde_json::from_str::<Value>(line)
                    .is_ok_and(|v| v["message"] == "stamp keys reloaded" && v["keys"] == ids)
            });
            if swapped && logged {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sparkward did not reload the stamp keys {ids}:\n{metrics}\n{}",
                self.server.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// sparkward's audit lines for the `kind` object `name`, once there are `count` of them
    /// (they reach stdout just after the answer).
    async fn audited(&self, kind: &str, name: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines: Vec<Value> = self
                .server
                .audit_lines()
                .into_iter()
                .filter(|l| l["name"] == name && l["kind"] == kind)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} audit lines for {kind} {name}: {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every admission call for objects named `name`, as (webhook, allowed).
    fn calls_for(&self, name: &str) -> Vec<(String, bool)> {
        self.api
            .admission_calls()
            .into_iter()
            .filter(|c| c.request["object"]["metadata"]["name"] == name || c.name == name)
            .map(|c| (c.webhook, c.allowed))
            .collect()
    }
}

fn stamp_of(object: &Value) -> String {
    object["metadata"]["annotations"][STAMP]
        .as_str()
        .unwrap_or_else(|| panic!("no {STAMP} on {object}"))
        .to_string()
}

/// The `i`th dot-separated field of a stamp (`v1.<key>.<expiry>.<flags>.<source>.<mac>`).
fn stamp_field(object: &Value, i: usize) -> String {
    stamp_of(object).split('.').nth(i).unwrap().to_string()
}

/// The stored object as a client resubmits it (`kubectl get -o json`, edited, created again):
/// without the fields the API server assigns.
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
/// `onto`, as an attacker who read `from` would.
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

// ---------------------------------------------------------------------------------------------
// Copies and replays
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bob_cannot_reuse_alices_stamp_on_his_application_on_a_pod_or_in_another_namespace() {
    let w = world().await;
    let alices = w.admitted(&alice(), w.app("alice", "etl", NS)).await;
    let alices_policy = format!("sparkward-{}", job_of(&alices));
    assert_eq!(w.policies(), BTreeSet::from([alices_policy.clone()]));

    // bob carries his own valid token each time: the stamp alone decides.
    let mut his_app = w.app("bob", "bob-etl", NS);
    copy_identity(&alices, &mut his_app);
    let message = w.stamp_denial(w.api.create_as(&bob(), his_app).await, APP_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");

    let mut his_pod = w.driver("bob", "bob-driver");
    copy_identity(&alices, &mut his_pod);
    let message = w.stamp_denial(w.api.create_as(&bob(), his_pod).await, POD_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");

    // alice's whole application, same name, in a namespace where bob is a tenant.
    let mut elsewhere = resubmittable(&alices);
    elsewhere["metadata"]["namespace"] = json!(NS_B);
    elsewhere["metadata"]["annotations"]["sparkward.io/submitter-token"] = json!(w.token("bob"));
    let message = w.stamp_denial(w.api.create_as(&bob(), elsewhere).await, APP_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");

    assert!(w.api.get(SPARK_APP, NS, "bob-etl").is_none());
    assert!(w.api.get(POD, NS, "bob-driver").is_none());
    assert!(w.api.get(SPARK_APP, NS_B, "etl").is_none());
    assert_eq!(w.policies(), BTreeSet::from([alices_policy.clone()]));

    // The legitimate flow beside it: bob's own submission is his own job.
    let his = w.admitted(&bob(), w.app("bob", "bob-etl", NS)).await;
    assert_ne!(job_of(&his), job_of(&alices));
    assert_eq!(
        his["metadata"]["annotations"]["sparkward.io/submitter"],
        "bob"
    );
    assert_eq!(w.policies().len(), 2);
}

#[tokio::test]
async fn alice_cannot_replay_the_stamp_of_her_admitted_application_onto_another_name() {
    let w = world().await;
    let first = w.admitted(&alice(), w.app("alice", "etl", NS)).await;

    let mut second = resubmittable(&first);
    second["metadata"]["name"] = json!("etl-2");
    // With a fresh token too: the copied stamp is refused, not ignored.
    second["metadata"]["annotations"]["sparkward.io/submitter-token"] = json!(w.token("alice"));
    let message = w.stamp_denial(w.api.create_as(&alice(), second).await, APP_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");
    assert!(w.api.get(SPARK_APP, NS, "etl-2").is_none());
    assert_eq!(w.policies().len(), 1);

    // Submitted as a new job (no sparkward.io/ metadata), the second application is its own.
    let second = w.admitted(&alice(), w.app("alice", "etl-2", NS)).await;
    assert_ne!(job_of(&second), job_of(&first));
    assert_eq!(w.policies().len(), 2);
}

#[tokio::test]
async fn a_dry_run_returns_a_stamp_that_does_not_admit_the_real_create() {
    let w = world().await;
    let apps: Api<DynamicObject> = Api::namespaced_with(
        w.api.client_as(&alice()),
        NS,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "sparkoperator.k8s.io",
            "v1beta2",
            "SparkApplication",
        )),
    );
    let submitted: DynamicObject = serde_json::from_value(w.app("alice", "etl", NS)).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = apps.create(&dry_run, &submitted).await.unwrap();
    let answered = serde_json::to_value(&answered).unwrap();
    // The dry run shows the mutation, with a stamp marked for dry runs, and has no effect.
    job_of(&answered);
    assert_eq!(stamp_field(&answered, 3), "d", "{}", stamp_of(&answered));
    assert!(w.api.get(SPARK_APP, NS, "etl").is_none());
    assert!(w.policies().is_empty(), "a dry run created a policy");

    // Created for real, the returned object is refused: its stamp is a dry run's.
    let message = w.stamp_denial(
        w.api.create_as(&alice(), resubmittable(&answered)).await,
        APP_MUTATE,
    );
    assert!(message.contains("dry run"), "{message}");
    // Deleting the dry-run flag from the stamp breaks its MAC.
    let mut edited = resubmittable(&answered);
    let forged = stamp_of(&answered).replacen(".d.", ".-.", 1);
    edited["metadata"]["annotations"][STAMP] = json!(forged);
    let message = w.stamp_denial(w.api.create_as(&alice(), edited).await, APP_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");
    assert!(w.api.get(SPARK_APP, NS, "etl").is_none());
    assert!(w.policies().is_empty());

    // The manifest itself, submitted for real, is admitted with its policy.
    let stored = w.admitted(&alice(), w.app("alice", "etl", NS)).await;
    assert_eq!(stamp_field(&stored, 3), "-");
    assert_eq!(
        w.policies(),
        BTreeSet::from([format!("sparkward-{}", job_of(&stored))])
    );
}

/// The residual the README documents: within its validity, a stamp can be replayed by the same
/// requester onto an object of the same kind, namespace and name after deleting the original.
/// It then carries exactly the identity sparkward verified for her moments before, is treated
/// as a re-invocation and starts nothing: no new job, no new policy. Nobody else can do it.
#[tokio::test]
async fn documented_residual_the_same_requester_may_replay_a_stamp_onto_the_same_name_within_validity_without_a_new_policy()
 {
    let w = world().await;
    let original = w.admitted(&alice(), w.app("alice", "etl", NS)).await;
    let policy = format!("sparkward-{}", job_of(&original));
    w.delete(&alice(), SPARK_APP, NS, "etl").await;

    let replayed = w.admitted(&alice(), resubmittable(&original)).await;
    assert_eq!(job_of(&replayed), job_of(&original));
    let replay_call = w
        .api
        .admission_calls()
        .into_iter()
        .rev()
        .find(|c| c.webhook == APP_MUTATE)
        .unwrap();
    assert_eq!(
        replay_call.response.unwrap()["auditAnnotations"]["identity-source"],
        "reinvocation"
    );
    // No new policy (the original one may already have gone with the deleted application).
    let policies = w.policies();
    assert!(
        policies.iter().all(|p| *p == policy),
        "a replay created a policy: {policies:?}"
    );

    // bob, replaying the same stored object under the same name, is refused.
    w.delete(&alice(), SPARK_APP, NS, "etl").await;
    let mut his = resubmittable(&original);
    his["metadata"]["annotations"]["sparkward.io/submitter-token"] = json!(w.token("bob"));
    let message = w.stamp_denial(w.api.create_as(&bob(), his).await, APP_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Key rotation and expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stamp_keys_rotate_without_downtime_and_a_removed_key_no_longer_verifies_its_stamps() {
    let old = key_line("oldkey", 1);
    let new = key_line("newkey", 2);
    let w = world_with(Setup {
        keys: old.clone(),
        ..Setup::default()
    })
    .await;
    let client = w.server.client(HttpVersion::Http1);
    let original = w.admitted(&alice(), w.app("alice", "etl", NS)).await;
    assert_eq!(stamp_field(&original, 1), "oldkey");

    // A request whose mutating call is answered before each swap and whose validating call
    // comes after it (sent directly, to place the swap between the two calls).
    let in_flight = |name: &str| {
        Review::spark_app(mk_spark_app(name, NS, &w.token("alice"))).user("oidc:alice")
    };
    let mutated = |review: Review| {
        let client = client.clone();
        async move {
            let (status, answer) = client.review("/mutate", &review.build()).await;
            assert_eq!(status, 200);
            assert_eq!(answer["response"]["allowed"], true, "{answer}");
            let object = patched(&review.build(), &answer);
            review.next_call(object, true)
        }
    };
    let validated = |review: Review| {
        let client = client.clone();
        async move {
            let (status, answer) = client.review("/validate", &review.build()).await;
            assert_eq!(status, 200);
            assert_eq!(answer["response"]["allowed"], true, "{answer}");
        }
    };

    // Step 1: the new key signs, the old one still verifies.
    let across_first = mutated(in_flight("in-flight-1")).await;
    assert_eq!(stamp_field(&across_first.object, 1), "oldkey");
    w.rotate_keys(&format!("{new}\n{old}\n"), "newkey,oldkey", 1)
        .await;
    validated(across_first).await;
    let second = w.admitted(&alice(), w.app("alice", "etl-2", NS)).await;
    assert_eq!(stamp_field(&second, 1), "newkey");

    // Step 2: the old key is removed.
    let across_second = mutated(in_flight("in-flight-2")).await;
    assert_eq!(stamp_field(&across_second.object, 1), "newkey");
    w.rotate_keys(&format!("{new}\n"), "newkey", 2).await;
    validated(across_second).await;
    let third = w.admitted(&alice(), w.app("alice", "etl-3", NS)).await;
    assert_eq!(stamp_field(&third, 1), "newkey");

    // No call of the legitimate requests was denied at any point.
    for name in ["etl", "etl-2", "etl-3"] {
        let calls = w.calls_for(name);
        assert_eq!(calls.len(), 2, "{name}: {calls:?}");
        assert!(
            calls.iter().all(|(_, allowed)| *allowed),
            "{name}: {calls:?}"
        );
    }

    // The old key's stamp, replayed by its own requester onto the same name within its validity
    // (the documented residual before rotation), is refused now.
    w.delete(&alice(), SPARK_APP, NS, "etl").await;
    let message = w.stamp_denial(
        w.api.create_as(&alice(), resubmittable(&original)).await,
        APP_MUTATE,
    );
    assert!(message.contains("rotated out"), "{message}");
    assert!(w.api.get(SPARK_APP, NS, "etl").is_none());
}

#[tokio::test]
async fn an_expired_stamp_is_refused_even_for_its_own_requester_and_name() {
    // The shortest validity allowed: stamp.validity may not be below server.reviewDeadline.
    let w = world_with(Setup {
        extra: "  applyTimeout: 1s\nserver:\n  reviewDeadline: 2s\n",
        validity: Some("2s"),
        ..Setup::default()
    })
    .await;
    // With it, a legitimate request is still admitted end to end.
    let original = w.admitted(&alice(), w.app("alice", "etl", NS)).await;
    let policy = format!("sparkward-{}", job_of(&original));
    w.delete(&alice(), SPARK_APP, NS, "etl").await;

    // Not a timing assertion: just comfortably past the 2 s validity.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let message = w.stamp_denial(
        w.api.create_as(&alice(), resubmittable(&original)).await,
        APP_MUTATE,
    );
    assert!(message.contains("expired"), "{message}");
    assert!(w.api.get(SPARK_APP, NS, "etl").is_none());
    assert!(w.policies().iter().all(|p| *p == policy));
}

// ---------------------------------------------------------------------------------------------
// Re-invocation, generateName, executors, retries
// ---------------------------------------------------------------------------------------------

/// A mutating webhook that behaves like spark-operator's pod webhook: it replaces the Spark
/// container's securityContext wholesale. Its configuration's name sorts after `sparkward`, so
/// the API server calls it after sparkward.
fn install_spark_operator_like_webhook(w: &World, hook: &TestHook) {
    hook.on("/mutate-pods", |_| {
        Answer::patch(json!([{
            "op": "add", "path": "/spec/containers/0/securityContext",
            "value": { "runAsUser": 185 },
        }]))
    });
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
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
}

#[tokio::test]
async fn a_later_webhook_that_replaces_the_security_context_gets_sparkward_reinvoked_and_one_policy()
 {
    let w = world().await;
    let hook = TestHook::start().await;
    install_spark_operator_like_webhook(&w, &hook);

    let stored = w
        .admitted(&alice(), w.driver("alice", "wordcount-driver"))
        .await;

    // The other webhook ran after sparkward and replaced the hardened context it saw.
    let received = hook.received();
    assert_eq!(received.len(), 1);
    let seen = &received[0].request["object"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(seen["readOnlyRootFilesystem"], true, "{seen}");

    // Stored hardened: sparkward's re-invocation restored what was replaced.
    let container = &stored["spec"]["containers"][0]["securityContext"];
    assert_eq!(container["runAsUser"], 185, "{container}");
    assert_eq!(container["readOnlyRootFilesystem"], true, "{container}");
    assert_eq!(container["allowPrivilegeEscalation"], false, "{container}");
    assert_eq!(
        container["capabilities"]["drop"],
        json!(["ALL"]),
        "{container}"
    );
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(stored.clone()).unwrap();
    let violations = support::pss::restricted_violations(&pod);
    assert!(violations.is_empty(), "{violations:?}");

    // sparkward: two mutating calls with their own uids (the second a re-invocation that starts
    // nothing), one validating call; one job, one policy.
    let calls: Vec<_> = w
        .api
        .admission_calls()
        .into_iter()
        .filter(|c| c.resource == "pods")
        .collect();
    let order: Vec<(&str, u8)> = calls
        .iter()
        .map(|c| (c.webhook.as_str(), c.round))
        .collect();
    assert_eq!(
        order,
        [
            (POD_MUTATE, 0),
            ("mutate-pods.sparkoperator.k8s.io", 0),
            (POD_MUTATE, 1),
            (POD_VALIDATE, 0),
        ]
    );
    assert!(calls.iter().all(|c| c.allowed));
    assert_ne!(calls[0].uid, calls[2].uid);
    assert_ne!(calls[2].uid, calls[3].uid);
    let annotations = |i: usize| calls[i].response.clone().unwrap()["auditAnnotations"].clone();
    assert_eq!(annotations(0)["identity-source"], "token");
    assert_eq!(annotations(2)["identity-source"], "reinvocation");
    assert_eq!(annotations(2)["job-id"], job_of(&stored));
    assert!(calls[2].changed, "the re-invocation re-hardened the pod");
    let audited = w.audited("Pod", "wordcount-driver", 3).await;
    let sources: Vec<(&str, &str)> = audited
        .iter()
        .map(|l| {
            (
                l["webhook"].as_str().unwrap(),
                l["identitySource"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("mutate", "token"),
            ("mutate", "reinvocation"),
            ("validate", "token")
        ]
    );
    assert_eq!(
        w.policies(),
        BTreeSet::from([format!("sparkward-{}", job_of(&stored))])
    );
}

/// A spark-submit style driver created with `generateName` only.
fn generated_driver(w: &World, subject: &str) -> Value {
    let mut pod = w.driver(subject, "unused");
    pod["metadata"].as_object_mut().unwrap().remove("name");
    pod["metadata"]["generateName"] = json!("wordcount-driver-");
    pod
}

#[tokio::test]
async fn a_generate_name_driver_is_admitted_and_its_stamp_does_not_admit_a_named_pod() {
    let w = world().await;
    let stored = w.admitted(&alice(), generated_driver(&w, "alice")).await;
    let name = stored["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("wordcount-driver-") && name.len() > 17,
        "{name}"
    );
    // The stamp was made before the name existed: it binds the prefix.
    assert_eq!(stamp_field(&stored, 3), "g", "{}", stamp_of(&stored));
    let calls = w.calls_for(name);
    assert!(calls.iter().all(|(_, allowed)| *allowed), "{calls:?}");
    assert_eq!(w.policies().len(), 1);

    // Its identity copied onto a pod with a name of its own.
    let mut named = w.driver("alice", "wordcount-driver-copy");
    copy_identity(&stored, &mut named);
    let message = w.stamp_denial(w.api.create_as(&alice(), named).await, POD_MUTATE);
    assert!(message.contains("unassigned name"), "{message}");
    assert!(w.api.get(POD, NS, "wordcount-driver-copy").is_none());
    assert_eq!(w.policies().len(), 1);
}

/// `kubectl get pod -o json` of a generateName pod shows both `name` and `generateName`; edited
/// to another name and created again, the name is explicit and the API server ignores the
/// prefix. No mutating call of a real generateName request ever sees a name (the API server
/// generates it after the mutating webhooks), so a prefix-bound stamp on a named object in a
/// mutating call can only be a copy.
#[tokio::test]
async fn a_generate_name_stamp_copied_with_its_prefix_onto_an_explicitly_named_pod_is_denied() {
    let w = world().await;
    let stored = w.admitted(&alice(), generated_driver(&w, "alice")).await;
    let mut copy = resubmittable(&stored);
    copy["metadata"]["name"] = json!("wordcount-driver-copy");
    assert_eq!(copy["metadata"]["generateName"], "wordcount-driver-");
    let message = w.stamp_denial(w.api.create_as(&alice(), copy).await, POD_MUTATE);
    assert!(message.contains("unassigned name"), "{message}");
    assert!(w.api.get(POD, NS, "wordcount-driver-copy").is_none());
    assert_eq!(w.policies().len(), 1);
}

/// The residual for generateName: within its validity, the same requester can replay a
/// prefix-bound stamp onto another pod with the same prefix (no deletion needed, since each
/// gets a new name). It carries her own verified identity and starts nothing new.
#[tokio::test]
async fn documented_residual_the_same_requester_may_replay_a_generate_name_stamp_onto_the_same_prefix_without_a_new_policy()
 {
    let w = world().await;
    let stored = w.admitted(&alice(), generated_driver(&w, "alice")).await;
    let mut again = resubmittable(&stored);
    again["metadata"].as_object_mut().unwrap().remove("name");
    let replayed = w.admitted(&alice(), again).await;
    assert_ne!(replayed["metadata"]["name"], stored["metadata"]["name"]);
    assert_eq!(job_of(&replayed), job_of(&stored));
    assert_eq!(w.policies().len(), 1);

    // bob cannot.
    let mut his = resubmittable(&stored);
    his["metadata"].as_object_mut().unwrap().remove("name");
    let message = w.stamp_denial(w.api.create_as(&bob(), his).await, POD_MUTATE);
    assert!(message.contains(MISMATCH), "{message}");
}

#[tokio::test]
async fn an_executors_stamp_is_bound_to_its_drivers_token_and_another_driver_of_the_same_account_cannot_replay_it()
 {
    let w = world().await;
    let bound_to = |driver: &Value| {
        User::bound_to_pod(
            NS,
            "spark",
            driver["metadata"]["name"].as_str().unwrap(),
            driver["metadata"]["uid"].as_str().unwrap(),
        )
    };
    let executor_of = |driver: &Value, n: u32| {
        let name = driver["metadata"]["name"].as_str().unwrap();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{name}-exec-{n}"), "namespace": NS,
                "labels": { "spark-role": "executor", "spark-exec-id": n.to_string() },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": name,
                    "uid": driver["metadata"]["uid"], "controller": true }],
            },
            "spec": { "serviceAccountName": "spark",
                "containers": [{ "name": "spark-kubernetes-executor", "image": "apache/spark:4.0.4" }] },
        })
    };
    // Two jobs in one namespace whose drivers run as the same service account.
    let alices_driver = w
        .admitted(&alice(), w.driver("alice", "alice-driver"))
        .await;
    let bobs_driver = w.admitted(&bob(), w.driver("bob", "bob-driver")).await;
    let alices_exec = w
        .admitted(&bound_to(&alices_driver), executor_of(&alices_driver, 1))
        .await;
    assert_eq!(job_of(&alices_exec), job_of(&alices_driver));
    assert_eq!(
        stamp_field(&alices_exec, 4),
        "p",
        "{}",
        stamp_of(&alices_exec)
    );
    let bobs_exec = w
        .admitted(&bound_to(&bobs_driver), executor_of(&bobs_driver, 1))
        .await;
    assert_eq!(job_of(&bobs_exec), job_of(&bobs_driver));
    assert_eq!(w.policies().len(), 2);

    // bob's driver may not delete alice's executor (ownership)...
    let refused = w
        .api
        .request_as(
            &bound_to(&bobs_driver),
            Method::DELETE,
            &format!("/api/v1/namespaces/{NS}/pods/alice-driver-exec-1"),
            None,
            None,
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("belongs to job"),
        "{}",
        refused.body
    );
    // ...and once alice's own driver has deleted it, bob's cannot recreate it, stamp and all.
    w.delete(&bound_to(&alices_driver), POD, NS, "alice-driver-exec-1")
        .await;
    let message = w.stamp_denial(
        w.api
            .create_as(&bound_to(&bobs_driver), resubmittable(&alices_exec))
            .await,
        POD_MUTATE,
    );
    assert!(message.contains(MISMATCH), "{message}");
    assert!(w.api.get(POD, NS, "alice-driver-exec-1").is_none());
    assert_eq!(w.policies().len(), 2);
}

#[tokio::test]
async fn a_retried_mutating_call_with_the_same_uid_gets_the_same_job_and_still_one_policy() {
    let w = world().await;
    let client = w.server.client(HttpVersion::Http1);
    let review = Review::spark_app(w.app("alice", "etl", NS)).user("oidc:alice");
    let body = review.build();
    // The API server resends the same review (same uid) after a transport error.
    let (status, first) = client.review("/mutate", &body).await;
    assert_eq!(status, 200);
    let (status, retried) = client.review("/mutate", &body).await;
    assert_eq!(status, 200);
    for answer in [&first, &retried] {
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        assert_eq!(answer["response"]["uid"], body["request"]["uid"]);
    }
    let job = answered_job(&first);
    assert_eq!(answered_job(&retried), job);
    assert_eq!(w.policies(), BTreeSet::from([format!("sparkward-{job}")]));

    // The object of the answer that counted passes the validating call of the same request.
    let object = patched(&body, &retried);
    assert_eq!(job_of(&object), job);
    let (status, validated) = client
        .review("/validate", &review.next_call(object, true).build())
        .await;
    assert_eq!(status, 200);
    assert_eq!(validated["response"]["allowed"], true, "{validated}");
}
