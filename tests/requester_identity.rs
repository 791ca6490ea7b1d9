//! Identity from the API server's own OIDC login (`identity.requesterIdentity`): in a namespace
//! that opted in, a job submitted without a token takes its subject from the requesting user
//! and its scopes from the user's OIDC groups (`identity.groupScopes`); anywhere else, or for a
//! user the OIDC login did not authenticate, a token is still required; a token, when present,
//! wins. Through the stand-in API server's admission chain (mutating, then validating on the
//! stamped object, each call with its own uid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::apiserver::{CNP, FakeApiServer, User};
use support::reviews::{job_of, mk_pod};
use support::scenario::{Idp, mk_spark_app};
use support::webhook::{Options, Sparkward};

const OPTED_IN: &str = "analytics";
const NOT_OPTED_IN: &str = "spark-jobs";

struct World {
    api: FakeApiServer,
    idp: Idp,
    server: Sparkward,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let api = FakeApiServer::start().await;
    for ns in [OPTED_IN, NOT_OPTED_IN] {
        api.ensure_namespace(ns, json!({ "sparkward.io/enforce": "true" }));
    }
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = idp.config("").replacen(
        "identity:\n",
        &format!(
            "identity:\n  requesterIdentity: {{ namespaces: [{OPTED_IN}], usernamePrefix: \"oidc:\", groupsPrefix: \"oidc:\" }}\n  groupScopes:\n    db-readers: [data:read:postgres-main]\n    streamers: [stream:kafka-events]\n"
        ),
        1,
    );
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
        _dir: dir,
    }
}

fn alice() -> User {
    User::new("oidc:alice")
        .group("oidc:db-readers")
        .group("oidc:unmapped")
        .group("system:authenticated")
}

fn without_token(mut app: Value) -> Value {
    app["metadata"]["annotations"] = json!({});
    app
}

fn denial(result: Result<Value, Value>) -> String {
    let status = result.expect_err("expected a denial");
    status["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn in_an_opted_in_namespace_alices_login_is_her_job_identity() {
    let w = world().await;
    let app = w
        .api
        .create_as(&alice(), without_token(mk_spark_app("etl", OPTED_IN, "x")))
        .await
        .unwrap_or_else(|s| panic!("not admitted: {s}"));
    let ann = &app["metadata"]["annotations"];
    assert_eq!(ann["sparkward.io/submitter"], "alice");
    assert_eq!(ann["sparkward.io/scopes"], "data:read:postgres-main");
    assert!(ann.get("sparkward.io/token-id").is_none());
    let job = job_of(&app);
    let policy = w
        .api
        .get(CNP, OPTED_IN, &format!("sparkward-{job}"))
        .expect("the job's policy");
    assert!(policy["specs"].to_string().contains("5432"), "{policy}");
    // The audit says where the identity came from, for both webhooks.
    let lines: Vec<Value> = w
        .server
        .audit_lines()
        .into_iter()
        .filter(|l| l["jobId"] == job.as_str())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["webhook"] == "mutate" && l["identitySource"] == "requester")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["webhook"] == "validate" && l["identitySource"] == "requester")
    );
    // A spark-submit driver pod works the same way.
    let pod = w
        .api
        .create_as(&alice(), mk_pod("alice-driver", OPTED_IN))
        .await
        .unwrap_or_else(|s| panic!("not admitted: {s}"));
    assert_eq!(
        pod["metadata"]["annotations"]["sparkward.io/submitter"],
        "alice"
    );
}

#[tokio::test]
async fn elsewhere_or_without_the_oidc_login_a_token_is_still_required() {
    let w = world().await;
    let message = denial(
        w.api
            .create_as(
                &alice(),
                without_token(mk_spark_app("etl", NOT_OPTED_IN, "x")),
            )
            .await,
    );
    assert!(
        message.contains("sparkward.io/submitter-token"),
        "{message}"
    );
    // A service account (or a client certificate user) is not an OIDC login.
    let sa = User::service_account(OPTED_IN, "spark");
    denial(
        w.api
            .create_as(&sa, without_token(mk_spark_app("etl", OPTED_IN, "x")))
            .await,
    );
    let cert_user = User::new("alice").group("system:authenticated");
    denial(
        w.api
            .create_as(
                &cert_user,
                without_token(mk_spark_app("etl2", OPTED_IN, "x")),
            )
            .await,
    );
    assert!(w.api.list(CNP, None).is_empty());
}

#[tokio::test]
async fn a_token_in_the_annotation_still_wins() {
    let w = world().await;
    let token = w.idp.token("alice", "stream:kafka-events");
    let app = w
        .api
        .create_as(&alice(), mk_spark_app("etl", OPTED_IN, &token))
        .await
        .unwrap_or_else(|s| panic!("not admitted: {s}"));
    let ann = &app["metadata"]["annotations"];
    assert_eq!(ann["sparkward.io/scopes"], "stream:kafka-events");
    assert!(ann["sparkward.io/token-id"].as_str().is_some());
    let job = job_of(&app);
    let line = w
        .server
        .audit_line(|l| l["webhook"] == "mutate" && l["jobId"] == job.as_str())
        .await;
    assert_eq!(line["identitySource"], "token");
}
