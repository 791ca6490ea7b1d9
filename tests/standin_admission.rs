//! The stand-in API server's admission chain, proven with a tiny recording webhook (what each
//! call carries, in which order, and what the chain does with the answers), and then with the
//! real sparkward behind the project's own webhook configurations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use base64::Engine;
use http::Method;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sparkward::core::labels::{is_job_id, job_id_for_test, legacy_user_label, user_label};

use support::apiserver::{
    AUTHENTICATED, CNP, Condition, DEFAULT_AUDIENCE, FakeApiServer, POD, Rule, RuleTarget,
    SERVICE_ACCOUNT, SPARK_APP, User, WebhookTarget,
};
use support::scenario::{Idp, mk_spark_app};
use support::testhook::{Answer, TestHook};
use support::webhook::{Options, Sparkward};

const NS: &str = "jobs";
const PODS: &str = "/api/v1/namespaces/jobs/pods";

fn mk_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    })
}

fn rule(resources: &[&str], operations: &[&str]) -> Value {
    json!({
        "apiGroups": [""], "apiVersions": ["v1"], "resources": resources,
        "operations": operations, "scope": "Namespaced",
    })
}

/// A webhook calling the test hook at `path` through a service reference, for namespaces
/// labelled `admission=on`.
fn mk_hook(name: &str, path: &str, rules: Value) -> Value {
    json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": { "service": { "name": "hook", "namespace": "hooks", "path": path } },
        "rules": rules,
        "namespaceSelector": { "matchLabels": { "admission": "on" } },
        "sideEffects": "None",
        "timeoutSeconds": 5,
    })
}

fn config(kind: &str, name: &str, webhooks: Vec<Value>) -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": { "name": name },
        "webhooks": webhooks,
    })
    .to_string()
}

fn mutating(name: &str, webhooks: Vec<Value>) -> String {
    config("MutatingWebhookConfiguration", name, webhooks)
}

fn validating(name: &str, webhooks: Vec<Value>) -> String {
    config("ValidatingWebhookConfiguration", name, webhooks)
}

async fn setup() -> (FakeApiServer, TestHook) {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({ "admission": "on" }));
    let hook = TestHook::start().await;
    (api, hook)
}

fn alice() -> User {
    User::new("oidc:alice")
}

fn paths(hook: &TestHook) -> Vec<String> {
    hook.received().into_iter().map(|r| r.path).collect()
}

fn add_label(key: &str, value: &str) -> Answer {
    Answer::patch(json!([
        { "op": "add", "path": format!("/metadata/labels/{key}"), "value": value }
    ]))
}

#[tokio::test]
async fn every_call_gets_a_fresh_uid_and_validation_sees_the_named_final_object() {
    let (api, hook) = setup().await;
    hook.on("/m1", |_| {
        Answer::patch(json!([{ "op": "add", "path": "/metadata/labels", "value": { "a": "1" } }]))
    });
    hook.on("/m2", |_| add_label("b", "2"));
    let pods = || rule(&["pods"], &["CREATE"]);
    api.install_webhooks(
        &mutating(
            "m",
            vec![
                mk_hook("m1.example.io", "/m1", json!([pods()])),
                mk_hook("m2.example.io", "/m2", json!([pods()])),
            ],
        ),
        &hook.target(),
    );
    api.install_webhooks(
        &validating("v", vec![mk_hook("v1.example.io", "/v1", json!([pods()]))]),
        &hook.target(),
    );

    let mut pod = mk_pod("");
    pod["metadata"] = json!({ "generateName": "p-", "namespace": NS });
    let stored = api.create_as(&alice(), pod).await.unwrap();

    let received = hook.received();
    assert_eq!(paths(&hook), ["/m1", "/m2", "/v1"]);
    let uids: HashSet<&str> = received.iter().map(|r| r.uid()).collect();
    assert_eq!(uids.len(), 3, "each call has its own uid: {uids:?}");
    let recorded: Vec<String> = api.admission_calls().into_iter().map(|c| c.uid).collect();
    let sent: Vec<String> = received.iter().map(|r| r.uid().to_string()).collect();
    assert_eq!(recorded, sent);
    for r in &received {
        assert_eq!(r.query, "timeout=5s");
        assert_eq!(r.request["operation"], "CREATE");
        assert_eq!(r.request["options"]["kind"], "CreateOptions");
        assert_eq!(r.request["dryRun"], false);
    }
    // Mutating webhooks run before the registry names the object and gives it a uid.
    for m in &received[..2] {
        assert!(m.request.get("name").is_none(), "{}", m.request);
        assert!(m.request["object"]["metadata"]["uid"].is_null());
        assert!(m.request["object"]["metadata"]["creationTimestamp"].is_null());
        assert_eq!(m.request["object"]["metadata"]["generateName"], "p-");
    }
    assert_eq!(
        received[1].request["object"]["metadata"]["labels"],
        json!({ "a": "1" })
    );
    let validated = &received[2].request;
    let name = stored["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("p-") && name.len() == 7, "{name}");
    assert_eq!(validated["name"], name);
    assert_eq!(validated["object"]["metadata"]["name"], name);
    assert_eq!(
        validated["object"]["metadata"]["uid"],
        stored["metadata"]["uid"]
    );
    assert!(validated["object"]["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        validated["object"]["metadata"]["labels"],
        json!({ "a": "1", "b": "2" })
    );
    assert_eq!(stored["metadata"]["labels"], json!({ "a": "1", "b": "2" }));
    assert_eq!(
        api.get(POD, NS, name).unwrap()["metadata"]["uid"],
        stored["metadata"]["uid"]
    );
}

#[tokio::test]
async fn earlier_if_needed_webhooks_are_reinvoked_once_after_a_later_change() {
    let (api, hook) = setup().await;
    // r1 (IfNeeded) changes nothing; c1 (Never) changes the pod; r2 (IfNeeded) changes it too.
    hook.on("/c1", |_| {
        Answer::patch(json!([{ "op": "add", "path": "/metadata/labels", "value": { "c1": "x" } }]))
    });
    hook.on("/r2", |req| {
        if req["object"]["metadata"]["labels"]["r2"].is_null() {
            add_label("r2", "x")
        } else {
            Answer::allow()
        }
    });
    let pods = || json!([rule(&["pods"], &["CREATE"])]);
    let mut r1 = mk_hook("r1.example.io", "/r1", pods());
    r1["reinvocationPolicy"] = json!("IfNeeded");
    let c1 = mk_hook("c1.example.io", "/c1", pods());
    let mut r2 = mk_hook("r2.example.io", "/r2", pods());
    r2["reinvocationPolicy"] = json!("IfNeeded");
    api.install_webhooks(&mutating("chain", vec![r1, c1, r2]), &hook.target());

    api.create_as(&alice(), mk_pod("p")).await.unwrap();

    // r1 is called again because c1 changed the pod after it; r2 changed the pod itself and
    // nothing changed it afterwards, so it is not; c1 is Never.
    assert_eq!(paths(&hook), ["/r1", "/c1", "/r2", "/r1"]);
    let calls = api.admission_calls();
    let rounds: Vec<(String, u8, bool)> = calls
        .iter()
        .map(|c| (c.webhook.clone(), c.round, c.changed))
        .collect();
    assert_eq!(
        rounds,
        [
            ("r1.example.io".to_string(), 0, false),
            ("c1.example.io".to_string(), 0, true),
            ("r2.example.io".to_string(), 0, true),
            ("r1.example.io".to_string(), 1, false),
        ]
    );
    let received = hook.received();
    assert_ne!(received[0].uid(), received[3].uid());
    assert_eq!(
        received[3].request["object"]["metadata"]["labels"],
        json!({ "c1": "x", "r2": "x" })
    );
}

#[tokio::test]
async fn a_patch_that_changes_nothing_reinvokes_nobody() {
    let (api, hook) = setup().await;
    hook.on("/same", |req| {
        Answer::patch(json!([
            { "op": "replace", "path": "/metadata/name", "value": req["object"]["metadata"]["name"] }
        ]))
    });
    let pods = || json!([rule(&["pods"], &["CREATE"])]);
    let mut r1 = mk_hook("r1.example.io", "/r1", pods());
    r1["reinvocationPolicy"] = json!("IfNeeded");
    api.install_webhooks(
        &mutating(
            "chain",
            vec![r1, mk_hook("same.example.io", "/same", pods())],
        ),
        &hook.target(),
    );
    api.create_as(&alice(), mk_pod("p")).await.unwrap();
    assert_eq!(paths(&hook), ["/r1", "/same"]);
}

#[tokio::test]
async fn denials_carry_the_webhook_name_and_store_nothing() {
    let (api, hook) = setup().await;
    hook.on("/v1", |req| {
        if req["object"]["metadata"]["name"] == "quiet" {
            Answer::deny_with(json!({ "message": "no reason given" }))
        } else {
            Answer::deny("pods named like this are not allowed")
        }
    });
    api.install_webhooks(
        &validating(
            "v",
            vec![mk_hook(
                "v1.example.io",
                "/v1",
                json!([rule(&["pods"], &["CREATE"])]),
            )],
        ),
        &hook.target(),
    );

    let status = api.create_as(&alice(), mk_pod("loud")).await.unwrap_err();
    assert_eq!(status["code"], 403);
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "admission webhook \"v1.example.io\" denied the request: pods named like this are not allowed"
    );
    // A denial without a code is a 400 without a reason, as kube-apiserver answers it.
    let status = api.create_as(&alice(), mk_pod("quiet")).await.unwrap_err();
    assert_eq!(status["code"], 400);
    assert!(status.get("reason").is_none(), "{status}");
    assert!(api.get(POD, NS, "loud").is_none());
    let calls = api.admission_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| !c.allowed && c.error.is_none()));
}

#[tokio::test]
async fn a_dry_run_reaches_the_webhooks_and_stores_nothing() {
    let (api, hook) = setup().await;
    let pods = || json!([rule(&["pods"], &["CREATE"])]);
    api.install_webhooks(
        &mutating("m", vec![mk_hook("m.example.io", "/m", pods())]),
        &hook.target(),
    );
    api.install_webhooks(
        &validating("v", vec![mk_hook("v.example.io", "/v", pods())]),
        &hook.target(),
    );
    let reply = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}?dryRun=All&fieldManager=tester"),
            None,
            Some(&mk_pod("dry")),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.body["metadata"]["uid"].is_string());
    assert!(api.get(POD, NS, "dry").is_none());
    for r in hook.received() {
        assert_eq!(r.request["dryRun"], true);
        assert_eq!(
            r.request["options"],
            json!({
                "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                "dryRun": ["All"], "fieldManager": "tester",
            })
        );
    }
    assert_eq!(hook.received().len(), 2);
}

#[tokio::test]
async fn impersonated_users_reach_webhooks_with_uid_groups_and_extras() {
    let (api, hook) = setup().await;
    api.install_webhooks(
        &validating(
            "v",
            vec![mk_hook(
                "v.example.io",
                "/v",
                json!([rule(&["configmaps"], &["CREATE"])]),
            )],
        ),
        &hook.target(),
    );
    let driver = User::bound_to_pod(NS, "spark", "drv", "pod-uid-1").uid("u-7");
    let cms: Api<ConfigMap> = Api::namespaced(api.client_as(&driver), NS);
    let cm = serde_json::from_value(json!({ "metadata": { "name": "a" } })).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    // A plain client is the stand-in's admin; the kubeconfig token is sparkward's account.
    let cm = serde_json::from_value(json!({ "metadata": { "name": "b" } })).unwrap();
    Api::<ConfigMap>::namespaced(api.client(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let who = hook
        .received()
        .into_iter()
        .map(|r| r.request["userInfo"].clone())
        .collect::<Vec<_>>();
    assert_eq!(
        who[0],
        json!({
            "username": "system:serviceaccount:jobs:spark",
            "uid": "u-7",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:jobs", AUTHENTICATED],
            "extra": {
                "authentication.kubernetes.io/pod-name": ["drv"],
                "authentication.kubernetes.io/pod-uid": ["pod-uid-1"],
            },
        })
    );
    assert_eq!(
        who[1],
        json!({ "username": "system:admin", "groups": ["system:masters", AUTHENTICATED] })
    );
    // Explicit groups replace the service-account ones; system:authenticated is always added.
    let reply = api
        .create_as(
            &User::new("bob").group("data-team"),
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": NS } }),
        )
        .await;
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(
        hook.received()[2].request["userInfo"],
        json!({ "username": "bob", "groups": ["data-team", AUTHENTICATED] })
    );
    // Extra keys travel percent-escaped in header names, so they arrive lower-cased.
    let carol = User::new("carol").extra("example.com/Team", &["a", "b"]);
    let reply = api
        .create_as(
            &carol,
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "d", "namespace": NS } }),
        )
        .await;
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(
        hook.received()[3].request["userInfo"]["extra"],
        json!({ "example.com/team": ["a", "b"] })
    );
}

#[tokio::test]
async fn updates_patches_and_apply_send_old_and_new_objects_with_update_options() {
    let (api, hook) = setup().await;
    api.insert(mk_pod("p"));
    api.install_webhooks(
        &validating(
            "v",
            vec![mk_hook(
                "v.example.io",
                "/v",
                json!([rule(&["pods"], &["CREATE", "UPDATE"])]),
            )],
        ),
        &hook.target(),
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(api.client_as(&alice()), NS);
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "x": "1" } } })),
    )
    .await
    .unwrap();
    let apply = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "labels": { "y": "2" } },
    });
    pods.patch(
        "p",
        &PatchParams::apply("tester").force(),
        &Patch::Apply(&apply),
    )
    .await
    .unwrap();
    let created = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "q" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    });
    pods.patch("q", &PatchParams::apply("tester"), &Patch::Apply(&created))
        .await
        .unwrap();

    let received = hook.received();
    assert_eq!(received.len(), 3);
    let merge = &received[0].request;
    assert_eq!(merge["operation"], "UPDATE");
    assert_eq!(
        merge["options"],
        json!({ "kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1" })
    );
    assert_eq!(merge["object"]["metadata"]["labels"], json!({ "x": "1" }));
    assert!(merge["oldObject"]["metadata"]["labels"].is_null());
    let applied = &received[1].request;
    assert_eq!(applied["operation"], "UPDATE");
    assert_eq!(applied["options"]["fieldManager"], "tester");
    assert_eq!(
        applied["oldObject"]["metadata"]["labels"],
        json!({ "x": "1" })
    );
    assert_eq!(applied["object"]["metadata"]["labels"]["y"], "2");
    // Apply to a missing object is a CREATE with CreateOptions.
    let apply_create = &received[2].request;
    assert_eq!(apply_create["operation"], "CREATE");
    assert_eq!(apply_create["name"], "q");
    assert_eq!(
        apply_create["options"],
        json!({ "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "tester" })
    );
}

#[tokio::test]
async fn deletes_send_the_stored_object_and_the_delete_options() {
    let (api, hook) = setup().await;
    let stored = api.insert(mk_pod("p"));
    hook.on("/m", |_| add_label("late", "x"));
    let delete = || json!([rule(&["pods"], &["DELETE"])]);
    api.install_webhooks(
        &validating("v", vec![mk_hook("v.example.io", "/v", delete())]),
        &hook.target(),
    );
    let uid = stored["metadata"]["uid"].as_str().unwrap();
    let options = json!({ "preconditions": { "uid": uid }, "propagationPolicy": "Background" });
    let reply = api
        .request_as(
            &alice(),
            Method::DELETE,
            &format!("{PODS}/p"),
            None,
            Some(&options),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(api.get(POD, NS, "p").is_none());
    let request = &hook.received()[0].request;
    assert_eq!(request["operation"], "DELETE");
    assert_eq!(request["name"], "p");
    assert!(request["object"].is_null());
    assert_eq!(request["oldObject"]["metadata"]["uid"], uid);
    assert_eq!(
        request["options"],
        json!({
            "kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1",
            "preconditions": { "uid": uid }, "propagationPolicy": "Background",
        })
    );
    // A mutating webhook cannot patch a deletion: there is no object to patch.
    api.insert(mk_pod("p2"));
    api.install_webhooks(
        &mutating("m", vec![mk_hook("m.example.io", "/m", delete())]),
        &hook.target(),
    );
    let reply = api
        .request_as(&alice(), Method::DELETE, &format!("{PODS}/p2"), None, None)
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body["message"],
        "Internal error occurred: admission webhook \"m.example.io\" attempted to modify the object, which is not supported for this operation"
    );
    assert!(api.get(POD, NS, "p2").is_some());
}

#[tokio::test]
async fn status_and_ephemeral_container_writes_are_admitted_as_their_subresources() {
    let (api, hook) = setup().await;
    api.insert(mk_pod("p"));
    api.install_webhooks(
        &validating(
            "v",
            vec![
                mk_hook(
                    "main.example.io",
                    "/main",
                    json!([rule(&["pods"], &["UPDATE"])]),
                ),
                mk_hook(
                    "subs.example.io",
                    "/subs",
                    json!([rule(
                        &["pods/status", "pods/ephemeralcontainers"],
                        &["UPDATE"]
                    )]),
                ),
            ],
        ),
        &hook.target(),
    );
    let merge = Some("application/merge-patch+json");
    let reply = api
        .request_as(
            &alice(),
            Method::PATCH,
            &format!("{PODS}/p/status"),
            merge,
            Some(&json!({ "status": { "message": "hello" } })),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = api
        .request_as(
            &alice(),
            Method::PATCH,
            &format!("{PODS}/p/ephemeralcontainers"),
            Some("application/strategic-merge-patch+json"),
            Some(&json!({ "spec": { "ephemeralContainers": [{ "name": "debug", "image": "busybox" }] } })),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Only the webhook whose rules name the subresources is called.
    assert_eq!(paths(&hook), ["/subs", "/subs"]);
    let received = hook.received();
    let status = &received[0].request;
    assert_eq!(
        (status["operation"].as_str(), status["subResource"].as_str()),
        (Some("UPDATE"), Some("status"))
    );
    assert_eq!(status["requestSubResource"], "status");
    assert_eq!(status["kind"]["kind"], "Pod");
    assert_eq!(status["object"]["status"]["message"], "hello");
    let debug = &received[1].request;
    assert_eq!(debug["subResource"], "ephemeralcontainers");
    assert_eq!(
        debug["kind"],
        json!({ "group": "", "version": "v1", "kind": "Pod" })
    );
    assert_eq!(
        debug["object"]["spec"]["ephemeralContainers"][0]["name"],
        "debug"
    );
    assert!(debug["oldObject"]["spec"]["ephemeralContainers"].is_null());
}

#[tokio::test]
async fn connect_requests_are_admitted_with_their_options_then_fail_without_a_node() {
    let (api, hook) = setup().await;
    api.insert(mk_pod("p"));
    hook.on("/connect", |req| {
        if req["name"] == "secret-pod" {
            Answer::deny("no shells here")
        } else {
            Answer::allow()
        }
    });
    api.install_webhooks(
        &validating(
            "v",
            vec![mk_hook(
                "connect.example.io",
                "/connect",
                json!([rule(
                    &["pods/exec", "pods/attach", "pods/portforward"],
                    &["CONNECT"]
                )]),
            )],
        ),
        &hook.target(),
    );
    let exec = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/p/exec?command=ls&command=-l&container=c&stdout=true&stderr=true"),
            None,
            None,
        )
        .await;
    assert_eq!(exec.status, 400);
    assert_eq!(exec.body["reason"], "BadRequest");
    assert_eq!(exec.body["message"], "pod p does not have a host assigned");
    let attach = api
        .request_as(
            &alice(),
            Method::GET,
            &format!("{PODS}/p/attach?stdin=true&tty=1"),
            None,
            None,
        )
        .await;
    assert_eq!(attach.status, 400);
    let forward = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/p/portforward?ports=8080&ports=9090"),
            None,
            None,
        )
        .await;
    assert_eq!(forward.status, 400);
    let wrong = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/p/exec?command=ls&container=zz"),
            None,
            None,
        )
        .await;
    assert_eq!(wrong.body["message"], "container zz is not valid for pod p");
    // Admission comes before the pod lookup: a denial wins over "not found".
    let denied = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/secret-pod/exec?command=sh"),
            None,
            None,
        )
        .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body["message"],
        "admission webhook \"connect.example.io\" denied the request: no shells here"
    );

    let requests: Vec<Value> = hook.received().into_iter().map(|r| r.request).collect();
    assert_eq!(requests.len(), 5);
    let exec = &requests[0];
    assert_eq!(exec["operation"], "CONNECT");
    assert_eq!(
        exec["kind"],
        json!({ "group": "", "version": "v1", "kind": "PodExecOptions" })
    );
    assert_eq!(exec["resource"]["resource"], "pods");
    assert_eq!(exec["subResource"], "exec");
    assert_eq!(exec["name"], "p");
    assert!(exec["options"].is_null() && exec.get("options").is_some());
    assert_eq!(
        exec["object"],
        json!({
            "kind": "PodExecOptions", "apiVersion": "v1", "stdout": true, "stderr": true,
            "container": "c", "command": ["ls", "-l"],
        })
    );
    assert_eq!(
        requests[1]["object"],
        json!({ "kind": "PodAttachOptions", "apiVersion": "v1", "stdin": true, "tty": true })
    );
    assert_eq!(
        requests[2]["object"],
        json!({ "kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [8080, 9090] })
    );
    assert_eq!(requests[2]["kind"]["kind"], "PodPortForwardOptions");
}

#[tokio::test]
async fn token_requests_are_admitted_and_answered_with_a_token_bound_to_the_pod() {
    let (api, hook) = setup().await;
    let sa = api.insert(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "spark", "namespace": NS },
    }));
    let mut pod = mk_pod("drv");
    pod["spec"]["serviceAccountName"] = json!("spark");
    let pod = api.insert(pod);
    let token_rule = || json!([rule(&["serviceaccounts/token"], &["CREATE"])]);
    api.install_webhooks(
        &mutating("m", vec![mk_hook("m.example.io", "/m", token_rule())]),
        &hook.target(),
    );
    api.install_webhooks(
        &validating("v", vec![mk_hook("v.example.io", "/v", token_rule())]),
        &hook.target(),
    );
    let bound =
        json!({ "kind": "Pod", "apiVersion": "v1", "name": "drv", "uid": pod["metadata"]["uid"] });
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": { "audiences": ["spark"], "boundObjectRef": bound },
    });
    let path = "/api/v1/namespaces/jobs/serviceaccounts/spark/token";
    let reply = api
        .request_as(&alice(), Method::POST, path, None, Some(&request))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let token = reply.body["status"]["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:jobs:spark");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        pod["metadata"]["uid"]
    );
    assert_eq!(claims["aud"], json!(["spark"]));
    assert!(reply.body["status"]["expirationTimestamp"].is_string());

    let received = hook.received();
    assert_eq!(paths(&hook), ["/m", "/v"]);
    let mutate = &received[0].request;
    assert_eq!(
        mutate["kind"],
        json!({ "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest" })
    );
    assert_eq!(
        mutate["resource"],
        json!({ "group": "", "version": "v1", "resource": "serviceaccounts" })
    );
    assert_eq!(mutate["subResource"], "token");
    assert_eq!(mutate["name"], "spark");
    assert_eq!(mutate["object"]["metadata"], json!({ "namespace": NS }));
    assert_eq!(mutate["object"]["spec"]["expirationSeconds"], 3600);
    assert_eq!(mutate["object"]["spec"]["boundObjectRef"], bound);
    let validate = &received[1].request;
    assert_eq!(validate["object"]["metadata"]["name"], "spark");
    assert_eq!(validate["object"]["metadata"]["uid"], sa["metadata"]["uid"]);
    assert_ne!(received[0].uid(), received[1].uid());

    // A token for another service account cannot be bound to this pod; the check comes after
    // admission. A missing service account is found between the two webhooks.
    let other = api.insert(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "other", "namespace": NS },
    }));
    assert!(other["metadata"]["uid"].is_string());
    let reply = api
        .request_as(
            &alice(),
            Method::POST,
            "/api/v1/namespaces/jobs/serviceaccounts/other/token",
            None,
            Some(&request),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body["message"],
        "cannot bind token for serviceaccount \"other\" to pod running with different serviceaccount name."
    );
    let no_bound =
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {} });
    let reply = api
        .request_as(
            &alice(),
            Method::POST,
            "/api/v1/namespaces/jobs/serviceaccounts/ghost/token",
            None,
            Some(&no_bound),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["message"], "serviceaccounts \"ghost\" not found");
    assert_eq!(paths(&hook), ["/m", "/v", "/m", "/v", "/m"]);
    let reply = api
        .request_as(
            &alice(),
            Method::POST,
            "/api/v1/namespaces/jobs/serviceaccounts/spark/token",
            None,
            Some(&no_bound),
        )
        .await;
    assert_eq!(reply.body["spec"]["audiences"], json!([DEFAULT_AUDIENCE]));
    assert!(api.get(SERVICE_ACCOUNT, NS, "spark").is_some());
}

#[tokio::test]
async fn binding_and_eviction_are_admitted_as_creates_of_their_own_kinds() {
    let (api, hook) = setup().await;
    api.insert(mk_pod("p"));
    api.install_webhooks(
        &validating(
            "v",
            vec![mk_hook(
                "v.example.io",
                "/v",
                json!([rule(&["pods/binding", "pods/eviction"], &["CREATE"])]),
            )],
        ),
        &hook.target(),
    );
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "p" },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "node-1" },
    });
    let reply = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/p/binding"),
            None,
            Some(&binding),
        )
        .await;
    assert_eq!(
        (reply.status, &reply.body["status"]),
        (201, &json!("Success"))
    );
    assert_eq!(api.get(POD, NS, "p").unwrap()["spec"]["nodeName"], "node-1");
    let again = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/p/binding"),
            None,
            Some(&binding),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(
        again.body["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\""
    );
    let eviction =
        json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "p" } });
    let reply = api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{PODS}/p/eviction"),
            None,
            Some(&eviction),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(api.get(POD, NS, "p").is_none());
    let kinds: Vec<Value> = hook
        .received()
        .iter()
        .map(|r| r.request["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            json!({ "group": "", "version": "v1", "kind": "Binding" }),
            json!({ "group": "", "version": "v1", "kind": "Binding" }),
            json!({ "group": "policy", "version": "v1", "kind": "Eviction" }),
        ]
    );
    assert!(
        hook.received()
            .iter()
            .all(|r| r.request["operation"] == "CREATE")
    );
}

#[tokio::test]
async fn an_unreachable_webhook_fails_the_request_unless_its_policy_is_ignore() {
    let (api, _hook) = setup().await;
    // A port nothing listens on: bind one, note it, close it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = WebhookTarget {
        base_url: format!("https://127.0.0.1:{port}"),
        ca_pem: _hook.ca_pem.clone(),
    };
    let mut webhook = mk_hook(
        "down.example.io",
        "/v",
        json!([rule(&["pods"], &["CREATE"])]),
    );
    webhook["timeoutSeconds"] = json!(2);
    api.install_webhooks(&validating("v", vec![webhook.clone()]), &down);
    let status = api.create_as(&alice(), mk_pod("p")).await.unwrap_err();
    assert_eq!(
        (status["code"].as_u64(), status["reason"].as_str()),
        (Some(500), Some("InternalError"))
    );
    let reason = format!(
        "failed calling webhook \"down.example.io\": failed to call webhook: Post \"https://127.0.0.1:{port}/v?timeout=2s\": dial tcp 127.0.0.1:{port}: connect: connection refused"
    );
    assert_eq!(
        status["message"],
        format!("Internal error occurred: {reason}")
    );
    assert_eq!(status["details"]["causes"][0]["message"], reason);
    assert!(api.get(POD, NS, "p").is_none());

    webhook["failurePolicy"] = json!("Ignore");
    api.install_webhooks(&validating("v", vec![webhook]), &down);
    api.create_as(&alice(), mk_pod("p")).await.unwrap();
    let calls = api.admission_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| !c.allowed && c.error.is_some()));
}

#[tokio::test]
async fn a_wrong_response_uid_or_an_http_error_is_a_failed_call() {
    let (api, hook) = setup().await;
    hook.on("/v", |req| {
        if req["object"]["metadata"]["name"] == "uid" {
            Answer::wrong_uid()
        } else {
            Answer::http_status(500)
        }
    });
    api.install_webhooks(
        &validating(
            "v",
            vec![mk_hook(
                "v.example.io",
                "/v",
                json!([rule(&["pods"], &["CREATE"])]),
            )],
        ),
        &hook.target(),
    );
    let status = api.create_as(&alice(), mk_pod("uid")).await.unwrap_err();
    let sent = hook.received()[0].uid().to_string();
    assert_eq!(
        status["message"],
        format!(
            "Internal error occurred: failed calling webhook \"v.example.io\": received invalid webhook response: expected response.uid=\"{sent}\", got \"not-the-request-uid\""
        )
    );
    let status = api.create_as(&alice(), mk_pod("http")).await.unwrap_err();
    assert_eq!(status["code"], 500);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("status code 500"),
        "{status}"
    );
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_within_its_timeout_fails_the_request() {
    let (api, hook) = setup().await;
    hook.on("/slow", |_| Answer::hang());
    let mut slow = mk_hook(
        "slow.example.io",
        "/slow",
        json!([rule(&["pods"], &["CREATE"])]),
    );
    slow["timeoutSeconds"] = json!(1);
    api.install_webhooks(&mutating("m", vec![slow]), &hook.target());
    let status = api.create_as(&alice(), mk_pod("p")).await.unwrap_err();
    assert_eq!(
        status["message"],
        format!(
            "Internal error occurred: failed calling webhook \"slow.example.io\": failed to call webhook: Post \"{}/slow?timeout=1s\": context deadline exceeded",
            hook.base_url
        )
    );
}

#[tokio::test]
async fn selectors_and_match_conditions_decide_which_webhooks_are_called() {
    let (api, hook) = setup().await;
    api.ensure_namespace("elsewhere", json!({}));
    let pods = || json!([rule(&["pods"], &["CREATE"])]);
    let mut labelled = mk_hook("labelled.example.io", "/labelled", pods());
    labelled["objectSelector"] =
        json!({ "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["db"] }] });
    let mut not_bob = mk_hook("not-bob.example.io", "/not-bob", pods());
    not_bob["matchConditions"] =
        json!([{ "name": "not-bob", "expression": "request.userInfo.username != 'bob'" }]);
    api.install_webhooks(&validating("v", vec![labelled, not_bob]), &hook.target());

    let mut db = mk_pod("db");
    db["metadata"]["labels"] = json!({ "tier": "db" });
    api.create_as(&alice(), db).await.unwrap();
    api.create_as(&User::new("bob"), mk_pod("web"))
        .await
        .unwrap();
    let mut outside = mk_pod("outside");
    outside["metadata"]["namespace"] = json!("elsewhere");
    api.create_as(&alice(), outside).await.unwrap();

    let seen: Vec<(String, String)> = hook
        .received()
        .into_iter()
        .map(|r| (r.path, r.request["name"].as_str().unwrap().to_string()))
        .collect();
    let mut seen = seen;
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/labelled".to_string(), "db".to_string()),
            ("/not-bob".to_string(), "db".to_string()),
        ]
    );
    // An expression outside the understood subset is refused, not ignored.
    let mut odd = mk_hook("odd.example.io", "/odd", pods());
    odd["matchConditions"] =
        json!([{ "name": "size", "expression": "size(object.spec.containers) > 1" }]);
    let refused = api.try_install_webhooks(&validating("odd", vec![odd]), &hook.target());
    assert!(refused.unwrap_err().contains("matchConditions[size]"));
}

#[tokio::test]
async fn webhook_warnings_reach_the_client_as_warning_headers() {
    let (api, hook) = setup().await;
    hook.on("/m", |_| {
        Answer::allow().warn("scope stream:x is not mapped")
    });
    hook.on("/v", |_| Answer::allow().warn("say \"hi\""));
    let pods = || json!([rule(&["pods"], &["CREATE"])]);
    api.install_webhooks(
        &mutating("m", vec![mk_hook("m.example.io", "/m", pods())]),
        &hook.target(),
    );
    api.install_webhooks(
        &validating("v", vec![mk_hook("v.example.io", "/v", pods())]),
        &hook.target(),
    );
    let reply = api
        .request_as(&alice(), Method::POST, PODS, None, Some(&mk_pod("p")))
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.warnings,
        ["scope stream:x is not mapped", "say \"hi\""]
    );
}

#[test]
fn rules_match_resources_subresources_and_wildcards_like_upstream() {
    let mk = |resources: &[&str], scope: &str| Rule {
        operations: vec!["*".into()],
        api_groups: vec!["*".into()],
        api_versions: vec!["*".into()],
        resources: resources.iter().map(|r| r.to_string()).collect(),
        scope: scope.into(),
    };
    let target = |resource: &'static str, sub: &'static str, ns: &'static str| RuleTarget {
        operation: "UPDATE",
        group: "",
        version: "v1",
        resource,
        subresource: sub,
        namespace: ns,
    };
    let cases = [
        (mk(&["pods"], "*"), target("pods", "", "a"), true),
        (mk(&["pods"], "*"), target("pods", "status", "a"), false),
        (
            mk(&["pods/status"], "*"),
            target("pods", "status", "a"),
            true,
        ),
        (mk(&["pods/*"], "*"), target("pods", "exec", "a"), true),
        // `pods/*` also covers the pod itself: `*` matches the empty subresource upstream.
        (mk(&["pods/*"], "*"), target("pods", "", "a"), true),
        (mk(&["*"], "*"), target("secrets", "", "a"), true),
        (mk(&["*"], "*"), target("pods", "status", "a"), false),
        (mk(&["*/*"], "*"), target("pods", "status", "a"), true),
        (mk(&["*/status"], "*"), target("pods", "status", "a"), true),
        (mk(&["pods"], "Cluster"), target("pods", "", "a"), false),
        // A namespace's request carries its own name as namespace, yet it is cluster-scoped.
        (
            mk(&["namespaces"], "Cluster"),
            target("namespaces", "", "a"),
            true,
        ),
        (
            mk(&["namespaces"], "Namespaced"),
            target("namespaces", "", "a"),
            false,
        ),
        (mk(&["pods"], "Namespaced"), target("pods", "", ""), false),
    ];
    for (rule, target, expected) in cases {
        assert_eq!(rule.matches(&target), expected, "{rule:?} {target:?}");
    }
    let creates_only = Rule {
        operations: vec!["CREATE".into()],
        ..mk(&["pods"], "*")
    };
    assert!(!creates_only.matches(&target("pods", "", "a")));
}

#[test]
fn match_conditions_evaluate_the_cel_subset_and_refuse_the_rest() {
    let request = json!({
        "userInfo": { "username": "system:serviceaccount:sparkward-system:sparkward", "groups": ["g"] },
        "object": { "metadata": { "labels": { "a": "b" } } },
        "oldObject": null,
    });
    let eval = |e: &str| Condition::parse(e).unwrap().eval(&request);
    assert_eq!(
        eval("request.userInfo.username != 'system:serviceaccount:sparkward-system:sparkward'"),
        Ok(false)
    );
    assert_eq!(
        eval("'g' in request.userInfo.groups && !('h' in request.userInfo.groups)"),
        Ok(true)
    );
    assert_eq!(
        eval("object.metadata.labels['a'] == \"b\" || false"),
        Ok(true)
    );
    assert_eq!(eval("has(object.metadata.annotations)"), Ok(false));
    assert_eq!(eval("request.userInfo.username in ['x', 'y']"), Ok(false));
    assert!(
        eval("object.metadata.annotations.x == 'y'")
            .unwrap_err()
            .contains("no such key")
    );
    assert!(Condition::parse("size(object.spec) > 1").is_err());
    assert!(Condition::parse("authorizer.group('').check('x')").is_err());
}

/// The project's own webhook configurations, registered as shipped, against the test hook.
#[tokio::test]
async fn sparkwards_webhook_configuration_routes_spark_objects_and_exempts_its_own_account() {
    let api = FakeApiServer::start().await;
    api.ensure_namespace("spark-jobs", json!({ "sparkward.io/enforce": "true" }));
    let hook = TestHook::start().await;
    api.install_sparkward_webhooks(&hook.base_url, &hook.ca_pem);
    let app = mk_spark_app("etl", "spark-jobs", "not-a-real-token");
    api.create_as(&alice(), app).await.unwrap();
    assert_eq!(paths(&hook), ["/mutate", "/validate"]);
    let calls = api.admission_calls();
    assert_eq!(calls[0].webhook, "sparkapplications.mutate.sparkward.io");
    assert_eq!(calls[1].webhook, "sparkapplications.validate.sparkward.io");
    assert!(
        hook.received()
            .iter()
            .all(|r| r.query == format!("timeout={}s", if r.path == "/mutate" { 10 } else { 5 }))
    );
    // A CNP written by sparkward's own account skips the CNP webhook (its matchCondition);
    // anyone else's reaches it.
    let cnp = json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": { "name": "x", "namespace": "spark-jobs" },
        "specs": [{
            "endpointSelector": { "matchLabels": { "a": "b" } },
            "egress": [{ "toEntities": ["world"] }],
        }],
    });
    api.create_as(
        &User::service_account("sparkward-system", "sparkward"),
        cnp.clone(),
    )
    .await
    .unwrap();
    assert_eq!(hook.received().len(), 2);
    let mut other = cnp;
    other["metadata"]["name"] = json!("y");
    api.create_as(&alice(), other).await.unwrap();
    assert_eq!(
        api.admission_calls()[2].webhook,
        "ciliumnetworkpolicies.validate.sparkward.io"
    );
    assert!(api.get(CNP, "spark-jobs", "y").is_some());
}

/// alice submits a SparkApplication through the stand-in with sparkward's webhooks installed,
/// exactly as in a cluster: sparkward mutates it (token out, identity in, policy created), and
/// its validating webhook, called with a fresh uid, accepts the final object.
#[tokio::test]
async fn alice_creates_a_spark_application_through_sparkwards_admission_chain() {
    let api = FakeApiServer::start().await;
    api.ensure_namespace("spark-jobs", json!({ "sparkward.io/enforce": "true" }));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Sparkward::start(Options {
        config: Some(idp.config("")),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        ..Options::default()
    })
    .await;
    api.install_sparkward_webhooks(&server.base_url(), &server.certs.ca_pem);

    let token = idp.token("alice", "data:read:postgres-main");
    let created = api
        .create_as(&alice(), mk_spark_app("alice-etl", "spark-jobs", &token))
        .await;
    let calls = api.admission_calls();
    let summary: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{} {} allowed={} {}",
                c.webhook,
                c.uid,
                c.allowed,
                c.response.clone().unwrap_or_default()["status"]
            )
        })
        .collect();
    let app = created.unwrap_or_else(|status| {
        panic!("the SparkApplication was not admitted: {status}\ncalls: {summary:#?}")
    });

    let annotations = &app["metadata"]["annotations"];
    assert!(
        annotations.get("sparkward.io/submitter-token").is_none(),
        "{app}"
    );
    assert_eq!(annotations["sparkward.io/submitter"], "alice");
    let job = app["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap();
    assert!(is_job_id(job), "{job}");
    assert_eq!(app["spec"]["driver"]["labels"]["sparkward.io/job-id"], job);
    let stored = api.get(SPARK_APP, "spark-jobs", "alice-etl").unwrap();
    assert!(
        stored["metadata"]["annotations"]
            .get("sparkward.io/submitter-token")
            .is_none()
    );
    let policy = api
        .get(CNP, "spark-jobs", &format!("sparkward-{job}"))
        .unwrap();
    assert_eq!(
        policy["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sparkward"
    );

    let spark: Vec<_> = calls
        .iter()
        .filter(|c| c.resource == "sparkapplications")
        .collect();
    assert_eq!(spark.len(), 2, "{summary:#?}");
    assert!(spark[0].mutating && !spark[1].mutating);
    assert!(spark.iter().all(|c| c.allowed), "{summary:#?}");
    assert_ne!(spark[0].uid, spark[1].uid);
    // sparkward's own policy write skipped the CNP webhook (its matchCondition).
    assert!(
        calls.iter().all(|c| c.resource != "ciliumnetworkpolicies"),
        "{summary:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// No token copies, and user labels that never collide (through sparkward's own chain)
// ---------------------------------------------------------------------------------------------

const JOBS: &str = "spark-jobs";

/// The stand-in with sparkward's webhook configurations in front of a running sparkward that
/// trusts `idp`, and an enforced namespace `spark-jobs`.
struct Chain {
    api: FakeApiServer,
    idp: Idp,
    _server: Sparkward,
    _dir: tempfile::TempDir,
}

async fn sparkward_chain() -> Chain {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(JOBS, json!({ "sparkward.io/enforce": "true" }));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Sparkward::start(Options {
        config: Some(idp.config("")),
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

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// The policies of the jobs namespace.
fn policies(api: &FakeApiServer) -> Vec<Value> {
    api.list(CNP, Some(JOBS))
}

#[tokio::test]
async fn a_token_copied_into_spark_conf_and_last_applied_is_stored_nowhere() {
    let chain = sparkward_chain().await;
    let token = chain.idp.token("alice", "data:read:postgres-main");
    let mut app = mk_spark_app("etl", JOBS, &token);
    // What spark-operator would hand to spark-submit, and kubectl's copy of the whole manifest.
    app["spec"]["sparkConf"] = json!({
        "spark.kubernetes.driver.annotation.sparkward.io/submitter-token": token,
        "spark.kubernetes.executor.annotation.sparkward.io/submitter-token": token,
        "spark.app.name": "etl",
    });
    let applied = app.to_string();
    app["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(applied);

    let answered = chain
        .api
        .create_as(&alice(), app)
        .await
        .unwrap_or_else(|status| panic!("the SparkApplication was not admitted: {status}"));
    let stored = chain.api.get(SPARK_APP, JOBS, "etl").unwrap();
    for object in [&answered, &stored] {
        let text = object.to_string();
        assert!(!text.contains(signature(&token)), "{text}");
        assert!(!text.contains("sparkward.io/submitter-token"), "{text}");
    }
    // The user's own property is kept, the token properties are gone, and the namespace's
    // Spark security profile added its properties.
    let conf = stored["spec"]["sparkConf"].as_object().unwrap();
    assert_eq!(conf["spark.app.name"], "etl");
    assert!(
        conf.keys().all(|k| !k.contains("submitter-token")),
        "{conf:?}"
    );
    assert_eq!(conf["spark.authenticate"], "true");
    let last: Value = serde_json::from_str(
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        last["spec"]["sparkConf"],
        json!({ "spark.app.name": "etl" })
    );
    assert_eq!(policies(&chain.api).len(), 1);
}

#[tokio::test]
async fn a_pod_with_the_token_in_an_env_var_is_denied_with_the_field_and_gets_no_policy() {
    let chain = sparkward_chain().await;
    let token = chain.idp.token("alice", "data:read:postgres-main");
    let mut pod = support::reviews::mk_pod("wordcount-driver", JOBS);
    pod["metadata"]["annotations"] = json!({ "sparkward.io/submitter-token": token });
    pod["spec"]["containers"][0]["env"] = json!([
        { "name": "SPARK_USER", "value": "alice" },
        { "name": "IDP_TOKEN", "value": token },
    ]);
    let status = chain.api.create_as(&alice(), pod).await.unwrap_err();
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("admission webhook \"pods.mutate.sparkward.io\" denied the request"),
        "{message}"
    );
    assert!(
        message.contains(
            "the object would store a bearer token: spec.containers[0].env[1].value holds a \
             copy of the submitter token: remove it"
        ),
        "{message}"
    );
    assert!(!message.contains(signature(&token)), "{message}");
    assert!(chain.api.get(POD, JOBS, "wordcount-driver").is_none());
    // Denied before the policy apply: nothing half-created.
    assert!(policies(&chain.api).is_empty());
}

#[tokio::test]
async fn a_token_pasted_into_a_stored_pod_or_application_later_is_denied() {
    let chain = sparkward_chain().await;
    let mut pod = support::reviews::mk_pod("wordcount-driver", JOBS);
    pod["metadata"]["annotations"] = json!({
        "sparkward.io/submitter-token": chain.idp.token("alice", "data:read:postgres-main"),
    });
    chain.api.create_as(&alice(), pod).await.unwrap();
    let app = mk_spark_app(
        "etl",
        JOBS,
        &chain.idp.token("alice", "data:read:postgres-main"),
    );
    chain.api.create_as(&alice(), app).await.unwrap();

    // A fresh token of the identity provider, as a user would paste it.
    let later = chain.idp.token("alice", "data:read:postgres-main");
    let merge = |path: String, body: Value| {
        let api = &chain.api;
        async move {
            api.request_as(
                &alice(),
                Method::PATCH,
                &path,
                Some("application/merge-patch+json"),
                Some(&body),
            )
            .await
        }
    };
    let reply = merge(
        format!("/api/v1/namespaces/{JOBS}/pods/wordcount-driver"),
        json!({ "metadata": { "annotations": { "note": format!("Bearer {later}") } } }),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("admission webhook \"pods.validate.sparkward.io\" denied the request"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "metadata.annotations.note holds a bearer token issued by {}",
            support::scenario::ISSUER
        )),
        "{message}"
    );
    assert!(!message.contains(signature(&later)), "{message}");

    let reply = merge(
        format!("/apis/sparkoperator.k8s.io/v1beta2/namespaces/{JOBS}/sparkapplications/etl"),
        json!({ "spec": { "driver": { "env": [{ "name": "TOKEN", "value": later }] } } }),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.contains("spec.driver.env[0].value holds a bearer token issued by"),
        "{message}"
    );
    let stored = chain.api.get(SPARK_APP, JOBS, "etl").unwrap();
    assert!(!stored.to_string().contains(signature(&later)));

    // An update that adds no token still goes through.
    let reply = merge(
        format!("/apis/sparkoperator.k8s.io/v1beta2/namespaces/{JOBS}/sparkapplications/etl"),
        json!({ "metadata": { "labels": { "team": "data" } } }),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn subjects_that_collided_under_the_previous_label_scheme_get_different_labels_and_policies()
{
    let chain = sparkward_chain().await;
    let victim = "alice@example.com";
    // Chosen to equal the victim's label under the previous scheme.
    let crafted = legacy_user_label(victim);
    assert_eq!(legacy_user_label(&crafted), legacy_user_label(victim));

    let mut labels = Vec::new();
    for (subject, name) in [(victim, "victims-job"), (crafted.as_str(), "crafted-job")] {
        let token = chain.idp.token(subject, "data:read:postgres-main");
        let app = chain
            .api
            .create_as(
                &User::new(&format!("oidc:{subject}")),
                mk_spark_app(name, JOBS, &token),
            )
            .await
            .unwrap_or_else(|status| panic!("{subject}'s application was denied: {status}"));
        let label = app["metadata"]["labels"]["sparkward.io/user"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(label, user_label(subject));
        assert_eq!(app["spec"]["driver"]["labels"]["sparkward.io/user"], label);
        let job = app["metadata"]["labels"]["sparkward.io/job-id"]
            .as_str()
            .unwrap();
        let policy = chain
            .api
            .get(CNP, JOBS, &format!("sparkward-{job}"))
            .unwrap();
        assert_eq!(policy["metadata"]["labels"]["sparkward.io/user"], label);
        labels.push(label);
    }
    assert_ne!(labels[0], labels[1]);
    assert!(!labels.contains(&legacy_user_label(victim)), "{labels:?}");
    let policy_users: HashSet<String> = policies(&chain.api)
        .iter()
        .map(|p| p["metadata"]["labels"]["sparkward.io/user"].to_string())
        .collect();
    assert_eq!(policy_users.len(), 2);
}

#[tokio::test]
async fn a_job_admitted_under_the_previous_user_label_keeps_its_lineage() {
    let chain = sparkward_chain().await;
    let subject = "alice@example.com";
    let old = legacy_user_label(subject);
    let job = job_id_for_test("admitted-before-the-upgrade");
    let job_labels = json!({ "sparkward.io/job-id": job, "sparkward.io/user": old });
    // A SparkApplication stored before the upgrade: the old label, on it and its pod specs.
    let mut app = mk_spark_app("etl", JOBS, "");
    app["metadata"]["labels"] = job_labels.clone();
    app["metadata"]["annotations"] = json!({
        "sparkward.io/submitter": subject,
        "sparkward.io/issuer": support::scenario::ISSUER,
        "sparkward.io/scopes": "data:read:postgres-main",
        "sparkward.io/policy": format!("sparkward-{job}"),
    });
    app["spec"]["driver"]["labels"] = job_labels.clone();
    app["spec"]["executor"]["labels"] = job_labels.clone();
    let app = chain.api.insert(app);

    // spark-operator starts its driver: the application's driver labels, the old one among them.
    let mut labels = job_labels.clone();
    labels["spark-role"] = json!("driver");
    labels["sparkoperator.k8s.io/app-name"] = json!("etl");
    let driver = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "etl-driver", "namespace": JOBS, "labels": labels,
            "ownerReferences": [{"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                "name": "etl", "uid": app["metadata"]["uid"], "controller": true}]},
        "spec": {"serviceAccountName": "spark",
            "containers": [{"name": "spark-kubernetes-driver", "image": "apache/spark:4.0.4"}]}
    });
    let driver = chain
        .api
        .create_as(&User::new(support::scenario::OPERATOR), driver)
        .await
        .unwrap_or_else(|status| panic!("the old job's driver was denied: {status}"));
    assert_eq!(driver["metadata"]["labels"]["sparkward.io/job-id"], job);
    assert_eq!(
        driver["metadata"]["annotations"]["sparkward.io/submitter"],
        subject
    );
    // New objects are written with the current scheme.
    assert_eq!(
        driver["metadata"]["labels"]["sparkward.io/user"],
        user_label(subject)
    );

    // A different user label is still a claim it may not make.
    let mut forged = app.clone();
    forged["metadata"]["name"] = json!("etl-2");
    forged["metadata"]["labels"]["sparkward.io/user"] = json!(legacy_user_label("bob@example.com"));
    let forged = chain.api.insert(forged);
    let mut labels = job_labels;
    labels["sparkward.io/user"] = json!(legacy_user_label("bob@example.com"));
    labels["spark-role"] = json!("driver");
    labels["sparkoperator.k8s.io/app-name"] = json!("etl-2");
    let status = chain
        .api
        .create_as(
            &User::new(support::scenario::OPERATOR),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "etl-2-driver", "namespace": JOBS, "labels": labels,
                    "ownerReferences": [{"apiVersion": "sparkoperator.k8s.io/v1beta2",
                        "kind": "SparkApplication", "name": "etl-2",
                        "uid": forged["metadata"]["uid"], "controller": true}]},
                "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": "apache/spark:4.0.4"}]}
            }),
        )
        .await
        .unwrap_err();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("never admitted"),
        "{status}"
    );
}
