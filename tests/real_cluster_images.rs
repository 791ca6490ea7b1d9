//! Approved images through a real kube-apiserver (etcd + kube-apiserver from `../shared/kube`):
//! sparkward installed the way production installs it, with `hardening.images` configured.
//! A separate test binary because the harness installs one sparkward per binary, and the main
//! real-API suite (`real_cluster.rs`) runs with the default configuration (no image rule).
//!
//! Skipped (one line) without `../shared/kube`; `SPARKWARD_REQUIRE_KUBE=1` makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::cluster::{RealCluster, SparkwardSetup, api, create, rejection};
use support::scenario::mk_spark_app;

const IMAGES: &str =
    "hardening:\n  images:\n    allowed: [docker.io/apache/spark, docker.io/library/]\n";

#[tokio::test]
async fn real_api_server_denies_unapproved_images_on_create_and_on_an_image_swap() {
    let Some(cluster) = RealCluster::shared().await else {
        return;
    };
    let sw = cluster
        .sparkward(&SparkwardSetup::with_config(IMAGES))
        .await;
    let ns = cluster.enforced_namespace("images").await;
    let alice = cluster.client_as(&ns.tenant("oidc:alice").await).await;
    let token = || sw.idp.token("alice", "data:read:postgres-main");
    let pp = PostParams::default();

    // A spark-submit driver with Spark's image (familiar form) and an official init image.
    let mut driver = support::reviews::mk_pod("driver", &ns.name);
    driver["metadata"]["annotations"] = json!({"sparkward.io/submitter-token": token()});
    driver["spec"]["initContainers"] = json!([{"name": "fetch", "image": "busybox:1.36"}]);
    create(&alice, &driver, &pp)
        .await
        .expect("the approved driver is admitted");

    // The look-alike repository in an init container.
    let mut evil = support::reviews::mk_pod("evil", &ns.name);
    evil["metadata"]["annotations"] = json!({"sparkward.io/submitter-token": token()});
    evil["spec"]["initContainers"] =
        json!([{"name": "fetch", "image": "docker.io/apache/spark-evil:4.0.0"}]);
    let (code, message) = rejection(create(&alice, &evil, &pp).await);
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(
            "admission webhook \"pods.mutate.sparkward.io\" denied the request: the object uses \
             images that are not approved: spec.initContainers[0].image is \
             'docker.io/apache/spark-evil:4.0.0' (repository docker.io/apache/spark-evil), which \
             is not under an allowed prefix: docker.io/apache/spark, docker.io/library/"
        ),
        "{message}"
    );

    // `kubectl set image` on the admitted driver: refused by the validating webhook.
    let pods = api(&alice, "v1", "Pod", Some(&ns.name));
    let swap = |image: &str| {
        Patch::Strategic(json!({"spec": {"containers": [
            {"name": "spark-kubernetes-driver", "image": image}]}}))
    };
    let result = pods
        .patch(
            "driver",
            &PatchParams::default(),
            &swap("quay.io/bob/spark:evil"),
        )
        .await;
    let (code, message) = rejection(result);
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(
            "admission webhook \"pods.validate.sparkward.io\" denied the request: the object \
             uses images that are not approved: spec.containers[0].image is \
             'quay.io/bob/spark:evil' (repository quay.io/bob/spark)"
        ),
        "{message}"
    );
    pods.patch(
        "driver",
        &PatchParams::default(),
        &swap("docker.io/apache/spark:4.0.4"),
    )
    .await
    .expect("an approved image swap");

    // A SparkApplication whose executor image is elsewhere.
    let mut app = mk_spark_app("etl", &ns.name, &token());
    app["spec"]["executor"]["image"] = json!("ghcr.io/evil/spark:1");
    let (code, message) = rejection(create(&alice, &app, &pp).await);
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(
            "spec.executor.image is 'ghcr.io/evil/spark:1' (repository ghcr.io/evil/spark), \
             which is not under an allowed prefix"
        ),
        "{message}"
    );
}
