//! Validating Pod UPDATEs read through decode's `PodParts` fast path (the objects read once,
//! the typed spec only where it is read) decide exactly as the plain path (both objects parsed
//! into the typed view, then again for `update_actions`): the same answer, reason, message and
//! audit facts for the same review. The one accepted difference, a spec part that is not read
//! is not type-checked, is pinned by `a_spec_is_checked_where_it_is_read`.
//!
//! kube-apiserver writes `kind`, `subResource` and `operation` before `object`, which the fast
//! path needs; the same request with its keys sorted (`object` before `operation`) takes the
//! plain path. Each case is sent both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/inputs/mod.rs"]
mod inputs;

use std::sync::Arc;

use serde_json::{Value, json};
use sparkward::admission::decode::decode_for;
use sparkward::admission::{Mode, Outcome, Pipeline};
use sparkward::config::Config;
use sparkward::k8s::jwks::JwksCache;

use inputs::{DRIVER_POD, DRIVER_UID, NAMESPACE, NODE, SigningKey};

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// The default configuration (no image rule), and one with an image rule.
    plain: Pipeline,
    images: Pipeline,
    /// The executor pod as stored after sparkward's mutating webhook.
    admitted: Value,
    /// A JWT of the configured issuer.
    token: String,
    _dir: tempfile::TempDir,
}

fn pipeline(rt: &tokio::runtime::Runtime, yaml: &str) -> Pipeline {
    let config = Arc::new(Config::from_yaml(yaml).unwrap());
    let cache = JwksCache::new(config.identity.clone().unwrap().jwks.clone()).unwrap();
    rt.block_on(cache.refresh()).unwrap();
    inputs::pipeline(config, cache)
}

fn fixture() -> Fixture {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::rs256();
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, inputs::jwks(&[&key])).unwrap();
    let yaml = inputs::config_yaml(jwks_path.to_str().unwrap());
    let plain = pipeline(&rt, &yaml);
    let with_images = yaml.replacen(
        "hardening:\n",
        "hardening:\n  images:\n    allowed: [docker.io/apache/spark]\n",
        1,
    );
    assert_ne!(with_images, yaml);
    let images = pipeline(&rt, &with_images);
    let created = rt
        .block_on(plain.review(Mode::Mutate, &inputs::executor_review()))
        .unwrap();
    let patch = serde_json::to_value(&created.decision.as_ref().unwrap().patch).unwrap();
    Fixture {
        admitted: inputs::admitted_executor(&patch),
        token: key.token(3600),
        rt,
        plain,
        images,
        _dir: dir,
    }
}

/// The body as kube-apiserver writes it: the fast path reads it.
fn apiserver_order(request: &Value) -> Vec<u8> {
    inputs::review(request.clone())
}

/// The same body with sorted keys (`object` before `operation`): the plain path reads it.
fn sorted_order(request: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request,
    }))
    .unwrap()
}

fn driver() -> Value {
    json!({
        "username": format!("system:serviceaccount:{NAMESPACE}:spark"),
        "uid": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{NAMESPACE}"), "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/pod-name": [DRIVER_POD],
            "authentication.kubernetes.io/pod-uid": [DRIVER_UID],
        }
    })
}

fn kubelet() -> Value {
    json!({"username": format!("system:node:{NODE}"), "groups": ["system:nodes", "system:authenticated"]})
}

fn user(name: &str) -> Value {
    json!({"username": name, "groups": ["system:authenticated"]})
}

fn update(sub: Option<&str>, user: Value, old: &Value, new: &Value) -> Value {
    inputs::pod_update_request("3e4d5c6b-7a89-4b0c-9d1e-2f3a4b5c6d7e", sub, user, old, new)
}

/// Whether the review was refused because an object is not a valid Pod.
fn malformed(o: &Outcome) -> bool {
    matches!(&o.decision, Err(r) if r.code() == "malformed"
        && r.to_string().contains("is not a valid Pod"))
}

/// What an outcome decides and records.
fn decided(o: &Outcome) -> String {
    format!("{:?} {:?}", o.decision, o.facts)
}

impl Fixture {
    fn review(&self, pipeline: &Pipeline, body: &[u8]) -> Outcome {
        self.rt
            .block_on(pipeline.review(Mode::Validate, body))
            .unwrap()
    }

    /// Both paths' outcomes of `request`, after checking which path each body takes.
    fn both(&self, pipeline: &Pipeline, request: &Value) -> (Outcome, Outcome) {
        let (fast, plain) = (apiserver_order(request), sorted_order(request));
        assert!(
            decode_for(&plain, Mode::Validate)
                .ok()
                .is_none_or(|r| r.pod_update.is_none()),
            "sorted keys take the plain path"
        );
        (self.review(pipeline, &fast), self.review(pipeline, &plain))
    }

    /// Both paths decide `request` the same; returns the outcome.
    fn same(&self, pipeline: &Pipeline, what: &str, request: &Value) -> Outcome {
        let (fast, plain) = self.both(pipeline, request);
        assert_eq!(decided(&fast), decided(&plain), "{what}");
        fast
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) -> Value {
        let mut pod = self.admitted.clone();
        f(&mut pod);
        pod
    }
}

/// Whether decode reads the objects of `request`, sent as kube-apiserver sends it, into parts.
fn takes_fast_path(request: &Value) -> bool {
    let body = apiserver_order(request);
    decode_for(&body, Mode::Validate).is_ok_and(|r| r.pod_update.is_some())
}

#[test]
fn pod_updates_decide_the_same_on_both_paths() {
    let f = fixture();
    let old = f.admitted.clone();
    let relabelled = f.edit(|p| p["metadata"]["labels"]["spark-exec-inactive"] = json!("true"));
    let running = f.edit(|p| p["status"] = json!({"phase": "Running", "podIP": "10.42.3.17"}));
    // (what, request, allowed where it is certain)
    let mut cases: Vec<(&str, Value, Option<bool>)> = vec![
        (
            "the driver relabels its executor",
            update(None, driver(), &old, &relabelled),
            Some(true),
        ),
        (
            "the kubelet writes status",
            update(Some("status"), kubelet(), &old, &running),
            Some(true),
        ),
        (
            "a stranger writes status",
            update(Some("status"), user("oidc:mallory"), &old, &running),
            Some(false),
        ),
        (
            "a stranger relabels",
            update(None, user("oidc:mallory"), &old, &relabelled),
            Some(false),
        ),
        (
            "the submitter relabels",
            update(None, user("oidc:alice"), &old, &relabelled),
            None,
        ),
        (
            "nothing changes",
            update(None, driver(), &old, &old),
            Some(true),
        ),
        (
            "another kubelet writes status",
            update(Some("status"), user("system:node:other"), &old, &running),
            Some(false),
        ),
    ];
    let job_label = f.edit(|p| {
        p["metadata"]["labels"]["sparkward.io/job-id"] = json!("sj-aaaaaaaaaaaaaaaaaaaa")
    });
    let no_role = f.edit(|p| {
        p["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("spark-role");
    });
    let operator =
        f.edit(|p| p["metadata"]["labels"]["sparkoperator.k8s.io/app-name"] = json!("other"));
    let annotation = f.edit(|p| p["metadata"]["annotations"]["sparkward.io/extra"] = json!("x"));
    let finalizer = f.edit(|p| p["metadata"]["finalizers"] = json!(["example.com/keep"]));
    let owner =
        f.edit(|p| p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = json!(false));
    let image = f.edit(|p| p["spec"]["containers"][0]["image"] = json!("docker.io/bob/spark:evil"));
    let root = f.edit(|p| p["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0));
    let reordered = {
        // The same spec written in another key order: not a spec change.
        let mut pod = f.admitted.clone();
        let spec = pod["spec"].as_object().unwrap().clone();
        let mut text = String::from("{");
        for (i, (k, v)) in spec.iter().rev().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{}:{}", json!(k), v));
        }
        text.push('}');
        pod["spec"] = serde_json::from_str(&text).unwrap();
        pod
    };
    let stripped = |p: &Value| {
        let mut p = p.clone();
        for key in ["labels", "annotations"] {
            p["metadata"][key]
                .as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with("sparkward.io/"));
        }
        p
    };
    let (old_plain, new_plain) = (stripped(&old), stripped(&image));
    cases.extend([
        (
            "a job id is changed",
            update(None, driver(), &old, &job_label),
            Some(false),
        ),
        (
            "the spark-role label is removed",
            update(None, driver(), &old, &no_role),
            None,
        ),
        (
            "an operator label is added",
            update(None, driver(), &old, &operator),
            None,
        ),
        (
            "a sparkward annotation is added",
            update(None, user("oidc:alice"), &old, &annotation),
            None,
        ),
        (
            "a finalizer is added by the driver",
            update(None, driver(), &old, &finalizer),
            None,
        ),
        (
            "a finalizer is added by a stranger",
            update(None, user("oidc:mallory"), &old, &finalizer),
            None,
        ),
        (
            "an owner reference changes",
            update(None, user("oidc:mallory"), &old, &owner),
            None,
        ),
        (
            "the image changes",
            update(None, user("oidc:alice"), &old, &image),
            None,
        ),
        (
            "the image changes, by a stranger",
            update(None, user("oidc:mallory"), &old, &image),
            None,
        ),
        (
            "the image changes through resize",
            update(Some("resize"), user("oidc:alice"), &old, &image),
            None,
        ),
        (
            "the executor would run as root",
            update(None, user("oidc:alice"), &old, &root),
            Some(false),
        ),
        (
            "status carries a spec change",
            update(Some("status"), kubelet(), &old, &root),
            None,
        ),
        (
            "the spec is reordered",
            update(None, user("oidc:mallory"), &old, &reordered),
            None,
        ),
        (
            "a pod of no job changes",
            update(None, user("oidc:mallory"), &old_plain, &new_plain),
            None,
        ),
        (
            "a pod of no job writes status",
            update(Some("status"), kubelet(), &old_plain, &new_plain),
            None,
        ),
    ]);
    for (what, request, allowed) in &cases {
        assert!(takes_fast_path(request), "{what}: the fast path reads it");
        let outcome = f.same(&f.plain, what, request);
        if let Some(allowed) = allowed {
            assert_eq!(
                outcome.allowed(),
                *allowed,
                "{what}: {:?}",
                outcome.decision
            );
        }
    }
    // With an image rule, both specs are read in full.
    for (what, request, _) in &cases {
        f.same(&f.images, what, request);
    }
    let case = |name: &str| &cases.iter().find(|c| c.0 == name).unwrap().1;
    for what in ["the image changes", "a pod of no job changes"] {
        let denied = f.same(&f.images, what, case(what));
        assert_eq!(
            denied.reason_code(),
            "image",
            "{what}: {:?}",
            denied.decision
        );
    }
}

/// A change that makes a pod malformed.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn malformed_pod_updates_get_the_plain_paths_answer() {
    let f = fixture();
    let old = f.admitted.clone();
    let edits: Vec<(&str, Edit)> = vec![
        (
            "labels are a list",
            Box::new(|p| p["metadata"]["labels"] = json!([])),
        ),
        (
            "a label is a number",
            Box::new(|p| p["metadata"]["labels"]["x"] = json!(1)),
        ),
        (
            "metadata is missing",
            Box::new(|p| {
                p.as_object_mut().unwrap().remove("metadata");
            }),
        ),
        (
            "metadata is a list",
            Box::new(|p| p["metadata"] = json!([{}])),
        ),
        (
            "spec is missing",
            Box::new(|p| {
                p.as_object_mut().unwrap().remove("spec");
            }),
        ),
        ("spec is null", Box::new(|p| p["spec"] = Value::Null)),
        ("spec is a list", Box::new(|p| p["spec"] = json!([]))),
        (
            "containers are a number",
            Box::new(|p| p["spec"]["containers"] = json!(5)),
        ),
        (
            "nodeName is a number",
            Box::new(|p| p["spec"]["nodeName"] = json!(5)),
        ),
        ("status is a number", Box::new(|p| p["status"] = json!(5))),
        (
            "the phase is a number",
            Box::new(|p| p["status"] = json!({"phase": 5})),
        ),
        (
            "ownerReferences are null",
            Box::new(|p| p["metadata"]["ownerReferences"] = Value::Null),
        ),
        (
            "an owner reference is a string",
            Box::new(|p| p["metadata"]["ownerReferences"] = json!(["x"])),
        ),
        (
            "finalizers are a number",
            Box::new(|p| p["metadata"]["finalizers"] = json!(5)),
        ),
        (
            "finalizers are null",
            Box::new(|p| p["metadata"]["finalizers"] = Value::Null),
        ),
        (
            "labels are null",
            Box::new(|p| p["metadata"]["labels"] = Value::Null),
        ),
        ("the object is a list", Box::new(|p| *p = json!([]))),
        ("the object is null", Box::new(|p| *p = Value::Null)),
    ];
    let users = [driver(), kubelet(), user("oidc:mallory")];
    for (what, edit) in &edits {
        let mut bad = old.clone();
        edit(&mut bad);
        for sub in [None, Some("status")] {
            for who in &users {
                // The new object malformed; unless it is the spec of a status write (see
                // `a_spec_is_checked_where_it_is_read`), the plain path's answer.
                let in_spec = matches!(*what, "containers are a number" | "nodeName is a number");
                let status = sub == Some("status");
                let request = update(sub, who.clone(), &old, &bad);
                if !(in_spec && status) {
                    f.same(&f.plain, what, &request);
                    f.same(&f.images, what, &request);
                }
                // The old object malformed: the plain path's answer, but in the old spec
                // only where it is read (`nodeName` in a status write, which decode reads
                // with the metadata, or for a node's request; all of it where an image rule
                // checks it: not in a status write of a job's pod).
                let request = update(sub, who.clone(), &bad, &old);
                let node_unread = *what == "nodeName is a number" && !status && who != &kubelet();
                let old_spec_only = *what == "containers are a number" || node_unread;
                if !old_spec_only {
                    f.same(&f.plain, what, &request);
                } else if node_unread {
                    let (fast, plain) = f.both(&f.plain, &request);
                    assert!(!malformed(&fast), "{what}: {:?}", fast.decision);
                    assert!(malformed(&plain), "{what}: {:?}", plain.decision);
                }
                if !(old_spec_only && status) {
                    f.same(&f.images, what, &request);
                }
            }
        }
    }
    // Duplicate keys, which a JSON value cannot hold: written into the text.
    let body = String::from_utf8(apiserver_order(&update(None, driver(), &old, &old))).unwrap();
    let marker = r#""spark-role":"executor""#;
    assert!(body.contains(marker));
    let twice = body.replacen(marker, &format!("{marker},{marker}"), 1);
    let owner_marker = r#""controller":true"#;
    assert!(body.contains(owner_marker));
    let owner_twice = body.replacen(owner_marker, &format!("{owner_marker},{owner_marker}"), 1);
    for body in [twice, owner_twice] {
        let fast = f.review(&f.plain, body.as_bytes());
        // Sorted keys: the duplicate written the same way into a sorted body.
        let request: Value = serde_json::from_str(&body).unwrap();
        let sorted = String::from_utf8(sorted_order(&request["request"])).unwrap();
        let sorted = if body.contains(&format!("{marker},{marker}")) {
            sorted.replacen(marker, &format!("{marker},{marker}"), 1)
        } else {
            sorted.replacen(owner_marker, &format!("{owner_marker},{owner_marker}"), 1)
        };
        let plain = f.review(&f.plain, sorted.as_bytes());
        assert_eq!(decided(&fast), decided(&plain));
    }
}

#[test]
fn tokens_in_pod_updates_are_found_on_both_paths() {
    let f = fixture();
    let old = f.admitted.clone();
    let token = f.token.clone();
    let with_token = f.edit(|p| p["metadata"]["annotations"]["note"] = json!(token));
    let in_spec = f.edit(|p| p["spec"]["containers"][0]["args"] = json!([token]));
    // A new token is refused; one the old object already held stays (objects stored before
    // the rule stay updatable).
    let cases = [
        (
            "a new token",
            update(None, user("oidc:alice"), &old, &with_token),
            false,
        ),
        (
            "a token in the spec",
            update(None, user("oidc:alice"), &old, &in_spec),
            false,
        ),
        (
            "a token already stored",
            update(None, user("oidc:alice"), &with_token, &with_token),
            true,
        ),
        (
            "status beside a stored token",
            update(Some("status"), kubelet(), &with_token, &with_token),
            true,
        ),
    ];
    for (what, request, allowed) in &cases {
        assert!(takes_fast_path(request), "{what}");
        let outcome = f.same(&f.plain, what, request);
        assert_eq!(
            outcome.allowed(),
            *allowed,
            "{what}: {:?}",
            outcome.decision
        );
    }
}

#[test]
fn a_spec_is_checked_where_it_is_read() {
    // Behaviour of the fast path (accepted when it was introduced): a part of a spec that is
    // not read is not type-checked. A `status` write reads nothing of the new pod's spec, and
    // no UPDATE reads more of the old pod's spec than `nodeName` unless an image rule checks
    // its images. The API server stores only valid pods, so it never sends such objects.
    let f = fixture();
    let old = f.admitted.clone();
    let bad_spec = f.edit(|p| p["spec"]["containers"] = json!(5));
    let running = f.edit(|p| p["status"] = json!({"phase": "Running"}));

    // The kubelet's status write with an ill-typed new spec: not read, allowed.
    let request = update(Some("status"), kubelet(), &old, &bad_spec);
    let (fast, plain) = f.both(&f.plain, &request);
    assert!(fast.allowed(), "{:?}", fast.decision);
    assert!(malformed(&plain), "{:?}", plain.decision);
    // Read as soon as it is checked: any other UPDATE hardens the new spec.
    let request = update(None, user("oidc:alice"), &old, &bad_spec);
    let (fast, plain) = f.both(&f.plain, &request);
    assert!(malformed(&fast), "{:?}", fast.decision);
    assert_eq!(decided(&fast), decided(&plain));

    // An ill-typed old spec: only its nodeName is read.
    let bad_old = f.edit(|p| p["spec"]["containers"] = json!(5));
    let request = update(Some("status"), kubelet(), &bad_old, &running);
    let (fast, plain) = f.both(&f.plain, &request);
    assert!(fast.allowed(), "{:?}", fast.decision);
    assert!(malformed(&plain), "{:?}", plain.decision);
    let bad_node = f.edit(|p| p["spec"]["nodeName"] = json!(5));
    let request = update(Some("status"), kubelet(), &bad_node, &running);
    let (fast, plain) = f.both(&f.plain, &request);
    assert!(malformed(&fast), "{:?}", fast.decision);
    assert_eq!(decided(&fast), decided(&plain));
    // Outside a status write, the old nodeName is read only for a node's request (it names
    // the kubelet that may act on the pod; no other requester's rights depend on it): the
    // driver's relabelling of such a pod is not read for it, the kubelet's is.
    let relabelled = |p: &Value| {
        let mut p = p.clone();
        p["metadata"]["labels"]["spark-exec-inactive"] = json!("true");
        p
    };
    let request = update(None, driver(), &bad_node, &relabelled(&bad_node));
    let (fast, plain) = f.both(&f.plain, &request);
    assert!(fast.allowed(), "{:?}", fast.decision);
    assert!(malformed(&plain), "{:?}", plain.decision);
    let request = update(None, kubelet(), &bad_node, &relabelled(&bad_node));
    let (fast, plain) = f.both(&f.plain, &request);
    assert!(malformed(&fast), "{:?}", fast.decision);
    assert_eq!(decided(&fast), decided(&plain));

    // An image rule reads both specs where it checks images: in every UPDATE but the status
    // write of a job's pod (a pod of no job has its images checked on every UPDATE).
    let unstamped = |p: &Value| {
        let mut p = p.clone();
        for key in ["labels", "annotations"] {
            p["metadata"][key]
                .as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with("sparkward.io/"));
        }
        p
    };
    for request in [
        update(None, user("oidc:alice"), &bad_old, &old),
        update(
            Some("status"),
            kubelet(),
            &unstamped(&old),
            &unstamped(&bad_spec),
        ),
        update(
            Some("status"),
            kubelet(),
            &unstamped(&bad_old),
            &unstamped(&running),
        ),
    ] {
        let (fast, plain) = f.both(&f.images, &request);
        assert!(malformed(&fast), "{:?}", fast.decision);
        assert_eq!(decided(&fast), decided(&plain));
    }
    let request = update(Some("status"), kubelet(), &bad_old, &bad_spec);
    let (fast, plain) = f.both(&f.images, &request);
    assert!(fast.allowed(), "{:?}", fast.decision);
    assert!(malformed(&plain), "{:?}", plain.decision);
}

/// Makes `pod` one stored before the list limits: 200 copies of its first container, and a
/// finalizer for the garbage collector to remove.
fn beyond_the_list_limits(pod: &mut Value) {
    let first = pod["spec"]["containers"][0].clone();
    pod["spec"]["containers"] = json!(
        (0..200)
            .map(|i| {
                let mut c = first.clone();
                c["name"] = json!(format!("c{i}"));
                c
            })
            .collect::<Vec<_>>()
    );
    pod["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
}

/// A job's pod stored before the list limits of `core::objects` (here 200 containers, admitted
/// by an earlier version) keeps its metadata updates: an UPDATE that leaves its spec as it was
/// does not read the spec, with or without an image rule, so the limits do not refuse the
/// garbage collector removing a finalizer. The ownership rules still apply (a stranger's edit
/// of the same metadata is refused), and an UPDATE that changes the spec reads it, and is
/// refused for the list limit.
#[test]
fn a_job_pod_beyond_the_list_limits_keeps_its_metadata_updates_and_no_more() {
    let f = fixture();
    let mut old = f.admitted.clone();
    beyond_the_list_limits(&mut old);
    let mut unfinalized = old.clone();
    unfinalized["metadata"]["finalizers"] = json!([]);
    let mut respecced = unfinalized.clone();
    respecced["spec"]["activeDeadlineSeconds"] = json!(60);
    let gc = json!({
        "username": "system:serviceaccount:kube-system:generic-garbage-collector",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    });
    for pipeline in [&f.plain, &f.images] {
        let request = update(None, gc.clone(), &old, &unfinalized);
        assert!(takes_fast_path(&request));
        let fast = f.review(pipeline, &apiserver_order(&request));
        assert!(fast.allowed(), "{:?}", fast.decision);
        let stranger = update(None, user("oidc:mallory"), &old, &unfinalized);
        let refused = f.review(pipeline, &apiserver_order(&stranger));
        assert_ne!(refused.reason_code(), "malformed", "{:?}", refused.decision);
        assert!(!refused.allowed(), "{:?}", refused.decision);
        let request = update(None, gc.clone(), &old, &respecced);
        let read = f.review(pipeline, &apiserver_order(&request));
        let message = format!("{:?}", read.decision);
        assert_eq!(read.reason_code(), "malformed", "{message}");
        assert!(message.contains("at most 128"), "{message}");
    }
}

/// An UPDATE that leaves the spec as it was is still checked for what the metadata can weaken:
/// the driver marking its executor's container AppArmor-unconfined through the legacy
/// annotation is refused on both paths, while its ordinary relabelling passes.
#[test]
fn a_metadata_only_update_is_still_checked_for_the_metadata_hardening() {
    let f = fixture();
    let old = f.admitted.clone();
    let unconfined = f.edit(|p| {
        p["metadata"]["annotations"]
            ["container.apparmor.security.beta.kubernetes.io/spark-kubernetes-executor"] =
            json!("unconfined")
    });
    let request = update(None, driver(), &old, &unconfined);
    assert!(takes_fast_path(&request));
    let (fast, plain) = f.both(&f.plain, &request);
    assert_eq!(fast.reason_code(), "hardening", "{:?}", fast.decision);
    assert_eq!(decided(&fast), decided(&plain));
    let noted = f.edit(|p| p["metadata"]["annotations"]["example.com/note"] = json!("x"));
    let (fast, plain) = f.both(&f.plain, &update(None, driver(), &old, &noted));
    assert!(fast.allowed(), "{:?}", fast.decision);
    assert_eq!(decided(&fast), decided(&plain));
}

/// A pod stored before the list limits of `core::objects` (here 200 containers, in a namespace
/// enforced after it started: no job) keeps its metadata updates: the garbage collector removes
/// its finalizer: without an image rule its spec is not read, so the limits do not refuse it.
#[test]
fn a_pod_of_no_job_beyond_the_list_limits_keeps_its_metadata_updates() {
    let f = fixture();
    let mut old = f.admitted.clone();
    for key in ["labels", "annotations"] {
        old["metadata"][key]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with("sparkward.io/"));
    }
    beyond_the_list_limits(&mut old);
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    let gc = json!({
        "username": "system:serviceaccount:kube-system:generic-garbage-collector",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    });
    let request = update(None, gc, &old, &new);
    assert!(takes_fast_path(&request));
    let fast = f.review(&f.plain, &apiserver_order(&request));
    assert!(fast.allowed(), "{:?}", fast.decision);
}

/// Specs that differ only at the bottom of 60,000 nested lists (a 240 KB body no API server
/// sends) are compared without overflowing a worker's 2 MiB stack: below
/// `json::SAME_JSON_DEPTH` levels, text that differs counts as a change. The same for owner
/// references, which the one-pass decode leaves to the plain path when they nest that deep.
#[test]
fn specs_and_owners_nested_beyond_any_stack_are_compared_within_one() {
    let deep = |bottom: &str| {
        let d = 60_000;
        format!("{}{bottom}{}", "[".repeat(d), "]".repeat(d))
    };
    for at in ["spec", "owners"] {
        let f = fixture();
        let marked = f.edit(|p| match at {
            "spec" => p["spec"]["schedulingHints"] = json!("MARK"),
            _ => p["metadata"]["ownerReferences"][0]["x"] = json!("MARK"),
        });
        let body = String::from_utf8(apiserver_order(&update(
            None,
            user("oidc:mallory"),
            &marked,
            &marked,
        )))
        .unwrap();
        let parts: Vec<&str> = body.split("\"MARK\"").collect();
        assert_eq!(parts.len(), 3, "{at}");
        let body = format!(
            "{}{}{}{}{}",
            parts[0],
            deep("1"),
            parts[1],
            deep("0"),
            parts[2]
        );
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let o = f.review(&f.plain, body.as_bytes());
                (o.allowed(), o.reason_code())
            })
            .unwrap()
            .join()
            .unwrap();
        // A stranger's change of the job's pod: refused, for what it changes.
        assert_eq!(outcome, (false, "not_owner"), "{at}");
    }
}
