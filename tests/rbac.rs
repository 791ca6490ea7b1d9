//! The RBAC that `deploy/` grants is exactly what sparkward uses: run sparkward against the
//! stand-in API server through every path that calls the API (policy apply, lookups on cache
//! misses, the lifecycle controller and its Lease), turn the requests it made into
//! (group, resource, verb) triples, and compare them with the rendered ClusterRole and Role.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use support::apiserver::{CNP, FakeApiServer, RecordedRequest, SPARK_APP};
use support::reviews::{Review, patched};
use support::scenario::{Idp, OPERATOR, mk_spark_app};
use support::webhook::{HttpVersion, Options, Sparkward};

type Grant = (String, String, String);

/// (group, resource, verb) of one API request, `None` for discovery and non-resource paths.
fn grant_of(r: &RecordedRequest) -> Vec<Grant> {
    let path = r.path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return Vec::new(),
    };
    let (resource, named) = match rest {
        ["namespaces", _ns, res, name, ..] => (*res, !name.is_empty()),
        ["namespaces", _ns, res] => (*res, false),
        [res, name, ..] => (*res, !name.is_empty()),
        [res] => (*res, false),
        _ => return Vec::new(),
    };
    let verbs: Vec<&str> = match (r.method.clone(), named) {
        (Method::GET, _) if r.is_watch() => vec!["watch"],
        (Method::GET, true) => vec!["get"],
        (Method::GET, false) => vec!["list"],
        (Method::POST, _) => vec!["create"],
        (Method::PUT, _) => vec!["update"],
        // Server-side apply that creates the object is authorised as create as well.
        (Method::PATCH, _) if r.status == Some(201) => vec!["patch", "create"],
        (Method::PATCH, _) => vec!["patch"],
        (Method::DELETE, _) => vec!["delete"],
        _ => vec![],
    };
    verbs
        .into_iter()
        .map(|v| (group.to_string(), resource.to_string(), v.to_string()))
        .collect()
}

fn granted_by_deploy() -> BTreeSet<Grant> {
    let out = Command::new("kubectl")
        .args(["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")])
        .output()
        .expect("kubectl is needed (see .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let mut granted = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        for rule in doc["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for res in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        granted.insert((
                            g.as_str().unwrap().to_string(),
                            res.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    granted
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deploy_grants_exactly_the_api_calls_sparkward_makes() {
    let api = FakeApiServer::start().await;
    api.ensure_namespace("spark-jobs", json!({"sparkward.io/enforce": "true"}));
    api.ensure_namespace("sparkward-system", json!({}));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s =
        Sparkward::start(Options {
            config: Some(idp.config(
                "lifecycle:\n  endGrace: 1s\n  orphanGrace: 1h\n  lease: { duration: 3s }\n",
            )),
            kubeconfig: Some(api.write_kubeconfig(dir.path())),
            ..Options::default()
        })
        .await;
    let client = s.client(HttpVersion::Http1);

    // A job: its policy is created by server-side apply, then applied again (a retry).
    let review = Review::spark_app(mk_spark_app(
        "pi",
        "spark-jobs",
        &idp.token("alice", "data:read:postgres-main"),
    ))
    .user("oidc:alice");
    let request = review.build();
    for _ in 0..2 {
        let (_, answer) = client.review("/mutate", &request).await;
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    let (_, answer) = client.review("/mutate", &request).await;
    let app = api.insert(patched(&request, &answer));
    // Lookups that miss the caches read from the API (here: objects that do not exist).
    let ghost_driver = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ghost-driver", "namespace": "spark-jobs",
            "labels": {"spark-role": "driver", "sparkoperator.k8s.io/app-name": "ghost"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    client
        .review("/mutate", &Review::pod(ghost_driver).user(OPERATOR).build())
        .await;
    let executor = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "exec", "namespace": "spark-jobs", "labels": {"spark-role": "executor"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    client
        .review(
            "/mutate",
            &Review::pod(executor)
                .bound_to_pod("spark", "ghost-pod", "u-1")
                .build(),
        )
        .await;
    let mut run = mk_spark_app("nightly-1", "spark-jobs", "x");
    run["metadata"]["annotations"] = json!({});
    run["metadata"]["ownerReferences"] = json!([{"apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "ScheduledSparkApplication", "name": "ghost-schedule", "uid": "u-2"}]);
    client
        .review("/mutate", &Review::spark_app(run).user(OPERATOR).build())
        .await;

    // The lifecycle controller adopts the job's policy, then deletes it when the job ends.
    let policy = format!(
        "sparkward-{}",
        app["metadata"]["labels"]["sparkward.io/job-id"]
            .as_str()
            .unwrap()
    );
    wait_for("adoption", Duration::from_secs(20), || {
        api.get(CNP, "spark-jobs", &policy)
            .is_some_and(|p| p["metadata"]["ownerReferences"].is_array())
    })
    .await;
    api.update_status(
        SPARK_APP,
        "spark-jobs",
        "pi",
        json!({"applicationState": {"state": "COMPLETED"}, "driverInfo": {}}),
    )
    .unwrap();
    wait_for(
        "the end of the job's policy",
        Duration::from_secs(20),
        || api.get(CNP, "spark-jobs", &policy).is_none(),
    )
    .await;
    // Let the Lease be renewed at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let used: BTreeSet<Grant> = api.requests().iter().flat_map(grant_of).collect();
    let granted = granted_by_deploy();
    let unused: Vec<&Grant> = granted.difference(&used).collect();
    let missing: Vec<&Grant> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "sparkward makes calls deploy/ does not grant: {missing:?}"
    );
    assert!(
        unused.is_empty(),
        "deploy/ grants calls sparkward never makes: {unused:?}"
    );
}
