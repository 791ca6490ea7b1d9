//! The stand-in API server, exercised through the real `kube::Client` (and kube-runtime's
//! watcher and reflector), so the other integration tests can trust what it answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

use support::apiserver::{
    CNP, FakeApiServer, Fault, LEASE, NAMESPACE, POD, SCHEDULED_SPARK_APP, SPARK_APP,
};
use support::upstream::{self, Crd, crd_validator};

const WAIT: Duration = Duration::from_secs(10);

fn mk_cnp(name: &str, port: Value) -> Value {
    json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": { "app.kubernetes.io/managed-by": "sparkward", "sparkward.io/job-id": "sj-abc" },
        },
        "specs": [{
            "endpointSelector": { "matchLabels": { "sparkward.io/job-id": "sj-abc" } },
            "egress": [{ "toPorts": [{ "ports": [{ "port": port, "protocol": "TCP" }] }] }],
        }],
    })
}

fn mk_dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn mk_pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": labels },
        "spec": { "containers": [{ "name": "spark", "image": "spark:3.5.3" }] },
    }))
    .unwrap()
}

fn mk_lease(name: &str, holder: &str) -> Lease {
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 },
    }))
    .unwrap()
}

fn cnps(api: &FakeApiServer) -> Api<DynamicObject> {
    Api::namespaced_with(api.client(), "default", &CNP.api_resource())
}

/// The API error of a failed call; panics on success or on a non-API error.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(object: &DynamicObject) -> String {
    object.metadata.resource_version.clone().unwrap()
}

async fn next<S, T>(stream: &mut S) -> T
where
    S: futures::Stream<Item = T> + Unpin,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream produced nothing in time")
        .expect("stream ended")
}

#[tokio::test]
async fn serves_version_and_discovery() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "cilium.io"));
    let resources = client
        .list_api_group_resources("cilium.io/v2")
        .await
        .unwrap();
    assert!(
        resources
            .resources
            .iter()
            .any(|r| r.name == "ciliumnetworkpolicies")
    );
}

#[tokio::test]
async fn creates_gets_lists_and_deletes_a_cnp() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let created = cnps
        .create(
            &PostParams::default(),
            &mk_dynamic(mk_cnp("p1", json!("5432"))),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert_eq!(meta.generation, Some(1));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(created.types.as_ref().unwrap().kind, "CiliumNetworkPolicy");

    let fetched = cnps.get("p1").await.unwrap();
    assert_eq!(fetched.metadata.uid, meta.uid);
    assert_eq!(
        fetched.data["specs"][0]["egress"][0]["toPorts"][0]["ports"][0]["port"],
        "5432"
    );

    let second = cnps
        .create(
            &PostParams::default(),
            &mk_dynamic(mk_cnp("p2", json!("80"))),
        )
        .await
        .unwrap();
    assert!(rv(&second).parse::<u64>().unwrap() > rv(&created).parse::<u64>().unwrap());
    let listed = cnps.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["p1", "p2"]);
    assert_eq!(listed.metadata.resource_version, Some(rv(&second)));

    let deleted = cnps.delete("p1", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left(), "a removed object is returned");
    assert!(api.get(CNP, "default", "p1").is_none());
    assert_eq!(api.list(CNP, None).len(), 1);
}

#[tokio::test]
async fn answers_not_found_with_the_real_status() {
    let api = FakeApiServer::start().await;
    let status = api_error(cnps(&api).get("x").await);
    assert_eq!(status.code, 404);
    assert_eq!(status.reason, "NotFound");
    assert_eq!(
        status.message,
        "ciliumnetworkpolicies.cilium.io \"x\" not found"
    );
    let details = status.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("x", "cilium.io", "ciliumnetworkpolicies")
    );

    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let status = api_error(pods.get("nope").await);
    assert_eq!(status.message, "pods \"nope\" not found");
}

#[tokio::test]
async fn answers_already_exists_on_a_duplicate_create() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let cnp = mk_dynamic(mk_cnp("dup", json!("80")));
    cnps.create(&PostParams::default(), &cnp).await.unwrap();
    let status = api_error(cnps.create(&PostParams::default(), &cnp).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(
        status.message,
        "ciliumnetworkpolicies.cilium.io \"dup\" already exists"
    );
}

#[tokio::test]
async fn rejects_a_stale_replace_with_conflict() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let first = cnps
        .create(
            &PostParams::default(),
            &mk_dynamic(mk_cnp("c", json!("80"))),
        )
        .await
        .unwrap();
    let mut update = first.clone();
    update.data["specs"][0]["egress"][0]["toPorts"][0]["ports"][0]["port"] = json!("81");
    let replaced = cnps
        .replace("c", &PostParams::default(), &update)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));

    let status = api_error(cnps.replace("c", &PostParams::default(), &update).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on ciliumnetworkpolicies.cilium.io \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn replace_of_a_missing_object_is_not_found() {
    let api = FakeApiServer::start().await;
    let status = api_error(
        cnps(&api)
            .replace(
                "ghost",
                &PostParams::default(),
                &mk_dynamic(mk_cnp("ghost", json!("80"))),
            )
            .await,
    );
    assert_eq!(status.code, 404);
}

#[tokio::test]
async fn merge_patch_bumps_generation_only_on_spec_change() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("m", json!("80"))),
    )
    .await
    .unwrap();
    let patched = cnps
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "extra": "yes" } } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["extra"], "yes");
    assert_eq!(patched.metadata.generation, Some(1));

    let patched = cnps
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "extra": null } }, "specs": [{ "endpointSelector": {}, "egress": [{ "toEntities": ["world"] }] }] })),
        )
        .await
        .unwrap();
    assert!(
        !patched
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("extra")
    );
    assert_eq!(patched.metadata.generation, Some(2));
}

#[tokio::test]
async fn json_patch_edits_a_cnp() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("j", json!("80"))),
    )
    .await
    .unwrap();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/specs/0/egress/0/toPorts/0/ports/0/port", "value": "80" },
        { "op": "replace", "path": "/specs/0/egress/0/toPorts/0/ports/0/port", "value": "443" },
    ]))
    .unwrap();
    let patched = cnps
        .patch("j", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(
        patched.data["specs"][0]["egress"][0]["toPorts"][0]["ports"][0]["port"],
        "443"
    );

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{ "op": "test", "path": "/specs/0/egress/0/toPorts/0/ports/0/port", "value": "80" }]))
            .unwrap();
    let status = api_error(
        cnps.patch("j", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await,
    );
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn strategic_merge_patch_is_refused_for_custom_resources_like_the_real_api() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("s", json!("80"))),
    )
    .await
    .unwrap();
    let status = api_error(
        cnps.patch(
            "s",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": { "labels": { "a": "b" } } })),
        )
        .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (415, "UnsupportedMediaType")
    );

    let pods: Api<Pod> = Api::default_namespaced(api.client());
    pods.create(&PostParams::default(), &mk_pod("p", json!({})))
        .await
        .unwrap();
    let patched = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "metadata": { "labels": { "a": "b" } } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["a"], "b");
}

#[tokio::test]
async fn rejects_cnp_with_numeric_port() {
    if !FakeApiServer::schema_validation() {
        return;
    }
    let api = FakeApiServer::start().await;
    let status = api_error(
        cnps(&api)
            .create(
                &PostParams::default(),
                &mk_dynamic(mk_cnp("num", json!(5432))),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .starts_with("CiliumNetworkPolicy.cilium.io \"num\" is invalid: "),
        "{}",
        status.message
    );
    let causes = status.details.unwrap().causes;
    assert!(
        causes
            .iter()
            .any(|c| c.field == "specs[0].egress[0].toPorts[0].ports[0].port"),
        "{causes:?}"
    );
    assert!(api.get(CNP, "default", "num").is_none());
}

#[tokio::test]
async fn rejects_cnp_with_unknown_field_instead_of_pruning_it() {
    if !FakeApiServer::schema_validation() {
        return;
    }
    let api = FakeApiServer::start().await;
    let mut cnp = mk_cnp("typo", json!("80"));
    cnp["specs"][0]["egress"][0]["toPort"] = json!([]);
    let status = api_error(
        cnps(&api)
            .create(&PostParams::default(), &mk_dynamic(cnp))
            .await,
    );
    assert_eq!(status.code, 422);
    let causes = status.details.unwrap().causes;
    assert_eq!(causes[0].field, "specs[0].egress[0].toPort");
    assert_eq!(causes[0].reason, "FieldValueUnknown");

    // The same rules on an update.
    cnps(&api)
        .create(
            &PostParams::default(),
            &mk_dynamic(mk_cnp("ok", json!("80"))),
        )
        .await
        .unwrap();
    let status = api_error(
        cnps(&api)
            .patch("ok", &PatchParams::default(), &Patch::Merge(json!({ "specs": [{ "endpointSelector": {}, "egress": [{ "toEntities": ["everywhere"] }] }] })))
            .await,
    );
    assert_eq!(status.code, 422);
    assert_eq!(
        status.details.unwrap().causes[0].reason,
        "FieldValueNotSupported"
    );
}

#[tokio::test]
async fn validator_accepts_every_upstream_spark_application_example() {
    let files = upstream::example_files();
    if files.is_empty() {
        return;
    }
    let api = FakeApiServer::start().await;
    let mut checked = 0;
    let mut unparsable = Vec::new();
    for file in files {
        // Upstream's Prometheus example is a template (`image: {IMAGE_REGISTRY}/...`), not YAML.
        let Ok(docs) = upstream::load_yaml_documents(&file) else {
            unparsable.push(file.file_name().unwrap().to_string_lossy().into_owned());
            continue;
        };
        for doc in docs {
            let crd = match doc["kind"].as_str() {
                Some("SparkApplication") => Crd::SparkApplication,
                Some("ScheduledSparkApplication") => Crd::ScheduledSparkApplication,
                _ => continue,
            };
            let validator = crd_validator(crd).unwrap();
            assert_eq!(validator.validate(&doc), Ok(()), "{}", file.display());
            api.insert(doc);
            checked += 1;
        }
    }
    assert_eq!(unparsable, ["spark-pi-prometheus.yaml"]);
    assert!(checked >= 6, "only {checked} examples");
    assert!(!api.list(SPARK_APP, Some("default")).is_empty());
    assert!(!api.list(SCHEDULED_SPARK_APP, Some("default")).is_empty());
}

#[tokio::test]
async fn validator_drops_nulls_and_fills_schema_defaults_like_the_api_server() {
    let Some(validator) = crd_validator(Crd::CiliumNetworkPolicy) else {
        return;
    };
    let mut cnp = mk_cnp("icmp", json!("80"));
    cnp["specs"][0]["egress"][0]["icmps"] = json!([{ "fields": [{ "type": 8 }] }]);
    cnp["specs"][0]["description"] = Value::Null;
    assert!(validator.admit(&mut cnp).is_empty());
    assert_eq!(
        cnp["specs"][0]["egress"][0]["icmps"][0]["fields"][0]["family"],
        "IPv4"
    );
    assert!(cnp["specs"][0].get("description").is_none());
}

#[tokio::test]
async fn same_apply_twice_keeps_the_resource_version() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let pp = PatchParams::apply("sparkward").force();
    let cnp = mk_cnp("a", json!("80"));
    let first = cnps.patch("a", &pp, &Patch::Apply(&cnp)).await.unwrap();
    assert_eq!(first.metadata.generation, Some(1));
    let second = cnps.patch("a", &pp, &Patch::Apply(&cnp)).await.unwrap();
    assert_eq!(rv(&first), rv(&second));
    let managed = second.metadata.managed_fields.unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("sparkward"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    assert!(managed[0].fields_v1.as_ref().unwrap().0["f:specs"].is_object());
}

#[tokio::test]
async fn apply_without_field_manager_is_rejected() {
    let api = FakeApiServer::start().await;
    let status = api_error(
        cnps(&api)
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Apply(mk_cnp("a", json!("80"))),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("fieldManager: Required value"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn apply_by_another_manager_conflicts_unless_forced() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    cnps.patch(
        "a",
        &PatchParams::apply("sparkward"),
        &Patch::Apply(mk_cnp("a", json!("80"))),
    )
    .await
    .unwrap();
    let intruder = mk_cnp("a", json!("22"));
    let status = api_error(
        cnps.patch(
            "a",
            &PatchParams::apply("someone"),
            &Patch::Apply(&intruder),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status
            .message
            .starts_with("Apply failed with 1 conflict: conflict with \"sparkward\""),
        "{}",
        status.message
    );

    // Same values owned by someone else are shared, not a conflict.
    cnps.patch(
        "a",
        &PatchParams::apply("someone"),
        &Patch::Apply(mk_cnp("a", json!("80"))),
    )
    .await
    .unwrap();

    let forced = cnps
        .patch(
            "a",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(&intruder),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.data["specs"][0]["egress"][0]["toPorts"][0]["ports"][0]["port"],
        "22"
    );
    // A merge patch by an updater takes the field too; the applier then conflicts with it.
    cnps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "sparkward.io/job-id": "sj-other" } } })),
    )
    .await
    .unwrap();
    let status = api_error(
        cnps.patch(
            "a",
            &PatchParams::apply("someone"),
            &Patch::Apply(&intruder),
        )
        .await,
    );
    assert!(
        status
            .message
            .contains("metadata.labels.sparkward.io/job-id"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn apply_removes_fields_its_manager_no_longer_sets() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let pp = PatchParams::apply("sparkward").force();
    let mut cnp = mk_cnp("r", json!("80"));
    cnp["metadata"]["annotations"] = json!({ "sparkward.io/policy": "r" });
    cnps.patch("r", &pp, &Patch::Apply(&cnp)).await.unwrap();
    cnps.patch(
        "r",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "kept": "x" } } })),
    )
    .await
    .unwrap();
    cnp["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    cnp["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("sparkward.io/job-id");
    let after = cnps.patch("r", &pp, &Patch::Apply(&cnp)).await.unwrap();
    let labels = after.metadata.labels.unwrap();
    assert!(!labels.contains_key("sparkward.io/job-id"));
    assert_eq!(labels["kept"], "x", "fields of other managers stay");
    assert!(after.metadata.annotations.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn delete_honours_uid_and_resource_version_preconditions() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let created = cnps
        .create(
            &PostParams::default(),
            &mk_dynamic(mk_cnp("d", json!("80"))),
        )
        .await
        .unwrap();
    let wrong_uid = DeleteParams::default().preconditions(Preconditions {
        uid: Some("00000000-0000-4000-8000-000000000000".into()),
        resource_version: None,
    });
    let status = api_error(cnps.delete("d", &wrong_uid).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status
            .message
            .contains("Precondition failed: UID in precondition"),
        "{}",
        status.message
    );
    let stale = DeleteParams::default().preconditions(Preconditions {
        uid: None,
        resource_version: Some("1".into()),
    });
    assert_eq!(api_error(cnps.delete("d", &stale).await).code, 409);
    let exact = DeleteParams::default().preconditions(Preconditions {
        uid: created.metadata.uid.clone(),
        resource_version: Some(rv(&created)),
    });
    cnps.delete("d", &exact).await.unwrap();
    assert!(api.get(CNP, "default", "d").is_none());
}

#[tokio::test]
async fn finalizers_defer_deletion_until_emptied() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let mut cnp = mk_cnp("f", json!("80"));
    cnp["metadata"]["finalizers"] = json!(["sparkward.io/cleanup"]);
    cnps.create(&PostParams::default(), &mk_dynamic(cnp))
        .await
        .unwrap();
    let pending = cnps.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = pending.left().expect("the object, still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(api.get(CNP, "default", "f").is_some());
    cnps.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(api.get(CNP, "default", "f").is_none());
}

#[tokio::test]
async fn status_subresource_changes_only_status() {
    let api = FakeApiServer::start().await;
    let apps: Api<DynamicObject> =
        Api::namespaced_with(api.client(), "default", &SPARK_APP.api_resource());
    let app = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": { "name": "pi" },
        "spec": { "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.jar", "driver": {}, "executor": {} },
        "status": { "applicationState": { "state": "COMPLETED" } },
    });
    let created = apps
        .create(&PostParams::default(), &mk_dynamic(app))
        .await
        .unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let patched = apps
        .patch_status(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "status": { "applicationState": { "state": "RUNNING" }, "driverInfo": {} },
                "spec": { "sparkVersion": "0" },
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data["status"]["applicationState"]["state"],
        "RUNNING"
    );
    assert_eq!(patched.data["spec"]["sparkVersion"], "3.5.3");
    assert_eq!(patched.metadata.generation, Some(1));

    let main = apps
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "applicationState": { "state": "FAILED" } } })),
        )
        .await
        .unwrap();
    assert_eq!(main.data["status"]["applicationState"]["state"], "RUNNING");

    let done = api
        .update_status(
            SPARK_APP,
            "default",
            "pi",
            json!({ "applicationState": { "state": "COMPLETED" }, "driverInfo": {} }),
        )
        .unwrap();
    assert_eq!(done["status"]["applicationState"]["state"], "COMPLETED");
}

/// kube-apiserver's pods/status resets only the spec, the deletion timestamp and the
/// ownerReferences (podStatusStrategy; tests/real_cluster.rs sees sparkward refuse a label
/// change made through it): labels and annotations go through.
#[tokio::test]
async fn pod_status_subresource_writes_status_and_metadata_but_not_spec_or_owners() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    pods.create(
        &PostParams::default(),
        &mk_pod("driver", json!({ "a": "1" })),
    )
    .await
    .unwrap();
    let patched = pods
        .patch_status(
            "driver",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "labels": { "a": "2" }, "annotations": { "note": "x" },
                    "ownerReferences": [{ "apiVersion": "v1", "kind": "Pod", "name": "other",
                        "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" }] },
                "spec": { "containers": [{ "name": "spark", "image": "evil:1" }] },
                "status": { "phase": "Running" },
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
    let meta = &patched.metadata;
    assert_eq!(meta.labels.as_ref().unwrap()["a"], "2");
    assert_eq!(meta.annotations.as_ref().unwrap()["note"], "x");
    assert!(meta.owner_references.is_none(), "{meta:?}");
    assert_eq!(
        patched.spec.unwrap().containers[0].image.as_deref(),
        Some("spark:3.5.3")
    );
}

#[tokio::test]
async fn pods_need_containers_and_a_namespace_that_exists() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let created = pods
        .create(&PostParams::default(), &mk_pod("driver", json!({})))
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));

    let mut empty = mk_pod("empty", json!({}));
    empty.spec.as_mut().unwrap().containers.clear();
    let status = api_error(pods.create(&PostParams::default(), &empty).await);
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Pod \"empty\" is invalid: spec.containers: Required value"
    );

    let elsewhere: Api<Pod> = Api::namespaced(api.client(), "spark-jobs");
    let status = api_error(
        elsewhere
            .create(&PostParams::default(), &mk_pod("x", json!({})))
            .await,
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"spark-jobs\" not found")
    );
    api.ensure_namespace("spark-jobs", json!({ "sparkward.io/enforce": "true" }));
    elsewhere
        .create(&PostParams::default(), &mk_pod("x", json!({})))
        .await
        .unwrap();
    let ns = api.get(NAMESPACE, "", "spark-jobs").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "spark-jobs"
    );
}

#[tokio::test]
async fn invalid_labels_and_names_are_rejected() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let status = api_error(
        pods.create(
            &PostParams::default(),
            &mk_pod("bad", json!({ "sparkward.io/user": "alice@example.com" })),
        )
        .await,
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.details.unwrap().causes[0].field, "metadata.labels");
    let status = api_error(
        pods.create(&PostParams::default(), &mk_pod("Upper", json!({})))
            .await,
    );
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn generate_name_gets_a_random_suffix() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let mut pod = mk_pod("", json!({}));
    pod.metadata.name = None;
    pod.metadata.generate_name = Some("spark-exec-".into());
    let a = pods.create(&PostParams::default(), &pod).await.unwrap();
    let b = pods.create(&PostParams::default(), &pod).await.unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(
        a.starts_with("spark-exec-") && a.len() == "spark-exec-".len() + 5,
        "{a}"
    );
    assert_ne!(a, b);
}

#[tokio::test]
async fn leases_update_with_optimistic_concurrency() {
    let api = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), "kube-system");
    let created = leases
        .create(&PostParams::default(), &mk_lease("lock", "a"))
        .await
        .unwrap();
    let mut mine = created.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let taken = leases
        .replace("lock", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("b"));
    let status = api_error(
        leases
            .replace("lock", &PostParams::default(), &created)
            .await,
    );
    assert_eq!(status.code, 409);
    let applied = leases
        .patch("lock", &PatchParams::apply("sparkward").force(), &Patch::Apply(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": { "holderIdentity": "c" }
        })))
        .await
        .unwrap();
    assert_eq!(applied.spec.unwrap().holder_identity.as_deref(), Some("c"));
    assert!(api.get(LEASE, "kube-system", "lock").is_some());
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    for (name, role) in [("d1", "driver"), ("e1", "executor"), ("e2", "executor")] {
        pods.create(
            &PostParams::default(),
            &mk_pod(
                name,
                json!({ "spark-role": role, "sparkward.io/job-id": "sj-1" }),
            ),
        )
        .await
        .unwrap();
    }
    pods.create(&PostParams::default(), &mk_pod("other", json!({})))
        .await
        .unwrap();
    let names = |list: kube::core::ObjectList<Pod>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    for (selector, expected) in [
        ("spark-role=executor", vec!["e1", "e2"]),
        ("spark-role==driver", vec!["d1"]),
        ("spark-role!=executor", vec!["d1", "other"]),
        ("sparkward.io/job-id", vec!["d1", "e1", "e2"]),
        ("!sparkward.io/job-id", vec!["other"]),
        (
            "spark-role in (driver,executor),sparkward.io/job-id=sj-1",
            vec!["d1", "e1", "e2"],
        ),
        ("spark-role notin (executor)", vec!["d1", "other"]),
    ] {
        let got = names(
            pods.list(&ListParams::default().labels(selector))
                .await
                .unwrap(),
        );
        assert_eq!(got, expected, "{selector}");
    }
    let got = names(
        pods.list(&ListParams::default().fields("metadata.name=e2"))
            .await
            .unwrap(),
    );
    assert_eq!(got, ["e2"]);
    let all: Api<Pod> = Api::all(api.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    let status = api_error(
        pods.list(&ListParams::default().fields("spec.nope=1"))
            .await,
    );
    assert_eq!(status.code, 400);
    let status = api_error(pods.list(&ListParams::default().labels("a in (")).await);
    assert_eq!(status.code, 400);
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    for i in 0..5 {
        pods.create(&PostParams::default(), &mk_pod(&format!("p{i}"), json!({})))
            .await
            .unwrap();
    }
    let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.unwrap();
    let rest = pods
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(rest.metadata.continue_.is_none());
}

#[tokio::test]
async fn injected_500_surfaces_as_an_api_error() {
    let api = FakeApiServer::start().await;
    api.inject(
        Fault::status(500)
            .method(Method::POST)
            .path("ciliumnetworkpolicies"),
    );
    let cnps = cnps(&api);
    let status = api_error(
        cnps.create(
            &PostParams::default(),
            &mk_dynamic(mk_cnp("f", json!("80"))),
        )
        .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    // The fault was used up: the next call goes through.
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("f", json!("80"))),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn injected_503_is_retried_by_the_kube_client() {
    let api = FakeApiServer::start().await;
    api.inject(Fault::status(503).path("ciliumnetworkpolicies").times(2));
    assert_eq!(api_error(cnps(&api).get("none").await).code, 404);
    let statuses: Vec<_> = api.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(404)]);
}

#[tokio::test]
async fn dropped_connection_surfaces_as_an_error() {
    let api = FakeApiServer::start().await;
    api.inject(Fault::drop_connection().path("ciliumnetworkpolicies"));
    let result = cnps(&api).get("x").await;
    assert!(
        result.is_err() && !matches!(result, Err(kube::Error::Api(_))),
        "{result:?}"
    );
    assert_eq!(api.requests()[0].status, None);
    assert_eq!(api_error(cnps(&api).get("x").await).code, 404);
}

#[tokio::test]
async fn injected_delay_delays_the_answer() {
    let api = FakeApiServer::start().await;
    api.inject(Fault::delay(Duration::from_millis(300)).method(Method::GET));
    let started = Instant::now();
    let _ = cnps(&api).get("x").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let request = &api.requests()[0];
    assert!(request.answered - request.received >= Duration::from_millis(300));
    let started = Instant::now();
    let _ = cnps(&api).get("x").await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn records_requests_with_content_type_and_status() {
    let api = FakeApiServer::start().await;
    cnps(&api)
        .patch(
            "rec",
            &PatchParams::apply("sparkward"),
            &Patch::Apply(mk_cnp("rec", json!("80"))),
        )
        .await
        .unwrap();
    let request = api.requests().pop().unwrap();
    assert_eq!(request.method, Method::PATCH);
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(request.status, Some(201));
    assert_eq!(request.query("fieldManager").as_deref(), Some("sparkward"));
    assert!(
        request
            .path
            .starts_with("/apis/cilium.io/v2/namespaces/default/ciliumnetworkpolicies/rec?")
    );
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("before", json!("80"))),
    )
    .await
    .unwrap();
    let mut events = watcher(cnps.clone(), watcher::Config::default()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(o) if o.metadata.name.as_deref() == Some("before"))
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));

    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("w", json!("80"))),
    )
    .await
    .unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("w"))
    );
    cnps.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "x": "y" } } })),
    )
    .await
    .unwrap();
    match next(&mut events).await.unwrap() {
        watcher::Event::Apply(o) => assert_eq!(o.metadata.labels.unwrap()["x"], "y"),
        other => panic!("{other:?}"),
    }
    cnps.delete("w", &DeleteParams::default()).await.unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Delete(o) if o.metadata.name.as_deref() == Some("w"))
    );
}

#[tokio::test]
async fn watcher_resumes_after_drop_watches_and_relists_after_gone() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let mut objects = watcher(cnps.clone(), watcher::Config::default())
        .touched_objects()
        .boxed();
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("one", json!("80"))),
    )
    .await
    .unwrap();
    assert_eq!(
        next(&mut objects).await.unwrap().metadata.name.as_deref(),
        Some("one")
    );
    // "one" came from the initial list; "watched" proves a watch is open.
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("watched", json!("80"))),
    )
    .await
    .unwrap();
    assert_eq!(
        next(&mut objects).await.unwrap().metadata.name.as_deref(),
        Some("watched")
    );

    api.drop_watches();
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("two", json!("80"))),
    )
    .await
    .unwrap();
    assert_eq!(
        next(&mut objects).await.unwrap().metadata.name.as_deref(),
        Some("two")
    );
    let watches = api.requests().iter().filter(|r| r.is_watch()).count();
    assert!(watches >= 2, "the watch was restarted ({watches})");

    // Events the watcher missed were compacted away: it gets 410 and lists again.
    api.drop_watches();
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("three", json!("80"))),
    )
    .await
    .unwrap();
    api.compact();
    let mut saw_gone = false;
    let mut saw_three = false;
    while !saw_three {
        match next(&mut objects).await {
            Err(watcher::Error::WatchError(status)) => {
                assert_eq!(status.code, 410);
                saw_gone = true;
            }
            Ok(o) => saw_three |= o.metadata.name.as_deref() == Some("three"),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(saw_gone);
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_an_expired_error_event() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    cnps.create(
        &PostParams::default(),
        &mk_dynamic(mk_cnp("g", json!("80"))),
    )
    .await
    .unwrap();
    api.compact();
    let mut stream = cnps
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watch_with_a_selector_reports_objects_leaving_it_as_deleted() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    pods.create(
        &PostParams::default(),
        &mk_pod("p", json!({ "spark-role": "driver" })),
    )
    .await
    .unwrap();
    let version = api.resource_version().to_string();
    let mut stream = pods
        .watch(
            &WatchParams::default()
                .labels("spark-role=driver")
                .timeout(5),
            &version,
        )
        .await
        .unwrap()
        .boxed();
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "spark-role": "executor" } } })),
    )
    .await
    .unwrap();
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Deleted(_)
    ));
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "spark-role": "driver" } } })),
    )
    .await
    .unwrap();
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Added(_)
    ));
}

#[tokio::test]
async fn watch_sends_bookmarks_when_asked() {
    let api = FakeApiServer::start().await;
    api.set_bookmark_interval(Duration::from_millis(50));
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let mut stream = pods
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Bookmark(_)
    ));
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_and_end_bookmark() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    pods.create(&PostParams::default(), &mk_pod("s", json!({})))
        .await
        .unwrap();
    let mut events = watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitApply(_)
    ));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));
}

#[tokio::test]
async fn reflector_store_fills_and_follows() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    for name in ["r1", "r2"] {
        pods.create(&PostParams::default(), &mk_pod(name, json!({})))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<Pod>();
    let stream = reflector(writer, watcher(pods.clone(), watcher::Config::default()));
    let drain = tokio::spawn(stream.applied_objects().try_for_each(|_| async { Ok(()) }));
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 2);
    pods.delete("r1", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while reader.state().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "reflector did not see the delete"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drain.abort();
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let api = FakeApiServer::start().await;
    let cnps = cnps(&api);
    let before = api.resource_version();
    cnps.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &mk_dynamic(mk_cnp("dry", json!("80"))),
    )
    .await
    .unwrap();
    assert!(api.get(CNP, "default", "dry").is_none());
    assert_eq!(api.resource_version(), before);
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects() {
    let api = FakeApiServer::start().await;
    api.ensure_namespace("tmp", json!({}));
    api.insert(
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p", "namespace": "tmp" },
        "spec": { "containers": [{ "name": "c", "image": "i" }] } }),
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(api.client());
    namespaces
        .delete("tmp", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.list(POD, Some("tmp")).is_empty());
}

#[tokio::test]
async fn rejects_bad_bodies_and_unknown_paths_with_status() {
    let api = FakeApiServer::start().await;
    let client = api.client();
    let request = http::Request::post("/api/v1/namespaces/default/pods")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .unwrap();
    let status = api_error(client.request_text(request).await);
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    let request = http::Request::get("/apis/example.com/v1/widgets")
        .body(Vec::new())
        .unwrap();
    assert_eq!(api_error(client.request_text(request).await).code, 404);
    let request = http::Request::post("/api/v1/namespaces/default/pods/p")
        .body(Vec::new())
        .unwrap();
    assert_eq!(api_error(client.request_text(request).await).code, 405);
}

#[tokio::test]
async fn kubeconfig_points_at_the_server() {
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = api.write_kubeconfig(dir.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", api.url()));
    let client = kube::Client::try_from(config).unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let mut stream = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    api.shutdown().await;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn malformed_requests_get_a_status_never_a_dropped_connection() {
    let api = FakeApiServer::start().await;
    api.insert(
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" },
        "spec": { "containers": [{ "name": "c", "image": "i" }] } }),
    );
    let client = api.client();
    let bodies = [
        json!([]),
        json!("text"),
        json!({ "metadata": "x" }),
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": 5, "labels": "x" } }),
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "n" }, "spec": "x" }),
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p", "finalizers": {} }, "spec": "x" }),
        json!({ "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": { "name": "c", "labels": [] }, "specs": 1 }),
    ];
    let targets = [
        (
            Method::POST,
            "/api/v1/namespaces/default/pods",
            "application/json",
        ),
        (Method::POST, "/api/v1/namespaces", "application/json"),
        (
            Method::PUT,
            "/api/v1/namespaces/default/pods/p",
            "application/json",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/default/pods/p/ephemeralcontainers",
            "application/json",
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p",
            "application/merge-patch+json",
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p",
            "application/json-patch+json",
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p?fieldManager=t",
            "application/apply-patch+yaml",
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/default/pods/p/status",
            "application/merge-patch+json",
        ),
        (
            Method::POST,
            "/apis/cilium.io/v2/namespaces/default/ciliumnetworkpolicies",
            "application/json",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/default/pods/p",
            "application/json",
        ),
    ];
    for (method, path, content_type) in targets {
        for body in &bodies {
            let request = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header("content-type", content_type)
                .body(serde_json::to_vec(body).unwrap())
                .unwrap();
            match client.request_text(request).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) => assert!(
                    (400..500).contains(&status.code),
                    "{method} {path} {body}: {status:?}"
                ),
                Err(other) => panic!("{method} {path} {body}: {other:?}"),
            }
        }
    }
    for query in [
        "watch=true&resourceVersion=abc",
        "labelSelector=%21%21",
        "limit=x&continue=y",
    ] {
        let request = http::Request::get(format!("/api/v1/pods?{query}"))
            .body(Vec::new())
            .unwrap();
        match client.request_text(request).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(other) => panic!("{query}: {other:?}"),
        }
    }
    // An absurd watch timeout is clamped, not an overflow in the server.
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &mk_pod("alive", json!({})))
        .await
        .unwrap();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(u32::MAX), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(pods.get("alive").await.is_ok());
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_of_a_deleted_owner() {
    let api = FakeApiServer::start().await;
    let app = api.insert(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": { "name": "job", "namespace": "default" },
        "spec": { "type": "Scala", "mode": "cluster", "sparkVersion": "3.5.3", "mainApplicationFile": "local:///x.jar", "driver": {}, "executor": {} },
    }));
    let owner = json!([{
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "name": "job", "uid": app["metadata"]["uid"], "controller": true,
    }]);
    for name in ["owned", "owned-too"] {
        let mut cnp = mk_cnp(name, json!("80"));
        cnp["metadata"]["ownerReferences"] = owner.clone();
        api.insert(cnp);
    }
    let apps: Api<DynamicObject> =
        Api::namespaced_with(api.client(), "default", &SPARK_APP.api_resource());
    apps.delete("job", &DeleteParams::default()).await.unwrap();
    assert!(api.list(CNP, Some("default")).is_empty());

    // A reference to a uid that does not exist is collected too, as the real collector does.
    let mut dangling = mk_cnp("dangling", json!("80"));
    dangling["metadata"]["ownerReferences"] = owner.clone();
    cnps(&api)
        .create(&PostParams::default(), &mk_dynamic(dangling.clone()))
        .await
        .unwrap();
    assert!(
        api.get(CNP, "default", "dangling").is_none(),
        "created, then collected at once"
    );
    api.set_garbage_collection(false);
    api.insert(dangling);
    assert!(api.get(CNP, "default", "dangling").is_some());
}

#[tokio::test]
async fn orphan_propagation_keeps_dependents_without_the_reference() {
    let api = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::default_namespaced(api.client());
    let driver = pods
        .create(&PostParams::default(), &mk_pod("driver", json!({})))
        .await
        .unwrap();
    let mut cnp = mk_cnp("kept", json!("80"));
    cnp["metadata"]["ownerReferences"] = json!([{ "apiVersion": "v1", "kind": "Pod", "name": "driver", "uid": driver.metadata.uid }]);
    api.insert(cnp);
    pods.delete("driver", &DeleteParams::orphan())
        .await
        .unwrap();
    let kept = api.get(CNP, "default", "kept").unwrap();
    assert!(
        kept["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
