//! Hardening through the offline `sparkward review` command (the same pipeline as the server):
//! every upstream SparkApplication example and every project fixture is admitted, the patch
//! applies to the original, SparkApplications validate against the real CRD schema, and every
//! resulting pod meets the Pod Security Standard "restricted" profile. Then the id, group,
//! capability and process-namespace rules end to end: sparkward as a process over TLS behind
//! the stand-in API server, which runs sparkward's own webhook configurations the way
//! kube-apiserver does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use support::apiserver::{CNP, FakeApiServer, POD, Resource, SCHEDULED_SPARK_APP, SPARK_APP, User};
use support::cli::{OfflineSetup, ReviewRun};
use support::pss::{restricted_violations, writable_dirs_missing};
use support::reviews::{Review, patch_of};
use support::scenario::{Idp, OPERATOR, mk_spark_app};
use support::upstream::{Crd, crd_validator, example_files, load_yaml_documents};
use support::webhook::{Options, Sparkward};

const WRITABLE: &[&str] = &["/tmp", "/opt/spark/work-dir"];

/// The ids the project's own fixtures set, allowed the way a platform team would allow them:
/// the notebook's `users` group (GID 100, which owns the home directory in Jupyter's
/// docker-stacks images), and the sidecar UID 1000 and shared fsGroup 2000 of
/// `apps/sidecars-and-init.yaml`. Upstream examples use only 185 and run with the defaults.
const FIXTURE_IDS: &str = "hardening:\n  allowedIds: [{min: 100, max: 100}, {min: 1000, max: 1000}, {min: 2000, max: 2000}]\n";

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn fixture(path: &str) -> Value {
    let docs = load_yaml_documents(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap();
    docs.into_iter().next().unwrap()
}

fn with_token(mut obj: Value, token: &str) -> Value {
    obj["metadata"]["annotations"]["sparkward.io/submitter-token"] = json!(token);
    obj
}

/// The patch of a run applied to the request's object, checked against `patchedObject`.
fn applied(request: &Value, run: &ReviewRun) -> Value {
    let mut obj = request["request"]["object"].clone();
    let ops: json_patch::Patch =
        serde_json::from_value(Value::Array(patch_of(&run.output["admissionReview"]))).unwrap();
    json_patch::patch(&mut obj, &ops).unwrap();
    assert_eq!(
        obj, run.output["patchedObject"],
        "patchedObject is not the original with the patch applied"
    );
    obj
}

fn as_pod(obj: &Value) -> Pod {
    serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("not a Pod: {e}\n{obj:#}"))
}

fn assert_restricted(what: &str, obj: &Value) {
    let pod = as_pod(obj);
    let v = restricted_violations(&pod);
    assert!(v.is_empty(), "{what} breaks the restricted profile: {v:?}");
    let w = writable_dirs_missing(&pod, WRITABLE);
    assert!(w.is_empty(), "{what}: {w:?}");
}

/// The pod spark-operator would build for `role` from an admitted SparkApplication: the Spark
/// container gets `spec.<role>.securityContext` wholesale (as the operator's webhook does),
/// the pod gets `podSecurityContext`, sidecars and init containers are copied, and the mounted
/// volumes come from `spec.volumes`.
fn operator_pod(app: &Value, role: &str) -> Value {
    let spec = &app["spec"][role];
    let mut main =
        json!({"name": format!("spark-kubernetes-{role}"), "image": app["spec"]["image"]});
    if !spec["securityContext"].is_null() {
        main["securityContext"] = spec["securityContext"].clone();
    }
    if !spec["volumeMounts"].is_null() {
        main["volumeMounts"] = spec["volumeMounts"].clone();
    }
    let mut containers = vec![main];
    containers.extend(spec["sidecars"].as_array().cloned().unwrap_or_default());
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("x-{role}"), "labels": spec["labels"]},
        "spec": {"containers": containers, "volumes": app["spec"]["volumes"]},
    });
    if !spec["podSecurityContext"].is_null() {
        pod["spec"]["securityContext"] = spec["podSecurityContext"].clone();
    }
    if let Some(init) = spec["initContainers"].as_array() {
        pod["spec"]["initContainers"] = json!(init);
    }
    pod
}

/// Every SparkApplication and ScheduledSparkApplication of the upstream examples and the
/// project's fixtures: (name, document, whether it is a project fixture).
fn spark_documents() -> Vec<(String, Value, bool)> {
    let mut docs = Vec::new();
    let files = example_files()
        .into_iter()
        .map(|f| (f, false))
        .chain(fixtures("apps").into_iter().map(|f| (f, true)));
    for (file, own) in files {
        // Upstream's Prometheus example is a template whose image placeholders the user fills in
        // before applying it; fill them the same way.
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("{IMAGE_REGISTRY}", "registry.example.com")
            .replace("{IMAGE_REPOSITORY}", "spark");
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in parsed.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap_or_default();
            if kind == "SparkApplication" || kind == "ScheduledSparkApplication" {
                let name = format!(
                    "{}#{}",
                    file.file_name().unwrap().to_string_lossy(),
                    doc["metadata"]["name"]
                );
                docs.push((name, doc, own));
            }
        }
    }
    docs
}

#[test]
fn every_spark_application_example_and_fixture_is_admitted_hardened_and_schema_valid() {
    let defaults = OfflineSetup::new("");
    let with_fixture_ids = OfflineSetup::new(FIXTURE_IDS);
    let docs = spark_documents();
    assert!(docs.len() >= 4, "too few documents: {}", docs.len());
    let mut upstream_seen = 0;
    for (name, doc, own) in docs {
        let setup = if own { &with_fixture_ids } else { &defaults };
        upstream_seen += usize::from(!own && support::upstream::upstream_dir().is_some());
        let kind = doc["kind"].as_str().unwrap().to_string();
        let obj = with_token(doc, &setup.token("alice", "data:read:postgres-main"));
        let review = if kind == "SparkApplication" {
            Review::spark_app(obj)
        } else {
            Review::scheduled_app(obj)
        };
        let request = review.clone().user("oidc:alice").build();
        let run = setup.review(&request, None, false);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        assert!(run.allowed(), "{name}: {}", run.message());
        let out = applied(&request, &run);
        assert!(
            out["metadata"]["annotations"]
                .get("sparkward.io/submitter-token")
                .is_none(),
            "{name}"
        );

        let (crd, spec) = if kind == "SparkApplication" {
            (Crd::SparkApplication, out["spec"].clone())
        } else {
            (
                Crd::ScheduledSparkApplication,
                out["spec"]["template"].clone(),
            )
        };
        if let Some(validator) = crd_validator(crd)
            && let Err(errors) = validator.validate(&out)
        {
            panic!("{name}: the patched object fails the {crd:?} schema: {errors:?}");
        }
        let policies = run.output["ciliumNetworkPolicies"].as_array().unwrap();
        if kind == "SparkApplication" {
            assert_eq!(policies.len(), 1, "{name}");
            let job = support::reviews::job_of(&out);
            assert_eq!(
                out["metadata"]["labels"]["sparkward.io/job-id"], job,
                "{name}"
            );
            assert_eq!(
                policies[0]["metadata"]["name"],
                format!("sparkward-{job}"),
                "{name}"
            );
            if let Some(validator) = crd_validator(Crd::CiliumNetworkPolicy) {
                validator
                    .validate(&policies[0])
                    .unwrap_or_else(|e| panic!("{name}: CNP fails the schema: {e:?}"));
            }
        } else {
            assert!(policies.is_empty(), "{name}: a schedule is not a job");
        }
        // The pods spark-operator builds from it are restricted-compliant.
        let app = json!({"spec": spec});
        let app = {
            let mut a = app;
            a["spec"]["image"] = json!("docker.io/apache/spark:4.0.4");
            a
        };
        for role in ["driver", "executor"] {
            assert_restricted(&format!("{name} {role}"), &operator_pod(&app, role));
        }
    }
    if support::upstream::upstream_dir().is_some() {
        assert!(
            upstream_seen >= 7,
            "upstream examples not all covered: {upstream_seen}"
        );
    }
}

#[test]
fn every_pod_fixture_is_admitted_and_meets_the_restricted_profile() {
    let setup = OfflineSetup::new(FIXTURE_IDS);
    // spark-submit in cluster mode: a new job started by its token.
    let driver_req = Review::pod(with_token(
        fixture("pods/spark-submit-driver.yaml"),
        &setup.token("alice", "stream:kafka-events"),
    ))
    .user("oidc:alice");
    let request = driver_req.build();
    let run = setup.review(&request, None, false);
    assert!(run.allowed(), "{}", run.message());
    let mut driver = applied(&request, &run);
    assert_restricted("spark-submit driver", &driver);
    assert_eq!(
        run.output["ciliumNetworkPolicies"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let job = support::reviews::job_of(&driver);

    // Its executor, created by the driver's service account (token bound to the driver pod).
    driver["metadata"]["uid"] = json!("drv-uid-1");
    let state = setup.cluster_state(&[driver.clone()]);
    let mut exec = fixture("pods/executor.yaml");
    exec["metadata"]["ownerReferences"][0]["uid"] = json!("drv-uid-1");
    let request = Review::pod(exec)
        .bound_to_pod("spark", "wordcount-3f2a1c-driver", "drv-uid-1")
        .build();
    let run = setup.review(&request, Some(&state), false);
    assert!(run.allowed(), "{}", run.message());
    let out = applied(&request, &run);
    assert_restricted("executor", &out);
    assert_eq!(out["metadata"]["labels"]["sparkward.io/job-id"], job);
    assert_eq!(out["metadata"]["labels"]["sparkward.io/role"], "executor");
    assert!(
        run.output["ciliumNetworkPolicies"]
            .as_array()
            .unwrap()
            .is_empty(),
        "executors reuse the job's policy"
    );

    // spark-operator's driver for an admitted SparkApplication.
    let app_req = Review::spark_app(with_token(
        fixture("apps/pyspark-etl.yaml"),
        &setup.token("alice", "x"),
    ))
    .user("oidc:alice");
    let request = app_req.build();
    let run = setup.review(&request, None, false);
    let mut app = applied(&request, &run);
    app["metadata"]["uid"] = json!("app-uid-1");
    let state = setup.cluster_state(&[app.clone()]);
    let mut pod = fixture("pods/operator-driver.yaml");
    pod["metadata"]["ownerReferences"][0]["uid"] = json!("app-uid-1");
    for (k, v) in app["spec"]["driver"]["labels"].as_object().unwrap() {
        pod["metadata"]["labels"][k] = v.clone();
    }
    let request = Review::pod(pod).user(OPERATOR).build();
    let run = setup.review(&request, Some(&state), false);
    assert!(run.allowed(), "{}", run.message());
    let out = applied(&request, &run);
    assert_restricted("operator driver", &out);
    assert_eq!(
        out["metadata"]["labels"]["sparkward.io/job-id"],
        support::reviews::job_of(&app)
    );

    // A notebook (client-mode driver) with an init container and a sidecar.
    let request = Review::pod(with_token(
        fixture("pods/notebook-client-mode.yaml"),
        &setup.token("alice", "x"),
    ))
    .user("oidc:alice")
    .build();
    let run = setup.review(&request, None, false);
    assert!(run.allowed(), "{}", run.message());
    let notebook = applied(&request, &run);
    assert_restricted("notebook", &notebook);
    // The user's fsGroup (allowed by the config) is kept; what was unset is set.
    assert_eq!(notebook["spec"]["securityContext"]["fsGroup"], 100);
    assert_eq!(notebook["spec"]["securityContext"]["runAsUser"], 185);

    // An ephemeral debug container added to the running notebook is hardened too.
    let mut with_debug = notebook.clone();
    with_debug["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox:1.36", "stdin": true, "tty": true}]);
    let request = Review::pod(with_debug)
        .update(notebook)
        .sub_resource("ephemeralcontainers")
        .user("oidc:alice")
        .build();
    let run = setup.review(&request, None, false);
    assert!(run.allowed(), "{}", run.message());
    assert_restricted("notebook with a debug container", &applied(&request, &run));
}

#[test]
fn each_explicitly_weaker_setting_is_denied_naming_the_field_and_the_fix() {
    let setup = OfflineSetup::new("");
    let token = setup.token("alice", "x");
    let base = with_token(fixture("pods/spark-submit-driver.yaml"), &token);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "spec.containers[0].securityContext.runAsUser",
            Box::new(|p| p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 0})),
        ),
        (
            "spec.securityContext.runAsUser",
            Box::new(|p| p["spec"]["securityContext"] = json!({"runAsUser": 0})),
        ),
        (
            "spec.containers[0].securityContext.runAsNonRoot",
            Box::new(|p| {
                p["spec"]["containers"][0]["securityContext"] = json!({"runAsNonRoot": false})
            }),
        ),
        (
            "spec.securityContext.runAsNonRoot",
            Box::new(|p| p["spec"]["securityContext"] = json!({"runAsNonRoot": false})),
        ),
        (
            "spec.containers[0].securityContext.privileged",
            Box::new(|p| {
                p["spec"]["containers"][0]["securityContext"] = json!({"privileged": true})
            }),
        ),
        (
            "spec.containers[0].securityContext.allowPrivilegeEscalation",
            Box::new(|p| {
                p["spec"]["containers"][0]["securityContext"] =
                    json!({"allowPrivilegeEscalation": true})
            }),
        ),
        (
            "spec.containers[0].securityContext.capabilities.add",
            Box::new(|p| {
                p["spec"]["containers"][0]["securityContext"] =
                    json!({"capabilities": {"add": ["NET_ADMIN"]}})
            }),
        ),
        (
            "spec.containers[0].securityContext.readOnlyRootFilesystem",
            Box::new(|p| {
                p["spec"]["containers"][0]["securityContext"] =
                    json!({"readOnlyRootFilesystem": false})
            }),
        ),
        (
            "spec.securityContext.seccompProfile.type",
            Box::new(|p| {
                p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "Unconfined"}})
            }),
        ),
        (
            "spec.containers[0].securityContext.seccompProfile.type",
            Box::new(|p| {
                p["spec"]["containers"][0]["securityContext"] =
                    json!({"seccompProfile": {"type": "Unconfined"}})
            }),
        ),
        (
            "spec.hostNetwork",
            Box::new(|p| p["spec"]["hostNetwork"] = json!(true)),
        ),
        (
            "spec.hostPID",
            Box::new(|p| p["spec"]["hostPID"] = json!(true)),
        ),
        (
            "spec.hostIPC",
            Box::new(|p| p["spec"]["hostIPC"] = json!(true)),
        ),
        (
            "spec.volumes[2].hostPath",
            Box::new(|p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}))
            }),
        ),
        (
            "spec.containers[0].ports[0].hostPort",
            Box::new(|p| p["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(7078)),
        ),
        (
            "spec.securityContext.supplementalGroups[1]",
            Box::new(|p| p["spec"]["securityContext"] = json!({"supplementalGroups": [185, 0]})),
        ),
        (
            "spec.shareProcessNamespace",
            Box::new(|p| p["spec"]["shareProcessNamespace"] = json!(true)),
        ),
        (
            "spec.initContainers[0].securityContext.privileged",
            Box::new(
                |p| p["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox", "securityContext": {"privileged": true}}]),
            ),
        ),
    ];
    for (field, edit) in cases {
        let mut pod = base.clone();
        edit(&mut pod);
        let run = setup.review(&Review::pod(pod).user("oidc:alice").build(), None, false);
        assert_eq!(run.code, Some(0));
        assert!(!run.allowed(), "{field} was admitted");
        let message = run.message();
        assert!(message.contains(field), "{field}: {message}");
        assert!(message.contains(": "), "{field}: no fix in {message}");
        assert_eq!(run.response()["status"]["code"], 403);
        assert!(
            run.output["ciliumNetworkPolicies"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{field}: denied job got a policy"
        );
    }
    // The same on a SparkApplication: spark-operator would copy it onto the pods.
    let app = with_token(fixture("apps/pyspark-etl.yaml"), &token);
    let app_cases: Vec<(&str, Value)> = vec![
        (
            "spec.driver.securityContext.privileged",
            json!({"driver": {"securityContext": {"privileged": true}}}),
        ),
        (
            "spec.executor.podSecurityContext.runAsUser",
            json!({"executor": {"podSecurityContext": {"runAsUser": 0}}}),
        ),
        (
            "spec.driver.hostNetwork",
            json!({"driver": {"hostNetwork": true}}),
        ),
        (
            "spec.driver.sidecars[0].securityContext.allowPrivilegeEscalation",
            json!({"driver": {"sidecars": [{"name": "s", "image": "x", "securityContext": {"allowPrivilegeEscalation": true}}]}}),
        ),
        (
            "spec.volumes[2].hostPath",
            json!({"volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "c"}}, {"name": "job-settings", "configMap": {"name": "x"}}, {"name": "h", "hostPath": {"path": "/"}}]}),
        ),
        (
            "spec.driver.securityContext.runAsGroup",
            json!({"driver": {"securityContext": {"runAsGroup": 0}}}),
        ),
        (
            "spec.driver.template.spec.shareProcessNamespace",
            json!({"driver": {"template": {"spec": {"shareProcessNamespace": true}}}}),
        ),
        (
            "spec.executor.template.spec.containers[0].securityContext.runAsUser",
            json!({"executor": {"template": {"spec": {"containers": [{"name": "spark-kubernetes-executor", "securityContext": {"runAsUser": 0}}]}}}}),
        ),
    ];
    for (field, patch) in app_cases {
        let mut obj = app.clone();
        json_patch::merge(&mut obj["spec"], &patch);
        let run = setup.review(
            &Review::spark_app(obj).user("oidc:alice").build(),
            None,
            false,
        );
        assert!(!run.allowed(), "{field} was admitted");
        assert!(run.message().contains(field), "{field}: {}", run.message());
    }
}

/// The fixtures' own ids are admitted above only because the config lists them: under the
/// defaults (only 185) the same manifests are denied, naming each field.
#[test]
fn fixture_ids_outside_the_defaults_are_denied_without_allowed_ids() {
    let setup = OfflineSetup::new("");
    let token = setup.token("alice", "x");
    for (review, fields) in [
        (
            Review::pod(with_token(
                fixture("pods/notebook-client-mode.yaml"),
                &token,
            )),
            vec!["spec.securityContext.fsGroup is 100, which is not an allowed GID"],
        ),
        (
            Review::spark_app(with_token(fixture("apps/sidecars-and-init.yaml"), &token)),
            vec![
                "spec.driver.podSecurityContext.fsGroup is 2000, which is not an allowed GID",
                "spec.driver.sidecars[0].securityContext.runAsUser is 1000, which is not an allowed UID",
            ],
        ),
    ] {
        let run = setup.review(&review.user("oidc:alice").build(), None, false);
        assert!(!run.allowed());
        let message = run.message();
        for field in fields {
            assert!(message.contains(field), "{field}: {message}");
        }
        assert!(message.contains("hardening.allowedIds"), "{message}");
    }
}

#[test]
fn mutating_an_admitted_object_again_changes_nothing() {
    let setup = OfflineSetup::new(FIXTURE_IDS);
    let token = setup.token("alice", "x");
    for (review, name) in [
        (
            Review::pod(with_token(
                fixture("pods/notebook-client-mode.yaml"),
                &token,
            )),
            "pod",
        ),
        (
            Review::spark_app(with_token(fixture("apps/sidecars-and-init.yaml"), &token)),
            "app",
        ),
    ] {
        let review = review.user("oidc:alice");
        let request = review.build();
        let first = setup.review(&request, None, false);
        assert!(first.allowed(), "{name}: {}", first.message());
        let once = applied(&request, &first);
        // The API server re-invokes the webhook for the same request with the mutated object.
        let mut again = review.clone();
        again.object = once.clone();
        let second = setup.review(&again.build(), None, false);
        assert!(second.allowed(), "{name}: {}", second.message());
        assert!(
            second.response().get("patch").is_none(),
            "{name}: {:?}",
            patch_of(&second.output["admissionReview"])
        );
        assert!(
            second.output["ciliumNetworkPolicies"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{name}: policy applied twice"
        );
        // And the validating webhook accepts the final object.
        let v = setup.review(&again.build(), None, true);
        assert!(v.allowed(), "{name}: {}", v.message());
    }
}

#[test]
fn a_security_context_replaced_by_another_webhook_is_hardened_again_on_reinvocation() {
    let setup = OfflineSetup::new("");
    let review = Review::pod(with_token(
        fixture("pods/spark-submit-driver.yaml"),
        &setup.token("alice", "x"),
    ))
    .user("oidc:alice");
    let request = review.build();
    let first = setup.review(&request, None, false);
    let mut pod = applied(&request, &first);
    // spark-operator's pod webhook replaces the Spark container's securityContext wholesale.
    pod["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 185, "runAsGroup": 185});
    let mut again = review.clone();
    again.object = pod;
    let request = again.build();
    // The validating webhook would refuse this final object...
    let v = setup.review(&request, None, true);
    assert!(!v.allowed());
    assert!(v.message().contains("not hardened"), "{}", v.message());
    // ...so the reinvoked mutation puts the missing settings back.
    let second = setup.review(&request, None, false);
    assert!(second.allowed(), "{}", second.message());
    let ops = patch_of(&second.output["admissionReview"]);
    assert!(!ops.is_empty());
    let fixed = applied(&request, &second);
    assert_restricted("re-hardened driver", &fixed);
}

/// A manifest whose `spark-role: driver` pod has a lower-case `all` that another mutating
/// webhook wrote after sparkward's last call: the validating pass refuses it, naming the entry.
#[test]
fn a_lower_case_all_that_reaches_the_validating_webhook_is_refused() {
    let setup = OfflineSetup::new("");
    let review = Review::pod(with_token(
        fixture("pods/spark-submit-driver.yaml"),
        &setup.token("alice", "x"),
    ))
    .user("oidc:alice");
    let request = review.build();
    let first = setup.review(&request, None, false);
    assert!(first.allowed(), "{}", first.message());
    let mut pod = applied(&request, &first);
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] = json!(["all"]);
    let mut again = review.clone();
    again.object = pod;
    let v = setup.review(&again.build(), None, true);
    assert!(!v.allowed());
    let message = v.message();
    assert!(
        message.contains(
            "spec.containers[0].securityContext.capabilities.drop[0] is 'all' (container \"spark-kubernetes-driver\"): Pod Security \"restricted\" accepts only upper-case ALL"
        ),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: the stand-in API server runs sparkward's webhook configurations.
// ---------------------------------------------------------------------------------------------

const NS: &str = "spark-jobs";

/// sparkward (its config: the scenario's plus `extra`) behind the stand-in API server, with
/// its own webhook configurations installed and `spark-jobs` enforced.
struct Chain {
    api: FakeApiServer,
    idp: Idp,
    _server: Sparkward,
    _dir: tempfile::TempDir,
}

async fn chain(extra: &str) -> Chain {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({ "sparkward.io/enforce": "true" }));
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

    async fn create(&self, object: Value) -> Result<Value, Value> {
        self.api.create_as(&User::new("oidc:alice"), object).await
    }

    /// Creates `object` and expects it admitted; the stored object.
    async fn admitted(&self, resource: Resource, object: Value) -> Value {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        self.create(object)
            .await
            .unwrap_or_else(|status| panic!("{name} was not admitted: {status}"));
        self.api
            .get(resource, NS, &name)
            .unwrap_or_else(|| panic!("{name} was not stored"))
    }

    /// Creates `object` and expects sparkward's `webhook` to deny it; the message.
    async fn denied(&self, resource: Resource, object: Value, webhook: &str) -> String {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let status = self
            .create(object)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} was admitted"));
        assert_eq!(status["code"], 403, "{name}: {status}");
        let message = status["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with(&format!(
                "admission webhook \"{webhook}\" denied the request"
            )),
            "{name}: {message}"
        );
        assert!(self.api.get(resource, NS, &name).is_none(), "{name} stored");
        message
    }
}

#[tokio::test]
async fn root_groups_unlisted_ids_and_shared_process_namespaces_are_denied_through_the_api_server()
{
    let c = chain("").await;
    const PODS: &str = "pods.mutate.sparkward.io";
    const APPS: &str = "sparkapplications.mutate.sparkward.io";
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let pod_attacks: Vec<(&str, Edit, &str)> = vec![
        (
            "pod-run-as-group",
            Box::new(|p| p["spec"]["securityContext"] = json!({"runAsGroup": 0})),
            "spec.securityContext.runAsGroup is 0 (the root group): remove it (sparkward sets 185)",
        ),
        (
            "container-run-as-group",
            Box::new(|p| p["spec"]["containers"][0]["securityContext"] = json!({"runAsGroup": 0})),
            "spec.containers[0].securityContext.runAsGroup is 0 (the root group) (container \"spark-kubernetes-driver\"): remove it",
        ),
        (
            "fs-group",
            Box::new(|p| p["spec"]["securityContext"] = json!({"fsGroup": 0})),
            "spec.securityContext.fsGroup is 0 (the root group): remove it (sparkward sets 185)",
        ),
        (
            "supplemental-groups",
            Box::new(|p| p["spec"]["securityContext"] = json!({"supplementalGroups": [0]})),
            "spec.securityContext.supplementalGroups[0] is 0 (the root group): remove it",
        ),
        (
            "run-as-user-1000",
            Box::new(|p| p["spec"]["securityContext"] = json!({"runAsUser": 1000})),
            "spec.securityContext.runAsUser is 1000, which is not an allowed UID: remove it (sparkward sets 185) or use an allowed UID (185; the platform team can allow others in hardening.allowedIds)",
        ),
        (
            "share-process-namespace",
            Box::new(|p| p["spec"]["shareProcessNamespace"] = json!(true)),
            "spec.shareProcessNamespace is true: remove it",
        ),
    ];
    for (name, edit, expected) in pod_attacks {
        let message = c.denied(POD, c.pod(name, edit), PODS).await;
        assert!(message.contains(expected), "{name}: {message}");
    }
    let message = c
        .denied(
            SPARK_APP,
            c.app(
                "driver-root-group",
                json!({"driver": {"podSecurityContext": {"runAsGroup": 0}}}),
            ),
            APPS,
        )
        .await;
    assert!(
        message.contains("spec.driver.podSecurityContext.runAsGroup is 0 (the root group)"),
        "{message}"
    );
    let message = c
        .denied(
            SPARK_APP,
            c.app(
                "executor-shared-pids",
                json!({"executor": {"shareProcessNamespace": true}}),
            ),
            APPS,
        )
        .await;
    assert!(
        message.contains("spec.executor.shareProcessNamespace is true"),
        "{message}"
    );
    let message = c
        .denied(
            SCHEDULED_SPARK_APP,
            c.scheduled(
                "nightly-root-group",
                json!({"executor": {"podSecurityContext": {"fsGroup": 0}}}),
            ),
            APPS,
        )
        .await;
    assert!(
        message.contains("spec.template.executor.podSecurityContext.fsGroup is 0 (the root group)"),
        "{message}"
    );
    // No denied job left a policy behind.
    assert!(c.api.list(CNP, Some(NS)).is_empty());
}

#[tokio::test]
async fn legitimate_ids_and_a_lower_case_drop_all_are_admitted_through_the_api_server() {
    let c = chain("hardening:\n  allowedIds: [{min: 1000, max: 1999}]\n").await;

    // A lower-case `all` is stored as `ALL`, in place; the pod meets the restricted profile.
    let pod = c
        .admitted(
            POD,
            c.pod("drop-lower-case", |p| {
                p["spec"]["containers"][0]["securityContext"] =
                    json!({"capabilities": {"drop": ["all"]}});
                p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox",
                    "securityContext": {"capabilities": {"drop": ["NET_RAW", "All"]}}}]);
            }),
        )
        .await;
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["NET_RAW", "ALL"])
    );
    assert_restricted("pod with a lower-case all", &pod);

    // Ids inside allowedIds are admitted and kept, at pod and container level.
    let pod = c
        .admitted(
            POD,
            c.pod("allowed-ids", |p| {
                p["spec"]["securityContext"] = json!({"runAsUser": 1500, "runAsGroup": 1999,
                    "fsGroup": 1000, "supplementalGroups": [1000, 185]});
                p["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000});
            }),
        )
        .await;
    assert_eq!(
        pod["spec"]["securityContext"],
        json!({"runAsUser": 1500, "runAsGroup": 1999, "fsGroup": 1000,
            "supplementalGroups": [1000, 185], "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["runAsUser"],
        1000
    );

    // The configured ids, set explicitly, are admitted unchanged.
    let pod = c
        .admitted(
            POD,
            c.pod("configured-ids", |p| {
                p["spec"]["securityContext"] =
                    json!({"runAsUser": 185, "runAsGroup": 185, "fsGroup": 185});
            }),
        )
        .await;
    assert_eq!(pod["spec"]["securityContext"]["runAsGroup"], 185);

    // Unset ids get the configured ones.
    let pod = c.admitted(POD, c.pod("no-ids", |_| {})).await;
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert_eq!(pod["spec"]["securityContext"][key], 185, "{key}");
    }

    // One past the range is not.
    let message = c
        .denied(
            POD,
            c.pod("outside-allowed-ids", |p| {
                p["spec"]["securityContext"] = json!({"runAsUser": 2000});
            }),
            "pods.mutate.sparkward.io",
        )
        .await;
    assert!(
        message.contains("spec.securityContext.runAsUser is 2000, which is not an allowed UID: remove it (sparkward sets 185) or use an allowed UID (185, or 1000-1999 from hardening.allowedIds)"),
        "{message}"
    );

    // A SparkApplication: allowed ids kept, a lower-case `all` rewritten, groups set.
    let app = c
        .admitted(
            SPARK_APP,
            c.app(
                "allowed-app",
                json!({"executor": {"podSecurityContext": {"runAsUser": 1200}},
                    "driver": {"securityContext": {"capabilities": {"drop": ["all"]}}}}),
            ),
        )
        .await;
    assert_eq!(
        app["spec"]["executor"]["podSecurityContext"]["runAsUser"],
        1200
    );
    assert_eq!(
        app["spec"]["driver"]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(app["spec"]["driver"]["securityContext"]["runAsGroup"], 185);
    assert_eq!(app["spec"]["driver"]["podSecurityContext"]["fsGroup"], 185);
}

/// `pod` with `list` set to `n` copies of its first container, named `c0`, `c1`, ...
fn copies_of_first_container(pod: &Value, list: &str, n: usize) -> Value {
    let first = &pod["spec"]["containers"][0];
    let copies: Vec<Value> = (0..n)
        .map(|i| {
            let mut c = first.clone();
            c["name"] = json!(format!("c{i}"));
            c
        })
        .collect();
    let mut pod = pod.clone();
    pod["spec"][list] = json!(copies);
    pod
}

#[test]
fn a_pod_with_more_containers_than_sparkward_reads_is_denied_and_one_at_the_limit_is_hardened() {
    let setup = OfflineSetup::new("");
    let token = setup.token("alice", "x");
    let pod_of = |n: usize, list: &str| {
        let pod = fixture("pods/spark-submit-driver.yaml");
        Review::pod(with_token(copies_of_first_container(&pod, list, n), &token))
            .user("oidc:alice")
            .build()
    };
    // The submitter's pod at the limit: every one of its containers is hardened.
    let request = pod_of(128, "containers");
    let run = setup.review(&request, None, false);
    assert!(run.allowed(), "{}", run.message());
    let pod = applied(&request, &run);
    assert_restricted("a pod of 128 containers", &pod);
    assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 128);

    // A pod stored before the limit (admitted before sparkward, or before this version) with
    // more containers than it reads can still be deleted by its submitter; another user is
    // still refused. A DELETE reads the pod's metadata and node only.
    let mut stored = copies_of_first_container(&pod, "containers", 200);
    stored["metadata"]["uid"] = json!("stored-uid-1");
    stored["metadata"]["name"] = json!("stored");
    for (user, allowed) in [("oidc:alice", true), ("oidc:mallory", false)] {
        let request = Review::pod(stored.clone()).delete().user(user).build();
        let run = setup.review(&request, None, true);
        assert_eq!(run.allowed(), allowed, "{user}: {}", run.message());
    }

    // The attack: one more (in any list) is refused before the list is read further, with
    // what to do. The fuzzer's million empty containers made one review allocate gigabytes.
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let run = setup.review(&pod_of(129, list), None, false);
        assert!(!run.allowed(), "{list}");
        assert_eq!(run.response()["auditAnnotations"]["reason"], "malformed");
        let message = run.message();
        assert!(
            message.contains("more than 128 containers in one list")
                && message.contains("split the work over more pods"),
            "{list}: {message}"
        );
    }

    // A SparkApplication's sidecars are containers of its pods: the same limit.
    let mut app = fixture("apps/pyspark-etl.yaml");
    app["spec"]["executor"]["sidecars"] = json!(
        (0..129)
            .map(|i| json!({"name": format!("s{i}"), "image": "busybox:1.36"}))
            .collect::<Vec<_>>()
    );
    let request = Review::spark_app(with_token(app, &token))
        .user("oidc:alice")
        .build();
    let run = setup.review(&request, None, false);
    assert!(!run.allowed());
    assert!(
        run.message().contains("more than 128 containers"),
        "{}",
        run.message()
    );
}

/// A pod template (`spec.driver.template`, untyped in the CRD) is read with the limits of the
/// typed lists: 128 containers or init containers and 1,024 volumes are read (and their
/// settings checked), one more is refused as malformed with what to do, in both webhooks.
#[test]
fn a_pod_template_is_read_up_to_the_list_limits_and_refused_past_them() {
    let setup = OfflineSetup::new("");
    let token = setup.token("alice", "x");
    let app_with = |list: &str, items: Vec<Value>| {
        let mut app = fixture("apps/pyspark-etl.yaml");
        app["spec"]["driver"]["template"] = json!({"spec": {list: items}});
        Review::spark_app(with_token(app, &token))
            .user("oidc:alice")
            .build()
    };
    let containers =
        |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"name": format!("c{i}")})).collect() };
    let volumes = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("v{i}"), "emptyDir": {}}))
            .collect()
    };
    for (list, at, past, limit) in [
        (
            "containers",
            containers(128),
            containers(129),
            "more than 128 containers in one list; sparkward admits at most 128 per list: \
             split the work over more pods",
        ),
        (
            "initContainers",
            containers(128),
            containers(129),
            "more than 128 containers in one list",
        ),
        (
            "volumes",
            volumes(1024),
            volumes(1025),
            "more than 1024 items in one list; sparkward admits at most 1024 per list: split \
             the work over more objects",
        ),
    ] {
        let run = setup.review(&app_with(list, at.clone()), None, false);
        assert!(run.allowed(), "{list} at the limit: {}", run.message());
        // What is read is checked: the last item at the limit is still inspected.
        let mut weaker = at;
        let last = weaker.len() - 1;
        if list == "volumes" {
            weaker[last] = json!({"name": "h", "hostPath": {"path": "/"}});
        } else {
            weaker[last]["securityContext"] = json!({"privileged": true});
        }
        let run = setup.review(&app_with(list, weaker), None, false);
        assert!(!run.allowed(), "{list}: the last item was not checked");
        assert!(
            run.message()
                .contains(&format!("spec.driver.template.spec.{list}[{last}]")),
            "{list}: {}",
            run.message()
        );
        for validate in [false, true] {
            let run = setup.review(&app_with(list, past.clone()), None, validate);
            assert!(
                !run.allowed(),
                "{list} past the limit (validate: {validate})"
            );
            assert_eq!(
                run.response()["auditAnnotations"]["reason"],
                "malformed",
                "{list}"
            );
            assert!(
                run.message().contains(limit),
                "{list} (validate: {validate}): {}",
                run.message()
            );
        }
    }
}
